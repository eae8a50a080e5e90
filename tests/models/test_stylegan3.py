"""StyleGAN3 (configs T and R) on tiny random generators: filter design, layer layout, loading
from NVIDIA-structured pickles and the native format, the input transform, conditioning,
refusal of unknown networks, precision, and the library stages that use a generator."""
from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import torch

from gankit.latent import directions, editing, inversion, latents, metrics
from gankit.latent.boundaries import Boundary
from gankit.loading.checkpoints import (CheckpointError, UnsafePickleError,
                                        UnsupportedCheckpointError, convert_checkpoint,
                                        inspect_checkpoint, load_generator, save_generator)
from gankit.models import filters
from gankit.models.stylegan3 import Generator, GeneratorConfig, SynthesisConfig

import nvidia_fixture as nf

Z_DIM = W_DIM = 8


def tiny_sg3(config: str = "T", c_dim: int = 0, seed: int = 0) -> Generator:
    """16 px, 4 layers + ToRGB, at most 16 channels; biases, magnitudes, w_avg and the input
    affine randomised so that loading each of them matters."""
    r = config == "R"
    cfg = GeneratorConfig(
        z_dim=Z_DIM, c_dim=c_dim, w_dim=W_DIM, img_resolution=16,
        synthesis=SynthesisConfig(channel_base=256 if r else 128, channel_max=16, num_layers=4,
                                  num_critical=1, conv_kernel=1 if r else 3,
                                  use_radial_filters=r, magnitude_ema_beta=0.99))
    torch.manual_seed(seed)
    G = Generator(cfg).eval().requires_grad_(False)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if p.ndim <= 1:
                p.add_(0.1 * torch.randn_like(p))
        G.synthesis.input.affine.weight.normal_()         # a learned rotation and translation
        for layer in G.synthesis.layers():
            layer.magnitude_ema.fill_(float(torch.rand([])) + 0.5)
        G.mapping.w_avg.normal_()
    return G


def render(G, c_dim: int = 0, n: int = 3, **kw) -> torch.Tensor:
    z = torch.randn(n, Z_DIM, generator=torch.Generator().manual_seed(5))
    c = torch.eye(c_dim)[torch.arange(n) % c_dim] if c_dim else None
    with torch.no_grad():
        return G(z, c, **kw)


# ----------------------------------------------------------------------------------------
# Filters and layout


@pytest.mark.parametrize("numtaps,cutoff,width,fs", [(12, 2.0, 2.3, 16), (24, 8.0, 4.1, 64),
                                                     (12, 11.3, 9.0, 64), (6, 1.5, 1.0, 8)])
def test_kaiser_and_jinc_filters_match_scipy(numtaps, cutoff, width, fs):
    signal = pytest.importorskip("scipy.signal")
    special = pytest.importorskip("scipy.special")
    ours = filters.kaiser_lowpass(numtaps, cutoff, width, fs)
    ref = signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
    assert torch.allclose(ours, torch.as_tensor(ref, dtype=torch.float32), atol=1e-7, rtol=0)
    # the radial filter: jinc under a separable Kaiser window, from its definition
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    f = special.j1(2 * cutoff * np.pi * r) / (np.pi * r)
    beta = signal.kaiser_beta(signal.kaiser_atten(numtaps, width / (fs / 2)))
    f = f * np.outer(np.kaiser(numtaps, beta), np.kaiser(numtaps, beta))
    ours2d = filters.jinc_lowpass(numtaps, cutoff, width, fs)
    assert torch.allclose(ours2d, torch.as_tensor(f / f.sum(), dtype=torch.float32), atol=1e-7)
    assert filters.kaiser_lowpass(1, cutoff, width, fs) is None


def test_layer_layout_of_the_published_configs():
    """The layer names (output size, channels) of NVIDIA's released 1024 px T and R models."""
    with torch.device("meta"):
        T = Generator(GeneratorConfig())
        R = Generator(GeneratorConfig(synthesis=SynthesisConfig(
            channel_base=65536, channel_max=1024, conv_kernel=1, use_radial_filters=True)))
    sizes = [36, 36, 52, 52, 84, 148, 148, 276, 276, 532, 1044, 1044, 1044, 1024, 1024]
    t_channels = [512] * 7 + [323, 203, 128, 81, 51, 32, 32, 3]
    r_channels = [1024] * 7 + [645, 406, 256, 161, 102, 64, 64, 3]
    assert T.synthesis.layer_names == [f"L{i}_{s}_{c}" for i, (s, c) in enumerate(zip(sizes, t_channels))]
    assert R.synthesis.layer_names == [f"L{i}_{s}_{c}" for i, (s, c) in enumerate(zip(sizes, r_channels))]
    assert T.num_ws == 16 and T.synthesis.input.size == 36
    # R: radial down-sampling filters except in the critically sampled layers and ToRGB
    assert [l.down_filter is not None and l.down_filter.ndim == 2 for l in R.synthesis.layers()] \
        == [True] * 12 + [False] * 3


# ----------------------------------------------------------------------------------------
# Loading


@pytest.mark.parametrize("config,c_dim", [("T", 0), ("T", 3), ("R", 0), ("R", 3)])
def test_nvidia_pickle_round_trip(tmp_path, config, c_dim):
    G = tiny_sg3(config, c_dim)
    G_train = tiny_sg3(config, c_dim, seed=1)
    path = nf.write_pickle(tmp_path / "sg3.pkl", nf.stylegan3_snapshot(G, G_train))
    loaded = load_generator(path)
    assert isinstance(loaded, Generator) and loaded.cfg == G.cfg
    for kw in ({}, {"truncation_psi": 0.6, "truncation_cutoff": 3}):
        assert torch.equal(render(loaded, c_dim, **kw), render(G, c_dim, **kw))
    assert torch.equal(render(load_generator(path, network="G"), c_dim), render(G_train, c_dim))
    info = inspect_checkpoint(path)
    assert info["model"] == "stylegan3" and info["architecture"] == f"stylegan3-{config.lower()}"
    assert info["num_ws"] == 6 and info["c_dim"] == c_dim


def test_native_format_and_convert_keep_the_transform(tmp_path):
    G = tiny_sg3("R", c_dim=2)
    G.synthesis.set_transform(translate=(0.1, -0.2), angle=30)
    pkl = nf.write_pickle(tmp_path / "sg3.pkl", nf.stylegan3_snapshot(G))
    out = convert_checkpoint(pkl, tmp_path / "native")
    meta = json.loads((out / "config.json").read_text())
    assert meta["model"] == "stylegan3" and meta["source"]["layout"] == "stylegan3"
    for loaded in (load_generator(out), load_generator(save_generator(G, tmp_path / "direct"))):
        assert torch.equal(loaded.synthesis.input.transform, G.synthesis.input.transform)
        assert torch.equal(render(loaded, 2), render(G, 2))


def test_a_bad_native_model_name_is_one_sentence(tmp_path):
    out = save_generator(tiny_sg3(), tmp_path / "g")
    meta = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps(dict(meta, model="stylegan9")))
    with pytest.raises(CheckpointError, match="'model' must be one of"):
        load_generator(out)


def test_unknown_networks_are_refused_naming_their_class(tmp_path):
    G = tiny_sg3()
    custom = nf.stylegan3_snapshot(G, top_class="SuperresGenerator")
    with pytest.raises(UnsupportedCheckpointError, match="G_ema is a SuperresGenerator, not a Generator"):
        load_generator(nf.write_pickle(tmp_path / "a.pkl", custom))
    foreign = nf.stylegan3_snapshot(G)
    foreign["G_ema"].child("synthesis.L1_36_16").class_name = "ResettingLayer"
    with pytest.raises(UnsupportedCheckpointError,
                       match="holds a ResettingLayer at 'synthesis.L1_36_16', a network gankit"):
        load_generator(nf.write_pickle(tmp_path / "b.pkl", foreign))
    # StyleGAN-XL's mapping holds a plain torch.nn.Embedding: refused by the unpickler, named
    xl = nf.stylegan3_snapshot(G)
    xl["G_ema"].child("mapping").state["_modules"]["embed"] = torch.nn.Embedding(10, 4)
    with pytest.raises(UnsafePickleError, match=r"torch\.nn\.modules\.sparse\.Embedding"):
        load_generator(nf.write_pickle(tmp_path / "c.pkl", xl))
    odd = nf.stylegan3_snapshot(G)
    odd["G_ema"].state["_init_kwargs"]["superres"] = True
    with pytest.raises(CheckpointError, match="unsupported StyleGAN3 synthesis kwarg 'superres'"):
        load_generator(nf.write_pickle(tmp_path / "d.pkl", odd))


def test_the_loader_runs_nothing_from_a_stylegan3_pickle(tmp_path):
    """module_src is kept as text: source that would raise if executed changes nothing."""
    G = tiny_sg3()
    snap = nf.stylegan3_snapshot(G, module_src="raise SystemExit('executed')\n")
    assert torch.equal(render(load_generator(nf.write_pickle(tmp_path / "s.pkl", snap))), render(G))
    assert b"executed" in pickle.dumps(snap["G_ema"].module_src)


# ----------------------------------------------------------------------------------------
# The input transform, conditioning, precision


def test_transform_identity_translation_and_rotation():
    G = tiny_sg3("T")
    base = render(G)
    G.synthesis.set_transform(translate=(0.0, 0.0), angle=0.0)
    assert torch.equal(G.synthesis.input.transform, torch.eye(3)) and torch.equal(render(G), base)
    ws = latents.map_to_w(G, latents.sample_z(0, range(2), Z_DIM))
    inp, R = G.synthesis.input, G.img_resolution
    x0 = inp(ws[:, 0])                                                   # [N, C, 36, 36]
    inp.set_transform(translate=(1 / inp.sampling_rate, 0))   # one input sample to the right
    assert torch.allclose(inp(ws[:, 0])[..., 1:], x0[..., :-1], atol=1e-5)
    inp.set_transform(angle=90)                               # a quarter turn counter-clockwise
    assert torch.allclose(inp(ws[:, 0]), torch.rot90(x0, 1, dims=(2, 3)), atol=1e-5)
    # the whole generator (config T): whole-pixel translations move the image by as much
    with torch.no_grad():
        img0 = G.synthesis.set_transform()(ws)                            # the identity again
        for k in (1, 3):
            G.synthesis.set_transform(translate=(0, k / R))   # k pixels down
            img = G.synthesis(ws)
            assert (img[..., k + 2:-2, :] - img0[..., 2:-2 - k, :]).abs().max() < 1e-5
            assert (img - img0).abs().max() > 1e-2


def test_conditioning_changes_the_image():
    G = tiny_sg3("T", c_dim=3)
    z = torch.randn(2, Z_DIM)
    c0, c1 = torch.eye(3)[[0, 0]], torch.eye(3)[[1, 2]]
    with torch.no_grad():
        assert torch.equal(G(z, c0), G(z, c0.clone()))
        assert (G(z, c0) - G(z, c1)).abs().amax(dim=[1, 2, 3]).min() > 1e-3


def test_fused_and_shared_convolutions_agree():
    for config in ("T", "R"):
        G = tiny_sg3(config)
        assert torch.allclose(render(G, fused_modconv=True), render(G), atol=1e-5)


def test_reduced_precision_runs_nvidias_fp16_layers_and_fp32_comes_back():
    from gankit import precision
    G = tiny_sg3("T")
    G.synthesis.num_fp16_res = 1      # only layers sampled above 16 / 2 px
    base = render(G)
    try:
        precision.check("bf16", "cpu")
    except ValueError:
        pytest.skip("no bfloat16 conv2d on this CPU build")
    G.set_precision("bf16")
    reduced = [l.dtype == torch.bfloat16 for l in G.synthesis.layers()]
    assert reduced == [l.spec.out_sampling_rate > 8 for l in G.synthesis.layers()] and any(reduced)
    img = render(G)
    assert img.dtype == torch.float32 and torch.isfinite(img).all()
    assert (img - base).abs().max() < 0.1 * base.abs().max()
    assert not torch.equal(img, base)
    assert torch.equal(render(G.set_precision("fp32")), base)


def test_noise_inputs_do_not_exist():
    G = tiny_sg3()
    ws = G.mapping(torch.randn(1, Z_DIM))
    assert G.synthesis.noise_layers() == []
    assert torch.equal(G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="const"))
    with pytest.raises(ValueError, match="no noise inputs"):
        G.synthesis(ws, noises=[torch.zeros(1, 1, 16, 16)])


# ----------------------------------------------------------------------------------------
# Library stages


def test_sampling_and_editing_stages():
    G = tiny_sg3("R")
    z = latents.sample_z(3, range(4), G.z_dim)
    wp = latents.latents_in_space(G, z, "wp", truncation_psi=0.7)
    assert wp.shape == (4, G.num_ws, W_DIM)
    w = latents.latents_in_space(G, z, "w")
    normal = np.random.default_rng(0).normal(size=W_DIM)
    b = Boundary("smile", "w", normal / np.linalg.norm(normal), 0.0)
    edited = editing.edit(w, b, 2.0)
    d = editing.signed_distance(edited, b) - editing.signed_distance(w, b)
    assert np.allclose(np.asarray(d), 2.0, atol=1e-4)
    with torch.no_grad():
        img, img_edit = (G.synthesis(latents.to_ws(G, x, "w")) for x in (w, edited))
    assert img.shape == (4, 3, 16, 16) and (img - img_edit).abs().max() > 1e-3


def test_directions_sefa_uses_each_layers_style_affine():
    G = tiny_sg3("T")
    affines = directions.style_affines(G)
    assert [i for i, _, _ in affines] == list(range(1, G.num_ws))
    assert affines[0][2] is G.synthesis.L0_36_16.affine
    values, vectors = directions.sefa(G, top=3)
    A = directions.sefa_matrix(G).numpy()
    assert np.allclose(A.T @ A @ vectors[0], values[0] * vectors[0], atol=1e-8)
    assert values[0] >= values[1] >= values[2]
    comps, std = directions.pca_directions(G, n=64, top=2)
    assert comps.shape == (2, W_DIM) and std[0] >= std[1] > 0
    moved = directions.edit_ws(G.mapping(torch.randn(2, Z_DIM)), vectors[0], 3.0, layers=(1, 3))
    assert moved.shape == (2, G.num_ws, W_DIM)


@pytest.mark.parametrize("space", ["w", "wp"])
def test_inversion_a_few_steps(space):
    G = tiny_sg3("T")
    with torch.no_grad():
        target = G(torch.randn(2, Z_DIM, generator=torch.Generator().manual_seed(9)))
    cfg = inversion.InversionConfig(space=space, steps=8, w_avg_samples=200)
    start = inversion.invert(G, target, inversion.InversionConfig(space=space, steps=0))
    res = inversion.invert(G, target, cfg)
    assert res.noises is None or res.noises == []
    assert (res.mse < start.mse).all()
    assert torch.equal(inversion.reconstruct(G, res.ws), res.reconstruction)


def test_perceptual_path_length_runs():
    G = tiny_sg3("T")
    out = metrics.perceptual_path_length(G, metrics.feature_distance(lambda x: x), n=4,
                                         batch_size=2, epsilon=1e-2)
    assert out["n"] == 4 and math.isfinite(out["mean"]) and out["mean"] > 0


def test_convert_stores_a_user_transform(tmp_path, capsys):
    """`gankit convert --translate --rotate` writes a StyleGAN3 model that renders every image
    moved so; the same as set_transform on the loaded one. A StyleGAN2 is refused."""
    from gankit.loading.checkpoints import load_generator, save_generator
    from jobs.commands.cli import main

    from helpers import tiny_generator
    G = tiny_sg3("T")
    src = save_generator(G, tmp_path / "sg3")
    assert main(["convert", str(src), str(tmp_path / "moved"), "--translate", "0.25", "0",
                 "--rotate", "30"]) == 0
    moved = load_generator(tmp_path / "moved")
    G.synthesis.set_transform((0.25, 0.0), 30.0)
    torch.testing.assert_close(render(moved), render(G), rtol=0, atol=0)
    assert not torch.allclose(render(moved), render(load_generator(src)))
    sg2 = save_generator(tiny_generator(), tmp_path / "sg2")
    assert main(["convert", str(sg2), str(tmp_path / "x"), "--rotate", "10"]) == 2
    assert "need a StyleGAN3 generator" in capsys.readouterr().err
