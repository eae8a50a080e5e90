"""Checkpoint import/export: NVIDIA pickles (both layouts), rosinality .pt, the native format,
the CLI, and the allow-list unpickler's refusal of hostile files."""
import argparse
import io
import json
import math
import pickle
import sys

import pytest
import torch
import torch.nn.functional as F

from gankit.loading import rosinality, safe_pickle
from gankit.loading.checkpoints import (CheckpointError, UnsafePickleError, convert_checkpoint,
                                        inspect_checkpoint, load_generator, save_generator)
from gankit.models import ops
from gankit.models.stylegan2 import Generator, GeneratorConfig, MappingConfig, SynthesisConfig
from jobs.commands.cli import main as cli_main

import nvidia_fixture as nf

Z_DIM = W_DIM = 32


def tiny_generator(seed=0, architecture="skip", c_dim=0, resolution=16, conv_clamp=None,
                   num_fp16_res=0, w_avg_beta=0.995) -> Generator:
    cfg = GeneratorConfig(
        z_dim=Z_DIM, c_dim=c_dim, w_dim=W_DIM, img_resolution=resolution,
        mapping=MappingConfig(num_layers=2, w_avg_beta=w_avg_beta),
        synthesis=SynthesisConfig(channel_base=256, channel_max=32, architecture=architecture,
                                  conv_clamp=conv_clamp, num_fp16_res=num_fp16_res))
    torch.manual_seed(seed)
    G = Generator(cfg).eval()
    with torch.no_grad():  # non-zero noise strengths, biases and w_avg so that copies matter
        for p in G.parameters():
            if p.ndim <= 1:
                p.add_(0.1 * torch.randn_like(p))
        G.mapping.w_avg.normal_()
    return G


def images(G, n=3, c_dim=0, psi=1.0, seed=123):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, Z_DIM, generator=gen)
    c = F.one_hot(torch.arange(n) % c_dim, c_dim).float() if c_dim else None
    with torch.no_grad():
        return G(z, c, truncation_psi=psi, noise_mode="const")


def assert_same_generator(G_src, G_loaded, c_dim=0):
    assert G_loaded.cfg.to_dict() == G_src.cfg.to_dict()
    assert not G_loaded.training
    for psi in (1.0, 0.6):  # 0.6 exercises the imported w_avg
        assert torch.equal(images(G_src, c_dim=c_dim, psi=psi), images(G_loaded, c_dim=c_dim, psi=psi))


# ----------------------------------------------------------------------------------------
# NVIDIA pickles


@pytest.mark.parametrize("layout,architecture,c_dim,resolution", [
    ("ada", "skip", 0, 16), ("ada", "orig", 3, 16), ("ada", "resnet", 0, 32),
    ("stylegan3-repo", "skip", 3, 16), ("stylegan3-repo", "resnet", 0, 16),
    ("stylegan3-repo", "orig", 0, 32)])
def test_nvidia_pickle_gives_identical_images(tmp_path, layout, architecture, c_dim, resolution):
    # each codebase's own defaults (conv_clamp None vs 256, w_avg_beta 0.995 vs 0.998) apply
    G = tiny_generator(architecture=architecture, c_dim=c_dim, resolution=resolution,
                       conv_clamp=nf.CONV_CLAMP[layout], num_fp16_res=nf.NUM_FP16_RES[layout],
                       w_avg_beta=nf.W_AVG_BETA[layout])
    path = nf.write_nvidia_pickle(tmp_path / "network-snapshot.pkl", G, layout=layout)
    G2 = load_generator(path)
    assert_same_generator(G, G2, c_dim)
    assert inspect_checkpoint(path)["notes"]["layout"] == layout


def test_layout_defaults_fill_omitted_kwargs(tmp_path):
    # train.py of the stylegan3 repo passes no w_avg_beta: its default 0.998 must be used,
    # and an omitted conv_clamp means 256 there but None in stylegan2-ada-pytorch.
    G = tiny_generator()
    for layout, clamp, beta in [("ada", None, 0.995), ("stylegan3-repo", 256, 0.998)]:
        snap = nf.snapshot(G, layout=layout)
        for net in ("G", "G_ema"):
            kw = snap[net].state["_init_kwargs"]
            syn = kw["synthesis_kwargs"] if layout == "ada" else kw
            syn.pop("conv_clamp", None)
            kw["mapping_kwargs"].pop("w_avg_beta", None)
        cfg = load_generator(nf.write_pickle(tmp_path / f"{layout}.pkl", snap)).cfg
        assert cfg.synthesis.conv_clamp == clamp and cfg.mapping.w_avg_beta == beta


def test_positional_init_args_are_understood(tmp_path):
    G = tiny_generator(c_dim=2)
    snap = nf.snapshot(G)
    kwargs = snap["G_ema"].state["_init_kwargs"]
    snap["G_ema"].state["_init_args"] = tuple(kwargs.pop(k) for k in
                                             ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"))
    assert_same_generator(G, load_generator(nf.write_pickle(tmp_path / "a.pkl", snap)), c_dim=2)


def test_fixture_bytes_name_nvidias_globals_only(tmp_path):
    """The fixture pickles like NVIDIA's files, and loading imports none of NVIDIA's modules."""
    data = nf.dumps(nf.snapshot(tiny_generator()))
    seen = set()

    class Recorder(safe_pickle.SafeUnpickler):
        def find_class(self, module, name):
            seen.add(f"{module}.{name}")
            return super().find_class(module, name)

    snap = Recorder(io.BytesIO(data)).load()
    assert {"torch_utils.persistence._reconstruct_persistent_obj", "dnnlib.util.EasyDict",
            "collections.OrderedDict", "torch._utils._rebuild_tensor_v2",
            "torch._utils._rebuild_parameter", "torch.storage._load_from_bytes",
            "numpy.dtype"} <= seen
    assert not any("gankit" in g or "nvidia_fixture" in g for g in seen)
    assert not any(m in sys.modules for m in nf.STANDIN_MODULES)
    assert sorted(snap) == ["D", "G", "G_ema", "augment_pipe", "training_set_kwargs"]
    G_ema = snap["G_ema"]
    assert G_ema.class_name == "Generator" and G_ema.version == 6 and "networks.py" in G_ema.module_src
    assert isinstance(G_ema.state["_init_kwargs"]["mapping_kwargs"], safe_pickle.EasyDict)
    conv = G_ema.state["_modules"]["synthesis"].state["_modules"]["b8"].state["_modules"]["conv0"]
    assert conv.class_name == "SynthesisLayer" and type(conv.state["act_gain"]).__name__ == "float64"
    assert snap["D"].class_name == "Discriminator" and snap["augment_pipe"].class_name == "AugmentPipe"


def test_network_selects_G_or_G_ema(tmp_path):
    G_ema, G_train = tiny_generator(seed=0), tiny_generator(seed=1)
    path = nf.write_nvidia_pickle(tmp_path / "snap.pkl", G_ema, G=G_train)
    assert torch.equal(images(load_generator(path)), images(G_ema))
    assert torch.equal(images(load_generator(path, network="G")), images(G_train))
    assert not torch.equal(images(G_ema), images(G_train))
    with pytest.raises(CheckpointError, match="network must be one of"):
        load_generator(path, network="D")


def test_inner_module_kwargs_are_not_used(tmp_path):
    G = tiny_generator(architecture="resnet", c_dim=2)
    path = nf.write_nvidia_pickle(tmp_path / "snap.pkl", G, inner_kwargs="garbage")
    assert_same_generator(G, load_generator(path), c_dim=2)


def test_stylegan3_pickle_is_recognised_and_other_networks_refused(tmp_path):
    """A StyleGAN3 Generator is recognised by its synthesis.input (whatever its source text
    says) and loads as one (tests/models/test_stylegan3.py covers it); another class is refused."""
    from test_stylegan3 import render, tiny_sg3

    from gankit.models import stylegan3 as sg3
    G = tiny_sg3()
    path = nf.write_pickle(tmp_path / "sg3.pkl", nf.stylegan3_snapshot(G, module_src="# anything\n"))
    loaded = load_generator(path)
    assert isinstance(loaded, sg3.Generator) and torch.equal(render(loaded), render(G))
    snap = nf.snapshot(tiny_generator())
    snap["G_ema"].class_name = "MyGenerator"
    with pytest.raises(NotImplementedError, match="G_ema is a MyGenerator, not a Generator"):
        load_generator(nf.write_pickle(tmp_path / "custom.pkl", snap))


def test_shape_mismatch_missing_and_extra_keys_are_named(tmp_path):
    G = tiny_generator()
    snap = nf.snapshot(G)
    snap["G_ema"].child("synthesis.b8.conv0").state["_parameters"]["weight"] = torch.zeros(3, 3)
    message = r"'synthesis.b8.conv0.weight' has shape \[3, 3\], expected \[32, 32, 3, 3\]"
    with pytest.raises(CheckpointError, match=message):
        load_generator(nf.write_pickle(tmp_path / "a.pkl", snap))

    snap = nf.snapshot(G)
    del snap["G_ema"].child("synthesis.b16.conv1").state["_buffers"]["noise_const"]
    with pytest.raises(CheckpointError, match=r"a.pkl: missing key 'synthesis.b16.conv1.noise_const'"):
        load_generator(nf.write_pickle(tmp_path / "a.pkl", snap))

    snap = nf.snapshot(G)
    snap["G_ema"].child("mapping").state["_buffers"]["bogus"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"unexpected key 'mapping.bogus'"):
        load_generator(nf.write_pickle(tmp_path / "a.pkl", snap))

    snap = nf.snapshot(G)
    snap["G_ema"].child("mapping").state["_modules"]["loop"] = snap["G_ema"]
    with pytest.raises(CheckpointError, match="contains itself"):
        load_generator(nf.write_pickle(tmp_path / "a.pkl", snap))

    snap = nf.snapshot(G)
    snap["G_ema"].state["_init_kwargs"]["synthesis_kwargs"]["mystery"] = 1
    with pytest.raises(CheckpointError, match="unsupported synthesis kwarg 'mystery'"):
        load_generator(nf.write_pickle(tmp_path / "a.pkl", snap))


# ----------------------------------------------------------------------------------------
# Native format and conversion


def test_save_and_load_native_is_bit_identical(tmp_path):
    G = tiny_generator(architecture="resnet", c_dim=3, conv_clamp=256)
    out = save_generator(G, tmp_path / "model")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    meta = json.loads((out / "config.json").read_text())
    assert meta["format"] == "gankit.generator" and meta["config"] == G.cfg.to_dict()
    for path in (out, out / "model.safetensors", out / "config.json"):  # any of the three
        assert_same_generator(G, load_generator(path), c_dim=3)
    for k, v in load_generator(out).state_dict().items():
        assert torch.equal(v, G.state_dict()[k]), k


def test_convert_nvidia_to_native_is_bit_identical(tmp_path):
    G = tiny_generator(c_dim=3)
    pkl = nf.write_nvidia_pickle(tmp_path / "snap.pkl", G)
    out = convert_checkpoint(pkl, tmp_path / "native")
    assert_same_generator(G, load_generator(out), c_dim=3)
    source = json.loads((out / "config.json").read_text())["source"]
    assert source["format"] == "nvidia-pickle" and source["network"] == "G_ema"
    assert inspect_checkpoint(out)["format"] == "gankit"


def test_native_and_corrupt_file_errors_name_file_and_key(tmp_path):
    G = tiny_generator()
    out = save_generator(G, tmp_path / "model")
    from safetensors.torch import load_file, save_file
    tensors = load_file(out / "model.safetensors")
    del tensors["mapping.fc1.bias"]
    save_file(tensors, out / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing key 'mapping.fc1.bias'"):
        load_generator(out)
    (out / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_generator(out)
    (tmp_path / "cut.pkl").write_bytes(nf.dumps(nf.snapshot(G))[:5000])
    with pytest.raises(CheckpointError, match="cut.pkl: unreadable pickle file"):
        load_generator(tmp_path / "cut.pkl")
    (tmp_path / "junk.bin").write_bytes(b"\x00junk" * 10)
    with pytest.raises(CheckpointError, match="junk.bin: not a recognised checkpoint"):
        load_generator(tmp_path / "junk.bin")


# ----------------------------------------------------------------------------------------
# CLI


def test_cli_inspect_prints_architecture(tmp_path, capsys):
    G = tiny_generator(architecture="resnet", c_dim=3, resolution=32)
    pkl = nf.write_nvidia_pickle(tmp_path / "snap.pkl", G)
    assert cli_main(["inspect", str(pkl)]) == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.strip().splitlines())
    assert lines["resolution"] == "32" and lines["num_ws"] == str(G.num_ws) == "8"
    assert lines["w_dim"] == "32" and lines["conditioning"] == "c_dim=3"
    assert lines["channels"] == "4: 32, 8: 32, 16: 16, 32: 8"
    assert lines["architecture"] == "resnet" and lines["format"] == "nvidia-pickle"
    assert lines["parameters"] == str(sum(p.numel() for p in G.parameters()))
    assert cli_main(["inspect", "--json", str(pkl)]) == 0
    assert json.loads(capsys.readouterr().out)["channels"] == {"4": 32, "8": 32, "16": 16, "32": 8}


def test_cli_convert_writes_native(tmp_path, capsys):
    G_ema, G_train = tiny_generator(seed=0), tiny_generator(seed=1)
    pkl = nf.write_nvidia_pickle(tmp_path / "snap.pkl", G_ema, G=G_train)
    assert cli_main(["convert", str(pkl), str(tmp_path / "out"), "--network", "G"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert_same_generator(G_train, load_generator(tmp_path / "out"))


def test_cli_reports_hostile_file_without_running_it(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = nf.write_hostile_pickle(tmp_path / "evil.pkl", marker)
    assert cli_main(["inspect", str(path)]) == 2
    assert "not on the allow-list" in capsys.readouterr().err
    assert not marker.exists()


# ----------------------------------------------------------------------------------------
# Hostile files


@pytest.mark.parametrize("kind,global_name", [
    ("os.system", r"(posix|os)\.system"), ("eval", r"builtins\.eval"), ("exec", r"builtins\.exec"),
    ("subprocess", r"subprocess\.call"), ("storage", r"refused by torch")])
def test_hostile_pickle_runs_nothing(tmp_path, kind, global_name):
    marker = tmp_path / "pwned"
    path = nf.write_hostile_pickle(tmp_path / "evil.pkl", marker, kind)
    with pytest.raises(UnsafePickleError, match=global_name):
        load_generator(path)
    assert not marker.exists()
    # the payload is real: the stock unpickler would run it (proves the test can fail)
    if kind == "os.system":
        pickle.loads(path.read_bytes())
        assert marker.exists()


def test_hostile_payload_after_valid_networks_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    snap = nf.snapshot(tiny_generator())
    snap["training_set_kwargs"]["path"] = nf.hostile_payload("os.system", marker)
    with pytest.raises(UnsafePickleError, match="system"):
        load_generator(nf.write_pickle(tmp_path / "evil.pkl", snap))
    assert not marker.exists()


def test_module_src_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    G = tiny_generator()
    src = f"import os\nos.system('touch {marker}')\nclass Generator: pass\n"
    path = nf.write_nvidia_pickle(tmp_path / "snap.pkl", G, module_src=src)
    assert_same_generator(G, load_generator(path))
    assert not marker.exists()


def test_hostile_torch_archive_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": nf.hostile_payload("os.system", marker)}, path)
    with pytest.raises(UnsafePickleError, match="weights_only"):
        load_generator(path)
    assert not marker.exists()


def test_unpickler_details():
    # NVIDIA's own classes become inert placeholders; nothing is imported
    obj = safe_pickle.loads(b"ctraining.networks\nGenerator\n(S'x'\ntR.")
    assert isinstance(obj, safe_pickle.Placeholder) and obj.args == ("x",)
    assert "training" not in sys.modules
    # a file cannot patch our functions through BUILD (e.g. their defaults)
    with pytest.raises(UnsafePickleError, match="modify"):
        safe_pickle.loads(b"ctorch._utils\n_rebuild_tensor_v2\n(N(dS'__defaults__'\n(I0\ntstb.")
    with pytest.raises(UnsafePickleError, match="copyreg._reconstructor refused"):
        safe_pickle.loads(b"ccopyreg\n_reconstructor\n(c__builtin__\nset\ncbuiltins\nobject\nNtR.")
    with pytest.raises(UnsafePickleError, match="importlib.import_module"):
        safe_pickle.loads(b"cimportlib\nimport_module\n(S'antigravity'\ntR.")
    # a tensor may not reach past its storage (torch's set_ would silently grow it)
    storage = torch.zeros(4)._typed_storage()
    bad = nf.dumps(nf.Call(torch._utils._rebuild_tensor_v2, storage, 0, (100,), (1,), False,
                           __import__("collections").OrderedDict()))
    with pytest.raises(UnsafePickleError, match="runs past its storage"):
        safe_pickle.loads(bad)
    good = nf.dumps(torch.arange(6.0).reshape(2, 3)[:, 1:])
    assert torch.equal(safe_pickle.loads(good), torch.tensor([[1.0, 2.0], [4.0, 5.0]]))


def test_numpy_data_loads_but_forged_object_arrays_do_not(tmp_path):
    import numpy as np
    trusted = {"a": np.arange(6, dtype=">i4").reshape(2, 3), "s": np.float32(1.5),
               "f": np.asfortranarray(np.arange(4.0).reshape(2, 2))}
    data, expected = safe_pickle.loads(nf.dumps(trusted)), pickle.loads(pickle.dumps(trusted))
    for k in ("a", "f"):  # same dtype and values as numpy's own unpickling gives
        assert data[k].dtype == expected[k].dtype and data[k].tolist() == trusted[k].tolist()
    assert data["f"].flags.f_contiguous
    assert type(data["s"]) is np.float32 and data["s"] == 1.5
    # numpy's own unpickling accepts a dtype whose state hides an object field (flags=0),
    # then builds an array of forged pointers from raw bytes; ours refuses the dtype
    hidden = (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1, 0)
    forged = nf.Call(np.ndarray.__reduce__(np.zeros(1))[0], np.ndarray, (0,), b"b",
                     state=(1, (1,), nf.Call(np.dtype, "V8", False, True, state=hidden),
                            False, b"A" * 8))
    with pytest.raises(UnsafePickleError, match="not a plain numeric dtype"):
        safe_pickle.loads(nf.dumps(forged))
    with pytest.raises(UnsafePickleError, match="numpy.ndarray may only be named"):
        safe_pickle.loads(nf.dumps(nf.Call(np.ndarray, (1,), np.dtype("f8"), b"A" * 8)))


# ----------------------------------------------------------------------------------------
# rosinality


def to_rosinality(G: Generator) -> dict:
    """Inverse mapping: our skip-architecture Generator as a rosinality state dict."""
    sd = {k: v.clone() for k, v in G.state_dict().items()}
    out = {}
    for i in range(G.cfg.mapping.num_layers):
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"]
    out["input.input"] = sd["synthesis.b4.const"][None]
    kernel = ops.setup_filter([1, 3, 3, 1]) * 4

    def styled(dst, src):
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        out[f"{dst}.noise.weight"] = sd[f"{src}.noise_strength"].reshape(1)
        out[f"{dst}.activate.bias"] = sd[f"{src}.bias"]

    def to_rgb(dst, src, up):
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(1, -1, 1, 1)
        if up:
            out[f"{dst}.upsample.kernel"] = kernel.clone()

    styled("conv1", "synthesis.b4.conv1")
    to_rgb("to_rgb1", "synthesis.b4.torgb", up=False)
    noise = [sd["synthesis.b4.conv1.noise_const"]]
    for i, res in enumerate(G.synthesis.block_resolutions[1:]):
        styled(f"convs.{2 * i}", f"synthesis.b{res}.conv0")
        out[f"convs.{2 * i}.conv.blur.kernel"] = kernel.clone()
        styled(f"convs.{2 * i + 1}", f"synthesis.b{res}.conv1")
        to_rgb(f"to_rgbs.{i}", f"synthesis.b{res}.torgb", up=True)
        noise += [sd[f"synthesis.b{res}.conv0.noise_const"], sd[f"synthesis.b{res}.conv1.noise_const"]]
    for j, n in enumerate(noise):
        out[f"noises.noise_{j}"] = n[None, None]
    return out


# An independent re-implementation of rosinality's forward pass (model.py semantics:
# EqualLinear, ModulatedConv2d with conv_transpose2d + Blur, NoiseInjection, FusedLeakyReLU, ToRGB).


def ros_upfirdn(x, kernel, up, pad0, pad1):
    n, c, h, w = x.shape
    if up > 1:
        y = x.new_zeros(n, c, h * up, w * up)
        y[:, :, ::up, ::up] = x
        x = y
    x = F.pad(x, [pad0, pad1, pad0, pad1])
    k = torch.flip(kernel, [0, 1])[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, k, groups=c)


def ros_linear(x, w, b, lr_mul, act):
    out = F.linear(x, w * (1 / math.sqrt(w.shape[1])) * lr_mul)
    if act:
        return F.leaky_relu(out + b * lr_mul, 0.2) * math.sqrt(2)
    return out + b * lr_mul


def ros_modconv(sd, p, x, style, demodulate, upsample):
    b, cin, h, w = x.shape
    weight = sd[f"{p}.conv.weight"]                                       # [1, O, I, k, k]
    cout, k = weight.shape[1], weight.shape[-1]
    s = ros_linear(style, sd[f"{p}.conv.modulation.weight"], sd[f"{p}.conv.modulation.bias"], 1, False)
    wt = (1 / math.sqrt(cin * k * k)) * weight * s.view(b, 1, cin, 1, 1)  # [b, O, I, k, k]
    if demodulate:
        wt = wt * torch.rsqrt(wt.pow(2).sum([2, 3, 4]) + 1e-8).view(b, cout, 1, 1, 1)
    if upsample:
        wt = wt.transpose(1, 2).reshape(b * cin, cout, k, k)
        out = F.conv_transpose2d(x.reshape(1, b * cin, h, w), wt, padding=0, stride=2, groups=b)
        out = out.view(b, cout, out.shape[2], out.shape[3])
        return ros_upfirdn(out, sd[f"{p}.conv.blur.kernel"], 1, 1, 1)
    out = F.conv2d(x.reshape(1, b * cin, h, w), wt.reshape(b * cout, cin, k, k), padding=k // 2, groups=b)
    return out.view(b, cout, h, w)


def ros_styled_conv(sd, p, x, style, noise, upsample=False):
    out = ros_modconv(sd, p, x, style, True, upsample)
    out = out + sd[f"{p}.noise.weight"] * noise
    return F.leaky_relu(out + sd[f"{p}.activate.bias"].view(1, -1, 1, 1), 0.2) * math.sqrt(2)


def ros_to_rgb(sd, p, x, style, skip):
    out = ros_modconv(sd, p, x, style, False, False) + sd[f"{p}.bias"]
    if skip is not None:
        out = out + ros_upfirdn(skip, sd[f"{p}.upsample.kernel"], 2, 2, 1)
    return out


def ros_generator(sd, z, n_mlp):
    x = z * torch.rsqrt(torch.mean(z ** 2, dim=1, keepdim=True) + 1e-8)
    for i in range(1, n_mlp + 1):
        x = ros_linear(x, sd[f"style.{i}.weight"], sd[f"style.{i}.bias"], 0.01, True)
    out = sd["input.input"].repeat(z.shape[0], 1, 1, 1)
    out = ros_styled_conv(sd, "conv1", out, x, sd["noises.noise_0"])
    skip = ros_to_rgb(sd, "to_rgb1", out, x, None)
    n_up = len([k for k in sd if k.endswith(".conv.blur.kernel")])
    for i in range(n_up):
        out = ros_styled_conv(sd, f"convs.{2 * i}", out, x, sd[f"noises.noise_{2 * i + 1}"], True)
        out = ros_styled_conv(sd, f"convs.{2 * i + 1}", out, x, sd[f"noises.noise_{2 * i + 2}"])
        skip = ros_to_rgb(sd, f"to_rgbs.{i}", out, x, skip)
    return skip


@pytest.mark.parametrize("resolution", [16, 32])
def test_rosinality_pt_gives_identical_images(tmp_path, resolution):
    G = tiny_generator(resolution=resolution)
    sd = to_rosinality(G)
    torch.save({"g_ema": sd, "latent_avg": G.mapping.w_avg.clone()}, tmp_path / "ros.pt")
    G2 = load_generator(tmp_path / "ros.pt")
    assert_same_generator(G, G2)
    # rosinality's own math on its own key names gives the same images (to float rounding)
    z = torch.randn(3, Z_DIM, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = ros_generator(sd, z, n_mlp=2)
        ours = G2(z, noise_mode="const")
    assert ref.shape == ours.shape == (3, 3, resolution, resolution)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)
    info = inspect_checkpoint(tmp_path / "ros.pt")
    assert info["format"] == "rosinality" and info["num_ws"] == G.num_ws and info["mapping_layers"] == 2


def test_rosinality_train_checkpoint_and_legacy_format(tmp_path):
    G_ema, G_train = tiny_generator(seed=0), tiny_generator(seed=1)
    ckpt = {"g": to_rosinality(G_train), "g_ema": to_rosinality(G_ema), "d": {},
            "args": argparse.Namespace(size=16, latent=32, n_mlp=2, channel_multiplier=2)}
    torch.save(ckpt, tmp_path / "train.pt")
    G2 = load_generator(tmp_path / "train.pt", network="G")
    assert torch.equal(images(G2), images(G_train))           # psi=1 does not use w_avg
    # no latent_avg in train.py files: w_avg is the mean of mapping(z) over 4096 seeded z
    z = torch.randn(4096, Z_DIM, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = G_train.mapping(z, None)[:, 0].mean(0)
    torch.testing.assert_close(G2.mapping.w_avg, expected)
    # a legacy (non-zip) torch.save file takes the pickle path and is handed to torch.load
    torch.save({"g_ema": to_rosinality(G_ema), "latent_avg": G_ema.mapping.w_avg},
               tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert_same_generator(G_ema, load_generator(tmp_path / "legacy.pt"))


def test_rosinality_errors_name_the_key(tmp_path):
    G = tiny_generator()
    sd = to_rosinality(G)
    sd["convs.1.activate.bias"] = torch.zeros(5)
    torch.save({"g_ema": sd}, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match=r"'synthesis.b8.conv1.bias' has shape \[5\], expected \[32\]"):
        load_generator(tmp_path / "a.pt")
    sd = to_rosinality(G)
    del sd["noises.noise_3"]
    torch.save({"g_ema": sd}, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match=r"missing key 'synthesis.b16.conv0.noise_const'"):
        load_generator(tmp_path / "a.pt")
    sd = to_rosinality(G)
    sd["convs.0.extra.weight"] = torch.zeros(1)
    torch.save({"g_ema": sd}, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match=r"unexpected rosinality key 'convs.0.extra.weight'"):
        load_generator(tmp_path / "a.pt")
    sd = to_rosinality(G)
    sd["convs.0.conv.blur.kernel"] = torch.ones(4, 4)
    torch.save({"g_ema": sd}, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match="blur kernel"):
        load_generator(tmp_path / "a.pt")


def test_rosinality_channel_table():
    def table(cm):
        return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm,
                512: 32 * cm, 1024: 16 * cm}
    assert rosinality._channel_base_max(table(2), "x") == (32768, 512)   # NVIDIA config-f
    assert rosinality._channel_base_max(table(1), "x") == (16384, 512)
    with pytest.raises(CheckpointError, match="cannot be written as"):
        rosinality._channel_base_max(table(4), "x")                    # 512 -> 1024 grows
