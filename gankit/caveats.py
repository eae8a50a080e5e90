"""Warnings for results that mean little: one sentence each, printed by the stages and shown
in the report.

A number computed from a handful of samples reads the same as one from a million. These
checks say when it should not be trusted:
- a boundary whose selection has fewer than MIN_PER_SIDE samples on its smaller side (its
  val accuracy rests on a few rows; InterFaceGAN keeps 10,000 per side);
- a boundary whose val accuracy is near chance: less than halfway from the majority share
  (what always guessing the larger side scores) to 1;
- separability whose SVMs saw fewer than MIN_SEPARABILITY_KEPT samples per attribute: with
  few samples per latent dimension any labelling is linearly separable, so the score drops
  towards 1 whatever the space (StyleGAN keeps 100,000);
- PPL over fewer than MIN_PPL_PATHS paths: the mean of a heavy-tailed distance (StyleGAN
  uses 100,000 paths).
"""
from __future__ import annotations

from typing import Optional, Sequence

MIN_PER_SIDE = 100             # selected samples on the smaller side of a boundary
MIN_SKILL = 0.5                # (accuracy - chance) / (1 - chance) below this: near chance
MIN_SEPARABILITY_KEPT = 5000   # SVM samples per attribute (about 10 per dimension of 512-d W)
MIN_PPL_PATHS = 1000


class CaveatWarning(UserWarning):
    """A result computed on too little to mean much (the stages warn with this)."""


def skill(accuracy: float, chance: float) -> float:
    """How far accuracy is from chance towards 1: 0 at chance, 1 when perfect."""
    return (accuracy - chance) / max(1e-12, 1.0 - chance)


def boundary_caveats(name: str, per_side: Optional[Sequence[int]],
                     val_accuracy: Optional[float], val_fraction: float = 0.3) -> list:
    """Sentences for one boundary: per_side = selected (positives, negatives)."""
    out = []
    if per_side:
        small = min(per_side)
        if small < MIN_PER_SIDE:
            out.append(f"{name} was fitted on {small} samples on its smaller side (fewer than "
                       f"{MIN_PER_SIDE}): its val accuracy rests on about "
                       f"{max(1, round(small * val_fraction))} rows of that side.")
    if val_accuracy is not None and per_side and sum(per_side):
        chance = max(per_side) / sum(per_side)
        if skill(val_accuracy, chance) < MIN_SKILL:
            out.append(f"{name}: val accuracy {val_accuracy:.3f} is near chance "
                       f"({chance:.3f}, always guessing the larger side): the boundary "
                       f"barely separates the attribute.")
    return out


def separability_caveats(separability: Optional[dict]) -> list:
    """Sentences for {space: linear_separability result}."""
    out = []
    for space, s in (separability or {}).items():
        kept = (s or {}).get("num_kept")
        if kept is not None and kept < MIN_SEPARABILITY_KEPT:
            out.append(f"Separability in {space.upper()} fitted its SVMs on {kept} samples "
                       f"per attribute (fewer than {MIN_SEPARABILITY_KEPT:,}): with few samples "
                       f"per latent dimension any labelling separates, so the score tends to "
                       f"1 in every space (StyleGAN keeps 100,000).")
    return out


def ppl_caveats(ppl: Optional[dict]) -> list:
    """Sentences for {space: ppl_summary result}."""
    out = []
    for space, p in (ppl or {}).items():
        n = (p or {}).get("n")
        if n is not None and n < MIN_PPL_PATHS:
            out.append(f"PPL in {space.upper()} averages {n} paths (fewer than "
                       f"{MIN_PPL_PATHS:,}; StyleGAN uses 100,000): the mean of a "
                       f"heavy-tailed distance, expect it to move with the seed.")
    return out
