"""What the checkpoint importers share: telling a file's format, reading it into an object, the
`Checkpoint` record every importer returns (the config, the tensors under our key names), and
the errors.

A file's format is told by its content, not its name (`detect_format`); pickles and torch
archives are read by gankit.loading.safe_pickle's allow-list unpickler or
torch.load(weights_only=True), so nothing in the file runs.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import torch

from gankit.loading import safe_pickle
from gankit.loading.safe_pickle import UnsafePickleError
from gankit.models.stylegan2 import GeneratorConfig

NETWORKS = ("G_ema", "G")
PathLike = Union[str, os.PathLike]


class CheckpointError(ValueError):
    """The file is not a usable generator checkpoint (message names the file and the key)."""


class UnsupportedCheckpointError(CheckpointError, NotImplementedError):
    """A kind of checkpoint gankit cannot load (another network, another blur kernel)."""


@dataclass
class Checkpoint:
    """A generator read from a file, before it is built: its config and its tensors."""
    fmt: str                                  # 'gankit', 'nvidia-pickle', 'rosinality'
    cfg: GeneratorConfig
    tensors: dict                             # our key -> tensor
    derived: tuple = ()                       # our keys computed here, not read from the file
    notes: dict = field(default_factory=dict)


def detect_format(path: PathLike) -> str:
    """'gankit' (directory, config.json or .safetensors), 'torch-zip', or 'pickle'."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such checkpoint file or directory")
    if p.is_dir():
        return "gankit"
    with open(p, "rb") as f:
        head = f.read(16)
    if head.startswith(safe_pickle.ZIP_MAGIC):
        return "torch-zip"
    if head.startswith(b"\x80"):
        return "pickle"
    if head.lstrip().startswith(b"{") or head[8:9] == b"{":  # JSON, or safetensors header
        return "gankit"
    raise CheckpointError(f"{p}: not a recognised checkpoint (neither a gankit directory, "
                          f"a pickle, nor a torch archive)")


def load_object(source: str, fmt: str) -> object:
    """Unpickle with the allow-list (or torch.load weights_only); corrupt files get one sentence."""
    try:
        if fmt == "torch-zip":
            return safe_pickle.torch_load(source, source)
        return safe_pickle.load(source)
    except UnsafePickleError:
        raise
    except (EOFError, pickle.UnpicklingError, RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(f"{source}: unreadable {fmt} file ({type(e).__name__}: {e})") from None


def fill_module(module, tensors: dict, source: str, error: type = CheckpointError,
                skip: tuple = (), optional: tuple = (), prefix: str = "") -> None:
    """Copy `tensors` into `module`: every key of its state_dict exactly once, names, shapes
    and float-ness checked, the first mismatch raised as `error` in one sentence. Keys in
    `skip` keep the module's own values (derived buffers); keys ending in one of `optional`
    may be absent. `prefix` is the module's place in the file, for the messages."""
    ours = module.state_dict()
    extra = sorted(set(tensors) - set(ours))
    missing = sorted(k for k in set(ours) - set(tensors) - set(skip) if not k.endswith(optional))
    for keys, what in ((extra, "unexpected"), (missing, "missing")):
        if keys:
            more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
            raise error(f"{source}: {what} key {prefix + keys[0]!r}{more} for this "
                        f"{type(module).__name__}")
    with torch.no_grad():
        for name, dst in ours.items():
            if name in skip or name not in tensors:
                continue
            src = tensors[name]
            if not isinstance(src, torch.Tensor) or tuple(src.shape) != tuple(dst.shape):
                shape = list(src.shape) if isinstance(src, torch.Tensor) else type(src).__name__
                raise error(f"{source}: key {prefix + name!r} has shape {shape}, expected "
                            f"{list(dst.shape)}")
            if src.is_floating_point() != dst.is_floating_point():
                raise error(f"{source}: key {prefix + name!r} has dtype {src.dtype}, expected "
                            f"{'floats' if dst.is_floating_point() else dst.dtype}")
            dst.copy_(src)
