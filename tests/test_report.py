"""gankit.report: rescoring and flip-rate math on hand-made logits, figures, report.html."""
import base64
import io
import math

import numpy as np
import pytest

from gankit import report as R


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
