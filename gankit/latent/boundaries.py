"""InterFaceGAN semantic boundaries: a linear SVM separating latents by an attribute score.

Facts from InterFaceGAN (genforce/interfacegan, `train_boundary`): keep the top and bottom 2% of
samples by score, split each class 70/30 into train/val, fit `SVC(kernel='linear')`, keep only the
unit normal. What gankit does differently, and why:

- The intercept is KEPT: the signed distance d(x) = x.n + intercept is what `edit(...,
  mode='to_distance')` and the accuracies use; dropping it moves the decision surface through the
  origin, which is not where the attribute flips (W, for example, is centred on w_avg, not 0).
- The solver is chosen for speed at equal accuracy ('auto', see `resolve_solver`): sklearn's
  LinearSVC ('liblinear') on the near-separable extremes, LogisticRegression ('logistic') on
  every sample of a large fit in the isotropic Z, and our own finite Newton method for the
  L2-loss linear SVM ('newton') on every sample of the badly conditioned W / W+, where
  first-order solvers crawl. 'svc' is the InterFaceGAN reference, SVC(kernel='linear') on
  the raw latents, exactly. The solvers live in gankit.latent.solvers.
- Conditional boundaries are computed with a rank-revealing projection
  (gankit.latent.solvers.conditional_normal), so near-collinear conditions do not break it.

This module holds the boundary record and its file (`Boundary`), the selection of training
samples, and `fit_boundary` / `condition_boundary`, which put the solvers to use.

A boundary may also come from a published direction file (gankit.loading.published): its `scale`
(latent length of one unit of strength), `anchor_layer` and `source` record how the file's
editing formula maps onto gankit's edit modes (gankit.latent.editing) and where it came from.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from gankit import atomic
from gankit.latent.solvers import SOLVERS, conditional_normal, fit_linear, resolve_solver

SPACES = ("z", "w", "wp")
SELECTIONS = ("extremes", "threshold")  # InterFaceGAN's top/bottom by rank, or every sample
FORMAT_VERSION = 1         # version of the .npz layout written by Boundary.save
FORMAT_VERSION_IMPORTED = 2  # ... when it carries scale / anchor_layer / source (older
                             # gankit refuses such a file instead of editing it wrongly)


# ----------------------------------------------------------------------------------------
# The boundary


@dataclass
class Boundary:
    """A hyperplane in one latent space: d(x) = x.normal + intercept, d(x) > 0 => positive."""
    attribute: str                          # Attribute name, e.g. 'smile'.
    space: str                              # 'z', 'w' or 'wp'.
    normal: np.ndarray                      # [D] unit-norm float32; D = (stop-start)*w_dim for 'wp'.
    intercept: float                        # Offset of the signed distance (in latent units).
    layers: Optional[tuple] = None          # 'wp' only: W+ layer range [start, stop) fitted on.
    conditions: tuple = ()                  # Attributes projected out of the normal.
    metrics: dict = field(default_factory=dict)  # Fit metrics (accuracies, sizes, solver, time).
    center: Optional[np.ndarray] = None     # [D] mean of the latents the SVM was fitted on.
    scale: float = 1.0                      # Latent length of one unit of strength: 1 when
                                            # fitted; a published direction's norm, or a
                                            # GANSpace component's std (gankit.loading.published).
    anchor_layer: Optional[int] = None      # 'w' on W+: measure d(x) on this W+ layer and move
                                            # every edited layer alike (None: each its own).
    source: dict = field(default_factory=dict)  # Where an imported direction came from.

    def __post_init__(self):
        if self.space not in SPACES:
            raise ValueError(f"Boundary.space must be one of {SPACES}, got {self.space!r}")
        self.normal = np.asarray(self.normal, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(self.normal.astype(np.float64)))
        if not abs(norm - 1.0) < 1e-4:
            raise ValueError(f"Boundary.normal must be unit-norm, got norm {norm:.6g}")
        self.intercept = float(self.intercept)
        self.conditions = tuple(str(c) for c in self.conditions)
        if self.center is not None:
            self.center = np.asarray(self.center, dtype=np.float32).reshape(-1)
            if self.center.shape != self.normal.shape:
                raise ValueError(f"Boundary.center must be [{self.dim}], got {self.center.shape}")
        self.layers = _check_layers(self.space, self.layers, self.dim)
        self.scale = float(self.scale)
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"Boundary.scale must be a positive finite number, got {self.scale}")
        if self.anchor_layer is not None:
            if self.space != "w" or int(self.anchor_layer) < 0:
                raise ValueError(f"anchor_layer applies to 'w' boundaries as a W+ layer index "
                                 f">= 0, got {self.anchor_layer} for {self.space!r}")
            self.anchor_layer = int(self.anchor_layer)
        self.source = dict(self.source or {})

    @property
    def imported(self) -> bool:
        """Carries more than a fitted boundary: scale, anchor layer or a source."""
        return self.scale != 1.0 or self.anchor_layer is not None or bool(self.source)

    @property
    def dim(self) -> int:
        return int(self.normal.size)

    @property
    def w_dim(self) -> int:
        """Width of one latent vector: D for 'z'/'w', D / (stop - start) for 'wp'."""
        if self.layers is None:
            return self.dim
        return self.dim // (self.layers[1] - self.layers[0])

    def save(self, path) -> None:
        """Write a .npz holding only numeric/string arrays (metrics as JSON text): loading it never
        unpickles. `path` is a local path (written atomically) or a binary file object."""
        arrays = dict(
            format_version=np.int64(FORMAT_VERSION),
            attribute=np.str_(self.attribute), space=np.str_(self.space),
            normal=self.normal, intercept=np.float64(self.intercept),
            layers=np.asarray(self.layers if self.layers else [], dtype=np.int64),
            conditions=np.asarray(self.conditions, dtype=np.str_).reshape(-1),
            metrics=np.str_(json.dumps(_jsonable(self.metrics), sort_keys=True)),
            center=self.center if self.center is not None else np.zeros(0, np.float32))
        if self.imported:
            arrays.update(format_version=np.int64(FORMAT_VERSION_IMPORTED),
                          scale=np.float64(self.scale),
                          anchor_layer=np.int64(-1 if self.anchor_layer is None
                                                else self.anchor_layer),
                          source=np.str_(json.dumps(_jsonable(self.source), sort_keys=True)))
        if hasattr(path, "write"):
            np.savez(path, **arrays)
            return
        with atomic.replacing(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path) -> "Boundary":
        """Read a file written by `save` (never with allow_pickle)."""
        with np.load(path, allow_pickle=False) as f:
            missing = set(_FILE_KEYS) - set(f.files)
            if missing:
                raise ValueError(f"not a gankit Boundary file: missing {sorted(missing)}")
            a = {key: f[key] for key in _FILE_KEYS}  # raises on object arrays (no unpickling)
            version = int(a["format_version"])
            if version not in (FORMAT_VERSION, FORMAT_VERSION_IMPORTED):
                raise ValueError(f"unsupported Boundary format_version {version}")
            more = _imported_fields(f) if version == FORMAT_VERSION_IMPORTED else {}
        return cls(attribute=str(a["attribute"]), space=str(a["space"]), normal=a["normal"],
                   intercept=float(a["intercept"]), layers=tuple(int(v) for v in a["layers"]) or None,
                   conditions=tuple(str(c) for c in a["conditions"]),
                   metrics=json.loads(str(a["metrics"])),
                   center=a["center"] if a["center"].size else None, **more)


_FILE_KEYS = ("format_version", "attribute", "space", "normal", "intercept", "layers",
              "conditions", "metrics", "center")
_IMPORTED_KEYS = ("scale", "anchor_layer", "source")


def _imported_fields(f) -> dict:
    """scale, anchor_layer and source of a format-2 file (an imported direction)."""
    missing = set(_IMPORTED_KEYS) - set(f.files)
    if missing:
        raise ValueError(f"not a gankit Boundary file: missing {sorted(missing)}")
    anchor = int(f["anchor_layer"])
    return dict(scale=float(f["scale"]), anchor_layer=None if anchor < 0 else anchor,
                source=json.loads(str(f["source"])))


def _check_layers(space: str, layers, dim: int) -> Optional[tuple]:
    if space != "wp":
        if layers is not None:
            raise ValueError(f"layers apply to space 'wp' only, got layers={layers} for {space!r}")
        return None
    if layers is None or len(layers) != 2:
        raise ValueError(f"a 'wp' boundary needs layers=(start, stop), got {layers}")
    start, stop = int(layers[0]), int(layers[1])
    if not 0 <= start < stop or dim % (stop - start):
        raise ValueError(f"layers={layers} do not fit a 'wp' normal of {dim} dims")
    return (start, stop)


def _jsonable(obj):
    """Metrics to plain JSON types (numpy scalars -> Python, NaN -> None)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.generic,)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def signed_distance_flat(x: np.ndarray, normal: np.ndarray, intercept: float,
                         chunk: int = 65536) -> np.ndarray:
    """d(x) = x.n + intercept for flat latents x [N, D] -> float64 [N], in chunks."""
    n64 = normal.astype(np.float64)
    out = np.empty(len(x), dtype=np.float64)
    for s in range(0, len(x), chunk):
        out[s:s + chunk] = np.asarray(x[s:s + chunk], dtype=np.float64) @ n64 + intercept
    return out


# ----------------------------------------------------------------------------------------
# W+ slices


def flatten_wp(ws, layers: Optional[tuple] = None):
    """ws [N, L, D] -> [N, (stop - start) * D], the layers [start, stop) (default all)."""
    if ws.ndim != 3:
        raise ValueError(f"W+ latents must be [N, L, D], got shape {tuple(ws.shape)}")
    start, stop = layers if layers is not None else (0, ws.shape[1])
    if not 0 <= start < stop <= ws.shape[1]:
        raise ValueError(f"layers must satisfy 0 <= start < stop <= {ws.shape[1]}, got {layers}")
    return ws[:, start:stop].reshape(ws.shape[0], -1)


# ----------------------------------------------------------------------------------------
# Selection of training samples


def select_extremes(scores: np.ndarray, fraction: float = 0.02,
                    count: Optional[int] = None) -> tuple:
    """InterFaceGAN's selection: the `count` (default floor(fraction * N)) highest-scoring samples
    are positives, the `count` lowest negatives. Returns (pos_idx, neg_idx), int64 [count] each,
    most extreme first; ties are broken by index (stable sort) so the result is deterministic."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)  # [N]
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or inf")
    n = scores.size
    if count is None:
        if not 0 < fraction <= 0.5:
            raise ValueError(f"fraction must be in (0, 0.5], got {fraction}")
        count = int(math.floor(fraction * n + 1e-9))
    if not 1 <= count <= n // 2:
        raise ValueError(f"need 1 <= count <= N/2 = {n // 2} samples per class, got {count}")
    order = np.argsort(scores, kind="stable")  # ascending
    return order[::-1][:count].copy(), order[:count].copy()


def _split(idx: np.ndarray, val_fraction: float, rng: np.random.Generator) -> tuple:
    """Shuffle one class and cut it into (train, val)."""
    idx = rng.permutation(idx)
    n_val = int(math.floor(len(idx) * val_fraction + 1e-9))
    if n_val >= len(idx):
        raise ValueError(f"val_fraction={val_fraction} leaves no training samples "
                         f"out of {len(idx)} per class")
    return idx[n_val:], idx[:n_val]


# ----------------------------------------------------------------------------------------
# Fitting


def _flat_latents(latents: np.ndarray, space: str, layers) -> tuple:
    """latents -> (flat [N, D] array, layers) for the given space."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    if space == "wp" and latents.ndim == 3:
        layers = tuple(layers) if layers is not None else (0, latents.shape[1])
        return flatten_wp(latents, layers), layers
    if latents.ndim != 2:
        raise ValueError(f"latents must be [N, D] (or [N, L, D] for 'wp'), got {latents.shape}")
    if space == "wp" and layers is None:
        raise ValueError("flattened 'wp' latents need layers=(start, stop)")
    return latents, (tuple(layers) if layers is not None else None)


def _accuracy(d: np.ndarray, positive: np.ndarray) -> Optional[float]:
    return float(np.mean((d > 0) == positive)) if len(d) else None


@dataclass
class _Selection:
    """The training set: the positives and negatives, each class split into train/val."""
    pos: np.ndarray        # [K] indices of the positives (top-scored, or score > threshold)
    neg: np.ndarray        # [K'] indices of the negatives
    train: np.ndarray      # [n_train] indices, positives first
    y: np.ndarray          # [n_train] +1 / -1 labels of `train`
    val: np.ndarray        # [n_val] indices, positives first
    val_positive: np.ndarray  # [n_val] bool labels of `val`


def select_threshold(scores: np.ndarray, threshold: float = 0.0) -> tuple:
    """Every sample, labelled by its score: (pos_idx where score > threshold, neg_idx)."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)  # [N]
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or inf")
    positive = scores > threshold
    if min(positive.sum(), (~positive).sum()) < 2:
        raise ValueError(f"selection 'threshold' needs >= 2 samples on each side of "
                         f"{threshold:g}; got {positive.sum()} above, {(~positive).sum()} not")
    return np.nonzero(positive)[0], np.nonzero(~positive)[0]


def _select(scores: np.ndarray, fraction: float, count: Optional[int], val_fraction: float,
            seed: int, selection: str, threshold: float) -> _Selection:
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    pos, neg = (select_extremes(scores, fraction, count) if selection == "extremes"
                else select_threshold(scores, threshold))
    rng = np.random.default_rng(seed)
    pos_train, pos_val = _split(pos, val_fraction, rng)
    neg_train, neg_val = _split(neg, val_fraction, rng)
    return _Selection(
        pos=pos, neg=neg, train=np.concatenate([pos_train, neg_train]),
        y=np.concatenate([np.ones(len(pos_train)), -np.ones(len(neg_train))]),
        val=np.concatenate([pos_val, neg_val]),
        val_positive=np.arange(len(pos_val) + len(neg_val)) < len(pos_val))


def _fit_metrics(flat: np.ndarray, scores: np.ndarray, sel: _Selection, normal: np.ndarray,
                 intercept: float, threshold: float) -> dict:
    """Accuracies of the rule d(x) > 0: on train/val (labels by rank), on all samples and on
    the samples not selected (labels score > threshold)."""
    d_all = signed_distance_flat(flat, normal, intercept)                # [N]
    selected = np.zeros(len(flat), dtype=bool)
    selected[np.concatenate([sel.pos, sel.neg])] = True
    label_all = scores > threshold
    return dict(
        train_accuracy=_accuracy(d_all[sel.train], sel.y > 0),
        val_accuracy=_accuracy(d_all[sel.val], sel.val_positive),
        all_accuracy=_accuracy(d_all, label_all),
        remaining_accuracy=_accuracy(d_all[~selected], label_all[~selected]),
        threshold=float(threshold), n_train=int(len(sel.train)), n_val=int(len(sel.val)),
        n_selected=int(selected.sum()), n_total=int(len(flat)))


def fit_boundary(latents: np.ndarray, scores: np.ndarray, attribute: str, space: str,
                 fraction: float = 0.02, count: Optional[int] = None,
                 val_fraction: float = 0.3, seed: int = 0, solver: str = "auto",
                 C: float = 1.0, layers: Optional[tuple] = None, threshold: float = 0.0,
                 device: str = "cpu", selection: str = "extremes") -> Boundary:
    """Fit an InterFaceGAN boundary for one attribute.

    latents: [N, D] for 'z'/'w'; for 'wp' [N, L, D] (the slice `layers`, default all, is
        flattened) or already flattened [N, (stop-start)*D] with `layers` given.
    scores: [N] attribute scores (logits by default, see `threshold`).
    Selection 'extremes' (InterFaceGAN): top/bottom `fraction` (or `count`) by score are
    labelled positive/negative by rank. Selection 'threshold': every sample, labelled
    score > threshold; the normal then follows the decision surface where labels actually
    change, which is what conditional editing needs where that surface is curved. Either way
    each class is shuffled (seed) and split (1 - val_fraction)/val_fraction.
    The SVM's intercept is kept; normal and intercept are scaled so that |normal| = 1, which
    makes d(x) = x.n + intercept a signed Euclidean distance in the latent space.
    Metrics: train/val accuracy on the selected samples (labels as selected); all_accuracy on
    every sample and remaining_accuracy on the samples not selected, labelled
    score > threshold (0 for logits; pass 0.5 for probabilities). InterFaceGAN's
    "remaining" accuracy labels by the midrange (max + min) / 2 of the scores instead.
    solver: 'auto' (the fastest for the selection and space: see `resolve_solver`), 'newton'
    (ours), 'liblinear' (LinearSVC), 'logistic' (LogisticRegression) or 'svc' (InterFaceGAN's
    SVC(kernel='linear'), exactly); C: the penalty; device: where 'newton' runs.
    """
    start = time.perf_counter()
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    flat, layers = _flat_latents(np.asarray(latents), space, layers)
    if len(flat) != len(scores):
        raise ValueError(f"latents have {len(flat)} rows but scores have {len(scores)}")
    if C <= 0:
        raise ValueError(f"C must be > 0, got {C}")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    try:
        sel = _select(scores, fraction, count, val_fraction, seed, selection, threshold)
    except ValueError as e:
        raise ValueError(f"{attribute}: {e}") from None
    X = np.asarray(flat[sel.train], dtype=np.float32)                   # [n_train, D]
    if not np.all(np.isfinite(X)):
        raise ValueError("latents contain NaN or inf")
    solver = resolve_solver(solver, selection, space, len(X), X.shape[1])

    w, b = fit_linear(X, sel.y, solver, C, device)
    norm = float(np.linalg.norm(w))
    if not norm > 0:
        raise ValueError(f"the SVM found no direction for {attribute!r} (|w| = 0)")
    fit_seconds = time.perf_counter() - start
    metrics = _fit_metrics(flat, scores, sel, w / norm, b / norm, threshold)
    metrics.update(solver=solver, C=float(C), fit_seconds=fit_seconds,
                   seconds=time.perf_counter() - start)
    return Boundary(attribute=attribute, space=space, normal=w / norm, intercept=b / norm,
                    layers=layers, metrics=metrics, center=X.mean(axis=0, dtype=np.float64))


# ----------------------------------------------------------------------------------------
# Conditional boundaries and disentanglement



def _check_compatible(boundaries: Sequence[Boundary]) -> None:
    first = boundaries[0]
    for other in boundaries[1:]:
        if (other.space, other.layers, other.dim) != (first.space, first.layers, first.dim):
            raise ValueError(
                f"boundaries {first.attribute!r} ({first.space}, layers {first.layers}, "
                f"{first.dim} dims) and {other.attribute!r} ({other.space}, layers "
                f"{other.layers}, {other.dim} dims) are not in the same space")


def condition_boundary(boundary: Boundary, others: Sequence[Boundary],
                       rcond: float = 1e-6) -> Boundary:
    """A new boundary whose normal is orthogonal to every boundary in `others`.

    Intercept: the new hyperplane passes through p, the point of the old hyperplane nearest the
    centre of the fitted samples (p = center - d(center) n; the origin if `center` is unknown),
    so it cuts the fitted population where the primal did. Condition a primal boundary on all
    its conditions at once: conditioning an already-conditioned boundary again could bring
    back components of the first conditions, so it is refused."""
    if not others:
        raise ValueError("condition_boundary needs at least one other boundary")
    if boundary.conditions:
        raise ValueError(f"boundary {boundary.attribute!r} is already conditioned on "
                         f"{boundary.conditions}; condition the primal on all attributes at once")
    _check_compatible([boundary, *others])
    n = boundary.normal.astype(np.float64)
    n_new = conditional_normal(n, np.stack([o.normal for o in others]), rcond)
    center = boundary.center.astype(np.float64) if boundary.center is not None else np.zeros_like(n)
    anchor = center - (center @ n + boundary.intercept) * n               # on the old hyperplane
    metrics = dict(boundary.metrics, cosine_to_primal=float(n @ n_new))
    return Boundary(attribute=boundary.attribute, space=boundary.space, normal=n_new,
                    intercept=-float(anchor @ n_new), layers=boundary.layers,
                    conditions=tuple(o.attribute for o in others), metrics=metrics,
                    center=boundary.center)


def cosine_matrix(boundaries: Sequence[Boundary]) -> np.ndarray:
    """Cosine similarity between boundary normals: [K, K] float64 (InterFaceGAN's measure)."""
    if not boundaries:
        raise ValueError("cosine_matrix needs at least one boundary")
    _check_compatible(boundaries)
    normals = np.stack([b.normal.astype(np.float64) for b in boundaries])   # [K, D]
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return normals @ normals.T
