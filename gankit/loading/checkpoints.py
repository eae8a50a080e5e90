"""Generator checkpoints: one loader for every format, chosen by the file's content (not its
name), and the native format to write.

The formats, one importer module each under gankit.loading:
- native: gankit's own directory (config.json + model.safetensors), written by
  `save_generator` and read back bit-identically;
- nvidia: NVIDIA stylegan2-ada-pytorch / stylegan3 pickles (StyleGAN2, StyleGAN3 T and R);
- rosinality: rosinality/stylegan2-pytorch `.pt` files;
- encoder_decoder: the decoder of a pSp / e4e / ReStyle encoder checkpoint.
Each importer returns a `Checkpoint` (gankit.loading.formats): a config and tensors
under our key names. Building is a name- and shape-checked copy: every key of our state_dict is
filled exactly once, and a missing, unexpected or misshapen key is an error naming it.
Loading never executes code from the file (gankit.loading.safe_pickle, torch.load weights_only).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Union

import torch

from gankit.loading.encoder_decoder import from_encoder_checkpoint
from gankit.loading.field_encoders import is_encoder_checkpoint
from gankit.loading.formats import (NETWORKS, Checkpoint, CheckpointError, PathLike, fill_module,
                                    UnsupportedCheckpointError, detect_format, load_object)
from gankit.loading.native import MODELS, model_name, read_native, save_generator
from gankit.loading.nvidia import from_nvidia
from gankit.loading.rosinality import from_rosinality
from gankit.loading.safe_pickle import PersistentObject, UnsafePickleError
from gankit.models import stylegan3 as sg3
from gankit.models.stylegan2 import Generator

__all__ = ["CheckpointError", "UnsupportedCheckpointError", "UnsafePickleError",
           "save_generator", "load_generator", "convert_checkpoint", "inspect_checkpoint",
           "detect_format"]


def load_generator(path: PathLike, network: str = "G_ema", device: Union[str, torch.device] = "cpu"
                   ) -> Generator:
    """Load any supported checkpoint as a Generator in eval mode with frozen parameters.

    `network` picks 'G_ema' (default) or 'G' in files holding both (NVIDIA pickles,
    rosinality train.py checkpoints); a native directory holds one generator.
    """
    return _build(_read_bounded(path, network), str(path)).to(device)


def convert_checkpoint(src: PathLike, dst: PathLike, network: str = "G_ema",
                       transform: Optional[tuple] = None) -> Path:
    """Read any supported checkpoint and write it in the native format. `transform`
    ((tx, ty), angle in degrees), StyleGAN3 only: every image the written model renders is
    moved and rotated so (NVIDIA's gen_images.py --translate / --rotate); stored with it."""
    ck = _read_bounded(src, network)
    G = _build(ck, str(src))
    if transform is not None:
        if not hasattr(G.synthesis, "set_transform"):
            raise CheckpointError(f"{src}: --translate / --rotate need a StyleGAN3 generator "
                                  f"(its Fourier input is what they move)")
        G.synthesis.set_transform(*transform)
    source = {"format": ck.fmt, "file": Path(src).name, "network": network, **ck.notes}
    if transform is not None:
        source["transform"] = {"translate": list(transform[0]), "angle": transform[1]}
    return save_generator(G, dst, source=source)


def inspect_checkpoint(path: PathLike, network: str = "G_ema") -> dict:
    """Architecture summary of a checkpoint (reads the file, builds nothing but shapes)."""
    ck = _read_bounded(path, network)
    cfg = ck.cfg
    if isinstance(cfg, sg3.GeneratorConfig):
        return _inspect_stylegan3(ck, path, network)
    with torch.device("meta"):  # shapes only: no memory, no copy
        G = Generator(cfg)
    resolutions = [2 ** i for i in range(2, int(math.log2(cfg.img_resolution)) + 1)]
    return {
        "path": str(path), "format": ck.fmt, "network": network, "model": "stylegan2",
        "resolution": cfg.img_resolution, "img_channels": cfg.img_channels,
        "num_ws": G.num_ws, "w_dim": cfg.w_dim, "z_dim": cfg.z_dim, "c_dim": cfg.c_dim,
        "channels": {res: cfg.channels(res) for res in resolutions},
        "architecture": cfg.synthesis.architecture, "mapping_layers": cfg.mapping.num_layers,
        "conv_clamp": cfg.synthesis.conv_clamp, "num_fp16_res": cfg.synthesis.num_fp16_res,
        "num_params": sum(p.numel() for p in G.parameters()),
        "config": cfg.to_dict(), "notes": dict(ck.notes),
    }


def _inspect_stylegan3(ck: Checkpoint, path: PathLike, network: str) -> dict:
    """inspect_checkpoint's summary of a StyleGAN3 generator; channels per layer name."""
    cfg, s = ck.cfg, ck.cfg.synthesis
    with torch.device("meta"):
        G = sg3.Generator(cfg)
    return {
        "path": str(path), "format": ck.fmt, "network": network, "model": "stylegan3",
        "resolution": cfg.img_resolution, "img_channels": cfg.img_channels,
        "num_ws": G.num_ws, "w_dim": cfg.w_dim, "z_dim": cfg.z_dim, "c_dim": cfg.c_dim,
        "channels": {name: l.out_channels for name, l in zip(G.synthesis.layer_names,
                                                              G.synthesis.layers())},
        "architecture": "stylegan3-r" if s.use_radial_filters else "stylegan3-t",
        "mapping_layers": cfg.mapping.num_layers,
        "conv_clamp": s.conv_clamp, "num_fp16_res": s.num_fp16_res,
        "num_params": sum(p.numel() for p in G.parameters()),
        "config": cfg.to_dict(), "notes": dict(ck.notes),
    }


def _read_bounded(path: PathLike, network: str) -> Checkpoint:
    """_read, with objects nested past Python's recursion limit refused in one sentence."""
    try:
        return _read(path, network)
    except RecursionError:
        raise CheckpointError(f"{path}: its objects are nested too deeply for a checkpoint "
                              f"(a recursion bomb?)") from None


def _read(path: PathLike, network: str) -> Checkpoint:
    if network not in NETWORKS:
        raise CheckpointError(f"network must be one of {NETWORKS}, got {network!r}")
    fmt, source = detect_format(path), str(path)
    if fmt == "gankit":
        return read_native(Path(path))
    obj = load_object(source, fmt)
    if isinstance(obj, dict) and any(isinstance(obj.get(k), PersistentObject) for k in NETWORKS):
        return from_nvidia(obj, network, source)
    if is_encoder_checkpoint(obj):
        return from_encoder_checkpoint(obj, network, source)
    return from_rosinality(obj, network, source)  # a legacy (non-zip) torch.save file


def _build(ck: Checkpoint, source: str) -> Generator:
    try:
        ck.cfg.validate()
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{source}: its generator config is not usable: {e}") from None
    G = MODELS[model_name(ck.cfg)][0](ck.cfg)
    fill_module(G, ck.tensors, source, skip=tuple(ck.derived))
    if "mapping.w_avg" in ck.derived:
        _estimate_w_avg(G)
    return G.eval().requires_grad_(False)


@torch.no_grad()
def _estimate_w_avg(G: Generator, n: int = 4096, seed: int = 0) -> None:
    """Mean of mapping(z) over `n` seeded z, as rosinality's `mean_latent` computes it."""
    z = torch.randn([n, G.z_dim], generator=torch.Generator().manual_seed(seed))
    G.mapping.w_avg.copy_(G.mapping(z, None)[:, 0].mean(dim=0))
