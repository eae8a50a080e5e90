"""Distribution and disentanglement metrics (pure numpy / torch)."""
from __future__ import annotations

import numpy as np


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets [N, F]:
    |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)).
    Tr((S_a S_b)^(1/2)) is the sum of square roots of the eigenvalues of S_a S_b, which are
    real and non-negative for covariance matrices (tiny negative rounding is clipped)."""
    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    eig = np.linalg.eigvals(cov_a @ cov_b)
    tr_sqrt = np.sqrt(np.clip(eig.real, 0, None)).sum()
    return float(np.square(mu_a - mu_b).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_sqrt)
