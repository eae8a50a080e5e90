"""Latent codes: deterministic sampling of z, mapping to W / W+, and interpolation.

Spaces (names used everywhere in gankit):
    'z'   input latents            [N, z_dim]
    'w'   one intermediate latent  [N, w_dim]            (broadcast to every layer)
    'wp'  W+: one w per layer      [N, num_ws, w_dim]

Determinism contract (DESIGN.md): row i of a job with seed s is drawn from a generator seeded by
(s, i) only, so latents do not depend on batch size, worker count, order or restarts.
"""
from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch

SPACES = ("z", "w", "wp")

# ----------------------------------------------------------------------------------------
# Sampling


def _check_rows(rows: Union[np.ndarray, range]) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)  # [N]
    if rows.size and rows.min() < 0:
        raise ValueError(f"rows must be non-negative row indices, got min {rows.min()}")
    return rows


def sample_z(seed: int, rows: Union[np.ndarray, range], z_dim: int) -> np.ndarray:
    """Standard normal z for the given row indices of a job: float32 [len(rows), z_dim].

    Row i uses numpy's Philox counter-based bit generator with key = seed and counter
    [0, i, 0, 0]: a stream that depends on (seed, i) only. The counter's lowest word advances
    inside the row, so rows never overlap (a row would need 2**64 blocks to reach the next).
    Resetting one bit generator's state per row is bit-identical to building a fresh
    `Philox(key=seed, counter=[0, i, 0, 0])` (tested) and cheaper, since no generator
    object is built per row (BENCHMARKS.md, "Drawing z per row", has the figures).
    """
    if not 0 <= int(seed) < 2 ** 64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    if z_dim < 1:
        raise ValueError(f"z_dim must be >= 1, got {z_dim}")
    rows = _check_rows(rows)
    bit_gen = np.random.Philox(key=int(seed))
    gen = np.random.Generator(bit_gen)
    fresh = bit_gen.state                       # buffer empty, no cached uint32
    z = np.empty((rows.size, z_dim), dtype=np.float32)  # [N, z_dim]
    for j, row in enumerate(rows.tolist()):
        fresh["state"]["counter"][1] = row
        bit_gen.state = fresh
        gen.standard_normal(out=z[j], dtype=np.float32)
    return z


def sample_classes(seed: int, rows: Union[np.ndarray, range], choices) -> np.ndarray:
    """Class labels for the given rows: int64 [len(rows)], row i uniform over `choices` (a
    list of class indices; one item = every row that class).

    Row i draws from Philox(key=seed, counter=[0, i, 1, 0]): z's stream for row i runs
    through counters [k, i, 0, 0], so the class never shifts z, and a row's class depends
    on (seed, i) only."""
    choices = np.asarray(choices, dtype=np.int64).reshape(-1)           # [K]
    if choices.size == 0:
        raise ValueError("choices must hold at least one class index")
    rows = _check_rows(rows)
    if choices.size == 1:
        return np.full(rows.size, choices[0], dtype=np.int64)
    bit_gen = np.random.Philox(key=int(seed))
    gen = np.random.Generator(bit_gen)
    fresh = bit_gen.state
    fresh["state"]["counter"][2] = 1
    picks = np.empty(rows.size, dtype=np.int64)                          # [N]
    for j, row in enumerate(rows.tolist()):
        fresh["state"]["counter"][1] = row
        bit_gen.state = fresh
        picks[j] = gen.integers(choices.size)
    return choices[picks]


# ----------------------------------------------------------------------------------------
# Mapping between spaces


def _model_device(G: torch.nn.Module) -> torch.device:
    return next(G.parameters()).device


def map_to_w(G, z, c=None, truncation_psi: float = 1.0,
             truncation_cutoff: Optional[int] = None) -> torch.Tensor:
    """z [N, z_dim] (numpy or torch) -> ws [N, num_ws, w_dim] on G's device, without grad and
    with G in eval mode (restored afterwards)."""
    device = _model_device(G)
    z = torch.as_tensor(z, dtype=torch.float32, device=device)
    if z.ndim != 2 or z.shape[1] != G.z_dim:
        raise ValueError(f"z must be [N, {G.z_dim}], got {list(z.shape)}")
    if c is not None:
        c = torch.as_tensor(c, dtype=torch.float32, device=device)
    was_training = G.training
    G.eval()
    try:
        with torch.no_grad():
            return G.mapping(z, c, truncation_psi=truncation_psi,
                             truncation_cutoff=truncation_cutoff)  # [N, num_ws, w_dim]
    finally:
        G.train(was_training)


def _check_space(space: str) -> None:
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")


def latents_in_space(G, z, space: str, truncation_psi: float = 1.0,
                     truncation_cutoff: Optional[int] = None, c=None) -> torch.Tensor:
    """z -> the latent of `space`: 'z' [N, z_dim] (as given), 'w' [N, w_dim],
    'wp' [N, num_ws, w_dim]."""
    _check_space(space)
    if space == "z":
        if truncation_psi != 1:
            raise ValueError("truncation applies in W; space 'z' needs truncation_psi=1")
        return torch.as_tensor(z, dtype=torch.float32, device=_model_device(G))
    if space == "w" and truncation_cutoff is not None:
        raise ValueError("space 'w' keeps one w per sample; truncation_cutoff needs space 'wp'")
    ws = map_to_w(G, z, c, truncation_psi, truncation_cutoff)  # [N, num_ws, w_dim]
    return ws[:, 0] if space == "w" else ws


def to_ws(G, latents, space: str, truncation_psi: float = 1.0,
          truncation_cutoff: Optional[int] = None, c=None) -> torch.Tensor:
    """A z / w / wp latent -> ws [N, num_ws, w_dim] ready for G.synthesis.

    Truncation is applied only to 'z' (through the mapping); w and wp latents are used as
    given, since they were truncated (or not) when they were sampled."""
    _check_space(space)
    if space == "z":
        return map_to_w(G, latents, c, truncation_psi, truncation_cutoff)
    if truncation_psi != 1 or truncation_cutoff is not None:
        raise ValueError(f"space {space!r} latents are used as given; truncate when sampling")
    x = torch.as_tensor(latents, dtype=torch.float32, device=_model_device(G))
    if space == "w":
        if x.ndim != 2 or x.shape[1] != G.w_dim:
            raise ValueError(f"'w' latents must be [N, {G.w_dim}], got {list(x.shape)}")
        return x.unsqueeze(1).repeat(1, G.num_ws, 1)  # [N, num_ws, w_dim]
    if x.ndim != 3 or x.shape[1:] != (G.num_ws, G.w_dim):
        raise ValueError(f"'wp' latents must be [N, {G.num_ws}, {G.w_dim}], got {list(x.shape)}")
    return x


# ----------------------------------------------------------------------------------------
# Interpolation and style mixing (numpy arrays or torch tensors, same type out)


def _to_torch(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _like(y: torch.Tensor, x):
    return y if isinstance(x, torch.Tensor) else y.numpy()


def lerp(a, b, t):
    """a + t (b - a) over the last axis; t a scalar or broadcastable ([N, 1], ...)."""
    a_t = _to_torch(a)
    b_t = _to_torch(b).to(a_t.dtype)
    t_t = torch.as_tensor(t, dtype=a_t.dtype, device=a_t.device)
    return _like(a_t + t_t * (b_t - a_t), a)


def _normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


def slerp(a, b, t):
    """Spherical interpolation of the directions of a and b ([..., D]), as in the StyleGAN
    perceptual-path-length code: normalise a and b, rotate a towards b by t times their angle,
    normalise. The result is unit-norm: norms are NOT interpolated. That is what PPL uses in Z,
    and it is harmless there because the mapping network normalises z (pixel norm) first."""
    a_t = _normalize(_to_torch(a).to(torch.float64))
    b_t = _normalize(_to_torch(b).to(torch.float64))
    t_t = torch.as_tensor(t, dtype=torch.float64)
    cos = (a_t * b_t).sum(dim=-1, keepdim=True).clamp(-1.0, 1.0)   # [..., 1]
    angle = t_t * torch.acos(cos)
    ortho = _normalize(b_t - cos * a_t)                             # b's part orthogonal to a
    out = _normalize(a_t * torch.cos(angle) + ortho * torch.sin(angle))
    return _like(out.to(_to_torch(a).dtype), a)


def style_mix(ws_a, ws_b, crossover: int):
    """Style mixing: layers [0, crossover) from ws_a, layers [crossover, L) from ws_b.
    ws_a, ws_b: [N, L, D]."""
    a_t, b_t = _to_torch(ws_a), _to_torch(ws_b)
    if a_t.ndim != 3 or a_t.shape != b_t.shape:
        raise ValueError(f"ws_a and ws_b must be the same [N, L, D] shape, got "
                         f"{list(a_t.shape)} and {list(b_t.shape)}")
    if not 0 <= crossover <= a_t.shape[1]:
        raise ValueError(f"crossover must be in [0, {a_t.shape[1]}], got {crossover}")
    out = torch.cat([a_t[:, :crossover], b_t[:, crossover:].to(a_t.dtype)], dim=1)
    return _like(out, ws_a)


def mix_layers(ws_row, ws_col, layers):
    """StyleGAN's style-mixing figure: ws_row [N, L, D] with ws_col's styles on the ws
    indices `layers` (the columns' source sets those layers, the rows' source the rest)."""
    row_t, col_t = _to_torch(ws_row), _to_torch(ws_col).to(_to_torch(ws_row).dtype)
    if row_t.ndim != 3 or row_t.shape != col_t.shape:
        raise ValueError(f"ws_row and ws_col must be the same [N, L, D] shape, got "
                         f"{list(row_t.shape)} and {list(col_t.shape)}")
    layers = sorted(set(int(i) for i in layers))
    if layers and not 0 <= layers[0] <= layers[-1] < row_t.shape[1]:
        raise ValueError(f"layers must be ws indices in [0, {row_t.shape[1]}), got {layers}")
    out = row_t.clone()
    out[:, layers] = col_t[:, layers]
    return _like(out, ws_row)


def interpolation_path(a, b, steps: int, space: str) -> torch.Tensor:
    """`steps` latents from a to b, ends included: t = 0, 1/(steps-1), ..., 1.
    'z': slerp of the directions with the norms lerped, so the ends are a and b themselves
    (latents.slerp alone returns unit vectors); 'w', 'wp': lerp. a, b: [D] or [L, D] ->
    [steps, D] or [steps, L, D]."""
    _check_space(space)
    if steps < 2:
        raise ValueError(f"steps must be >= 2 (the two ends), got {steps}")
    a_t = _to_torch(a).to(torch.float32)
    b_t = _to_torch(b).to(torch.float32)
    t = torch.linspace(0, 1, steps, dtype=torch.float64)
    t = t.reshape(steps, *([1] * a_t.ndim))                            # [T, 1(, 1)]
    a64, b64 = a_t[None].double(), b_t[None].double()                  # [1, (L,) D]
    if space == "z":
        norm = lerp(a64.norm(dim=-1, keepdim=True), b64.norm(dim=-1, keepdim=True), t)
        path = slerp(a64, b64, t) * norm                                # [T, D]
    else:
        path = lerp(a64, b64, t)                                        # [T, (L,) D]
    path = path.float()
    path[0], path[-1] = a_t, b_t    # the ends bit-exact, so they render as the inputs do
    return path
