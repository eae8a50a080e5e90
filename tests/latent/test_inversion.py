"""Batched inversion (gankit.latent.inversion) on tiny random generators, and its metrics."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from helpers import tiny_generator
from gankit.latent.inversion import InversionConfig, invert, reconstruct
from gankit.latent.metrics import psnr, ssim
from gankit.models.perceptual import ScriptedFeatures, load_feature_net

# Batch-vs-single tolerance: the same math per image, but batched kernels (matmul/conv over
# B rows vs 1) may round differently in the last float32 bit; Adam normalises gradients, so
# such 1e-7 differences can grow a little over the steps (measured: <1e-6 after 40-100
# steps). 1e-4 absolute on ws of O(1) is far below any visible effect, yet real mixing across
# images (batch-shared w noise or noise statistics, a loss coupling images) moves ws by
# >1e-2 here.
BATCH_TOL = 1e-4


def small_cfg(**kw) -> InversionConfig:
    return InversionConfig(**{"steps": 40, "w_avg_samples": 500, **kw})


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    g = tiny_generator(0, 8)
    with torch.no_grad():   # non-zero noise strengths, so the noise maps matter
        for layer in g.synthesis.noise_layers():
            layer.noise_strength.fill_(0.1)
    return g


@pytest.fixture(scope="module")
def targets(G):
    """4 images G renders from known w (const noise): [4, 3, 8, 8], and their ws."""
    with torch.no_grad():
        z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(1))
        ws = G.mapping(z)
        return G.synthesis(ws, noise_mode="const"), ws


@pytest.mark.parametrize("space", ["w", "wp"])
def test_batch_of_b_equals_b_single_runs(G, targets, space):
    imgs, _ = targets
    cfg = small_cfg(space=space)
    batch = invert(G, imgs, cfg)
    singles = [invert(G, imgs[i:i + 1], cfg, indices=[i]) for i in range(len(imgs))]
    ws1 = torch.cat([s.ws for s in singles])
    assert torch.allclose(batch.ws, ws1, atol=BATCH_TOL, rtol=0)
    for j, n in enumerate(batch.noises):
        assert torch.allclose(n, torch.cat([s.noises[j] for s in singles]), atol=BATCH_TOL)
    assert torch.allclose(batch.mse, torch.cat([s.mse for s in singles]), atol=1e-5)
    # and the images really differ from one another (not a trivially shared solution)
    assert (batch.ws[0] - batch.ws[1]).abs().max() > 1e-2


def test_results_follow_indices_not_batch_position(G, targets):
    """An image's randomness comes from its index: reordering the batch reorders the
    results; other indices give other w noise, so other results."""
    imgs, _ = targets
    cfg = small_cfg()
    a = invert(G, imgs[:2], cfg, indices=[0, 1])
    b = invert(G, imgs[[1, 0]], cfg, indices=[1, 0])
    assert torch.allclose(a.ws, b.ws[[1, 0]], atol=BATCH_TOL)
    c = invert(G, imgs[:2], cfg, indices=[5, 6])   # other indices: other w noise
    assert not torch.allclose(a.ws, c.ws, atol=1e-5)


@pytest.mark.parametrize("space", ["w", "wp"])
def test_w_and_wp_reduce_the_loss(G, targets, space):
    imgs, _ = targets
    start = invert(G, imgs, small_cfg(space=space, steps=0))
    end = invert(G, imgs, small_cfg(space=space, steps=60))
    assert end.ws.shape == (4, G.num_ws, G.w_dim)
    assert (end.mse < 0.5 * start.mse).all()
    if space == "w":   # one w per image, broadcast to every layer
        assert torch.equal(end.ws, end.ws[:, :1].expand_as(end.ws))
    else:
        assert (end.ws[:, 0] - end.ws[:, -1]).abs().max() > 0


def test_known_w_is_recovered_with_low_mse(G, targets):
    imgs, _ = targets
    # the targets used G's const noise: optimise w only, against the same noise
    start = invert(G, imgs, small_cfg(space="w", steps=0, optimize_noise=False))
    res = invert(G, imgs, small_cfg(space="w", steps=150, optimize_noise=False))
    assert (res.mse < 0.01 * start.mse).all(), (res.mse, start.mse)
    # the stored outputs reproduce the reconstruction exactly
    assert torch.equal(reconstruct(G, res.ws, res.noises), res.reconstruction)


def test_hybrid_starts_from_the_given_ws(G, targets):
    imgs, ws = targets
    res = invert(G, imgs, small_cfg(mode="hybrid", space="wp", steps=0, optimize_noise=False),
                 init_ws=ws)
    assert torch.equal(res.ws, ws)
    assert (res.mse < 1e-10).all()
    with pytest.raises(ValueError, match="init_ws"):
        invert(G, imgs, small_cfg(mode="hybrid"))


class TinyFeatures(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x))                      # [N, 5, H, W]


@pytest.fixture
def scripted_net(tmp_path):
    """TinyFeatures (seed 3) saved as TorchScript and loaded as a feature net."""
    torch.manual_seed(3)
    path = tmp_path / "features.pt"
    torch.jit.script(TinyFeatures().eval()).save(str(path))
    return load_feature_net(str(path))


def test_torchscript_feature_net_path(G, targets, scripted_net):
    imgs, _ = targets
    net = scripted_net
    assert isinstance(net, ScriptedFeatures)
    # perceptual only: the feature distance alone drives the fit
    cfg = small_cfg(mse_weight=0.0, perceptual_weight=1.0, steps=60)
    start = invert(G, imgs, small_cfg(mse_weight=0.0, steps=0), feature_net=net)
    res = invert(G, imgs, cfg, feature_net=net)
    assert res.perceptual is not None and res.perceptual.shape == (4,)
    assert (res.perceptual < 0.5 * start.perceptual).all()
    expected = (net.features(res.reconstruction) - net.features(imgs)).flatten(1).square().sum(1)
    assert torch.allclose(res.perceptual, expected, rtol=1e-5)


def test_empty_loss_is_refused(G, targets):
    with pytest.raises(ValueError, match="loss is empty"):
        invert(G, targets[0], small_cfg(mse_weight=0.0))


def test_nvidia_loss_is_perceptual_only_from_the_sampled_w_mean(G, targets, scripted_net):
    import copy
    import numpy as np
    from gankit.latent.inversion import w_stats
    imgs, _ = targets
    net = scripted_net
    # the start: the mean of 500 mapped z drawn as NVIDIA's projector draws them
    z = torch.from_numpy(np.random.RandomState(123).randn(500, G.z_dim)).float()
    with torch.no_grad():
        w_mean = G.mapping(z, None)[:, 0].mean(0)                     # [w_dim]
    w_avg, _ = w_stats(G, 500, sampled_mean=True)
    torch.testing.assert_close(w_avg, w_mean)
    assert not torch.allclose(w_avg, G.mapping.w_avg)
    # nvidia == mse weight 0 from a generator whose tracked w_avg is that mean
    G2 = copy.deepcopy(G)
    with torch.no_grad():
        G2.mapping.w_avg.copy_(w_mean)
    nv = invert(G, imgs, small_cfg(loss="nvidia", steps=10), feature_net=net, w_std=0.5)
    ref = invert(G2, imgs, small_cfg(mse_weight=0.0, steps=10), feature_net=net, w_std=0.5)
    torch.testing.assert_close(nv.ws, ref.ws)
    torch.testing.assert_close(nv.loss, nv.perceptual)
    with_mse = invert(G2, imgs, small_cfg(steps=10), feature_net=net, w_std=0.5)
    assert not torch.allclose(with_mse.ws, ref.ws)
    with pytest.raises(ValueError, match="nvidia"):
        invert(G, imgs, small_cfg(loss="nvidia", steps=2))
    with pytest.raises(ValueError, match="loss"):
        small_cfg(loss="lpips").validate()


def test_early_stop_freezes_each_image_on_its_own(G, targets):
    imgs, _ = targets
    cfg = small_cfg(steps=60, optimize_noise=False)
    probe = invert(G, imgs, cfg, record_history=True)
    losses = torch.stack(probe.history)                          # [steps, B]
    target = float(losses[10].median())                          # some images pass it early
    stop = invert(G, imgs, small_cfg(steps=60, optimize_noise=False, early_stop_loss=target))
    first_below = [(losses[:, b] < target).nonzero() for b in range(4)]
    for b in range(4):
        s = int(first_below[b][0]) if len(first_below[b]) else 60
        assert int(stop.steps[b]) == s
        if s < 60:  # frozen: its ws equal a run of exactly s steps ... of the same schedule
            single = invert(G, imgs[b:b + 1], small_cfg(steps=60, optimize_noise=False,
                                                        early_stop_loss=target), indices=[b])
            assert torch.allclose(single.ws, stop.ws[b:b + 1], atol=BATCH_TOL)
            assert int(single.steps[0]) == s
    assert int(stop.steps.min()) < 60
    assert len(set(stop.steps.tolist())) > 1          # each image stopped on its own step


def test_psnr_and_ssim_on_known_cases():
    x = torch.zeros(1, 3, 16, 16)
    y = torch.full((1, 3, 16, 16), 0.2)                          # MSE 0.04 on [-1, 1]
    assert math.isclose(float(psnr(x, y)), 10 * math.log10(4 / 0.04), rel_tol=1e-5)
    assert torch.allclose(ssim(x, x), torch.ones(1))
    # two constant images a, b on [0, 1]: SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b, c1 = 0.5, 0.6, 0.01 ** 2
    assert math.isclose(float(ssim(x, y)), (2 * a * b + c1) / (a * a + b * b + c1), rel_tol=1e-5)
    noise = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert float(ssim(noise, -noise)) < 0                        # anti-correlated structure


class FakeLPIPS(nn.Module):
    """Has the call signature of NVIDIA's vgg16.pt: records what it is given."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor, resize_images: bool = True,
                return_lpips: bool = False) -> torch.Tensor:
        assert not resize_images and return_lpips
        # features: the input's range and size, so the test can see the scaling
        return torch.cat([x.amin(dim=[1, 2, 3])[:, None], x.amax(dim=[1, 2, 3])[:, None],
                          torch.full_like(x[:, :1, 0, 0], float(x.shape[2]))], dim=1)


def test_lpips_file_is_called_like_nvidia_projector(tmp_path):
    from gankit.models.perceptual import LPIPSVGG16
    path = tmp_path / "vgg16.pt"            # the name selects the LPIPS calling convention
    torch.jit.script(FakeLPIPS().eval()).save(str(path))
    net = load_feature_net(str(path))
    assert isinstance(net, LPIPSVGG16)
    x = torch.zeros(2, 3, 512, 512)
    x[:, :, 0, 0] = -1                      # one pixel 0 among 127.5s after scaling
    x[:, :, -1, -1] = 1                     # one pixel 255
    f = net.features(x)                     # [-1, 1] -> [0, 255], 512 -> 256 (area, 2x2)
    assert f[0, 2] == 256
    assert float(f[0, 0]) == pytest.approx((0 + 3 * 127.5) / 4, rel=1e-5)
    assert float(f[0, 1]) == pytest.approx((255 + 3 * 127.5) / 4, rel=1e-5)
    small = net.features(torch.ones(1, 3, 64, 64))
    assert small[0, 2] == 64 and float(small[0, 1]) == pytest.approx(255)


def test_encode_returns_init_ws_and_hybrid_in_w_starts_from_their_layer_mean(G, targets):
    imgs, ws = targets
    init = ws + torch.randn(ws.shape, generator=torch.Generator().manual_seed(2))
    enc = invert(G, imgs, small_cfg(mode="encode", space="wp", steps=40), init_ws=init)
    assert torch.equal(enc.ws, init) and (enc.steps == 0).all() and enc.noises is None
    assert torch.equal(enc.reconstruction, reconstruct(G, init))   # G's const noise
    hyb = invert(G, imgs, small_cfg(mode="hybrid", space="w", steps=0, optimize_noise=False),
                 init_ws=init)
    assert torch.allclose(hyb.ws, init.mean(dim=1, keepdim=True).expand_as(init))
    with pytest.raises(ValueError, match="needs space 'wp'"):
        invert(G, imgs, small_cfg(mode="encode", space="w"), init_ws=init)
    with pytest.raises(ValueError, match="init_ws"):
        invert(G, imgs, small_cfg(mode="encode", space="wp"))


def hybrid_start(G) -> torch.Tensor:
    """[4, num_ws, w_dim] a start away from the targets' ws (an encoder's estimate)."""
    with torch.no_grad():
        return G.mapping(torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(2)))


def test_the_lbfgs_hybrid_is_per_image_and_ahead_of_adamax(G, targets):
    """Image 0's result does not depend on the other images of its batch. (Against runs of
    one it agrees only to the batched kernels' rounding, which a quasi-Newton step can grow
    past BATCH_TOL: results are reproducible per micro-batch, as the jobs promise.)"""
    imgs, ws = targets
    init = hybrid_start(G)
    cfg = small_cfg(mode="hybrid", space="wp", steps=20, hybrid_schedule="lbfgs")
    batch = invert(G, imgs, cfg, init_ws=init)
    with torch.no_grad():
        others = G.synthesis(ws.flip(0), noise_mode="const")             # [4, 3, H, W]
    others[0] = imgs[0]
    mixed = invert(G, others, cfg, init_ws=torch.cat([init[:1], init[1:].flip(0)]))
    assert torch.allclose(batch.ws[0], mixed.ws[0], atol=1e-6, rtol=0)
    for n, m in zip(batch.noises, mixed.noises):
        assert torch.allclose(n[0], m[0], atol=1e-6, rtol=0)
    assert (batch.ws[1] - mixed.ws[1]).abs().max() > 1e-2
    fast = invert(G, imgs, small_cfg(mode="hybrid", space="wp", steps=20,
                                     hybrid_schedule="fast"), init_ws=init)
    assert (batch.mse < fast.mse).all(), (batch.mse, fast.mse)


def test_the_lbfgs_hybrid_stops_each_image_on_its_own(G, targets):
    imgs, _ = targets
    cfg = dict(mode="hybrid", space="wp", steps=30, optimize_noise=False,
               hybrid_schedule="lbfgs")
    probe = invert(G, imgs, small_cfg(**cfg), init_ws=hybrid_start(G), record_history=True)
    target = float(torch.stack(probe.history)[8].median())
    stop = invert(G, imgs, small_cfg(**cfg, early_stop_loss=target), init_ws=hybrid_start(G))
    assert int(stop.steps.min()) < 30 and len(set(stop.steps.tolist())) > 1
    stopped = stop.steps < 30
    assert (stop.loss[stopped] < target).all()
