"""rosinality/stylegan2-pytorch generators: `.pt` files from convert_weight.py
(`{'g_ema': state_dict, 'latent_avg': w}`) or train.py (`{'g', 'd', 'g_ema', 'args', ...}`),
read with `torch.load(weights_only=True)`.

Architecture, sizes and channels are inferred from the tensors' shapes; the blur kernels are
checked (only [1, 3, 3, 1] is supported); `latent_avg` becomes `mapping.w_avg`, estimated from
4096 seeded samples, like rosinality's `mean_latent`, when the file has none (the estimate is
made by gankit.loading.checkpoints once the generator is built).
"""
from __future__ import annotations

import math
import re
from typing import Optional

import torch

from gankit.loading.formats import Checkpoint, CheckpointError, UnsupportedCheckpointError
from gankit.models import ops
from gankit.models.stylegan2 import GeneratorConfig, MappingConfig, SynthesisConfig

_ROS_NETWORK = {"G_ema": "g_ema", "G": "g"}
_ROS_CONV = {"conv.weight": "weight", "conv.modulation.weight": "affine.weight",
             "conv.modulation.bias": "affine.bias", "noise.weight": "noise_strength",
             "activate.bias": "bias"}
_ROS_TORGB = {"conv.weight": "weight", "conv.modulation.weight": "affine.weight",
              "conv.modulation.bias": "affine.bias", "bias": "bias"}
_ROS_FILTER = (1, 3, 3, 1)  # rosinality's blur_kernel default; checked against the file


def from_rosinality(obj: object, network: str, source: str) -> Checkpoint:
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source}: not a generator checkpoint (a {type(obj).__name__})")
    latent_avg = None
    if "style.1.weight" in obj:      # a bare generator state dict
        sd = obj
    elif "g_ema" in obj or "g" in obj:
        key = _ROS_NETWORK[network]
        if key not in obj:
            raise CheckpointError(f"{source}: has no {key!r} state dict for network {network!r}")
        sd = obj[key]
        latent_avg = obj.get("latent_avg") if key == "g_ema" else None
    else:
        raise CheckpointError(f"{source}: not a recognised checkpoint (keys {sorted(obj)[:6]})")
    if not isinstance(sd, dict) or "style.1.weight" not in sd:
        raise CheckpointError(f"{source}: the generator state dict has no 'style.1.weight'")
    cfg = rosinality_config(sd, source)
    tensors = _rosinality_tensors(sd, cfg, source)
    derived = tuple(_filter_keys(cfg))
    if latent_avg is not None:
        tensors["mapping.w_avg"] = torch.as_tensor(latent_avg).reshape(-1)
        notes = {"w_avg": "latent_avg from the file"}
    else:
        derived += ("mapping.w_avg",)
        notes = {"w_avg": "estimated: mean of mapping(z) over 4096 z drawn with seed 0"}
    return Checkpoint("rosinality", cfg, tensors, derived, notes)


def rosinality_config(sd: dict, source: str = "checkpoint") -> GeneratorConfig:
    """Infer size, style_dim, n_mlp and channels from a rosinality Generator state dict."""
    n_mlp = 0
    while f"style.{n_mlp + 1}.weight" in sd:
        n_mlp += 1
    n_convs = len([k for k in sd if re.fullmatch(r"convs\.\d+\.conv\.weight", k)])
    if n_convs % 2 or "input.input" not in sd or "to_rgb1.conv.weight" not in sd:
        raise CheckpointError(f"{source}: incomplete rosinality generator (input.input, "
                              f"to_rgb1 and pairs of convs are required)")
    style_dim = sd["style.1.weight"].shape[1]
    w_dim = sd[f"style.{n_mlp}.weight"].shape[0]
    channels = {4: int(sd["input.input"].shape[1])}
    for i in range(n_convs // 2):
        channels[8 * 2 ** i] = int(sd[f"convs.{2 * i}.conv.weight"].shape[1])
    resolution = max(channels)
    base, cmax = _channel_base_max(channels, source)
    return GeneratorConfig(
        z_dim=int(style_dim), c_dim=0, w_dim=int(w_dim), img_resolution=resolution,
        img_channels=int(sd["to_rgb1.conv.weight"].shape[1]),
        mapping=MappingConfig(num_layers=n_mlp, lr_multiplier=0.01),  # rosinality's lr_mlp
        synthesis=SynthesisConfig(channel_base=base, channel_max=cmax, num_fp16_res=0,
                                  conv_clamp=None, architecture="skip",
                                  resample_filter=_ROS_FILTER, use_noise=True))


def _channel_base_max(channels: dict, source: str) -> "tuple[int, int]":
    """channel_base, channel_max with min(base // res, max) == channels[res] for every res.

    rosinality's table {4..32: 512, 64: 256*cm, ..., 1024: 16*cm} is expressible for
    channel_multiplier 1 or 2 (base 16384*cm, max 512); cm=4 grows from 32 to 64 px and is not.
    """
    cmax = max(channels.values())
    below = [(res, ch) for res, ch in sorted(channels.items()) if ch < cmax]
    base = below[0][0] * below[0][1] if below else cmax * max(channels)
    if any(min(base // res, cmax) != ch for res, ch in channels.items()):
        raise CheckpointError(f"{source}: channel counts {channels} cannot be written as "
                              f"min(channel_base // res, channel_max)")
    return base, cmax


def _noise_layer_names(cfg: GeneratorConfig) -> list:
    names = ["synthesis.b4.conv1"]
    for i in range(3, int(math.log2(cfg.img_resolution)) + 1):
        names += [f"synthesis.b{2 ** i}.conv0", f"synthesis.b{2 ** i}.conv1"]
    return names


def _filter_keys(cfg: GeneratorConfig) -> list:
    """Our resample_filter buffers: constants of the architecture, absent from rosinality."""
    keys = ["synthesis.b4.resample_filter", "synthesis.b4.conv1.resample_filter"]
    for i in range(3, int(math.log2(cfg.img_resolution)) + 1):
        keys += [f"synthesis.b{2 ** i}.{m}resample_filter" for m in ("", "conv0.", "conv1.")]
    return keys


def _rosinality_tensors(sd: dict, cfg: GeneratorConfig, source: str) -> dict:
    """Translate every rosinality key to ours (each target exactly once); kernels are checked."""
    noise_layers = _noise_layer_names(cfg)
    out = {}
    for key, t in sd.items():
        target = _rosinality_key(key, noise_layers, source)
        if target is None:
            _check_kernel(key, t, source)
            continue
        if target in out:
            raise CheckpointError(f"{source}: key {key!r} maps onto {target!r} a second time")
        out[target] = _rosinality_reshape(target, t)
    return out


def _rosinality_key(key: str, noise_layers: list, source: str) -> Optional[str]:
    """Our name for a rosinality key; None for the blur/upsample kernels (checked, not kept)."""
    m = re.fullmatch(r"style\.(\d+)\.(weight|bias)", key)
    if m and int(m[1]) >= 1:
        return f"mapping.fc{int(m[1]) - 1}.{m[2]}"
    if key == "input.input":
        return "synthesis.b4.const"
    if key.startswith("conv1.") and key[6:] in _ROS_CONV:
        return f"synthesis.b4.conv1.{_ROS_CONV[key[6:]]}"
    if key.startswith("to_rgb1.") and key[8:] in _ROS_TORGB:
        return f"synthesis.b4.torgb.{_ROS_TORGB[key[8:]]}"
    m = re.fullmatch(r"convs\.(\d+)\.(.+)", key)
    if m and m[2] == "conv.blur.kernel":
        return None
    if m and m[2] in _ROS_CONV:
        k = int(m[1])
        return f"synthesis.b{8 * 2 ** (k // 2)}.conv{k % 2}.{_ROS_CONV[m[2]]}"
    m = re.fullmatch(r"to_rgbs\.(\d+)\.(.+)", key)
    if m and m[2] == "upsample.kernel":
        return None
    if m and m[2] in _ROS_TORGB:
        return f"synthesis.b{8 * 2 ** int(m[1])}.torgb.{_ROS_TORGB[m[2]]}"
    m = re.fullmatch(r"noises\.noise_(\d+)", key)
    if m and int(m[1]) < len(noise_layers):
        return f"{noise_layers[int(m[1])]}.noise_const"
    raise CheckpointError(f"{source}: unexpected rosinality key {key!r}")


def _rosinality_reshape(target: str, t: torch.Tensor) -> torch.Tensor:
    """rosinality keeps singleton dims that ours drop: conv weight [1,O,I,k,k], const
    [1,C,4,4], noise [1,1,r,r], noise weight [1], to_rgb bias [1,3,1,1]. A tensor of the
    wrong size is passed on unchanged, for _fill to report with its key."""
    if target.endswith("torgb.bias"):
        return t.flatten()
    if target.endswith("noise_strength"):
        return t.reshape(()) if t.numel() == 1 else t
    ndim = {"const": 3, "noise_const": 2, "weight": 2 if ".affine." in target else 4}.get(
        target.rsplit(".", 1)[-1])
    while ndim is not None and not target.startswith("mapping.") and t.ndim > ndim and t.shape[0] == 1:
        t = t[0]
    return t


def _check_kernel(key: str, t: torch.Tensor, source: str) -> None:
    """rosinality stores its FIR kernel times factor^2 = 4; ours is the normalized filter."""
    expected = ops.setup_filter(_ROS_FILTER) * 4
    if tuple(t.shape) != tuple(expected.shape) or not torch.allclose(t.float(), expected):
        raise UnsupportedCheckpointError(f"{source}: {key!r} is not the [1,3,3,1] blur kernel; "
                                         f"other kernels are not supported")
