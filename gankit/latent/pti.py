"""Pivotal Tuning Inversion (Roich et al. 2021, danielroich/PTI), batched: every image of a
batch gets its own low-rank change of the synthesis network, all tuned in one forward.

PTI inverts an image to a pivot latent (its W projection), then fine-tunes the generator on
that one image with the pivot fixed (350 steps of Adam at 3e-4, L2 + LPIPS with weights 1
and 1, an optional locality regulariser, and a stop once LPIPS is at 0.06), and keeps a
whole tuned generator per image, one image at a time. Here:

  - the pivot is any of gankit.latent.inversion's modes (`pti_pivot`: optimize, encode, hybrid);
  - the defaults tune 200 steps at lr 1e-3 instead of PTI's 350 at 3e-4 (BENCHMARKS.md,
    "Pivotal tuning": the same quality in two thirds of the time);
  - image k's generator is G with every modulated layer's weight W + U_k V_k (rank r,
    `pti_rank`; U [O, r] starts at 0, so tuning starts at G) and bias b + beta_k. These
    are the weights PTI's tuning changes that shape the image (the 3x3 convolutions and
    the ToRGB layers, with their biases); the affines, the const input and the noise
    strengths stay G's. `pti_rank` 0 is a full change of the same weights (PTI itself);
  - a batch of B images is B independent problems in one batched forward (the modulated
    convolution takes each sample's own change: gankit.models.stylegan2.LayerDelta): the
    loss is a sum of per-image losses, Adam is element-wise, each image's random draws come
    from (seed, image index), and an image stops on its own. So image k's result does not
    depend on the other images of its batch (up to float rounding of batched kernels).
  - tuning renders with G's const noise (PTI's 'const'), so a row needs no noise maps;
  - the change is stored as float16 (`DeltaLayout`: every layer's U, V and bias, in
    order, one flat vector a row), and the reconstruction is rendered from those float16
    values, so re-rendering a stored row gives back its reconstruction.

Losses per image: mse_weight * pixel MSE + perceptual_weight * feature distance (the
inversion's terms; PTI's weights are 1 and 1 with LPIPS), plus with `pti_locality` > 0
PTI's locality regulariser: a latent drawn at psi 0.5 moved to distance `pti_radius` from
the pivot must render as G renders it (the same two terms, weighted by `pti_locality`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from gankit.models.stylegan2 import LayerDelta, SynthesisNetwork

LAYER_NAMES = ("conv0", "conv1", "torgb")   # the modulated layers of a block, in order
DELTA_COLUMN = "pti_delta"                 # a PTI row's change: float16 [layout.size]
LAYOUT_KEY = b"gankit.pti"                 # its field metadata: the DeltaLayout as JSON
PIVOT_KEY = b"gankit.pti_pivot"            # and the pivot's mode, space and steps
PTI_STEPS_COLUMN = "pti_steps"             # int32 tuning steps run per image
PIVOT_PSNR_COLUMN = "pivot_psnr"           # float32 the pivot's own PSNR, before tuning


# ----------------------------------------------------------------------------------------
# What is tuned and how it is stored


@dataclass(frozen=True)
class LayerSpec:
    name: str          # 'b8.conv0', as in G.synthesis
    out_channels: int  # O
    in_channels: int   # I
    kernel: int        # k
    rank: int          # r of this layer (min(rank, O, I*k*k)); 0 = a full [O, I, k, k] change

    def shapes(self) -> list:
        """[(part, shape)] of one image's change of this layer, in storage order."""
        o, i, k = self.out_channels, self.in_channels, self.kernel
        if self.rank == 0:
            return [("full", (o, i, k, k)), ("bias", (o,))]
        return [("u", (o, self.rank)), ("v", (self.rank, i, k, k)), ("bias", (o,))]

    @property
    def size(self) -> int:
        return sum(math.prod(s) for _, s in self.shapes())


@dataclass(frozen=True)
class DeltaLayout:
    """The layers a PTI row changes, their shapes and rank: how its flat vector unpacks."""
    rank: int          # the requested rank (0 = full)
    layers: tuple      # LayerSpec per tuned layer, in forward order

    @property
    def size(self) -> int:
        """Values per image."""
        return sum(l.size for l in self.layers)

    @property
    def nbytes(self) -> int:
        """Bytes per image, stored as float16."""
        return 2 * self.size

    def to_json(self) -> str:
        return json.dumps({"rank": self.rank, "dtype": "float16", "noise": "const",
                           "layers": [[l.name, l.out_channels, l.in_channels, l.kernel,
                                       l.rank] for l in self.layers]})

    @classmethod
    def from_json(cls, text) -> "DeltaLayout":
        doc = json.loads(text)
        return cls(int(doc["rank"]), tuple(LayerSpec(str(n), int(o), int(i), int(k), int(r))
                                           for n, o, i, k, r in doc["layers"]))


def modulated_layers(G) -> list:
    """[(name, layer)] of G's modulated layers in forward order; ValueError when G's
    synthesis is not a StyleGAN2 one (the per-sample change enters its convolution)."""
    syn = G.synthesis
    if type(syn) is not SynthesisNetwork:
        raise ValueError(f"mode 'pti' tunes StyleGAN2's modulated convolutions; this "
                         f"generator's synthesis network is a {type(syn).__name__} from "
                         f"{type(syn).__module__}")
    out = []
    for block in syn.blocks():
        out += [(f"b{block.resolution}.{n}", getattr(block, n)) for n in LAYER_NAMES
                if hasattr(block, n)]
    return out


def delta_layout(G, rank: int) -> DeltaLayout:
    """The DeltaLayout of G at `rank` (0 = full): every modulated layer, each at rank
    min(rank, O, I*k*k)."""
    specs = []
    for name, layer in modulated_layers(G):
        o, i, k, _ = layer.weight.shape
        r = 0 if rank == 0 else min(rank, o, i * k * k)
        specs.append(LayerSpec(name, o, i, k, r))
    return DeltaLayout(rank, tuple(specs))


def generator_bytes(G) -> int:
    """G's parameters and buffers in bytes as they are held (fp32: 4 bytes a value)."""
    return sum(t.numel() * t.element_size() for t in list(G.parameters()) + list(G.buffers()))


# ----------------------------------------------------------------------------------------
# The per-image changes of a batch


@dataclass
class Deltas:
    """B images' changes: {layer name: LayerDelta with batched [B, ...] tensors}."""
    layout: DeltaLayout
    layers: dict

    @property
    def batch(self) -> int:
        return next(iter(self.layers.values())).bias.shape[0]

    def tensors(self) -> list:
        """Every tensor, in storage order (the optimiser's parameters)."""
        out = []
        for spec in self.layout.layers:
            d = self.layers[spec.name]
            out += list(d.weight) if isinstance(d.weight, tuple) else [d.weight]
            out.append(d.bias)
        return out

    def to_flat(self) -> np.ndarray:
        """float16 [B, layout.size]: each layer's U, V (or full change) and bias, in order."""
        parts = [t.detach().reshape(self.batch, -1).to("cpu", torch.float16)
                 for t in self.tensors()]
        return torch.cat(parts, dim=1).numpy()

    @classmethod
    def from_flat(cls, layout: DeltaLayout, flat, device="cpu") -> "Deltas":
        """float16 or float32 [B, layout.size] -> Deltas (float32 on `device`)."""
        flat = torch.from_numpy(np.array(flat, dtype=np.float32)).to(device)
        if flat.ndim != 2 or flat.shape[1] != layout.size:
            raise ValueError(f"a PTI change must be [B, {layout.size}] values, got "
                             f"{list(flat.shape)}")
        layers, s = {}, 0
        for spec in layout.layers:
            parts = {}
            for part, shape in spec.shapes():
                n = math.prod(shape)
                parts[part] = flat[:, s:s + n].reshape(-1, *shape)
                s += n
            weight = parts["full"] if spec.rank == 0 else (parts["u"], parts["v"])
            layers[spec.name] = LayerDelta(weight, parts["bias"])
        return cls(layout, layers)

    def rounded(self) -> "Deltas":
        """The values a row stores (float16), back as float32."""
        return Deltas.from_flat(self.layout, self.to_flat(), self.tensors()[0].device)

    def take(self, rows) -> "Deltas":
        """The changes of images `rows` (a list or index tensor), in that order."""
        idx = torch.as_tensor(rows, dtype=torch.long, device=self.tensors()[0].device)
        pick = lambda t: t.index_select(0, idx)                          # noqa: E731
        return Deltas(self.layout, {n: LayerDelta(
            tuple(pick(t) for t in d.weight) if isinstance(d.weight, tuple)
            else pick(d.weight), pick(d.bias)) for n, d in self.layers.items()})

    @classmethod
    def cat(cls, parts: list) -> "Deltas":
        """The changes of several batches (of one layout) as one batch, in order."""
        layers = {}
        for name, first in parts[0].layers.items():
            ds = [p.layers[name] for p in parts]
            weight = tuple(torch.cat([d.weight[j] for d in ds]) for j in range(2)) \
                if isinstance(first.weight, tuple) else torch.cat([d.weight for d in ds])
            layers[name] = LayerDelta(weight, torch.cat([d.bias for d in ds]))
        return cls(parts[0].layout, layers)

    def lerp(self, other: "Deltas", t: float) -> "Deltas":
        """(1 - t) * self + t * other in weight space, exactly: two rank-r changes make one
        of rank 2r (U = [(1 - t) U_a, t U_b], V = [V_a; V_b]); biases and full ones lerp."""
        layers = {}
        doubled = DeltaLayout(2 * self.layout.rank, tuple(
            replace(spec, rank=2 * spec.rank) for spec in self.layout.layers))
        for spec in self.layout.layers:
            a, b = self.layers[spec.name], other.layers[spec.name]
            if spec.rank == 0:
                weight = torch.lerp(a.weight, b.weight, t)
            else:
                weight = (torch.cat([(1 - t) * a.weight[0], t * b.weight[0]], dim=2),
                          torch.cat([a.weight[1], b.weight[1]], dim=1))
            layers[spec.name] = LayerDelta(weight, torch.lerp(a.bias, b.bias, t))
        return Deltas(doubled, layers)


def initial_deltas(G, layout: DeltaLayout, gens: list, device) -> Deltas:
    """The start of tuning: a change of 0 for every image. Rank r: U = 0 and V drawn
    N(0, 1/r) from each image's generator (so U's first steps move W by about Adam's step,
    as a full change does); full: 0."""
    from gankit.latent.inversion import per_image_randn
    b, layers = len(gens), {}
    for spec in layout.layers:
        o, i, k = spec.out_channels, spec.in_channels, spec.kernel
        bias = torch.zeros([b, o], device=device)
        if spec.rank == 0:
            weight = torch.zeros([b, o, i, k, k], device=device)
        else:
            v = per_image_randn(gens, (spec.rank, i, k, k), device) / math.sqrt(spec.rank)
            weight = (torch.zeros([b, o, spec.rank], device=device), v)
        layers[spec.name] = LayerDelta(weight, bias)
    return Deltas(layout, layers)


def render(G, ws: torch.Tensor, deltas: Optional[Deltas], noise_mode: str = "const",
           noises: Optional[list] = None):
    """ws [B, num_ws, w_dim] -> images [B, 3, H, W], image k through its own change (no
    change: G's synthesis as it is, whatever its kind)."""
    tuned = {} if deltas is None else {"deltas": deltas.layers}
    return G.synthesis(ws, noise_mode=noise_mode, noises=noises, **tuned)


# ----------------------------------------------------------------------------------------
# Tuning


@dataclass
class TuneResult:
    deltas: Deltas             # the float16-rounded changes, as a row stores them
    steps: torch.Tensor        # [B] int64 tuning steps run (early stop)
    history: list              # [steps] of [B] reconstruction losses, if recorded


def locality_loss(G, cfg, ws: torch.Tensor, deltas: Deltas, gens: list, feature_net):
    """PTI's locality regulariser, per image [B]: a latent drawn at psi 0.5 (from the image's
    generator), moved to distance pti_radius from the pivot along its direction, must render
    through the tuned change as G renders it (pixel MSE + feature distance, weighted by
    the inversion's loss, times pti_locality). No noise, as PTI."""
    from gankit.latent.inversion import per_image_randn, reconstruction_loss
    z = per_image_randn(gens, (G.z_dim,), ws.device)                     # [B, z_dim]
    with torch.no_grad():
        w = G.mapping.w_avg.lerp(G.mapping(z, None), 0.5)                # [B, num_ws, w_dim]
        direction = w - ws
        norm = direction.flatten(1).norm(dim=1).clamp_min(1e-8).reshape(-1, 1, 1)
        moved = ws + cfg.pti_radius * direction / norm
        before = render(G, moved, None, "none")
        before_features = feature_net.features(before) if feature_net is not None else None
    after = render(G, moved, deltas, "none")
    loss, _ = reconstruction_loss(cfg, after, before, feature_net, before_features)
    return cfg.pti_locality * loss


def tune(G, targets: torch.Tensor, ws: torch.Tensor, cfg, feature_net=None,
         indices: Optional[Sequence[int]] = None, record_history: bool = False,
         on_step: Optional[Callable[[int, int, float], None]] = None,
         target_feats: Optional[torch.Tensor] = None) -> TuneResult:
    """Tune one change per image so that G(ws_k; W + delta_k) reconstructs targets_k.

    targets [B, 3, H, W] in [-1, 1], ws [B, num_ws, w_dim] the pivots (fixed). `cfg`: a
    gankit.latent.inversion.InversionConfig (its pti_* fields and loss weights). Image k stops when
    its feature distance is at or below pti_stop (PTI's LPIPS threshold), before the step;
    from then on the batch's forward leaves it out. `target_feats`: the feature net's features
    of targets, when the caller has them already."""
    from gankit.latent.inversion import REPORT_EVERY, image_generators, reconstruction_loss
    B, device = targets.shape[0], targets.device
    indices = list(range(B)) if indices is None else [int(i) for i in indices]
    G = G.requires_grad_(False)
    gens = image_generators(cfg.seed, indices, stream=1)
    deltas = initial_deltas(G, delta_layout(G, cfg.pti_rank), gens, device)
    params = [t.requires_grad_(True) for t in deltas.tensors()]
    opt = torch.optim.Adam(params, lr=cfg.pti_lr, betas=tuple(cfg.betas), foreach=True)
    targets = targets.to(torch.float32)
    ws = ws.to(device, torch.float32)
    if target_feats is None:                     # [B, ...] the feature net's, or None
        target_feats = target_features(feature_net, targets)
    active = torch.ones(B, dtype=torch.bool, device=device)
    steps_run = torch.zeros(B, dtype=torch.int64)
    history = []
    for step in range(cfg.pti_steps):
        rows = active.nonzero()[:, 0]                # the images still tuning: only they run
        sub = deltas if len(rows) == B else deltas.take(rows)
        images = render(G, ws[rows], sub)                                # [b, 3, H, W]
        rec, dist = reconstruction_loss(cfg, images, targets[rows], feature_net,
                                        None if target_feats is None else target_feats[rows])
        if record_history:
            history.append(torch.full([B], float("nan")).index_put_((rows.cpu(),),
                                                                    rec.detach().cpu()))
        if on_step is not None and (step % REPORT_EVERY == 0 or step == cfg.pti_steps - 1):
            on_step(step + 1, cfg.pti_steps, float(rec.detach().mean()))
        go = torch.ones_like(rec, dtype=torch.bool)
        if cfg.pti_stop > 0 and dist is not None:           # PTI: stop before the step
            go = dist.detach() > cfg.pti_stop
            active[rows] = go
        if not bool(active.any()):
            break
        loss = rec
        if cfg.pti_locality > 0:
            loss = loss + locality_loss(G, cfg, ws[rows], sub, [gens[i] for i in rows.tolist()],
                                        feature_net)
        steps_run += active.cpu().long()
        opt.zero_grad(set_to_none=True)
        (loss * go).sum().backward()          # SUM: each image's own gradient, unscaled
        masked_step(opt, params, active)
    for p in params:
        p.requires_grad_(False)
    return TuneResult(deltas.rounded(), steps_run, history)


def masked_step(opt: torch.optim.Optimizer, params: list, active: torch.Tensor) -> None:
    """opt.step() for the active images ([B] bool) only: the others keep their values."""
    if bool(active.all()):
        opt.step()
        return
    frozen = [p.detach()[~active].clone() for p in params]
    opt.step()
    with torch.no_grad():
        for p, keep in zip(params, frozen):
            p[~active] = keep


def invert(G, targets: torch.Tensor, cfg, feature_net=None,
           init_ws: Optional[torch.Tensor] = None, indices: Optional[Sequence[int]] = None,
           w_std: Optional[float] = None, record_history: bool = False,
           on_step: Optional[Callable[[int, int, float], None]] = None):
    """Mode 'pti': the pivot (mode cfg.pti_pivot, gankit.latent.inversion.invert), then tuning.
    Returns an InversionResult whose ws are the pivots, `deltas` the stored changes, and
    whose reconstruction and metrics are the tuned generator's (G's const noise)."""
    from gankit.latent import inversion
    pivot_cfg = replace(cfg, mode=cfg.pti_pivot)
    total = (0 if pivot_cfg.mode == "encode" else pivot_cfg.steps) + cfg.pti_steps
    pivot_step = None if on_step is None else \
        (lambda s, n, loss: on_step(s, total, loss))
    tune_step = None if on_step is None else \
        (lambda s, n, loss: on_step(total - n + s, total, loss))
    pivot = inversion.invert(G, targets, pivot_cfg, feature_net=feature_net, init_ws=init_ws,
                             indices=indices, w_std=w_std, on_step=pivot_step)
    feats = target_features(feature_net, targets)        # once, for tuning and the metrics
    tuned = tune(G, targets, pivot.ws, cfg, feature_net, indices, record_history, tune_step,
                 feats)
    with torch.no_grad():
        images = render(G, pivot.ws, tuned.deltas)
    res = inversion.finish(G, cfg, pivot.ws, None, targets.to(torch.float32), feature_net,
                           feats, pivot.steps,
                           tuned.history, images=images)
    res.deltas, res.pti_steps, res.pivot_psnr = tuned.deltas, tuned.steps, pivot.psnr
    return res


@torch.no_grad()
def target_features(feature_net, targets: torch.Tensor):
    return None if feature_net is None else feature_net.features(targets.to(torch.float32))


# ----------------------------------------------------------------------------------------
# Rows: the one place that reads and writes a PTI row's change


def delta_field(layout: DeltaLayout):
    """The Parquet field of a PTI row's change: fixed_size_list<float16>[size], with the
    layout (layers, shapes, rank) as JSON in its metadata."""
    import pyarrow as pa
    return pa.field(DELTA_COLUMN, pa.list_(pa.float16(), layout.size),
                    metadata={LAYOUT_KEY: layout.to_json().encode()})


def delta_column(deltas: Deltas):
    """Deltas of B images -> a fixed_size_list<float16> column of B rows."""
    import pyarrow as pa
    flat = deltas.to_flat()                                              # [B, size] float16
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])


def row_columns(res) -> dict:
    """{column: array} of a PTI inversion result's own columns (the pivot goes in w | wp)."""
    import pyarrow as pa
    return {DELTA_COLUMN: delta_column(res.deltas),
            PTI_STEPS_COLUMN: pa.array(res.pti_steps.cpu().numpy().astype(np.int32)),
            PIVOT_PSNR_COLUMN: pa.array(res.pivot_psnr.cpu().numpy().astype(np.float32))}


def read_deltas(table, device="cpu") -> Optional[Deltas]:
    """The Deltas of a table's rows (float32 on `device`), or None without a PTI column."""
    if DELTA_COLUMN not in table.schema.names:
        return None
    layout = layout_of(table.schema.field(DELTA_COLUMN))
    return Deltas.from_flat(layout, flat_from_column(table.column(DELTA_COLUMN)), device)


def layout_of(field) -> DeltaLayout:
    """The DeltaLayout a PTI change column was written with (its field metadata)."""
    meta = field.metadata or {}
    if LAYOUT_KEY not in meta:
        raise ValueError(f"column {field.name!r} has no PTI layout in its metadata "
                         f"(not written by gankit invert --mode pti)")
    try:
        return DeltaLayout.from_json(meta[LAYOUT_KEY])
    except (ValueError, KeyError, TypeError) as e:      # JSON errors are ValueErrors
        raise ValueError(f"column {field.name!r}: its PTI layout metadata is damaged "
                         f"({type(e).__name__}: {e})") from None


def flat_from_column(col) -> np.ndarray:
    """A PTI change column (Array or ChunkedArray) -> float16 [B, size]."""
    import pyarrow as pa
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if col.null_count:
        raise ValueError(f"{DELTA_COLUMN}: {col.null_count} null rows")
    values = col.flatten().to_numpy(zero_copy_only=False)
    return values.astype(np.float16, copy=False).reshape(len(col), col.type.list_size)


def check_layout(layout: DeltaLayout, G) -> None:
    """ValueError unless G has the layers (names and shapes) the change was tuned on."""
    have = {name: tuple(layer.weight.shape[:3]) for name, layer in modulated_layers(G)}
    for spec in layout.layers:
        if have.get(spec.name) != (spec.out_channels, spec.in_channels, spec.kernel):
            raise ValueError(f"the PTI change was tuned on a generator whose layer "
                             f"{spec.name} is [{spec.out_channels}, {spec.in_channels}, "
                             f"{spec.kernel}x{spec.kernel}]; this one has "
                             f"{have.get(spec.name, 'no such layer')}")
