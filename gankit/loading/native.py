"""gankit's native generator format: what `gankit convert` writes and every job reads fastest.

A directory
    <dir>/config.json        {"format": "gankit.generator", "format_version": 1,
                              "model": "stylegan2" or "stylegan3", "config": its to_dict(),
                              "source": {...where it was converted from...}}
    <dir>/model.safetensors  the Generator's state_dict, fp32, NVIDIA's key names
written by `save_generator` and read back bit-identically (gankit.loading.checkpoints.load_generator
accepts the directory or either file inside it).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors
from safetensors.torch import save as safetensors_bytes

from gankit import atomic
from gankit.loading.formats import Checkpoint, CheckpointError, PathLike
from gankit.models import stylegan3 as sg3
from gankit.models.stylegan2 import Generator, GeneratorConfig

FORMAT_NAME = "gankit.generator"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

# The generator class of each `model` name of the native format's config.json.
MODELS = {"stylegan2": (Generator, GeneratorConfig), "stylegan3": (sg3.Generator, sg3.GeneratorConfig)}


def model_name(cfg) -> str:
    """The `model` name config.json gives a generator of this config."""
    return "stylegan3" if isinstance(cfg, sg3.GeneratorConfig) else "stylegan2"


def save_generator(G: Generator, path: PathLike, source: Optional[dict] = None) -> Path:
    """Write `G` in the native format to directory `path` (created; its two files replaced
    atomically). Returns the directory."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{out}: exists and is not a directory; the native format is a directory")
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in G.state_dict().items()}
    meta = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION)}
    atomic.write_bytes(out / WEIGHTS_FILE, safetensors_bytes(tensors, metadata=meta))
    config = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "model": model_name(G.cfg),
              "config": G.cfg.to_dict(), "source": source or {}}
    atomic.write_bytes(out / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
    return out


def read_native(path: Path) -> Checkpoint:
    folder = path if path.is_dir() else path.parent
    cfg_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for p in (cfg_path, weights_path):
        if not p.is_file():
            raise CheckpointError(f"{folder}: a gankit checkpoint needs {CONFIG_FILE} and "
                                  f"{WEIGHTS_FILE}, and {p.name} is missing")
    try:
        meta = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{cfg_path}: 'format' must be {FORMAT_NAME!r}")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{cfg_path}: format_version {meta['format_version']} is newer "
                              f"than this gankit reads ({FORMAT_VERSION})")
    model = meta.get("model", "stylegan2")
    if model not in MODELS:
        raise CheckpointError(f"{cfg_path}: 'model' must be one of {sorted(MODELS)}, got {model!r}")
    try:
        cfg = MODELS[model][1].from_dict(meta["config"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{cfg_path}: invalid generator config ({e})") from None
    try:
        tensors = load_safetensors(str(weights_path))
    except (SafetensorError, OSError, ValueError) as e:   # a lying header, a truncated file
        raise CheckpointError(f"{weights_path}: unreadable safetensors file ({e})") from None
    return Checkpoint("gankit", cfg, tensors, notes={"source": meta.get("source", {})})
