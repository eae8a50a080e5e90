"""Published latent directions as gankit boundaries: the files the field shares.

- InterFaceGAN (genforce/interfacegan) `boundaries/*.npy`: one normal, [1, 512] float, in Z
  or W (`_c_` files are its conditional boundaries); kind 'interfacegan'.
- e4e / pSp / PTI `editings/interfacegan_directions/*.pt`: a torch tensor, [1, 512] (age,
  smile) or [1, 18, 512] (pose: the same vector on every W+ layer), which e4e's
  `apply_interfacegan` adds as w + factor * direction; kind 'tensor'.
- GANSpace PCA `editings/ganspace_pca/ffhq_pca.pt`: {mean [1, 512], comp [80, 1, 512],
  std [80]}, which e4e's `editings/ganspace.py` applies to a W+ layer range with a strength
  in units of the component's std; kind 'ganspace'.

Every file is DATA. `.npy` is read by numpy with allow_pickle=False; anything else goes
through gankit.loading.safe_pickle (a torch zip archive through torch.load(weights_only=True), a
plain pickle through the allow-list unpickler), and what comes back must be a tensor or array,
or GANSpace's dict of them: any other object is refused with one sentence.

How each becomes a Boundary (gankit.latent.editing has the edit formulas):
- a direction v keeps its length: normal v / |v|, scale |v|, intercept 0 (InterFaceGAN keeps
  no intercept), so 'shift' by t is w + t v, what e4e computes. A [1, L, D] tensor whose L
  rows are equal is that one W direction; otherwise a 'wp' boundary on W+ layers [0, L).
- GANSpace component k (c_k unit): normal c_k, intercept -mean.c_k, scale std_k, center
  mean, anchor_layer 0, so 'to_distance' by t on a layer range is e4e's get_delta / edit.
"""
from __future__ import annotations

import hashlib
import io
import re
from typing import Optional

import numpy as np
import torch

from gankit.latent.boundaries import Boundary
from gankit.loading import safe_pickle

KINDS = ("interfacegan", "tensor", "ganspace")
GANSPACE_KEYS = ("mean", "comp", "std")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
UNIT_TOLERANCE = 1e-4       # |c| of a GANSpace component: PCA components are unit vectors


class DirectionFileError(ValueError):
    """A direction file that gankit will not read (one sentence naming the file)."""


# ----------------------------------------------------------------------------------------
# Reading a file


def read_direction_file(data: bytes, source: str) -> tuple:
    """(kind, content) of a direction file's bytes: content is a float64 array for the
    'interfacegan' and 'tensor' kinds, {mean, comp, std} arrays for 'ganspace'."""
    if source.lower().endswith(".npy"):
        return "interfacegan", _npy_array(data, source)
    try:
        obj = safe_pickle.loads(data, source)
    except safe_pickle.UnsafePickleError as e:
        raise DirectionFileError(f"{e}; a direction file holds tensors only") from None
    except Exception as e:          # a truncated or foreign file: say so, in one sentence
        raise DirectionFileError(f"{source} is not a readable .pt direction file "
                                 f"({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if isinstance(obj, dict):
        return "ganspace", _ganspace_arrays(obj, source)
    return "tensor", _array(obj, source, "the file")


def _npy_array(data: bytes, source: str) -> np.ndarray:
    _npy_header_fits(data, source)
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as e:         # an object array asks for pickle: refused by numpy
        raise DirectionFileError(f"{source} is not a numeric .npy array ({e}); a direction "
                                 f"file holds numbers only") from None
    return _array(arr, source, "the file")


def _npy_header_fits(data: bytes, source: str) -> None:
    """The .npy header's shape and type account for the bytes after it: an empty or foreign
    file, or a header claiming terabytes, is refused before numpy allocates."""
    f = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
    except (ValueError, EOFError) as e:
        raise DirectionFileError(f"{source} is not a .npy file ({len(data)} bytes: "
                                 f"{str(e).splitlines()[0] if str(e) else 'no header'})") from None
    if dtype.hasobject:
        return                      # np.load refuses it without unpickling (below)
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if need != len(data) - f.tell():
        raise DirectionFileError(f"{source}: its header declares {shape} of {dtype} "
                                 f"({need:,} bytes), the file holds {len(data) - f.tell():,}")


def _array(obj, source: str, what: str) -> np.ndarray:
    """A tensor or numeric array as float64 numpy; anything else is refused."""
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().to("cpu", torch.float64).numpy()
    if not isinstance(obj, np.ndarray) or obj.dtype.kind not in "fiu":
        raise DirectionFileError(f"{source}: {what} is a {type(obj).__name__}, not a tensor "
                                 f"of numbers")
    arr = obj.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise DirectionFileError(f"{source}: {what} holds NaN or inf")
    return arr


def _ganspace_arrays(obj: dict, source: str) -> dict:
    """{mean [D], comp [K, D], std [K]} from GANSpace's dict, shapes checked."""
    if sorted(map(str, obj)) != sorted(GANSPACE_KEYS):
        raise DirectionFileError(f"{source} holds a dict with keys {sorted(map(str, obj))}, "
                                 f"not GANSpace's {list(GANSPACE_KEYS)}")
    mean = _array(obj["mean"], source, "mean")
    comp = _array(obj["comp"], source, "comp")
    std = _array(obj["std"], source, "std").reshape(-1)                  # [K]
    width = mean.shape[-1] if mean.ndim else 0
    if mean.size != width or comp.ndim < 2 or comp.shape[-1] != width or \
            comp.size != len(comp) * width or len(comp) != len(std):
        raise DirectionFileError(
            f"{source}: GANSpace needs mean [1, D], comp [K, 1, D], std [K]; got mean "
            f"{list(mean.shape)}, comp {list(comp.shape)}, std {list(std.shape)}")
    return {"mean": mean.reshape(width), "comp": comp.reshape(len(comp), width), "std": std}


# ----------------------------------------------------------------------------------------
# Boundaries


def import_boundaries(data: bytes, source: str, name: str, space: str,
                      components: Optional[int] = None) -> list:
    """[(index name, Boundary)] of a direction file: 'SPACE/NAME', or 'w/NAME_k' for
    GANSpace component k (the first `components`, default all). Each boundary's `source`
    records the file, its kind and sha256."""
    if not NAME_RE.fullmatch(name) or "__cond_" in name:
        raise DirectionFileError(f"name {name!r} must be letters, digits, '_', '.' or '-' "
                                 f"(and not hold '__cond_')")
    if space not in ("z", "w"):
        raise DirectionFileError(f"space must be 'z' or 'w', got {space!r}")
    kind, content = read_direction_file(data, source)
    origin = {"file": source, "kind": kind, "sha256": hashlib.sha256(data).hexdigest()}
    if kind == "ganspace":
        if space != "w":
            raise DirectionFileError(f"{source} is a GANSpace PCA of W (e4e applies it to W+ "
                                     f"layers): import it with space 'w'")
        return ganspace_boundaries(content, name, origin, components)
    return [direction_boundary(content, name, space, origin)]


def direction_boundary(v: np.ndarray, name: str, space: str, origin: dict) -> tuple:
    """(index name, Boundary) of one direction v: [D], [1, D], or W+ [1, L, D] / [L, D]."""
    rows = v.reshape(-1, v.shape[-1]) if v.ndim else v.reshape(1, 1)    # [L, D]
    if v.ndim > 3 or (v.ndim == 3 and len(v) != 1) or rows.shape[1] < 2:
        raise DirectionFileError(f"{origin['file']}: a direction must be [1, D] or W+ "
                                 f"[1, L, D], got {list(v.shape)}")
    layers = None
    if len(rows) > 1 and np.array_equal(rows, np.broadcast_to(rows[:1], rows.shape)):
        rows = rows[:1]                           # e4e's pose.pt: one w on every layer
    elif len(rows) > 1:
        if space != "w":
            raise DirectionFileError(f"{origin['file']}: a W+ direction [1, {len(rows)}, "
                                     f"{rows.shape[1]}] needs space 'w'")
        space, layers = "wp", (0, len(rows))
    flat = rows.reshape(-1)                                               # [L * D]
    norm = float(np.linalg.norm(flat))
    if not norm > 0:
        raise DirectionFileError(f"{origin['file']}: the direction is zero")
    meta = dict(origin, norm=norm, shape=list(v.shape))
    b = Boundary(attribute=name, space=space, normal=flat / norm, intercept=0.0,
                 layers=layers, scale=norm, source=meta)
    return f"{space_name(b)}/{name}", b


def ganspace_boundaries(pca: dict, name: str, origin: dict,
                        components: Optional[int] = None) -> list:
    """[(w/NAME_k, Boundary)] of GANSpace components 0..K-1 (see the module docstring)."""
    mean, comp, std = pca["mean"], pca["comp"], pca["std"]               # [D], [K, D], [K]
    count = len(comp) if components is None else min(int(components), len(comp))
    found = []
    for k in range(count):
        norm = float(np.linalg.norm(comp[k]))
        if abs(norm - 1.0) > UNIT_TOLERANCE or not std[k] > 0:
            raise DirectionFileError(
                f"{origin['file']}: GANSpace component {k} has norm {norm:.6g} and std "
                f"{std[k]:.6g}; e4e's formula reads as a distance only for unit components "
                f"with a positive std")
        n = comp[k] / norm
        meta = dict(origin, component=k, std=float(std[k]), mean_dot_comp=float(mean @ n))
        b = Boundary(attribute=f"{name}_{k}", space="w", normal=n, intercept=-float(mean @ n),
                     center=mean, scale=float(std[k]), anchor_layer=0, source=meta)
        found.append((f"w/{name}_{k}", b))
    return found


def space_name(b: Boundary) -> str:
    """The index's space word: 'z', 'w', or 'wp<start>-<stop>' (as jobs/stages/fit.py names
    them)."""
    return f"wp{b.layers[0]}-{b.layers[1]}" if b.space == "wp" else b.space


def width_problem(name: str, b: Boundary, z_dim: Optional[int], w_dim: Optional[int],
                  num_ws: Optional[int], model: str) -> Optional[str]:
    """One sentence when boundary `name` cannot edit latents of this generator, else None."""
    if b.space == "z":
        want, where = z_dim, "Z"
    elif b.space == "w":
        want, where = w_dim, "W"
    else:
        if num_ws is not None and b.layers[1] > num_ws:
            return (f"{name} spans W+ layers {list(b.layers)}, but {model} has {num_ws} "
                    f"W+ layers")
        want = None if w_dim is None else (b.layers[1] - b.layers[0]) * w_dim
        where = f"W+ layers {b.layers[0]}-{b.layers[1] - 1}"
    if want is not None and b.dim != want:
        return (f"{name} is {b.dim} wide, but {model}'s {where} is {want} wide: it was "
                f"published for another generator")
    return None
