"""Unsupervised latent directions in W, and their auto-annotation by rescoring.

SeFa (Shen & Zhou 2021, closed-form factorisation): the style affine of every synthesis
layer maps w to per-channel styles, s = A w + b. Directions n that change the styles the most,
max ||A n||^2 subject to |n| = 1, are the top eigenvectors of A^T A. A stacks the chosen
layers' affine weights [C_in, w_dim] along rows; every row (one style channel; a "column"
in SeFa's transposed layout) is normalised to unit length, as the official code does
(`weight / norm(weight, axis=0)` on the [w_dim, C] transpose). Because of that
normalisation the equalised-lr `weight_gain` (a per-layer constant) cancels out.
The official code calls `np.linalg.eig` and keeps the order it returns; we use a symmetric
solver and sort by eigenvalue, descending.

GANSpace (Harkonen et al. 2020): PCA on sampled w; an edit moves w along component k by
sigma * std_k on a range of layers.

Annotation: edit K samples by +-sigma * std along each direction, classify both, and report
each classifier attribute's mean change of probability; a direction whose largest change
exceeds a threshold is named after it, e.g. "smile+ (0.41)". Each name goes to one direction
only (the one that changes it most), and a direction whose renders blow out at +-sigma
(pixels far outside [-1, 1]) is not named: the classifier scores the blow-out there.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
import torch

Layers = Union[str, Sequence[int], None]   # 'all' / None, or (start, stop) over ws indices

# ----------------------------------------------------------------------------------------
# Style affines and layer ranges


def style_affines(G) -> list:
    """[(ws_index, name, FullyConnectedLayer)] for every style affine, in forward order.
    As in NVIDIA's synthesis network, a block's torgb reads the ws index of the next block's
    conv0 (the last torgb reads the last index). A StyleGAN3 synthesis network lists its
    own (one affine per layer; its Fourier input's affine gives a transform, not styles)."""
    if hasattr(G.synthesis, "style_affines"):
        return G.synthesis.style_affines()
    out, w_idx = [], 0
    for block in G.synthesis.blocks():
        res = block.resolution
        convs = [n for n in ("conv0", "conv1") if hasattr(block, n)]
        for i, name in enumerate(convs):
            out.append((w_idx + i, f"b{res}.{name}", getattr(block, name).affine))
        if hasattr(block, "torgb"):
            out.append((w_idx + len(convs), f"b{res}.torgb", block.torgb.affine))
        w_idx += block.num_conv
    return out


def layer_range(layers: Layers, num_ws: int) -> tuple:
    """'all' / None -> (0, num_ws); (start, stop) checked against num_ws."""
    if layers is None or layers == "all":
        return (0, num_ws)
    start, stop = (int(v) for v in layers)
    if not 0 <= start < stop <= num_ws:
        raise ValueError(f"layers must be 'all' or (start, stop) with 0 <= start < stop <= "
                         f"{num_ws}, got {layers}")
    return (start, stop)


def parse_layers(text: str, num_ws: int) -> tuple:
    """'all' or 'start:stop' (command-line form) -> (start, stop)."""
    if text == "all":
        return (0, num_ws)
    try:
        start, stop = text.split(":")
        return layer_range((int(start), int(stop)), num_ws)
    except ValueError as e:
        raise ValueError(f"layers must be 'all' or 'start:stop', got {text!r} ({e})") from e


# ----------------------------------------------------------------------------------------
# SeFa


SEFA_TORGB = ("last", "all")


def sefa_affines(G, layers: Layers = "all", torgb: str = "last") -> list:
    """The style affines SeFa factorises, [(ws_index, name, layer)] in range `layers`.
    torgb='last' is genforce/sefa's rule (`factorize_weight`): on a skip generator it takes
    layer i's convolution for ws index i, and the output (last) torgb for the last index, so
    the intermediate torgbs, which share a ws index with the next block's conv0, are left out.
    torgb='all' adds them. A StyleGAN3 generator's own list is used as it is."""
    if torgb not in SEFA_TORGB:
        raise ValueError(f"torgb must be one of {SEFA_TORGB}, got {torgb!r}")
    start, stop = layer_range(layers, G.num_ws)
    affines = style_affines(G)
    if torgb == "last" and not hasattr(G.synthesis, "style_affines"):
        torgbs = [i for i, a in enumerate(affines) if a[1].endswith(".torgb")]
        affines = [a for i, a in enumerate(affines) if i not in torgbs[:-1]]
    return [a for a in affines if start <= a[0] < stop]


def sefa_matrix(G, layers: Layers = "all", torgb: str = "last") -> torch.Tensor:
    """A: the chosen affines' weights (weight * weight_gain, see sefa_affines), stacked along
    rows and row-normalised: float64 [sum C_in, w_dim]."""
    rows = [fc.weight.detach().double() * fc.weight_gain                # [C_in, w_dim]
            for _, _, fc in sefa_affines(G, layers, torgb)]
    A = torch.cat(rows, dim=0)
    return A / A.norm(dim=1, keepdim=True)


def sefa(G, layers: Layers = "all", top: Optional[int] = None, torgb: str = "last") -> tuple:
    """SeFa directions: eigenvalues [K] (descending) and unit eigenvectors [K, w_dim] of
    A^T A, from a symmetric eigen-solver."""
    A = sefa_matrix(G, layers, torgb).cpu()                                # [R, w_dim]
    values, vectors = torch.linalg.eigh(A.T @ A)                           # ascending
    order = torch.argsort(values, descending=True)[:top]
    return values[order].numpy(), vectors[:, order].T.contiguous().numpy()


# ----------------------------------------------------------------------------------------
# GANSpace PCA on sampled w


def sample_w(G, n: int, seed: int = 0, batch_size: int = 1024) -> np.ndarray:
    """n untruncated w [n, w_dim] (rows [0, n) of seed's z stream)."""
    from gankit.latent.latents import map_to_w, sample_z
    out = [map_to_w(G, sample_z(seed, range(s, min(n, s + batch_size)), G.z_dim))[:, 0]
           for s in range(0, n, batch_size)]
    return torch.cat(out).cpu().numpy()


def pca(w: np.ndarray, top: Optional[int] = None) -> tuple:
    """PCA of w [N, D]: components [K, D] (orthonormal rows, variance descending), their
    std [K] (sqrt of the explained variance), and the mean [D]."""
    w = np.asarray(w, np.float64)
    mean = w.mean(0)
    _, s, vt = np.linalg.svd(w - mean, full_matrices=False)               # s descending
    k = top or vt.shape[0]
    std = s[:k] / np.sqrt(max(1, w.shape[0] - 1))
    return vt[:k], std, mean


def pca_directions(G, n: int = 10000, top: Optional[int] = None, seed: int = 0) -> tuple:
    """GANSpace: components [K, w_dim] and std [K] of n sampled w."""
    vectors, std, _ = pca(sample_w(G, n, seed), top)
    return vectors, std


def direction_std(w: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Std of sampled w [N, D] projected on each unit direction [K, D] -> [K]: the edit scale
    that makes sigma = 1 a typical move, for SeFa as for PCA."""
    return (np.asarray(w, np.float64) @ np.asarray(vectors, np.float64).T).std(0, ddof=1)


# ----------------------------------------------------------------------------------------
# Edits and annotation


def edit_ws(ws: torch.Tensor, direction, strength, layers: Layers = "all") -> torch.Tensor:
    """ws [N, L, D] + strength [N] or scalar * direction [D] on layers [start, stop)."""
    start, stop = layer_range(layers, ws.shape[1])
    d = torch.as_tensor(np.asarray(direction), dtype=ws.dtype, device=ws.device)  # [D]
    s = torch.as_tensor(strength, dtype=ws.dtype, device=ws.device).reshape(-1, 1, 1)
    out = ws.clone()
    out[:, start:stop] += s * d
    return out


@dataclass
class AnnotateConfig:
    k: int = 64                    # samples edited per direction
    sigma: float = 3.0             # edit = +-sigma * std along the direction
    layers: Layers = "all"         # ws range the edit applies to
    threshold: float = 0.2         # min |mean change of probability| to name a direction
    max_clipped: float = 0.25      # max share of pixels outside [-1, 1] at the ends to name it
    seed: int = 0
    batch_size: int = 64


def _probabilities(G, classifier, ws: torch.Tensor, batch_size: int) -> np.ndarray:
    out = []
    with torch.no_grad():
        for s in range(0, ws.shape[0], batch_size):
            images = G.synthesis(ws[s:s + batch_size], noise_mode="const")
            out.append(torch.sigmoid(classifier(images)).double().cpu().numpy())
    return np.concatenate(out)                                             # [N, A]


def rescore_direction(G, classifier, ws: torch.Tensor, direction, scale: float,
                      cfg: AnnotateConfig) -> np.ndarray:
    """Mean change of every attribute's probability, p(w + s d) - p(w - s d) over the
    samples ws [K, L, D], s = sigma * scale -> [A]."""
    s = cfg.sigma * float(scale)
    plus = _probabilities(G, classifier, edit_ws(ws, direction, s, cfg.layers), cfg.batch_size)
    minus = _probabilities(G, classifier, edit_ws(ws, direction, -s, cfg.layers),
                           cfg.batch_size)
    return (plus - minus).mean(0)


def direction_name(delta: np.ndarray, names: Sequence[str], threshold: float) -> str:
    """'smile+ (0.41)' for the attribute with the largest |delta| if above threshold, else
    'unnamed (top: smile+ 0.08)'."""
    a = int(np.argmax(np.abs(delta)))
    label = f"{names[a]}{'+' if delta[a] > 0 else '-'}"
    if abs(delta[a]) >= threshold:
        return f"{label} ({abs(delta[a]):.2f})"
    return f"unnamed (top: {label} {abs(delta[a]):.2f})"


def unique_names(deltas: np.ndarray, names: Sequence[str], threshold: float,
                 usable: Optional[Sequence[bool]] = None) -> list:
    """deltas [K, A] -> K names, each label (attribute and sign) given to one direction
    only: strongest (direction, attribute) changes first, so a label goes to the direction
    that moves it most and a weaker one takes its next label above threshold, if any.
    Directions not `usable` (blown-out images) and those left without a label are
    'unnamed (...)'."""
    deltas = np.asarray(deltas, dtype=np.float64)                       # [K, A]
    usable = [True] * len(deltas) if usable is None else list(usable)
    label = lambda k, a: f"{names[a]}{'+' if deltas[k, a] > 0 else '-'}"  # noqa: E731
    got, taken = {}, set()
    for k, a in sorted(np.ndindex(*deltas.shape), key=lambda ka: -abs(deltas[ka])):
        if abs(deltas[k, a]) < threshold:
            break
        if usable[k] and k not in got and label(k, a) not in taken:
            got[k] = a
            taken.add(label(k, a))
    out = []
    for k, row in enumerate(deltas):
        top = int(np.argmax(np.abs(row)))
        if k in got:
            out.append(f"{label(k, got[k])} ({abs(row[got[k]]):.2f})")
        elif not usable[k]:
            out.append(f"unnamed (images blow out; top: {label(k, top)} {abs(row[top]):.2f})")
        else:
            out.append(f"unnamed (top: {label(k, top)} {abs(row[top]):.2f})")
    return out


def clipped_share(G, ws: torch.Tensor, direction, scale: float, cfg: AnnotateConfig,
                  n: int = 8) -> float:
    """Share of pixels outside [-1, 1] in the renders at both ends (+-sigma * scale) of
    the first n samples: a blown-out image is what the classifier scores there, not a
    face with the attribute changed."""
    s = cfg.sigma * float(scale)
    with torch.no_grad():
        ends = [G.synthesis(edit_ws(ws[:n], direction, t, cfg.layers), noise_mode="const")
                for t in (s, -s)]                                       # 2 x [n, C, H, W]
    return float(torch.cat(ends).abs().gt(1.0).float().mean())


def annotate(G, classifier, vectors: np.ndarray, scales: np.ndarray,
             cfg: AnnotateConfig = AnnotateConfig()) -> list:
    """One dict per direction: a unique name (unique_names), the attribute it moves most,
    every attribute's mean change of probability (ordered as classifier.attribute_names)
    and the share of clipped pixels at the sweep's ends."""
    from gankit.latent.latents import map_to_w, sample_z
    names = list(classifier.attribute_names)
    ws = map_to_w(G, sample_z(cfg.seed, range(cfg.k), G.z_dim))            # [K, L, D]
    deltas = np.stack([rescore_direction(G, classifier, ws, d, scale, cfg)
                       for d, scale in zip(vectors, scales)])           # [K, A]
    clipped = [clipped_share(G, ws, d, scale, cfg) for d, scale in zip(vectors, scales)]
    labels = unique_names(deltas, names, cfg.threshold,
                          [c <= cfg.max_clipped for c in clipped])
    out = []
    for delta, name, clip in zip(deltas, labels, clipped):
        a = int(np.argmax(np.abs(delta)))
        out.append({"name": name, "named": not name.startswith("unnamed"),
                    "top_attribute": names[a], "top_change": float(delta[a]),
                    "clipped": clip, "changes": {n: float(v) for n, v in zip(names, delta)}})
    return out


def sweep_images(G, direction, scale: float, strengths: Sequence[float], seeds: int = 4,
                 layers: Layers = "all", seed: int = 0) -> torch.Tensor:
    """Images of `seeds` samples (rows) at each strength * scale (columns):
    [seeds * len(strengths), C, H, W], row-major."""
    from gankit.latent.latents import map_to_w, sample_z
    ws = map_to_w(G, sample_z(seed, range(seeds), G.z_dim))                # [S, L, D]
    t = torch.as_tensor(list(strengths), dtype=ws.dtype) * float(scale)    # [T]
    ws = ws.repeat_interleave(len(t), dim=0)                               # [S*T, L, D]
    with torch.no_grad():
        return G.synthesis(edit_ws(ws, direction, t.repeat(seeds), layers), noise_mode="const")


# ----------------------------------------------------------------------------------------
# One call: find and annotate


@dataclass
class DirectionsConfig:
    method: str = "sefa"           # 'sefa' (closed form) or 'pca' (GANSpace)
    top: int = 10                  # directions kept
    layers: Layers = "all"         # SeFa: affines used; both: layers the edits apply to
    torgb: str = "last"            # SeFa: 'last' torgb only (genforce/sefa) or 'all' of them
    n_samples: int = 10000         # w samples for PCA and for every direction's std
    seed: int = 0
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)


@dataclass
class DirectionSet:
    method: str
    layers: tuple                  # (start, stop) ws range
    vectors: np.ndarray            # [K, w_dim] unit rows
    values: np.ndarray             # [K] SeFa eigenvalues, or PCA variances
    std: np.ndarray                # [K] std of sampled w along each direction (edit scale)
    annotations: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {"method": self.method, "layers": list(self.layers),
                "directions": [dict(index=i, value=float(v), std=float(s), **ann)
                               for i, (v, s, ann) in enumerate(
                                   zip(self.values, self.std, self.annotations))]}


def find_directions(G, classifier=None, cfg: DirectionsConfig = DirectionsConfig()) -> DirectionSet:
    """SeFa or PCA directions with their std, annotated when a classifier is given."""
    if cfg.method not in ("sefa", "pca"):
        raise ValueError(f"method must be 'sefa' or 'pca', got {cfg.method!r}")
    layers = layer_range(cfg.layers, G.num_ws)
    w = sample_w(G, cfg.n_samples, cfg.seed)                               # [N, w_dim]
    if cfg.method == "sefa":
        values, vectors = sefa(G, layers, cfg.top, cfg.torgb)
    else:
        vectors, std, _ = pca(w, cfg.top)
        values = std ** 2
    out = DirectionSet(cfg.method, layers, vectors, values, direction_std(w, vectors))
    if classifier is not None:
        ann = AnnotateConfig(**{**asdict(cfg.annotate), "layers": layers})
        out.annotations = annotate(G, classifier, vectors, out.std, ann)
    return out
