"""gankit.latent.latents: deterministic z sampling, mapping to W/W+, interpolation, style mixing."""
import numpy as np
import pytest
import torch

from gankit.latent.latents import (lerp, latents_in_space, map_to_w, sample_z, slerp, style_mix,
                            to_ws)
from gankit.models.stylegan2 import Generator, GeneratorConfig, MappingConfig, SynthesisConfig


def tiny_generator(seed=0) -> Generator:
    torch.manual_seed(seed)
    G = Generator(GeneratorConfig(z_dim=16, w_dim=16, img_resolution=8,
                                  synthesis=SynthesisConfig(channel_base=64, channel_max=16),
                                  mapping=MappingConfig(num_layers=2)))
    with torch.no_grad():
        G.mapping.w_avg.normal_()  # a non-zero average so truncation is visible
    return G


def test_sample_z_independent_of_batching():
    big = sample_z(7, range(0, 20), 16)
    alone = sample_z(7, np.arange(5, 10), 16)
    assert big.dtype == np.float32 and big.shape == (20, 16)
    np.testing.assert_array_equal(alone, big[5:10])
    shuffled = sample_z(7, np.array([9, 5, 7]), 16)
    np.testing.assert_array_equal(shuffled, big[[9, 5, 7]])


def test_sample_z_matches_a_fresh_philox_per_row():
    # The contract: row i depends on (seed, i) only, through Philox(key=seed, counter=[0,i,0,0]).
    z = sample_z(11, [0, 3, 1000], 8)
    for row, got in zip([0, 3, 1000], z):
        gen = np.random.Generator(np.random.Philox(key=11, counter=[0, row, 0, 0]))
        np.testing.assert_array_equal(gen.standard_normal(8, dtype=np.float32), got)


def test_sample_z_seeds_and_rows_differ():
    a, b = sample_z(1, range(4), 16), sample_z(2, range(4), 16)
    assert not np.allclose(a, b)
    assert len({tuple(r) for r in a.round(6)}) == 4


def test_sample_z_is_standard_normal():
    z = sample_z(3, range(2000), 64)
    assert abs(z.mean()) < 0.01
    assert abs(z.std() - 1) < 0.01
    corr = np.corrcoef(z[:, 0], z[:, 1])[0, 1]
    assert abs(corr) < 0.1


def test_sample_z_rejects_bad_input():
    with pytest.raises(ValueError, match="rows"):
        sample_z(0, [-1], 4)
    with pytest.raises(ValueError, match="seed"):
        sample_z(-3, [0], 4)


def test_map_to_w_shapes_and_truncation():
    G = tiny_generator()
    z = sample_z(0, range(5), G.z_dim)
    ws = map_to_w(G, z)
    assert ws.shape == (5, G.num_ws, G.w_dim) and not ws.requires_grad
    ws0 = map_to_w(G, z, truncation_psi=0.0)
    torch.testing.assert_close(ws0, G.mapping.w_avg.expand_as(ws0))
    ws_cut = map_to_w(G, z, truncation_psi=0.0, truncation_cutoff=2)
    torch.testing.assert_close(ws_cut[:, 2:], ws[:, 2:])
    assert G.training  # mode restored


def test_spaces_round_trip_to_ws():
    G = tiny_generator()
    z = sample_z(0, range(3), G.z_dim)
    w = latents_in_space(G, z, "w", truncation_psi=0.7)
    wp = latents_in_space(G, z, "wp", truncation_psi=0.7)
    assert w.shape == (3, G.w_dim) and wp.shape == (3, G.num_ws, G.w_dim)
    expected = map_to_w(G, z, truncation_psi=0.7)
    torch.testing.assert_close(to_ws(G, w, "w"), expected)
    torch.testing.assert_close(to_ws(G, wp, "wp"), expected)
    torch.testing.assert_close(to_ws(G, z, "z", truncation_psi=0.7), expected)
    assert G.synthesis(to_ws(G, w, "w"), noise_mode="const").shape == (3, 3, 8, 8)
    with pytest.raises(ValueError, match="'wp' latents must be"):
        to_ws(G, w, "wp")
    with pytest.raises(ValueError, match="space must be"):
        to_ws(G, w, "s")


def test_lerp_endpoints_numpy_and_torch():
    a, b = np.zeros((2, 4), np.float32), np.ones((2, 4), np.float32)
    np.testing.assert_allclose(lerp(a, b, 0.25), 0.25)
    out = lerp(torch.as_tensor(a), torch.as_tensor(b), torch.tensor([[0.0], [1.0]]))
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, torch.tensor([[0.0] * 4, [1.0] * 4]))


def test_slerp_endpoints_and_unit_norm():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 16)), rng.standard_normal((5, 16)) * 3
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
    np.testing.assert_allclose(slerp(a, b, 0.0), unit(a), atol=1e-12)
    np.testing.assert_allclose(slerp(a, b, 1.0), unit(b), atol=1e-12)
    mid = slerp(a, b, 0.5)
    np.testing.assert_allclose(np.linalg.norm(mid, axis=-1), 1.0, atol=1e-12)
    # halfway: equal angles to both ends
    np.testing.assert_allclose((mid * unit(a)).sum(-1), (mid * unit(b)).sum(-1), atol=1e-12)
    same = slerp(a[:1], a[:1], 0.3)  # identical inputs must not produce NaN
    np.testing.assert_allclose(same, unit(a[:1]), atol=1e-12)


def test_style_mix_takes_layers_from_each_side():
    a, b = torch.zeros(2, 6, 4), torch.ones(2, 6, 4)
    mixed = style_mix(a, b, 4)
    assert torch.equal(mixed[:, :4], a[:, :4]) and torch.equal(mixed[:, 4:], b[:, 4:])
    with pytest.raises(ValueError, match="crossover"):
        style_mix(a, b, 7)
