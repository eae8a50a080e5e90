"""Classifier logits to probabilities: the one sigmoid gankit uses for numpy arrays."""
from __future__ import annotations

import numpy as np


def sigmoid(logits) -> np.ndarray:
    """1 / (1 + exp(-x)) in float64, any shape, without overflow for large |x|.

    exp is only ever taken of -|x| <= 0, so it cannot overflow (1 / (1 + exp(-x)) warns
    below x = -709); for x < 0 the form exp(x) / (1 + exp(x)) keeps the relative precision
    of tiny probabilities, which 0.5 (1 + tanh(x / 2)) rounds to 0 below about x = -38."""
    x = np.asarray(logits, dtype=np.float64)
    e = np.exp(-np.abs(x))                           # in (0, 1]: no overflow
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
