"""The report's statistics: rescoring, flip rates, label changes, correlations, the
conditional-editing criterion. Pure functions over arrays (no files, no drawing).

Edits and labels. A sample's label for attribute a is `logit_a > 0`. For the report, every
held-out sample is edited along boundary b *towards the other side of b's target attribute*:
a sample labelled negative is moved to +d, a positive one to -d (`direction` = +1 / -1).
- `flip_rates`: flip_rate = share of samples whose target label ends on the side it was moved
  to; others_changed = mean over the other attributes of the share of samples whose label
  changed; `changed` [B, A] = share of samples whose label of each attribute changed.
- `rescoring_matrix`: mean change of every attribute's classifier probability (sigmoid of the
  logit), signed by the edit direction, so row b reads "how much each attribute's probability
  moves per step towards b's positive side" (the diagonal is the target's own change).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from gankit.latent.logits import sigmoid

MIN_FLIP = 0.9          # an edit passes when it flips its target for this share of samples
MAX_CHANGED = 0.1       # a conditional edit passes when its conditions change for less


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Sigmoid, in float64 (gankit.latent.logits.sigmoid: no overflow for logits of either sign)."""
    return sigmoid(logits)


def edit_directions(before: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """before [N, A] logits, targets [B] attribute indices -> [B, N] in {+1, -1}: move each
    sample towards the other side of its target's label (negative -> +1)."""
    before = np.asarray(before)
    return np.where(before[:, list(targets)].T > 0, -1.0, 1.0)          # [B, N]


def _check(before: np.ndarray, after: np.ndarray) -> tuple:
    before, after = np.asarray(before), np.asarray(after)
    if before.ndim != 2 or after.ndim != 3 or after.shape[1:] != before.shape:
        raise ValueError(f"logits_before must be [N, A] and logits_after [B, N, A]; got "
                         f"{list(before.shape)} and {list(after.shape)}")
    return before, after


def rescoring_matrix(logits_before: np.ndarray, logits_after: np.ndarray,
                     direction: Optional[np.ndarray] = None) -> np.ndarray:
    """[N, A], [B, N, A] (, direction [B, N] of +-1) -> [B, A]: mean change of every
    attribute's probability per boundary, each sample's change multiplied by its direction."""
    before, after = _check(logits_before, logits_after)
    delta = probabilities(after) - probabilities(before)[None]         # [B, N, A]
    if direction is not None:
        direction = np.asarray(direction, dtype=np.float64)
        if direction.shape != after.shape[:2]:
            raise ValueError(f"direction must be [B, N] = {list(after.shape[:2])}, got "
                             f"{list(direction.shape)}")
        delta = delta * direction[:, :, None]
    return delta.mean(axis=1)


def label_changes(logits_before: np.ndarray, logits_after: np.ndarray) -> np.ndarray:
    """[N, A], [B, N, A] -> [B, A]: share of samples whose label (logit > 0) changed."""
    before, after = _check(logits_before, logits_after)
    return ((after > 0) != (before > 0)[None]).mean(axis=1)


def flip_rates(logits_before: np.ndarray, logits_after: np.ndarray, targets: Sequence[int],
               direction: Optional[np.ndarray] = None) -> dict:
    """Per boundary b with target attribute targets[b]:
    flip_rate [B]: share of samples whose target label ends on the side they were moved to
                   (direction default: the side opposite their label before);
    others_changed [B]: mean over the other attributes of the share whose label changed;
    changed [B, A]: share of samples whose label of each attribute changed."""
    before, after = _check(logits_before, logits_after)
    targets = np.asarray(list(targets), dtype=int)
    if targets.shape != (after.shape[0],):
        raise ValueError(f"targets must list one attribute per boundary ({after.shape[0]}), "
                         f"got {len(targets)}")
    if direction is None:
        direction = edit_directions(before, targets)
    rows = np.arange(len(targets))
    target_after = after[rows, :, targets]                              # [B, N]
    flip = ((target_after > 0) == (np.asarray(direction) > 0)).mean(axis=1)
    changed = label_changes(before, after)                              # [B, A]
    others = np.ones_like(changed, dtype=bool)
    others[rows, targets] = False
    others_changed = (changed * others).sum(axis=1) / max(1, before.shape[1] - 1)
    return {"flip_rate": flip, "others_changed": others_changed, "changed": changed}


def correlation_matrix(values: np.ndarray) -> np.ndarray:
    """[N, A] -> [A, A] Pearson correlation of the columns (constant columns give 0)."""
    x = np.asarray(values, dtype=np.float64)
    x = x - x.mean(axis=0)
    std = np.sqrt((x * x).mean(axis=0))
    safe = np.where(std > 0, std, 1.0)
    c = (x.T @ x) / len(x) / np.outer(safe, safe)
    c[std == 0, :] = 0.0
    c[:, std == 0] = 0.0
    return c


def correlation_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |a - b| over the off-diagonal entries of two [A, A] correlation matrices."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 2:
        raise ValueError(f"need two [A, A] matrices with A >= 2, got {list(a.shape)} and "
                         f"{list(b.shape)}")
    off = ~np.eye(len(a), dtype=bool)
    return float(np.abs(a - b)[off].mean())


def pair_passes(row: dict, min_flip: float = MIN_FLIP, max_changed: float = MAX_CHANGED) -> bool:
    """The conditional-editing criterion on one {flip_rate, condition_changed} row."""
    return not pair_failure(row, min_flip, max_changed)


def pair_failure(row: dict, min_flip: float = MIN_FLIP, max_changed: float = MAX_CHANGED) -> str:
    """Why a {flip_rate, condition_changed} row fails the conditional-editing criterion, in
    a few words ('' when it passes)."""
    fr, cc = row["flip_rate"], row["condition_changed"]
    if fr["conditional"] < min_flip:
        return f"the target flips for {fr['conditional']:.3f} < {min_flip:g} of the samples"
    if cc["conditional"] >= max_changed:
        return f"the condition still changes for {cc['conditional']:.3f} >= {max_changed:g}"
    if cc["conditional"] >= cc["plain"]:
        return (f"the condition changes no less than with the plain boundary "
                f"({cc['conditional']:.3f} vs {cc['plain']:.3f})")
    return ""


def per_side(entry: dict, fit: Optional[dict]) -> Optional[list]:
    """[positives, negatives] of a boundary: recorded by the fit, or, for an older fit with
    the extremes selection, its selected count halved."""
    if entry.get("n_per_side"):
        return list(entry["n_per_side"])
    if (fit or {}).get("selection") == "extremes" and entry.get("n_train") is not None:
        k = (entry["n_train"] + (entry.get("n_val") or 0)) // 2
        return [k, k]
    return None
