"""gankit.latent.editing: one distance semantics for Z, W and W+."""
import numpy as np
import pytest
import torch

from gankit.latent.boundaries import Boundary
from gankit.latent.editing import edit, signed_distance, sweep


def unit(v):
    return v / np.linalg.norm(v)


def boundary(space, dim, intercept=0.3, layers=None, seed=0):
    normal = unit(np.random.default_rng(seed).standard_normal(dim))
    return Boundary("smile", space, normal, intercept, layers=layers)


def latents(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


CASES = [  # (boundary space, latent shape, boundary dim, layers of a 'wp' boundary)
    ("z", (5, 8), 8, None),
    ("w", (5, 8), 8, None),
    ("wp", (5, 6, 4), 8, (2, 4)),
]


@pytest.mark.parametrize("space, shape, dim, layers", CASES)
def test_shift_moves_signed_distance_by_t(space, shape, dim, layers):
    b = boundary(space, dim, layers=layers)
    x = latents(*shape)
    t = np.array([-2.0, -0.5, 0.0, 1.0, 3.0])
    before, after = signed_distance(x, b), signed_distance(edit(x, b, t), b)
    assert before.shape == (5,)
    np.testing.assert_allclose(after - before, t, atol=1e-5)


@pytest.mark.parametrize("space, shape, dim, layers", CASES)
def test_to_distance_places_every_sample_at_t(space, shape, dim, layers):
    b = boundary(space, dim, layers=layers)
    x = latents(*shape)
    np.testing.assert_allclose(signed_distance(edit(x, b, 1.5, mode="to_distance"), b),
                               1.5, atol=1e-5)


def test_w_boundary_on_wplus_edits_only_chosen_layers():
    b = boundary("w", 4)
    x = latents(3, 6, 4)
    out = edit(x, b, 2.0, layers=(1, 3))
    np.testing.assert_array_equal(out[:, [0, 3, 4, 5]], x[:, [0, 3, 4, 5]])
    per_layer = signed_distance(out, b, layers=(1, 3)) - signed_distance(x, b, layers=(1, 3))
    assert per_layer.shape == (3, 2)
    np.testing.assert_allclose(per_layer, 2.0, atol=1e-5)
    placed = edit(x, b, -1.0, mode="to_distance")               # default: every layer
    np.testing.assert_allclose(signed_distance(placed, b), -1.0, atol=1e-5)


def test_wp_boundary_edits_only_its_slice():
    b = boundary("wp", 8, layers=(2, 4))
    x = latents(3, 6, 4)
    out = edit(x, b, 1.0)
    np.testing.assert_array_equal(out[:, :2], x[:, :2])
    np.testing.assert_array_equal(out[:, 4:], x[:, 4:])
    assert not np.allclose(out[:, 2:4], x[:, 2:4])
    with pytest.raises(ValueError, match="layers it was fitted on"):
        edit(x, b, 1.0, layers=(0, 2))


def test_torch_latents_keep_type_and_match_numpy():
    b = boundary("w", 8)
    x = latents(4, 8)
    got = edit(torch.from_numpy(x), b, 0.7, mode="to_distance")
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), edit(x, b, 0.7, mode="to_distance"), atol=1e-6)
    assert torch.equal(torch.from_numpy(x), torch.from_numpy(latents(4, 8)))  # input untouched


def test_sweep_shapes_and_distances():
    b = boundary("w", 8)
    x = latents(1, 8)[0]
    strengths = [-1.0, 0.0, 2.0]
    out = sweep(x, b, strengths, mode="to_distance")
    assert out.shape == (3, 8)
    np.testing.assert_allclose(signed_distance(out, b), strengths, atol=1e-5)
    wp = sweep(torch.from_numpy(latents(6, 8)), b, strengths, layers=(0, 3))
    assert wp.shape == (3, 6, 8)


def test_mismatches_raise():
    b = boundary("z", 8)
    with pytest.raises(ValueError, match="8-dim"):
        edit(latents(2, 5), b, 1.0)
    with pytest.raises(ValueError, match="cannot edit"):
        edit(latents(2, 3, 8), b, 1.0)
    with pytest.raises(ValueError, match="strengths"):
        edit(latents(2, 8), b, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="mode"):
        edit(latents(2, 8), b, 1.0, mode="absolute")
