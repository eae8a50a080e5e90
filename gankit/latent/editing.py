"""Edits along a boundary, with ONE distance semantics in every space.

d(x) = x.n + intercept is the signed distance of a latent to the boundary (|n| = 1), and s
its `scale`, the latent length of one unit of strength (1 for a fitted boundary):
    mode='shift'        x + t s n              moves every sample by signed distance t s
    mode='to_distance'  x + (t s - d(x)) n     places every sample at signed distance t s

Published directions (gankit.loading.published) are such boundaries. An InterFaceGAN / e4e direction
v keeps its length as s = |v|, n = v / |v|, so 'shift' is e4e's `apply_interfacegan`,
w + t v, exactly. A GANSpace component c (unit, with the PCA mean m and its std sigma) has
n = c, intercept = -m.c, s = sigma, and `anchor_layer` 0: 'to_distance' is e4e's
`editings/ganspace.py`, which measures the coordinate on W+ layer 0 only and moves every
edited layer by the same delta = (t - (w_0 - m).c / sigma) sigma c.

InterFaceGAN's `linear_interpolate` moves Z/W codes to an absolute distance but only adds t*n for
W+; here both modes mean the same thing in 'z', 'w' and 'wp'.

Which coordinates move:
- 'z' / 'w' boundary on [N, D] latents: the whole vector.
- 'w' boundary on W+ latents [N, L, D]: every layer in `layers` = [start, stop) (default all),
  each layer as its own w with the same t (so in 'to_distance' mode each layer lands at t);
  with an `anchor_layer` k, d is measured on layer k and every edited layer moves by the
  step that brings layer k to t.
- 'wp' boundary (fitted on the W+ slice boundary.layers): that slice, flattened, as one vector.

Z edits leave the sphere where z ~ N(0, I) concentrates (|z| ~ sqrt(z_dim)). That is fine for
StyleGAN: the mapping network first normalises z (pixel norm, z / rms(z)), so only the direction
of the edited z matters; a large t in Z therefore saturates into a rotation rather than growing.

Latents may be numpy arrays or torch tensors; the result has the same type, dtype and device.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from gankit.latent.boundaries import Boundary

MODES = ("shift", "to_distance")


def _backend(x):
    """(normal-like converter, is_torch) for the type of x."""
    if isinstance(x, torch.Tensor):
        # a copy: normals and strengths are small, and may be read-only (Ray's object store)
        return (lambda a: torch.tensor(np.asarray(a), dtype=x.dtype, device=x.device)), True
    return (lambda a: np.asarray(a, dtype=x.dtype)), False


def _strengths(t, n: int, x):
    """Strengths as a column [N, 1] of x's type (scalar t broadcast to every sample)."""
    convert, _ = _backend(x)
    t = np.full(n, float(t)) if np.ndim(t) == 0 else np.asarray(t, dtype=np.float64).reshape(-1)
    if t.shape != (n,):
        raise ValueError(f"strengths must be a scalar or [{n}], got shape {t.shape}")
    return convert(t.reshape(n, 1))


def _target(latents, boundary: Boundary, layers: Optional[tuple]) -> tuple:
    """Where the boundary acts on these latents: (start, stop) of the W+ layers to edit, or
    None for flat [N, D] latents. Raises ValueError on a space/shape mismatch."""
    shape = tuple(latents.shape)
    if boundary.space in ("z", "w") and len(shape) == 2:
        if layers is not None:
            raise ValueError(f"layers apply to W+ latents [N, L, D], got shape {shape}")
        _check_width(shape[1], boundary.dim, boundary)
        return None
    if boundary.space == "w" and len(shape) == 3:
        _check_width(shape[2], boundary.dim, boundary)
        start, stop = layers if layers is not None else (0, shape[1])
        if not 0 <= start < stop <= shape[1]:
            raise ValueError(f"layers must satisfy 0 <= start < stop <= {shape[1]}, got {layers}")
        return (start, stop)
    if boundary.space == "wp" and len(shape) == 3:
        if layers is not None and tuple(layers) != boundary.layers:
            raise ValueError(f"a 'wp' boundary edits the layers it was fitted on "
                             f"{boundary.layers}, got layers={layers}")
        start, stop = boundary.layers
        if stop > shape[1]:
            raise ValueError(f"boundary layers {boundary.layers} exceed the {shape[1]} W+ layers")
        _check_width((stop - start) * shape[2], boundary.dim, boundary)
        return (start, stop)
    raise ValueError(f"a {boundary.space!r} boundary cannot edit latents of shape {shape}: "
                     "'z'/'w' take [N, D], 'w'/'wp' take W+ [N, L, D]")


def _check_width(width: int, dim: int, boundary: Boundary) -> None:
    if width != dim:
        raise ValueError(f"latents are {width}-dim but boundary {boundary.attribute!r} "
                         f"({boundary.space}) is {dim}-dim")


def _distance(x, normal, intercept: float):
    """x [..., D] . normal [D] + intercept -> [...]."""
    return x @ normal + intercept


def signed_distance(latents, boundary: Boundary, layers: Optional[tuple] = None):
    """d(x) = x.n + intercept: [N] for flat latents and 'wp' boundaries; [N, stop - start] (one
    per edited layer) for a 'w' boundary on W+ latents."""
    rng = _target(latents, boundary, layers)
    convert, _ = _backend(latents)
    normal = convert(boundary.normal)
    if rng is None:
        return _distance(latents, normal, boundary.intercept)
    part = latents[:, rng[0]:rng[1]]                                     # [N, l, D]
    if boundary.space == "w":
        return _distance(part, normal, boundary.intercept)               # [N, l]
    return _distance(part.reshape(part.shape[0], -1), normal, boundary.intercept)  # [N]


def edit(latents, boundary: Boundary, strengths, mode: str = "shift",
         layers: Optional[tuple] = None):
    """Edit latents ([N, D] for 'z'/'w', [N, L, D] W+) along `boundary` by `strengths`
    (a scalar or [N]) in `mode` 'shift' or 'to_distance' (see the module docstring)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    rng = _target(latents, boundary, layers)
    convert, is_torch = _backend(latents)
    normal = convert(boundary.normal)                                    # [D]
    distance = np.asarray(strengths, dtype=np.float64) * boundary.scale  # t s, latent units
    t = _strengths(distance, latents.shape[0], latents)                 # [N, 1]
    out = latents.clone() if is_torch else latents.copy()
    if rng is None:                                                      # [N, D]
        out += _step(latents, normal, boundary.intercept, t, mode)[:, None] * normal
    elif boundary.space == "w" and boundary.anchor_layer is not None:   # one step, all layers
        anchor = _anchor(latents, boundary)                              # [N, D]
        step = _step(anchor, normal, boundary.intercept, t, mode)       # [N]
        out[:, rng[0]:rng[1]] += step[:, None, None] * normal
    elif boundary.space == "w":                                          # W boundary on W+
        part = latents[:, rng[0]:rng[1]]                                 # [N, l, D]
        step = _step(part, normal, boundary.intercept, t, mode)         # [N, l]
        out[:, rng[0]:rng[1]] += step[..., None] * normal
    else:                                                                # 'wp' slice
        part = latents[:, rng[0]:rng[1]]                                 # [N, l, D]
        flat = part.reshape(part.shape[0], -1)                           # [N, l*D]
        step = _step(flat, normal, boundary.intercept, t, mode)         # [N]
        out[:, rng[0]:rng[1]] += (step[:, None] * normal).reshape(part.shape)
    return out


def _anchor(latents, boundary: Boundary):
    """The W+ layer [N, D] a boundary with an anchor_layer measures its distance on."""
    k = boundary.anchor_layer
    if k >= latents.shape[1]:
        raise ValueError(f"boundary {boundary.attribute!r} measures on W+ layer {k}, but the "
                         f"latents have {latents.shape[1]} layers")
    return latents[:, k]


def _step(x, normal, intercept: float, t, mode: str):
    """Signed distance to move along the normal: t (shift) or t - d(x) (to_distance).
    x [N, ..., D], t [N, 1] -> [N, ...]."""
    shape = tuple(x.shape[:-1])                                          # [N, ...]
    t = t.reshape(shape[0], *([1] * (len(shape) - 1)))
    if mode == "shift":
        return t.expand(shape) if isinstance(t, torch.Tensor) else np.broadcast_to(t, shape)
    return t - _distance(x, normal, intercept)


def sweep(latent, boundary: Boundary, strengths: Sequence[float], mode: str = "shift",
          layers: Optional[tuple] = None):
    """One latent ([D] or W+ [L, D]) edited at each strength: [S, D] or [S, L, D]."""
    if isinstance(latent, torch.Tensor):
        batch = latent.unsqueeze(0).expand(len(strengths), *latent.shape)
    else:
        batch = np.broadcast_to(np.asarray(latent), (len(strengths), *np.shape(latent)))
    return edit(batch, boundary, np.asarray(strengths, dtype=np.float64), mode, layers)
