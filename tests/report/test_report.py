"""gankit.report: rescoring and flip-rate math on hand-made logits, figures, report.html."""
import base64
import io
import json
import math

import numpy as np
import pytest

from gankit import report as R
from helpers import REPORT_SAMPLES, make_tiny_report


def sig(x):
    return 1.0 / (1.0 + math.exp(-x))


# Two attributes (a0, a1), three samples; boundary 0 targets a0, boundary 1 targets a1.
BEFORE = np.array([[-2.0, 1.0],
                   [3.0, -1.0],
                   [-1.0, -2.0]])                                     # [N=3, A=2]
AFTER = np.array([[[2.0, 1.0], [-1.0, -1.0], [1.0, 2.0]],            # boundary 0
                  [[-2.0, -3.0], [3.0, 2.0], [-1.0, -0.5]]])          # boundary 1 [B, N, A]


def test_directions_point_away_from_the_label_before():
    d = R.edit_directions(BEFORE, [0, 1])
    assert d.tolist() == [[1, -1, 1], [-1, 1, 1]]


def test_rescoring_is_the_mean_probability_change():
    m = R.rescoring_matrix(BEFORE, AFTER)
    # boundary 0, attribute a0: (sig(2)-sig(-2) + sig(-1)-sig(3) + sig(1)-sig(-1)) / 3
    want00 = (sig(2) - sig(-2) + sig(-1) - sig(3) + sig(1) - sig(-1)) / 3
    want01 = (0 + 0 + sig(2) - sig(-2)) / 3
    assert m.shape == (2, 2)
    assert m[0, 0] == pytest.approx(want00)
    assert m[0, 1] == pytest.approx(want01)


def test_rescoring_signed_by_direction():
    d = R.edit_directions(BEFORE, [0, 1])
    m = R.rescoring_matrix(BEFORE, AFTER, d)
    want00 = ((sig(2) - sig(-2)) - (sig(-1) - sig(3)) + (sig(1) - sig(-1))) / 3
    want11 = (-(sig(-3) - sig(1)) + (sig(2) - sig(-1)) + (sig(-0.5) - sig(-2))) / 3
    assert m[0, 0] == pytest.approx(want00)
    assert m[1, 1] == pytest.approx(want11)
    assert m[0, 0] > 0.5                       # every sample moved its target the right way


def test_flip_rates_count_target_flips_and_other_changes():
    f = R.flip_rates(BEFORE, AFTER, [0, 1])
    # boundary 0: a0 labels -,+,- -> +,-,+ : 3/3 flipped; a1 labels +,-,- -> +,-,+ : 1/3
    # boundary 1: a1 labels +,-,- -> -,+,- : 2/3 flipped; a0 labels unchanged: 0/3
    assert f["flip_rate"].tolist() == pytest.approx([1.0, 2 / 3])
    assert f["others_changed"].tolist() == pytest.approx([1 / 3, 0.0])
    assert np.allclose(f["changed"], [[1.0, 1 / 3], [0.0, 2 / 3]])


def test_flip_rate_only_counts_flips_in_the_edit_direction():
    # sample 0 pushed negative on a0 (direction -1) though it was negative: it cannot flip
    direction = np.array([[-1.0, -1.0, 1.0]])
    f = R.flip_rates(BEFORE, AFTER[:1], [0], direction)
    # after a0: +, -, + ; wanted side: -, -, + -> samples 1 and 2 match
    assert f["flip_rate"].tolist() == pytest.approx([2 / 3])


def test_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"\[B, N, A\]"):
        R.rescoring_matrix(BEFORE, AFTER[:, :2])
    with pytest.raises(ValueError, match="one attribute per boundary"):
        R.flip_rates(BEFORE, AFTER, [0])


def test_correlation_matrix_matches_numpy_and_handles_constant_columns():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    x[:, 1] = 2 * x[:, 0] + 0.1 * x[:, 1]
    c = R.correlation_matrix(x)
    assert np.allclose(c, np.corrcoef(x.T))
    c = R.correlation_matrix(np.c_[x[:, :1], np.ones(200)])
    assert c[1].tolist() == [0.0, 0.0] and c[0, 0] == pytest.approx(1.0)


def decode(png: bytes) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(png)))


def test_heatmap_is_a_png_and_checks_labels():
    png = R.heatmap_png(np.eye(3), list("abc"), list("abc"), "t")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and decode(png).shape[0] > 50
    with pytest.raises(ValueError, match="labels"):
        R.heatmap_png(np.eye(3), list("ab"), list("abc"), "t")


def test_edit_grid_places_cells_in_rows():
    cells = np.zeros((2, 3, 4, 4, 3), np.uint8)
    cells[1, 2] = 200                                       # row 1, column 2
    g = R.edit_grid(cells, scale=2)
    # border 2, cell 8 px: row 1 starts at 2 + 10, column 2 at 2 + 2 * 10
    assert g.shape == (2 + 2 * 10, 2 + 3 * 10, 3)
    assert (g[12:20, 22:30] == 200).all() and (g[2:10, 2:10] == 0).all()


def test_render_html_has_tables_and_embedded_images():
    report = {"title": "T", "edit_strength": 2.0, "num_edited": 3,
              "boundaries": [{"name": "w/smile", "attribute": "smile", "space": "w",
                              "conditions": [], "val_accuracy": 0.987, "all_accuracy": 0.8,
                              "n_train": 28}],
              "edits": {"plain": {"smile": {"boundary": "w/smile", "flip_rate": 0.75,
                                            "others_changed": 0.125}}},
              "pairs": [{"target": "smile", "conditions": ["yaw"],
                         "flip_rate": {"plain": 0.9, "conditional": 0.95},
                         "condition_changed": {"plain": 0.4, "conditional": 0.05}}]}
    png = R.heatmap_png(np.eye(2), ["a", "b"], ["a", "b"], "t")
    page = R.render_html(report, {"cosine_w": png, "grid_smile": "figures/grid_smile.png"})
    assert page.startswith("<!doctype html>") and "</html>" in page
    assert "w/smile" in page and "0.987" in page and "0.750" in page and "smile | yaw" in page
    embedded = base64.b64encode(png).decode()
    assert f"data:image/png;base64,{embedded}" in page
    assert "src='figures/grid_smile.png'" in page
    assert page.count("<table") == 3
    report["pairs"][0]["sweep"] = [
        {"strength": 1.0, "flip_rate": {"plain": 0.6, "conditional": 0.55},
         "condition_changed": {"plain": 0.2, "conditional": 0.02}},
        {"strength": 2.0, "flip_rate": report["pairs"][0]["flip_rate"],
         "condition_changed": report["pairs"][0]["condition_changed"]}]
    page = R.render_html(report, {})
    assert page.count("<table") == 4 and "by strength" in page
    assert page.count(">no</td>") == 1 and page.count(">yes</td>") == 1


def test_pair_passes_needs_flip_low_change_and_less_than_plain():
    row = lambda f, cp, cc: {"flip_rate": {"plain": 1.0, "conditional": f},  # noqa: E731
                             "condition_changed": {"plain": cp, "conditional": cc}}
    assert R.pair_passes(row(0.95, 0.3, 0.05))
    assert not R.pair_passes(row(0.85, 0.3, 0.05))          # too few flips
    assert not R.pair_passes(row(0.95, 0.3, 0.12))          # condition changes too often
    assert not R.pair_passes(row(0.95, 0.04, 0.05))         # no better than plain


def test_render_html_shows_the_latent_tables_when_present_and_renders_without():
    base = {"title": "T", "boundaries": []}
    page = R.render_html(base, {})
    assert "Separability and path length" not in page and "Directions (SeFa)" not in page
    nulls = dict(base, separability=None, ppl=None, directions=None)
    assert R.render_html(nulls, {}) == page
    report = dict(base, separability={"z": {"score": 2.345, "num_samples": 100},
                                      "w": {"score": 1.234, "num_samples": 100}},
                  ppl={"z": {"mean": 812.5, "mean_filtered": 700.0, "n": 40, "sampling": "full"},
                       "w": {"mean": 401.25, "mean_filtered": 390.0, "n": 40,
                             "sampling": "full"}},
                  directions=[{"index": 0, "name": "smile+ (0.41)", "top_attribute": "smile",
                               "top_change": 0.41, "value": 3.0, "std": 0.5},
                              {"index": 1, "name": "unnamed (top: old- 0.05)",
                               "top_attribute": "old", "top_change": -0.05, "value": 2.0,
                               "std": 0.4}])
    page = R.render_html(report, {})
    assert "Separability and path length (Z vs W)" in page and "Directions (SeFa)" in page
    assert "2.345" in page and "1.234" in page and "812.500" in page and "401.250" in page
    assert "smile+ (0.41)" in page and "unnamed (top: old- 0.05)" in page
    assert page.count("<table") == 3    # boundaries + latent + directions
    # one space only: a single row, no error
    page = R.render_html(dict(base, separability={"w": {"score": 1.5}}), {})
    assert "Separability and path length" in page and "1.500" in page


def test_correlation_gap_is_the_mean_off_diagonal_difference():
    a = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, -0.2], [0.0, -0.2, 1.0]])
    b = np.array([[1.0, 0.1, 0.3], [0.1, 1.0, -0.2], [0.3, -0.2, 1.0]])
    assert R.correlation_gap(a, b) == pytest.approx((0.4 + 0.3 + 0.0) * 2 / 6)
    assert R.correlation_gap(a, a) == 0.0
    with pytest.raises(ValueError, match="A >= 2"):
        R.correlation_gap(a, b[:2, :2])


def test_render_html_directions_correlations_and_inversion_sections():
    png = R.heatmap_png(np.eye(2), ["a", "b"], ["a", "b"], "t")
    report = {"title": "T", "boundaries": [],
              "directions": [{"index": 0, "name": "a+ (0.50)", "top_attribute": "a",
                              "top_change": 0.5, "value": 3.0, "std": 0.5,
                              "grid": "dir_sefa_00"}],
              "directions_pca": [{"index": 0, "name": "b- (0.61)", "top_attribute": "b",
                                  "top_change": -0.61, "value": 0.25, "std": 0.5,
                                  "grid": "dir_pca_00"}],
              "correlation_gap": {"generated vs real": 0.1234},
              "inversion": [{"space": "w", "attribute": "a", "faces": 4, "steps": 10,
                             "recon_psnr": 21.5, "recon_mse": 0.0123, "flip_rate": 0.75,
                             "others_kept": 0.9, "cf_flip_rate": 1.0, "cf_others_kept": 0.95,
                             "edit_mse": 0.0456, "edit_feature": None},
                            {"space": "wp", "attribute": "a", "faces": 4, "steps": 10,
                             "recon_psnr": 25.25, "recon_mse": 0.006}]}
    figs = {"dir_sefa_00": png, "dir_pca_00": png, "correlation": png,
            "correlation_real": png, "correlation_true": png}
    page = R.render_html(report, figs)
    assert "Directions (SeFa)" in page and "Directions (GANSpace PCA)" in page
    assert page.index("a+ (0.50)") < page.index("Directions (GANSpace PCA)") < \
        page.index("b- (0.61)")
    assert "Inversion quality" in page and "21.500" in page and "25.250" in page
    assert "0.123" in page and "generated vs real" in page
    assert page.count("data:image/png;base64,") == 5
    assert page.count("<table") == 5       # boundaries, correlation gap, SeFa, PCA, inversion
    # no directions, no inversion: no section, no error
    page = R.render_html({"title": "T", "boundaries": [], "inversion": None}, {})
    assert "Inversion quality" not in page and "GANSpace" not in page


# ----------------------------------------------------------------------------------------
# The report stage end to end on the bundled toy model, in-process (no Ray, a few seconds)

N_SAMPLES, N_REAL, K = REPORT_SAMPLES, 200, 2


@pytest.fixture(scope="module")
def tiny(toy_fit):
    """(root, report, eval-inversion results): toy real renders, 2 + 2 directions and two
    eval-inversion runs (W and W+, a few steps) given to the report, over the session's toy
    samples and fit (root/samples, root/fit)."""
    import json

    from gankit.loading import zoo
    from gankit.latent.boundaries import Boundary
    from gankit.latent.inversion import InversionConfig
    from gankit.toy.toy_eval import eval_inversion
    root = toy_fit
    G, C = zoo.load_generator("toy").eval(), zoo.load_classifier("toy").eval()
    b = Boundary.load(str(root / "fit" / "boundaries" / "w" / "eyeglasses.npz"))
    runs = [eval_inversion(G, C, b, "eyeglasses", InversionConfig(
        space=s, steps=3, w_avg_samples=500, perceptual_weight=0.0), n=2) for s in ("w", "wp")]
    (root / "inv.json").write_text(json.dumps(runs))
    report = make_tiny_report(root, out=str(root / "report"), model="toy", classifier="toy",
                              real="toy", real_rows=N_REAL, directions=K, direction_samples=4,
                              direction_w_samples=300, grid_seeds=2,
                              inversion=[str(root / "inv.json")])
    return root, report, runs


def test_real_and_true_correlations_sit_beside_the_generated_one(tiny):
    from gankit.toy import toyfaces
    root, report, _ = tiny
    attrs = report["attributes"]
    gen, real, true = (report[k] for k in ("correlation", "correlation_real",
                                            "correlation_true"))
    assert gen["rows"] == N_SAMPLES and real["rows"] == N_REAL and true["rows"] == N_REAL
    assert real["source"] == "toy" and real["errors"] == 0
    for c in (gen, real, true):
        m = np.array(c["matrix"])
        assert m.shape == (len(attrs), len(attrs)) and np.allclose(m, m.T)
        assert np.abs(m).max() <= 1 + 1e-9
    # the true labels of the renders, computed independently of the report
    labels = toyfaces.labels(toyfaces.sample_factors(N_REAL, 0))
    want = np.corrcoef(np.stack([labels[a] for a in attrs], 1).T.astype(float))
    assert np.allclose(true["matrix"], want, atol=1e-9)
    gap = report["correlation_gap"]
    assert set(gap) == {"generated vs real", "generated vs true", "real vs true"}
    assert gap["real vs true"] == pytest.approx(R.correlation_gap(real["matrix"],
                                                                  true["matrix"]))
    names = {n.split("/")[-1] for n in report["figures"]}
    assert {"correlation.png", "correlation_real.png", "correlation_true.png"} <= names
    page = (root / "report" / "report.html").read_text()
    assert f"{gap['generated vs real']:.3f}" in page


def test_parquet_real_images_give_the_same_correlation_as_the_same_renders(tiny):
    """A user's Parquet of real images (here the same toy renders, written to Parquet) is
    read, decoded and classified into the same matrix; undecodable rows are counted."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gankit.toy import toyfaces
    root, report, _ = tiny
    real = root / "real"
    real.mkdir()
    table = toyfaces.dataset_table(N_REAL, 0, 32)
    pq.write_table(table, real / "a.parquet")
    bad = table.slice(0, 1).set_column(1, "image", pa.array(
        [{"bytes": b"not a png", "path": "x.png"}], table.schema.field("image").type))
    pq.write_table(bad, real / "b.parquet")
    again = make_tiny_report(root, out=str(root / "report_pq"), classifier="toy",
                             real=str(real), real_rows=N_REAL + 5)
    got = again["correlation_real"]
    assert got["rows"] == N_REAL and got["errors"] == 1 and got["source"] == str(real)
    assert np.allclose(got["matrix"], report["correlation_real"]["matrix"], atol=1e-6)
    assert again["correlation_true"] is None and again["directions_pca"] is None
    assert set(again["correlation_gap"]) == {"generated vs real"}


def test_sefa_and_pca_directions_are_annotated_with_grids(tiny):
    from PIL import Image
    root, report, _ = tiny
    attrs = report["attributes"]
    page = (root / "report" / "report.html").read_text()
    assert "Directions (SeFa)" in page and "Directions (GANSpace PCA)" in page
    for key, method in (("directions", "sefa"), ("directions_pca", "pca")):
        dirs = report[key]
        assert [d["index"] for d in dirs] == list(range(K))
        for d in dirs:
            assert d["method"] == method and d["top_attribute"] in attrs
            assert set(d["changes"]) == set(attrs) and d["name"] in page
            assert abs(d["top_change"]) == pytest.approx(max(map(abs, d["changes"].values())))
            png = root / "report" / "figures" / f"{d['grid']}.png"
            h, w = np.asarray(Image.open(png)).shape[:2]
            # 2 seeds x 7 cells at scale 2, plus the drawn labels above and at the left
            assert h > 2 + 2 * (2 * 32 + 2) and w > 2 + 7 * (2 * 32 + 2)
            assert len(d["name"]) and 0 <= d["clipped"] <= 1
        named = [d["name"].split(" (")[0] for d in dirs if d["named"]]
        assert len(named) == len(set(named))
    pca = report["directions_pca"]
    assert pca[0]["value"] >= pca[1]["value"] > 0                        # variance sorted


def test_inversion_runs_become_a_table(tiny):
    root, report, runs = tiny
    got = report["inversion"]
    assert [r["space"] for r in got] == ["w", "wp"]
    for r, want in zip(got, runs):
        assert r["recon_psnr"] == want["recon_psnr"] and r["source"].endswith("inv.json")
    page = (root / "report" / "report.html").read_text()
    assert "Inversion quality" in page
    section = page[page.index("Inversion quality"):]
    for r in runs:
        assert f"{r['recon_psnr']:.3f}" in section and f"{r['flip_rate']:.3f}" in section


def test_bad_inversion_file_fails_with_the_field_name(tiny, tmp_path):
    from jobs.config import ConfigError
    root, _, _ = tiny
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(ConfigError, match="inversion"):
        make_tiny_report(root, out=str(tmp_path / "r"), inversion=[str(tmp_path / "x.json")])


# ----------------------------------------------------------------------------------------
# The page as a researcher reads it: summary, gates, contents, true text, warnings

def reader_report(**over) -> dict:
    """A hand-made report: two W boundaries (one below the gate, one on 10 samples a side),
    plain and conditional edits, one pair, separability."""
    report = {"title": "T", "num_samples": 500, "num_edited": 40, "edit_strength": 3.0,
              "edit_mode": "to_distance", "model": "toy", "classifier": "toy",
              "fit": {"selection": "extremes", "fraction": 0.02, "count": None,
                      "val_fraction": 0.3},
              "edited_samples": {"url": "heldout", "heldout": True},
              "boundaries": [
                  {"name": "w/smile", "attribute": "smile", "space": "w", "conditions": [],
                   "val_accuracy": 0.95, "all_accuracy": 0.9, "n_train": 700,
                   "n_per_side": [500, 500]},
                  {"name": "w/old", "attribute": "old", "space": "w", "conditions": [],
                   "val_accuracy": 0.5, "all_accuracy": 0.6, "n_train": 14,
                   "n_per_side": [10, 10]}],
              "edits": {"plain": {"smile": {"boundary": "w/smile", "flip_rate": 0.95,
                                            "others_changed": 0.1},
                                  "old": {"boundary": "w/old", "flip_rate": 0.6,
                                          "others_changed": 0.2}}},
              "pairs": [{"target": "smile", "conditions": ["old"],
                         "flip_rate": {"plain": 0.95, "conditional": 0.93},
                         "condition_changed": {"plain": 0.3, "conditional": 0.05}}],
              "separability": {"z": {"score": 1.0, "num_samples": 500, "num_kept": 250},
                               "w": {"score": 1.0, "num_samples": 500, "num_kept": 250}}}
    report.update(over)
    return report


def test_summary_lists_every_gate_with_its_meaning_and_result():
    report = reader_report()
    got = {g["gate"]: g for g in R.gates(report)}
    val, flip = got["boundary val accuracy >= 0.9"], got["plain edit flips its target >= 0.9"]
    assert (val["passed"], val["total"], val["failing"]) == (1, 2, ["w/old"])
    assert (flip["passed"], flip["total"], flip["failing"]) == (1, 2, ["w/old"])
    assert got["conditional edit keeps its conditions"]["passed"] == 1
    assert got["W more separable than Z"]["failing"] == ["W vs Z"]     # 1.0 is not < 1.0
    page = R.render_html(report, {})
    summary = page[page.index("id='summary'"):page.index("id='contents'")]
    for g in got.values():
        assert html_text(g["gate"]) in summary and html_text(g["meaning"]) in summary
    # W vs Z is a comparison (its own badge), not a failure to act on
    assert summary.count("class='fail'") == 2 and summary.count("class='ok'") == 1
    assert summary.count("class='cmp'") == 1 and "Z not behind W" in summary
    assert "w/old (val accuracy 0.500)" in summary and "w/old (flips 0.600" in summary
    assert "500 samples" in summary and "40 held-out samples" in summary
    assert "model <b>toy</b>" in summary and "top and bottom 2.0%" in summary


def gate_line(page: str, gate: str) -> str:
    """The summary's <li> of one gate."""
    start = page.index(html_text(gate))
    return page[page.rindex("<li>", 0, start):page.index("</li>", start)]


def z_and_w(z_acc: float, w_acc: float) -> list:
    return [{"name": f"{s}/smile", "attribute": "smile", "space": s, "conditions": [],
             "val_accuracy": a, "all_accuracy": a, "n_train": 700, "n_per_side": [500, 500]}
            for s, a in (("z", z_acc), ("w", w_acc))]


def test_z_boundaries_are_compared_with_w_not_gated():
    """StyleGAN's finding (Z less linear than W) shows as a comparison; Z alone is gated."""
    report = reader_report(boundaries=z_and_w(0.7, 0.95), edits={}, pairs=[],
                           separability={"z": {"score": 5.0}, "w": {"score": 1.2}})
    got = {g["gate"]: g for g in R.gates(report)}
    assert (got["boundary val accuracy >= 0.9"]["total"],
            got["boundary val accuracy >= 0.9"]["failing"]) == (1, [])     # W only
    assert got["W boundaries more accurate than Z's"]["failing"] == []
    page = R.render_html(report, {})
    summary = page[page.index("id='summary'"):page.index("id='contents'")]
    assert "class='fail'" not in summary and summary.count("class='cmp'") == 2
    assert "Z 0.700 to 0.700, W 0.950 to 0.950: W ahead" in summary
    assert "separability Z 5.000, W 1.200" in summary
    # Z ahead of W is reported as the opposite finding, still as a comparison
    flipped = R.render_html(dict(report, boundaries=z_and_w(0.96, 0.93)), {})
    assert "Z not behind W, unlike StyleGAN" in flipped
    # a fit in Z alone (a generator without W): its boundaries are gated
    alone = {g["gate"]: g for g in R.gates(dict(report, boundaries=z_and_w(0.7, 0.9)[:1]))}
    assert alone["boundary val accuracy >= 0.9"]["failing"] == ["z/smile"]
    assert "W boundaries more accurate than Z's" not in alone


def test_known_properties_of_the_toy_model_are_badged_known_with_their_reason():
    dark = {"boundary": "w/dark_skin", "flip_rate": 0.567, "others_changed": 0.1}
    edits = {"plain": {"smile": {"boundary": "w/smile", "flip_rate": 0.95,
                                 "others_changed": 0.1}, "dark_skin": dark}}
    pair = {"target": "blond_hair", "conditions": ["dark_skin"],
            "flip_rate": {"plain": 0.99, "conditional": 0.996},
            "condition_changed": {"plain": 0.367, "conditional": 0.246}}
    report = reader_report(boundaries=reader_report()["boundaries"][:1], edits=edits,
                           pairs=[pair], separability=None)
    gates = {g["gate"]: g for g in R.gates(report)}
    # report.json keeps the facts: the known item still counts as failing there
    assert gates["plain edit flips its target >= 0.9"]["failing"] == ["w/dark_skin"]
    page = R.render_html(report, {})
    flip = gate_line(page, "plain edit flips its target >= 0.9")
    assert "class='known'" in flip and "Known: w/dark_skin (a known property" in flip
    assert "MODELS.md" in flip and "Failing:" not in flip
    cond = gate_line(page, "conditional edit keeps its conditions")
    assert "class='known'" in cond and "blond_hair | dark_skin (a known cost" in cond
    # another failing item of the same gate still fails, with its reason beside it
    worse = dict(report, edits={"plain": dict(edits["plain"], smile=dict(
        edits["plain"]["smile"], flip_rate=0.5))})
    flip = gate_line(R.render_html(worse, {}), "plain edit flips its target >= 0.9")
    assert "class='fail'" in flip and "Failing: w/smile (flips 0.500 of the samples)" in flip
    assert "Known: w/dark_skin" in flip
    # the same numbers from a user's own model are failures
    theirs = R.render_html(dict(report, model="/models/ffhq.pkl"), {})
    assert "class='known'" not in theirs and theirs.count("class='fail'") == 2


def html_text(s: str) -> str:
    import html
    return html.escape(s)


def test_contents_links_resolve_to_section_ids():
    import re
    png = R.heatmap_png(np.eye(2), ["a", "b"], ["a", "b"], "t")
    report = reader_report(inversion=[{"space": "w", "recon_psnr": 20.0}],
                           directions=[{"index": 0, "name": "a+ (0.50)", "grid": "dir_sefa_00"}])
    page = R.render_html(report, {"grid_smile": png, "cosine_w": png, "dir_sefa_00": png})
    links = re.findall(r"<a href='#([\w-]+)'>", page)
    ids = re.findall(r"<section id='([\w-]+)'>", page)
    assert links == ids and len(ids) == len(set(ids))
    assert {"summary", "boundaries", "edits", "grids", "cosine", "sefa", "inversion"} <= set(ids)
    assert "rescoring" not in ids and "pca" not in ids    # nothing to show, not listed


def test_boundary_text_says_the_selection_actually_used():
    extremes = R.render_html(reader_report(), {})
    count = R.render_html(reader_report(fit={"selection": "extremes", "count": 250,
                                             "val_fraction": 0.3}), {})
    threshold = R.render_html(reader_report(fit={"selection": "threshold",
                                                 "val_fraction": 0.3}), {})
    section = lambda page: page[page.index("<section id='boundaries'>"):]  # noqa: E731
    assert "top and bottom 2.0%" in section(extremes)
    assert "the 250 highest and 250 lowest" in section(count)
    assert "every sample, labelled positive" in section(threshold)
    assert "top and bottom" not in threshold and "confident" not in threshold
    assert "InterFaceGAN's selection" not in section(threshold)


def test_no_held_out_wording_when_the_edits_are_on_the_fits_own_samples():
    own = reader_report(edited_samples={"url": "samples", "heldout": False})
    page = R.render_html(own, {})
    assert "held-out" not in page and "held out)" in page     # "(not held out)"
    assert any("fitted on: flip rates" in w for w in R.caveats(own))
    assert "held-out samples" in R.render_html(reader_report(), {})


def test_same_dataset_compares_places_and_recorded_identities(tmp_path):
    from jobs import storage
    from jobs.stages.report import same_dataset
    for name, ident in (("a", {"seed": 0}), ("copy", {"seed": 0}), ("b", {"seed": 1})):
        storage.open_store(str(tmp_path / name), create=True).write_json(
            storage.MANIFEST, {"identity": ident})
    a = str(tmp_path / "a")
    assert same_dataset(a, a + "/", {}) and same_dataset(a, str(tmp_path / "copy"), {})
    assert not same_dataset(a, str(tmp_path / "b"), {}) and not same_dataset(a, "", {})


def test_warnings_for_a_tiny_selection_near_chance_and_few_samples():
    from gankit import caveats as K
    report = reader_report(ppl={"w": {"mean": 10.0, "n": 40}})
    warns = R.caveats(report)
    assert any("w/old was fitted on 10 samples" in w for w in warns)
    assert any("w/old: val accuracy 0.500 is near chance (0.500" in w for w in warns)
    assert not any("w/smile" in w for w in warns)
    assert sum("Separability in" in w for w in warns) == 2 and any("PPL in W" in w for w in warns)
    page = R.render_html(report, {})
    block = page[page.index("class='warn'"):page.index("id='contents'")]
    assert all(html_text(w) in block for w in warns)
    # chance is the larger side's share: 0.95 on a 95/5 split is no skill at all
    assert K.boundary_caveats("b", [9500, 500], 0.95) == [
        "b: val accuracy 0.950 is near chance (0.950, always guessing the larger side): the "
        "boundary barely separates the attribute."]
    assert K.boundary_caveats("b", [9500, 500], 0.99) == []
    assert R.caveats(reader_report(boundaries=[], separability=None)) == []


def test_fit_and_metrics_warn_on_the_console(tiny):
    from gankit.caveats import CaveatWarning
    from jobs.stages.fit import FitConfig, run_fit
    from jobs.stages.metrics import MetricsConfig, run_metrics
    root, _, _ = tiny
    with pytest.warns(CaveatWarning, match="samples on its smaller side"):
        index = run_fit(FitConfig(samples=str(root / "samples"), out=str(root / "fit_warn"),
                                  spaces=["w"], attributes=["smile"], fraction=0.02))
    entry = index["boundaries"][0]
    assert entry["n_per_side"] == [6, 6] and entry["warnings"]          # 2% of 300
    with pytest.warns(CaveatWarning, match="Separability in Z"):
        got = run_metrics(MetricsConfig(out=str(root / "metrics"), samples=str(root / "samples")))
    assert len(got["warnings"]) == 2


def test_labelled_grid_draws_a_legend_beside_the_cells():
    cells = np.full((2, 3, 4, 4, 3), 128, np.uint8)
    g = R.labelled_grid(cells, ["#1 plain", "#1 | old"], ["original", "-3", "+3"], scale=8)
    bare = R.edit_grid(cells, 8)
    top, left = g.shape[0] - bare.shape[0], g.shape[1] - bare.shape[1]
    assert top > 0 and left > 0 and (g[top:, left:] == bare).all()
    step = 4 * 8 + 2
    for j in range(3):                     # ink above every column
        assert (g[:top, left + 2 + j * step:left + 2 + (j + 1) * step - 2] < 100).any()
    for i in range(2):                     # and left of every row
        assert (g[top + 2 + i * step:top + 2 + (i + 1) * step - 2, :left] < 100).any()
    with pytest.raises(ValueError, match="labels"):
        R.labelled_grid(cells, ["a"], ["b", "c", "d"])


def test_unique_direction_names():
    from gankit.latent.directions import unique_names
    deltas = np.array([[0.50, 0.10, 0.0],       # yaw+ strongest here
                       [0.40, -0.30, 0.0],      # yaw+ taken: old- next
                       [0.35, 0.05, 0.0],       # yaw+ taken, nothing else above 0.2
                       [-0.45, 0.0, 0.0],       # yaw- is another label
                       [0.90, 0.0, 0.0]])       # strongest of all, but blown out
    names = unique_names(deltas, ["yaw", "old", "smile"], 0.2,
                         [True, True, True, True, False])
    assert names == ["yaw+ (0.50)", "old- (0.30)", "unnamed (top: yaw+ 0.35)", "yaw- (0.45)",
                     "unnamed (images blow out; top: yaw+ 0.90)"]


def test_inversion_examples_round_trip_and_become_image_rows(tiny):
    from PIL import Image
    root, report, runs = tiny
    cols = [("input", np.zeros((2, 8, 8, 3), np.uint8)),
            ("edited", np.full((2, 8, 8, 3), 255, np.uint8))]
    cells = R.unpack_examples(R.pack_examples(cols))
    assert cells.shape == (2, 2, 8, 8, 3) and (cells[:, 1] == 255).all() and \
        (cells[:, 0] == 0).all()
    assert runs[0]["examples"]["columns"] == ["input", "reconstruction", "edited",
                                              "counterfactual"]
    assert {"figures/inversion_0.png", "figures/inversion_1.png"} <= set(report["figures"])
    page = (root / "report" / "report.html").read_text()
    section = page[page.index("<section id='inversion'>"):]
    assert section.count("<img") == 2
    g = np.asarray(Image.open(root / "report" / "figures" / "inversion_0.png"))
    assert g.shape[0] > 2 * 3 * 32 and g.shape[1] > 4 * 3 * 32     # 2 faces x 4, scale 3


# ----------------------------------------------------------------------------------------
# report.json keeps its keys; the stage's config is declared once


def test_report_json_keeps_its_key_tree(tiny):
    """The key tree of the tiny report equals the one the report wrote before it became
    section records (tests/report_keys.json)."""
    from report_keys import differences, expected, key_tree
    root, report, _ = tiny
    saved = json.loads((root / "report" / "report.json").read_text())
    assert saved == json.loads(json.dumps(report))          # what run_report returned
    assert differences(key_tree(saved), expected("tiny")) == []
    # the check can fail: a key dropped, one added, one moved into a section
    bad = dict(saved, extra=1)
    bad.pop("cosine")
    assert set(differences(key_tree(bad), expected("tiny"))) == {"/cosine: missing",
                                                                  "/extra: new"}


def test_the_report_command_and_the_pipeline_section_share_the_config(tmp_path):
    """`gankit report` has the shared --storage and --device; the pipeline's report
    section is checked with every other section, before anything runs."""
    from jobs.commands.cli import build_parser
    from jobs.config import ConfigError, from_args
    from jobs.stages.pipeline import load_config, stage_configs
    from jobs.stages.report import ReportConfig
    args = build_parser().parse_args(["report", "--fit", "f", "--out", "o", "--device", "cuda",
                                      "--storage", '{"anon": true}', "--inversion", "a.json",
                                      "--inversion", "b.json"])
    cfg = from_args(ReportConfig, args)
    assert (cfg.device, cfg.storage, cfg.inversion) == ("cuda", {"anon": True},
                                                        ["a.json", "b.json"])
    assert cfg.edit_strength is None and cfg.real_rows == 2000
    path = tmp_path / "p.yaml"
    for section, message in (("{real_rows: 1}", "report.real_rows must be >= 2"),
                             ("{device: tpu}", "report.device must be one of"),
                             ("{bogus: 1}", "report.bogus is not a known field")):
        path.write_text(f"root: {tmp_path}/run\nreport: {section}\n")
        with pytest.raises(ConfigError, match=message):
            load_config(str(path))
    path.write_text(f"root: {tmp_path}/run\nstorage: {{anon: true}}\nreport: {{title: T}}\n")
    report = stage_configs(load_config(str(path)))["report"]
    assert (report.fit, report.out, report.title) == (f"{tmp_path}/run/fit",
                                                       f"{tmp_path}/run/report", "T")
    assert report.storage == {"anon": True} and report.model == "toy"
