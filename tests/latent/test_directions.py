"""SeFa and GANSpace directions, edits on a layer range, annotation by rescoring, the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from helpers import tiny_classifier_module, tiny_generator
from gankit.latent import directions as D
from linear_generator import LinearGenerator


def test_style_affines_follow_nvidia_ws_indices():
    G = tiny_generator()                      # 8 px: b4 (conv1, torgb), b8 (conv0, conv1, torgb)
    got = [(i, name) for i, name, _ in D.style_affines(G)]
    assert got == [(0, "b4.conv1"), (1, "b4.torgb"), (1, "b8.conv0"), (2, "b8.conv1"),
                   (3, "b8.torgb")]
    assert G.num_ws == 4


def _matrix_by_hand(G, names) -> np.ndarray:
    """A built another way: the named affines' effective weights, rows normalised."""
    params = dict(G.named_modules())
    rows = []
    for name in names:
        fc = params[f"synthesis.{name}.affine"]
        rows.append(fc.weight.detach().double().numpy() * fc.weight_gain)
    A = np.concatenate(rows)
    return A / np.linalg.norm(A, axis=1, keepdims=True)


def test_sefa_unit_orthogonal_sorted_and_equal_to_svd_of_A():
    G = tiny_generator()
    values, vectors = D.sefa(G, "all", torgb="all")                 # [16], [16, 16]
    np.testing.assert_allclose(vectors @ vectors.T, np.eye(16), atol=1e-10)
    assert np.all(np.diff(values) <= 0)
    A = _matrix_by_hand(G, ["b4.conv1", "b4.torgb", "b8.conv0", "b8.conv1", "b8.torgb"])
    _, s, vt = np.linalg.svd(A)                                     # right singular vectors
    np.testing.assert_allclose(values, s ** 2, rtol=1e-9)
    distinct = np.abs(np.diff(s[:6])).min() > 1e-3 * s[0]
    assert distinct                                                 # so vectors are unique
    np.testing.assert_allclose(np.abs((vectors[:5] * vt[:5]).sum(1)), 1.0, atol=1e-8)


def test_sefa_layer_range_selects_affines():
    G = tiny_generator()
    A = D.sefa_matrix(G, (2, 4))                  # ws 2..3: b8.conv1, b8.torgb (16 + 16 rows)
    np.testing.assert_allclose(A.numpy(), _matrix_by_hand(G, ["b8.conv1", "b8.torgb"]))
    A = D.sefa_matrix(G, (1, 2))                  # ws 1: b8.conv0 only, b4.torgb left out
    np.testing.assert_allclose(A.numpy(), _matrix_by_hand(G, ["b8.conv0"]))
    A = D.sefa_matrix(G, (1, 2), torgb="all")
    np.testing.assert_allclose(A.numpy(), _matrix_by_hand(G, ["b4.torgb", "b8.conv0"]))
    values, vectors = D.sefa(G, (2, 4), top=3)
    assert vectors.shape == (3, 16) and values.shape == (3,)
    with pytest.raises(ValueError, match="layers"):
        D.sefa(G, (3, 9))
    assert D.parse_layers("1:3", 4) == (1, 3) and D.parse_layers("all", 4) == (0, 4)


def _genforce_layer_names(G) -> list:
    """genforce/sefa's factorize_weight on a StyleGAN2, restated: for ws index i, layer i's
    convolution (the convolutions numbered in forward order), except the last index, which
    takes the output torgb."""
    convs = [f"b{b.resolution}.{n}" for b in G.synthesis.blocks()
             for n in ("conv0", "conv1") if hasattr(b, n)]
    last = G.synthesis.blocks()[-1].resolution
    return [convs[i] if i < G.num_ws - 1 else f"b{last}.torgb" for i in range(G.num_ws)]


@pytest.mark.parametrize("resolution", [8, 32])
def test_sefa_all_layers_follow_genforce_rule(resolution):
    G = tiny_generator(resolution=resolution)
    names = _genforce_layer_names(G)
    assert len(names) == G.num_ws and len(set(names)) == G.num_ws
    assert [name for _, name, _ in D.sefa_affines(G)] == names
    np.testing.assert_allclose(D.sefa_matrix(G).numpy(), _matrix_by_hand(G, names))
    every = [name for _, name, _ in D.sefa_affines(G, torgb="all")]
    assert sum(n.endswith("torgb") for n in every) == len(G.synthesis.blocks())
    with pytest.raises(ValueError, match="torgb"):
        D.sefa_affines(G, torgb="some")


def test_pca_orthonormal_variance_sorted_and_std_matches_projection():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((500, 5)) * np.array([5.0, 0.5, 3.0, 1.0, 2.0]) + 7.0
    vectors, std, mean = D.pca(w)
    np.testing.assert_allclose(vectors @ vectors.T, np.eye(5), atol=1e-10)
    assert np.all(np.diff(std) < 0)
    np.testing.assert_allclose(D.direction_std(w, vectors), std, rtol=1e-9)
    assert abs(vectors[0, 0]) > 0.99 and std[0] == pytest.approx(5.0, rel=0.1)
    np.testing.assert_allclose(mean, w.mean(0))


def test_pca_directions_on_tiny_generator():
    vectors, std = D.pca_directions(tiny_generator(), n=300, top=4)
    assert vectors.shape == (4, 16) and np.all(std > 0) and np.all(np.diff(std) <= 0)


def test_edit_ws_moves_only_the_layer_range():
    ws = torch.zeros(2, 4, 3)
    d = np.array([1.0, 0.0, 0.0])
    out = D.edit_ws(ws, d, torch.tensor([1.0, -2.0]), layers=(1, 3))
    assert out[0, 1, 0] == 1 and out[1, 2, 0] == -2
    assert out[:, [0, 3]].abs().sum() == 0 and ws.abs().sum() == 0   # input untouched


class ProbeClassifier(nn.Module):
    """Attribute a reads w's first axis, b its second, both on the image's first layer."""
    attribute_names = ["a", "b"]

    def forward(self, images):
        return images[:, 0, 0, :2]                                   # [N, 2]


def test_annotation_finds_planted_directions_and_respects_layers():
    G, C = LinearGenerator(), ProbeClassifier()
    e = np.eye(6)
    vectors = np.stack([e[1], -e[0], e[4]])                          # b+, a-, nothing
    # the linear generator's "images" are its latents, not pixels in [-1, 1]: no clip check
    cfg = D.AnnotateConfig(k=32, sigma=1.0, threshold=0.2, max_clipped=1.0)
    ann = D.annotate(G, C, vectors, np.ones(3), cfg)
    assert ann[0]["name"].startswith("b+") and ann[0]["named"]
    assert ann[1]["name"].startswith("a-") and ann[1]["top_change"] < -0.2
    assert not ann[2]["named"] and ann[2]["name"].startswith("unnamed")
    assert abs(ann[0]["changes"]["a"]) < 1e-6                        # b's axis leaves a alone
    # the probe reads layer 0 only: edits on layers 1..2 move nothing
    late = D.annotate(G, C, vectors[:1], np.ones(1),
                      D.AnnotateConfig(k=8, sigma=1.0, layers=(1, 3)))
    assert not late[0]["named"] and abs(late[0]["top_change"]) < 1e-6


def test_direction_name_threshold():
    assert D.direction_name(np.array([0.1, -0.41]), ["smile", "old"], 0.2) == "old- (0.41)"
    assert D.direction_name(np.array([0.1, 0.05]), ["smile", "old"], 0.2) == \
        "unnamed (top: smile+ 0.10)"


def test_find_directions_and_sweep_on_tiny_models():
    G, C = tiny_generator(), tiny_classifier_module()
    C.attribute_names = ["smile", "age", "glasses"]
    cfg = D.DirectionsConfig(method="pca", top=3, n_samples=200,
                             annotate=D.AnnotateConfig(k=8))
    out = D.find_directions(G, C, cfg)
    assert out.vectors.shape == (3, 16) and len(out.annotations) == 3
    np.testing.assert_allclose(out.std ** 2, out.values, rtol=1e-9)
    doc = out.to_json()
    assert [d["index"] for d in doc["directions"]] == [0, 1, 2]
    images = D.sweep_images(G, out.vectors[0], out.std[0], [-1, 0, 1], seeds=2)
    assert images.shape == (6, 3, 8, 8)
    assert not torch.equal(images[0], images[2]) and torch.isfinite(images).all()
    with pytest.raises(ValueError, match="method"):
        D.find_directions(G, None, D.DirectionsConfig(method="ica"))


def test_directions_cli(model_files, tmp_path):
    from jobs.commands.cli import main
    out = tmp_path / "dirs"
    rc = main(["directions", "--model", model_files["model"], "--classifier",
               model_files["classifier"], "--method", "sefa", "--top", "3", "--samples",
               "200", "--annotate-samples", "8", "--grid-seeds", "2", "--out", str(out)])
    assert rc == 0
    doc = json.loads((out / "directions.json").read_text())
    vectors = np.load(out / "directions.npy")
    assert vectors.shape == (3, 16) and len(doc["directions"]) == 3
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert all((out / d["grid"]).exists() for d in doc["directions"])
    assert set(doc["directions"][0]["changes"]) == {"smile", "age", "glasses"}
