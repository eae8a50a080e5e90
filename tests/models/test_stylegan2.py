"""Unit tests of the StyleGAN2 generator/discriminator on tiny random configs."""
import pytest
import torch
import torch.nn.functional as F

from gankit.models import ops
from gankit.models.stylegan2 import (Discriminator, Generator, GeneratorConfig, MappingConfig,
                                     SynthesisConfig, modulated_conv2d)


def tiny_config(architecture="skip", c_dim=0, resolution=16, conv_clamp=None) -> GeneratorConfig:
    return GeneratorConfig(
        z_dim=12, c_dim=c_dim, w_dim=10, img_resolution=resolution,
        mapping=MappingConfig(num_layers=2),
        synthesis=SynthesisConfig(channel_base=128, channel_max=16, architecture=architecture,
                                  conv_clamp=conv_clamp))


def tiny_generator(seed=0, **kw) -> Generator:
    torch.manual_seed(seed)
    G = Generator(tiny_config(**kw)).eval()
    with torch.no_grad():  # non-zero noise strengths and w_avg so the tests can see them
        for layer in G.synthesis.noise_layers():
            layer.noise_strength.fill_(0.5)
        G.mapping.w_avg.normal_()
    return G


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
@pytest.mark.parametrize("c_dim", [0, 3])
def test_shapes_and_num_ws(architecture, c_dim):
    G = tiny_generator(architecture=architecture, c_dim=c_dim)
    # 16px: b4 (conv1 + torgb), b8 (conv0, conv1), b16 (conv0, conv1, torgb) -> 2*log2(16) - 2
    assert G.num_ws == 6
    z = torch.randn(3, 12)
    c = torch.randn(3, 3) if c_dim else None
    ws = G.mapping(z, c)
    assert ws.shape == (3, 6, 10)
    assert torch.equal(ws[:, 0], ws[:, -1])  # broadcast of one w
    img = G.synthesis(ws, noise_mode="const")
    assert img.shape == (3, 3, 16, 16) and img.dtype == torch.float32
    assert torch.isfinite(img).all()


def test_state_dict_names_follow_nvidia():
    keys = set(Generator(tiny_config(architecture="resnet", c_dim=2)).state_dict())
    for k in ["mapping.embed.weight", "mapping.fc0.weight", "mapping.fc1.bias", "mapping.w_avg",
              "synthesis.b4.const", "synthesis.b4.resample_filter", "synthesis.b4.conv1.weight",
              "synthesis.b4.conv1.noise_const", "synthesis.b4.conv1.noise_strength",
              "synthesis.b4.conv1.affine.weight", "synthesis.b4.conv1.affine.bias",
              "synthesis.b8.conv0.resample_filter", "synthesis.b8.skip.weight",
              "synthesis.b16.torgb.weight", "synthesis.b16.torgb.affine.bias"]:
        assert k in keys, k
    assert "synthesis.b8.torgb.weight" not in keys  # resnet: torgb only in the last block
    skip_keys = set(Generator(tiny_config(architecture="skip")).state_dict())
    assert "synthesis.b8.torgb.weight" in skip_keys and "synthesis.b8.skip.weight" not in skip_keys


def test_conditioning_changes_images():
    G = tiny_generator(c_dim=3)
    z = torch.randn(1, 12).repeat(2, 1)
    c = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    img = G(z, c, noise_mode="const")
    assert (img[0] - img[1]).abs().max() > 1e-3
    with pytest.raises(AssertionError, match="c must be"):
        G(z, None)


def test_truncation():
    G = tiny_generator()
    z = torch.randn(4, 12)
    ws0 = G.mapping(z, truncation_psi=0)
    assert torch.allclose(ws0, G.mapping.w_avg.expand_as(ws0))
    ws1 = G.mapping(z)
    ws_half = G.mapping(z, truncation_psi=0.5)
    assert torch.allclose(ws_half, G.mapping.w_avg + 0.5 * (ws1 - G.mapping.w_avg), atol=1e-6)
    ws_cut = G.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
    assert torch.allclose(ws_cut[:, :2], ws_half[:, :2]) and torch.equal(ws_cut[:, 2:], ws1[:, 2:])
    images = G(z, truncation_psi=0, noise_mode="const")  # every sample is the average face
    assert torch.allclose(images, images[:1].expand_as(images), atol=1e-5)


def test_noise_modes():
    G = tiny_generator()
    ws = G.mapping(torch.randn(2, 12))
    const_a, const_b = G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const")
    assert torch.equal(const_a, const_b)
    rand_a, rand_b = G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random")
    assert (rand_a - rand_b).abs().max() > 1e-4
    none = G.synthesis(ws, noise_mode="none")
    for layer in G.synthesis.noise_layers():
        layer.noise_strength.data.zero_()
    assert torch.allclose(none, G.synthesis(ws, noise_mode="random"), atol=1e-6)
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="bogus")


def test_explicit_noise_maps_reproduce_const():
    G = tiny_generator()
    ws = G.mapping(torch.randn(2, 12))
    noises = [layer.noise_const for layer in G.synthesis.noise_layers()]
    assert torch.equal(G.synthesis(ws, noises=noises), G.synthesis(ws, noise_mode="const"))


def test_batched_equals_one_by_one():
    G = tiny_generator(architecture="resnet")
    z = torch.randn(5, 12)
    batch = G(z, noise_mode="const")
    single = torch.cat([G(z[i:i + 1], noise_mode="const") for i in range(5)])
    assert torch.allclose(batch, single, atol=1e-5)


def test_conv_clamp_bounds_outputs():
    G = tiny_generator(conv_clamp=0.25, architecture="orig")
    img = G(torch.randn(4, 12) * 5, noise_mode="const")
    assert img.abs().max() <= 0.25 + 1e-6


def test_modulated_conv_equals_per_sample_conv():
    torch.manual_seed(1)
    x, weight, styles = torch.randn(3, 4, 8, 8), torch.randn(5, 4, 3, 3), torch.randn(3, 4)
    out = modulated_conv2d(x, weight, styles, padding=1)
    for i in range(3):
        w = weight * styles[i].reshape(1, -1, 1, 1)
        w = w / (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        assert torch.allclose(out[i:i + 1], F.conv2d(x[i:i + 1], w, padding=1), atol=1e-5)


def test_upsample_preserves_constant_and_mean():
    f = ops.setup_filter([1, 3, 3, 1])
    x = torch.ones(1, 2, 6, 6)
    up = ops.upsample2d(x, f)
    assert up.shape == (1, 2, 12, 12)
    assert torch.allclose(up[..., 2:-2, 2:-2], torch.ones(1, 2, 8, 8))
    down = ops.downsample2d(torch.ones(1, 1, 8, 8), f)
    assert down.shape == (1, 1, 4, 4) and torch.allclose(down[..., 1:-1, 1:-1], torch.ones(1, 1, 2, 2))


def test_gradients_reach_every_parameter():
    G = tiny_generator(architecture="resnet", c_dim=2)
    img = G(torch.randn(2, 12), torch.randn(2, 2), noise_mode="random")
    img.square().mean().backward()
    missing = [n for n, p in G.named_parameters() if p.grad is None]
    assert missing == []


@pytest.mark.parametrize("c_dim", [0, 3])
def test_discriminator(c_dim):
    torch.manual_seed(0)
    D = Discriminator(c_dim=c_dim, img_resolution=16, channel_base=128, channel_max=16)
    c = torch.randn(4, c_dim) if c_dim else None
    logits = D(torch.randn(4, 3, 16, 16), c)
    assert logits.shape == (4, 1) and torch.isfinite(logits).all()
    assert "b16.fromrgb.weight" in D.state_dict() and "b4.out.weight" in D.state_dict()


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
def test_fused_and_shared_modconv_agree(architecture):
    G = tiny_generator(architecture=architecture)
    ws = G.mapping(torch.randn(3, 12))
    fused = G.synthesis(ws, noise_mode="const", fused_modconv=True)
    shared = G.synthesis(ws, noise_mode="const", fused_modconv=False)
    assert torch.allclose(fused, shared, atol=1e-5)
