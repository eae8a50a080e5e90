"""gankit.latent.boundaries: InterFaceGAN fitting, conditional normals, save/load."""
import numpy as np
import pytest

from gankit.latent.boundaries import (Boundary, _select, condition_boundary, cosine_matrix,
                               fit_boundary, flatten_wp, resolve_solver, select_extremes)
from gankit.latent.solvers import (NEWTON_MAX_DIM, conditional_normal, solve_liblinear,
                                   solve_newton)


def unit(v):
    return v / np.linalg.norm(v)


def separable_data(n=3000, dim=12, offset=0.5, seed=0):
    """Gaussian latents; score = x.n_true + offset (no noise): the boundary is known."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    normal = unit(rng.standard_normal(dim))
    return x, x @ normal + offset, normal


def test_select_extremes_top_and_bottom():
    scores = np.array([0.5, -2.0, 3.0, 0.1, -1.0, 2.0, 0.0, 1.0, -0.5, -3.0])
    pos, neg = select_extremes(scores, fraction=0.2)
    assert list(pos) == [2, 5] and list(neg) == [9, 1]
    pos, neg = select_extremes(scores, count=5)
    assert set(pos) | set(neg) == set(range(10))
    with pytest.raises(ValueError, match="count"):
        select_extremes(scores, count=6)
    with pytest.raises(ValueError, match="fraction"):
        select_extremes(scores, fraction=0.7)


@pytest.mark.parametrize("solver", ["newton", "liblinear", "svc"])
def test_fit_recovers_known_boundary(solver):
    x, scores, normal = separable_data()
    b = fit_boundary(x, scores, "smile", "z", fraction=0.1, solver=solver, C=100.0)
    assert b.normal.dtype == np.float32 and abs(np.linalg.norm(b.normal) - 1) < 1e-6
    assert float(b.normal @ normal) > 0.99
    assert b.metrics["val_accuracy"] == 1.0 and b.metrics["train_accuracy"] == 1.0
    # The extremes are symmetric in rank, so the fitted threshold sits near the median score
    # (x.n = 0), while labels score > 0 put the true one at x.n = -0.5: all-sample accuracy is
    # then about 1 - P(-0.5 < x.n < 0) = 0.81.
    assert 0.75 < b.metrics["all_accuracy"] < 0.87
    assert b.metrics["n_train"] + b.metrics["n_val"] == 600 and b.metrics["solver"] == solver


def test_threshold_selection_fits_where_labels_change():
    # Same data: labels score > 0 sit at x.n = -0.5, which rank-symmetric extremes cannot see.
    x, scores, normal = separable_data()
    b = fit_boundary(x, scores, "smile", "z", selection="threshold", C=100.0)
    assert float(b.normal @ normal) > 0.99 and 0.4 < b.intercept < 0.6
    assert b.metrics["all_accuracy"] > 0.99 and b.metrics["val_accuracy"] > 0.99
    assert b.metrics["n_train"] + b.metrics["n_val"] == 3000
    assert b.metrics["remaining_accuracy"] is None                  # nothing left out
    with pytest.raises(ValueError, match="selection 'threshold' needs >= 2 samples"):
        fit_boundary(x, np.abs(scores) + 1, "smile", "z", selection="threshold")
    with pytest.raises(ValueError, match="selection must be one of"):
        fit_boundary(x, scores, "smile", "z", selection="middle")


def test_intercept_is_kept_with_the_right_sign():
    # Latents centred away from the origin (as W is, on w_avg): the boundary through the data is
    # x.n = m.n = 2, i.e. d(x) = x.n - 2. Dropping the intercept (InterFaceGAN) would put it
    # through the origin, where every sample is on the positive side.
    rng = np.random.default_rng(1)
    normal = unit(rng.standard_normal(8))
    z = rng.standard_normal((4000, 8)).astype(np.float32)
    x = z + 2.0 * normal.astype(np.float32)
    scores = z @ normal
    b = fit_boundary(x, scores, "glasses", "w", fraction=0.5, C=100.0)
    assert float(b.normal @ normal) > 0.99
    assert -2.2 < b.intercept < -1.8
    assert b.metrics["all_accuracy"] > 0.98 and b.metrics["remaining_accuracy"] is None
    assert np.mean((x @ b.normal > 0) == (scores > 0)) < 0.6   # without the intercept


def test_fast_solvers_agree_with_svc_on_extremes():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((20000, 32)).astype(np.float32)
    normal = unit(rng.standard_normal(32))
    scores = x @ normal + 0.3 * rng.standard_normal(20000)   # noisy: not separable overall
    ref = fit_boundary(x, scores, "age", "z", fraction=0.02, solver="svc")
    for solver in ("newton", "liblinear", "auto"):
        fast = fit_boundary(x, scores, "age", "z", fraction=0.02, solver=solver)
        assert float(fast.normal @ ref.normal) > 0.99, solver
        assert abs(fast.metrics["val_accuracy"] - ref.metrics["val_accuracy"]) < 0.02
    assert ref.metrics["n_train"] == 560 and ref.metrics["n_val"] == 240


def test_svc_is_interfacegans_fit_exactly():
    # solver='svc' must stay InterFaceGAN's SVC(kernel='linear') on the raw selected latents:
    # the same normal as fitting sklearn by hand on the same train rows.
    from sklearn.svm import SVC
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5000, 16)).astype(np.float32)
    scores = x @ unit(rng.standard_normal(16)) + 0.5 * rng.standard_normal(5000)
    b = fit_boundary(x, scores, "age", "z", fraction=0.02, solver="svc", seed=7)
    sel = _select(scores, 0.02, None, 0.3, 7, "extremes", 0.0)
    ref = SVC(kernel="linear").fit(x[sel.train], sel.y)
    norm = np.linalg.norm(ref.coef_[0])
    np.testing.assert_allclose(b.normal, ref.coef_[0] / norm, rtol=1e-5, atol=1e-6)
    assert abs(b.intercept - ref.intercept_[0] / norm) < 1e-5 and b.metrics["solver"] == "svc"


def test_auto_picks_the_solver_by_selection_and_space():
    assert resolve_solver("auto", "extremes", "w", 14000, 512) == "liblinear"
    assert resolve_solver("auto", "threshold", "z", 140000, 512) == "logistic"
    assert resolve_solver("auto", "threshold", "z", 14000, 128) == "newton"    # small: Newton
    assert resolve_solver("auto", "threshold", "z", 14000, 512) == "logistic"
    assert resolve_solver("auto", "threshold", "w", 140000, 512) == "newton"
    assert resolve_solver("auto", "threshold", "wp", 1000, NEWTON_MAX_DIM + 1) == "liblinear"
    assert resolve_solver("svc", "threshold", "z", 140000, 512) == "svc"     # explicit: kept
    with pytest.raises(ValueError, match="solver must be one of"):
        resolve_solver("sgd", "threshold", "z", 10, 2)
    x, scores, _ = separable_data()
    b = fit_boundary(x, scores + np.random.default_rng(0).standard_normal(len(x)), "a", "w",
                     selection="threshold")
    assert b.metrics["solver"] == "newton"


@pytest.mark.parametrize("space", ["z", "w"])
def test_every_solver_agrees_on_all_samples(space):
    # Every sample (selection 'threshold'), overlapping classes, off-centre and anisotropic
    # like W: the logistic loss's normal and the two squared-hinge solvers' must agree.
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((8000, 24)) * np.linspace(3, 0.3, 24) + 1.5).astype(np.float32)
    normal = unit(rng.standard_normal(24))
    scores = (x - 1.5) @ normal + 0.5 * rng.standard_normal(8000)
    fits = {s: fit_boundary(x, scores, "a", space, selection="threshold", solver=s)
            for s in ("newton", "liblinear", "logistic")}
    ref = fits["newton"]
    for solver, b in fits.items():
        assert float(b.normal @ ref.normal) > 0.999, solver
        assert abs(b.intercept - ref.intercept) < 0.05, solver
        assert abs(b.metrics["val_accuracy"] - ref.metrics["val_accuracy"]) < 0.01, solver
        assert b.metrics["solver"] == solver
    auto = fit_boundary(x, scores, "a", space, selection="threshold")
    assert auto.metrics["solver"] == "newton"               # a small fit: Newton in Z too
    assert float(auto.normal @ ref.normal) > 0.999


def test_newton_matches_liblinear_objective_optimum_on_overlapping_classes():
    # All samples (fraction 0.5), heavy overlap: many active constraints, several Newton steps.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6000, 20)).astype(np.float32) + 2.0   # off-centre like W
    normal = unit(rng.standard_normal(20))
    scores = (x - 2.0) @ normal + rng.standard_normal(6000)
    a = fit_boundary(x, scores, "a", "w", fraction=0.5, solver="newton")
    b = fit_boundary(x, scores, "a", "w", fraction=0.5, solver="liblinear")
    assert float(a.normal @ b.normal) > 0.999
    assert abs(a.intercept - b.intercept) < 0.05
    assert abs(a.metrics["val_accuracy"] - b.metrics["val_accuracy"]) < 0.01


def test_newton_reaches_the_l2svm_optimum():
    # The objective Newton minimises (squared hinge, unregularised b): its optimum must be at
    # least as low as liblinear's point (which regularises b) and the gradient must vanish.
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3000, 10)).astype(np.float32) + 1.0
    y = np.where(x[:, 0] + 0.8 * rng.standard_normal(3000) > 1.0, 1.0, -1.0)
    C = 0.5

    def objective(w, b):
        slack = np.maximum(0, 1 - y * (x.astype(np.float64) @ w + b))
        return 0.5 * w @ w + C * np.sum(slack ** 2)

    w_n, b_n = solve_newton(x, y, C)
    w_l, b_l = solve_liblinear(x, y, C)
    assert objective(w_n, b_n) <= objective(w_l, b_l) + 1e-6
    slack = np.maximum(0, 1 - y * (x.astype(np.float64) @ w_n + b_n))
    grad_w = w_n - 2 * C * (slack * y) @ x
    grad_b = -2 * C * np.sum(slack * y)
    assert np.linalg.norm(grad_w) < 1e-3 * np.linalg.norm(w_n) and abs(grad_b) < 1e-2


def test_wp_boundary_on_layer_slice():
    rng = np.random.default_rng(4)
    ws = rng.standard_normal((2000, 6, 4)).astype(np.float32)        # [N, L, D]
    target = unit(rng.standard_normal(8))
    scores = flatten_wp(ws, (2, 4)) @ target
    b = fit_boundary(ws, scores, "pose", "wp", fraction=0.5, layers=(2, 4), C=100.0)
    assert b.layers == (2, 4) and b.dim == 8 and b.w_dim == 4
    assert float(b.normal @ target) > 0.99
    assert flatten_wp(ws).shape == (2000, 24)
    with pytest.raises(ValueError, match="layers"):
        flatten_wp(ws, (3, 9))


def closed_form(n, C):
    """InterFaceGAN's unregularised conditional normal: n - C^T (C C^T)^-1 C n."""
    x = np.linalg.solve(C @ C.T, C @ n)
    out = n - x @ C
    return out / np.linalg.norm(out)


def test_conditional_normal_single_and_multi():
    rng = np.random.default_rng(5)
    n = unit(rng.standard_normal(16))
    c = unit(rng.standard_normal(16))
    one = conditional_normal(n, c)
    np.testing.assert_allclose(one, unit(n - (n @ c) * c), atol=1e-12)
    C = rng.standard_normal((3, 16))
    multi = conditional_normal(n, C)
    np.testing.assert_allclose(multi, closed_form(n, C), atol=1e-10)
    assert np.max(np.abs(C @ multi)) < 1e-12
    assert abs(np.linalg.norm(multi) - 1) < 1e-12


def test_conditional_normal_near_collinear_conditions():
    rng = np.random.default_rng(6)
    n = unit(rng.standard_normal(16))
    c1 = unit(rng.standard_normal(16))
    c2 = c1 + 1e-9 * rng.standard_normal(16)
    C = np.stack([c1, c2])
    ours = conditional_normal(n, C)
    assert np.all(np.isfinite(ours)) and abs(np.linalg.norm(ours) - 1) < 1e-12
    assert abs(ours @ c1) < 1e-6 and abs(ours @ unit(c2)) < 1e-6
    # same answer as conditioning on c1 alone: the duplicate adds no direction
    np.testing.assert_allclose(ours, conditional_normal(n, c1), atol=1e-6)
    assert np.linalg.cond(C @ C.T) > 1e12   # what the closed form has to invert


def test_conditional_normal_refuses_primal_inside_span():
    rng = np.random.default_rng(7)
    C = rng.standard_normal((2, 8))
    with pytest.raises(ValueError, match="span of the conditions"):
        conditional_normal(C[0] + 2 * C[1], C)
    with pytest.raises(ValueError, match="conditions must be"):
        conditional_normal(np.ones(8), np.ones((2, 7)))


def make_boundary(attribute, normal, intercept=0.0, center=None):
    return Boundary(attribute=attribute, space="w", normal=unit(np.asarray(normal, float)),
                    intercept=intercept, center=center)


def test_condition_boundary_orthogonal_and_keeps_threshold_point():
    rng = np.random.default_rng(8)
    center = rng.standard_normal(6)
    primal = make_boundary("smile", rng.standard_normal(6), intercept=0.4, center=center)
    other = make_boundary("age", rng.standard_normal(6))
    cond = condition_boundary(primal, [other])
    assert cond.conditions == ("age",)
    assert abs(float(cond.normal @ other.normal)) < 1e-6
    # the point of the old hyperplane nearest the centre lies on the new hyperplane
    n = primal.normal.astype(np.float64)
    anchor = center - (center @ n + primal.intercept) * n
    assert abs(anchor @ cond.normal + cond.intercept) < 1e-5
    assert cond.metrics["cosine_to_primal"] == pytest.approx(float(n @ cond.normal), abs=1e-6)
    with pytest.raises(ValueError, match="already conditioned"):
        condition_boundary(cond, [other])
    with pytest.raises(ValueError, match="same space"):
        condition_boundary(primal, [Boundary("x", "z", unit(np.ones(6)), 0.0)])


def test_cosine_matrix():
    a = make_boundary("a", [1, 0, 0])
    b = make_boundary("b", [1, 1, 0])
    m = cosine_matrix([a, b])
    np.testing.assert_allclose(m, [[1, np.sqrt(0.5)], [np.sqrt(0.5), 1]], atol=1e-6)


def test_save_load_round_trip(tmp_path):
    x, scores, _ = separable_data(n=400, dim=6)
    b = fit_boundary(x, scores, "smile", "w", fraction=0.25)
    path = tmp_path / "smile.npz"
    b.save(path)
    loaded = Boundary.load(path)
    np.testing.assert_array_equal(loaded.normal, b.normal)
    np.testing.assert_array_equal(loaded.center, b.center)
    assert loaded.intercept == b.intercept and loaded.metrics == b.metrics
    assert (loaded.attribute, loaded.space, loaded.layers, loaded.conditions) == \
        ("smile", "w", None, ())
    wp = Boundary("pose", "wp", unit(np.ones(8)), -0.25, layers=(2, 4), conditions=("a", "b"))
    wp.save(tmp_path / "pose.npz")
    back = Boundary.load(tmp_path / "pose.npz")
    assert back.layers == (2, 4) and back.conditions == ("a", "b") and back.center is None


def test_load_refuses_pickled_content(tmp_path):
    path = tmp_path / "evil.npz"
    Boundary("a", "w", unit(np.ones(4)), 0.0).save(path)
    with np.load(path) as f:
        arrays = dict(f)
    arrays["attribute"] = np.array([object()], dtype=object)    # needs pickle to load
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="pickle"):
        Boundary.load(path)


def test_boundary_validation():
    with pytest.raises(ValueError, match="unit-norm"):
        Boundary("a", "w", np.ones(4), 0.0)
    with pytest.raises(ValueError, match="layers"):
        Boundary("a", "wp", unit(np.ones(4)), 0.0)
    with pytest.raises(ValueError, match="space"):
        Boundary("a", "s", unit(np.ones(4)), 0.0)


def test_fit_argument_errors_and_no_validation_split():
    x, scores, _ = separable_data(n=200, dim=4)
    b = fit_boundary(x, scores, "a", "z", fraction=0.1, val_fraction=0.0)
    assert b.metrics["val_accuracy"] is None and b.metrics["n_train"] == 40
    with pytest.raises(ValueError, match="rows"):
        fit_boundary(x, scores[:-1], "a", "z")
    with pytest.raises(ValueError, match="solver"):
        fit_boundary(x, scores, "a", "z", fraction=0.1, solver="sgd")
    with pytest.raises(ValueError, match="val_fraction"):
        fit_boundary(x, scores, "a", "z", fraction=0.1, val_fraction=1.0)
    with pytest.raises(ValueError, match="layers"):
        fit_boundary(x, scores, "a", "wp", fraction=0.1)
