"""Linear separability, perceptual path length and correlation matrices."""
from __future__ import annotations

import math

import numpy as np
import pytest

from helpers import tiny_classifier_module, tiny_generator
from gankit.latent import metrics
from gankit.latent.latents import sample_z
from linear_generator import LinearGenerator


# ----------------------------------------------------------------------------------------
# Linear separability


def test_conditional_entropy_hand_computed():
    x = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    y = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    # X=0 (half the samples): Y is 1 with p=1/4; X=1: Y is always 1 (entropy 0)
    h = 0.5 * -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert metrics.conditional_entropy(y, x) == pytest.approx(h, rel=1e-12)
    assert metrics.conditional_entropy(y, y) == 0.0
    independent = metrics.conditional_entropy([0, 1, 0, 1], [0, 0, 1, 1])
    assert independent == pytest.approx(math.log(2))


def test_separability_hand_computed_one_outlier():
    # 1-D latents: 10 negatives in [-2, -1], 10 positives in [1, 2], and one confident
    # negative at 1.5 that no threshold can separate. The SVM puts the threshold in the gap,
    # so X=1 holds 11 points with Y = 1 for 10 of them; X=0 is pure.
    x = np.concatenate([np.linspace(-2, -1, 10), np.linspace(1, 2, 10), [1.5]])
    logits = np.concatenate([-np.ones(10), np.ones(10), [-5.0]])[:, None]
    r = metrics.linear_separability(x[:, None], logits, keep_fraction=1.0,
                                    attribute_names=["a"])
    h = 11 / 21 * -(10 / 11 * math.log(10 / 11) + 1 / 11 * math.log(1 / 11))
    assert r["entropy"]["a"] == pytest.approx(h, rel=1e-9)
    assert r["score"] == pytest.approx(math.exp(h), rel=1e-9)


def test_separable_latents_score_one_and_radial_labels_score_higher():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((600, 6)).astype(np.float32)
    linear = X @ rng.standard_normal((6, 2))                         # [N, 2] linear in X
    radial = (np.square(X).sum(1) - 6.0)[:, None]                    # a sphere: not linear
    sep = metrics.linear_separability(X, linear)
    non = metrics.linear_separability(X, radial)
    assert sep["score"] == pytest.approx(1.0, abs=0.02)
    assert non["score"] > 1.5
    assert non["score"] == pytest.approx(math.exp(sum(non["entropy"].values())))


def test_keep_fraction_drops_the_unconfident_half():
    # confident samples follow a linear rule; unconfident ones have random labels
    rng = np.random.default_rng(1)
    X = rng.standard_normal((400, 4))
    X[:200, 0] += np.sign(X[:200, 0])                                # a margin of 2
    logits = np.where(np.arange(400) < 200, 5 * np.sign(X[:, 0]),
                      0.1 * rng.choice([-1.0, 1.0], 400))[:, None]
    assert metrics.linear_separability(X, logits, keep_fraction=0.5)["score"] == 1.0
    assert metrics.linear_separability(X, logits, keep_fraction=1.0)["score"] > 1.3


def test_separability_z_w_on_tiny_models():
    G, C = tiny_generator(), tiny_classifier_module()
    r = metrics.separability_z_w(G, C, n=48, batch_size=20)
    assert set(r) == {"z", "w"}
    for space in r.values():
        assert space["num_kept"] == 24 and len(space["entropy"]) == 3
        assert space["score"] >= 1.0


# ----------------------------------------------------------------------------------------
# Perceptual path length


def flat(images):
    return images.flatten(1)


def test_ppl_w_lerp_hand_computed():
    # lerp in W moves at constant speed |w1 - w0|: d / eps^2 = 4 L |z1 - z0|^2 for any t
    G = LinearGenerator()
    n, seed = 40, 3
    z0 = sample_z(seed, range(0, n), G.z_dim).astype(np.float64)
    z1 = sample_z(seed, range(n, 2 * n), G.z_dim).astype(np.float64)
    expected = 4 * G.num_ws * np.square(z1 - z0).sum(1)
    for sampling in ("full", "end"):
        for eps in (1e-2, 1e-4):
            r = metrics.perceptual_path_length(G, metrics.feature_distance(flat), n=n,
                                               space="w", sampling=sampling, epsilon=eps,
                                               batch_size=16, seed=seed)
            assert r["mean"] == pytest.approx(expected.mean(), rel=2e-3)


def test_ppl_z_slerp_hand_computed():
    # slerp moves on the unit sphere at angular speed theta = angle(z0, z1)
    G = LinearGenerator()
    n, seed = 30, 5
    z0 = sample_z(seed, range(0, n), G.z_dim).astype(np.float64)
    z1 = sample_z(seed, range(n, 2 * n), G.z_dim).astype(np.float64)
    cos = (z0 * z1).sum(1) / np.linalg.norm(z0, axis=1) / np.linalg.norm(z1, axis=1)
    expected = 4 * G.num_ws * np.arccos(cos) ** 2
    r = metrics.perceptual_path_length(G, metrics.feature_distance(flat), n=n, space="z",
                                       epsilon=1e-3, seed=seed)
    assert r["mean"] == pytest.approx(expected.mean(), rel=2e-3)


def test_ppl_filtered_mean_drops_outliers():
    G = LinearGenerator()
    d = metrics.ppl_distances(G, metrics.feature_distance(flat),
                              metrics.PPLConfig(n=200, space="w", epsilon=1e-2))
    r = metrics.perceptual_path_length(G, metrics.feature_distance(flat), n=200, space="w",
                                       epsilon=1e-2)
    # np.percentile(d, 1, method='lower') is the 2nd smallest of 200 (index 1.99 rounded
    # down), the 99th 'higher' the 2nd largest: one path dropped on each side
    kept = np.sort(d)[1:-1]
    assert r["mean_filtered"] == pytest.approx(kept.mean(), rel=1e-9)
    assert r["mean"] == pytest.approx(d.mean(), rel=1e-9)


def test_ppl_tiny_generator_finite_positive_and_scales_with_features():
    G = tiny_generator()
    dist = metrics.feature_distance(flat)
    runs = {(space, sampling): metrics.perceptual_path_length(
                G, dist, n=16, space=space, sampling=sampling, batch_size=8)
            for space in ("z", "w") for sampling in ("full", "end")}
    for r in runs.values():
        assert np.isfinite(r["mean"]) and r["mean"] > 0 and r["mean_filtered"] > 0
    tripled = metrics.perceptual_path_length(
        G, metrics.feature_distance(lambda x: 3 * x.flatten(1)), n=16, space="w",
        batch_size=8)
    assert tripled["mean"] == pytest.approx(9 * runs["w", "full"]["mean"], rel=1e-4)


def test_ppl_rejects_bad_arguments():
    with pytest.raises(ValueError, match="space"):
        metrics.perceptual_path_length(LinearGenerator(), flat, n=4, space="wp")
    with pytest.raises(ValueError, match="sampling"):
        metrics.perceptual_path_length(LinearGenerator(), flat, n=4, sampling="mid")
    with pytest.raises(ValueError, match="noise"):
        metrics.perceptual_path_length(LinearGenerator(), flat, n=4, noise="fresh")


def test_ppl_crop_is_nvidia_central_region():
    import torch
    images = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).reshape(2, 3, 16, 16)
    crop = metrics.ppl_crop(images)                   # 16 px: c = 2, rows 6..13, cols 4..11
    assert crop.shape == (2, 3, 8, 8)
    assert torch.equal(crop, images[:, :, 6:14, 4:12])
    assert crop[0, 0, 0, 0] == 6 * 16 + 4 and crop[0, 0, -1, -1] == 13 * 16 + 11
    # a 512 px generator's crop (256 px) reaches the feature net box-downsampled by 2
    big = torch.randn(1, 3, 512, 512)
    view = metrics.ppl_view(big, 512, crop=True)
    block = big[:, :, 192:194, 128:130].mean([2, 3])
    assert view.shape == (1, 3, 128, 128)
    torch.testing.assert_close(view[:, :, 0, 0], block)
    assert metrics.ppl_view(big, 512, crop=False) is big
    with pytest.raises(ValueError, match="square"):
        metrics.ppl_crop(torch.zeros(1, 3, 16, 8))


def _noisy_generator():
    import torch
    G = tiny_generator(resolution=8)
    with torch.no_grad():
        for layer in G.synthesis.noise_layers():
            layer.noise_strength.fill_(0.5)           # noise changes the images
    return G


def test_ppl_random_noise_is_per_path_whatever_the_shards():
    G, dist = _noisy_generator(), metrics.feature_distance(flat)
    cfg = metrics.PPLConfig(n=12, space="w", batch_size=4, noise="random", seed=2)
    whole = metrics.ppl_distances(G, dist, cfg)
    # shards start at multiples of the batch size, as the job's parts do: same model calls
    shards = np.concatenate([metrics.ppl_distances(G, dist, cfg, range(a, b))
                             for a, b in ((0, 4), (4, 12))])
    np.testing.assert_array_equal(shards, whole)
    reversed_order = [metrics.ppl_distances(G, dist, cfg, range(a, b))
                      for a, b in ((8, 12), (4, 8), (0, 4))]
    np.testing.assert_array_equal(np.concatenate(reversed_order[::-1]), whole)
    const = metrics.ppl_distances(G, dist, metrics.PPLConfig(**{**cfg.__dict__,
                                                                 "noise": "const"}))
    assert not np.allclose(const, whole)
    a, b = metrics.path_noises(G, 2, range(3, 5)), metrics.path_noises(G, 2, range(4, 6))
    assert [m.shape[0] for m in a] == [2] * len(G.synthesis.noise_layers())
    assert all(torch_equal(x[1], y[0]) and not torch_equal(x[0], y[0]) for x, y in zip(a, b))


def torch_equal(a, b) -> bool:
    import torch
    return bool(torch.equal(a, b))


# ----------------------------------------------------------------------------------------
# Correlation


def test_correlation_matrix_matches_corrcoef_and_marks_constant_columns():
    rng = np.random.default_rng(0)
    s = rng.standard_normal((100, 4))
    s[:, 1] = 0.8 * s[:, 0] + 0.2 * s[:, 1]
    np.testing.assert_allclose(metrics.correlation_matrix(s), np.corrcoef(s, rowvar=False),
                               atol=1e-12)
    s[:, 2] = 1.0
    c = metrics.correlation_matrix(s)
    assert np.isnan(c[2, 0]) and np.isnan(c[0, 2]) and c[2, 2] == 1.0
