"""Writers of published direction files in their projects' layouts, with random values at a
small width (the real ones are [1, 512]):

- InterFaceGAN `boundaries/*.npy`: np.save of a float32 [1, D] unit normal;
- e4e `editings/interfacegan_directions/*.pt`: torch.save of a float32 [1, D] tensor (or
  [1, L, D], as its pose.pt);
- GANSpace `editings/ganspace_pca/*.pt`: torch.save of {mean [1, D], comp [K, 1, D] (rows
  orthonormal, as PCA's), std [K] (positive, decreasing)}.
"""
from __future__ import annotations

import numpy as np
import torch


def random_direction(width: int, seed: int = 0, norm: float = 1.0) -> np.ndarray:
    """[1, width] float32 of length `norm`."""
    v = np.random.default_rng(seed).standard_normal((1, width))
    return (v / np.linalg.norm(v) * norm).astype(np.float32)


def write_interfacegan_npy(path, v: np.ndarray) -> None:
    np.save(str(path), np.asarray(v, dtype=np.float32))


def write_e4e_pt(path, v: np.ndarray) -> None:
    torch.save(torch.from_numpy(np.asarray(v, dtype=np.float32)), str(path))


def random_ganspace(width: int, components: int, seed: int = 0) -> dict:
    """GANSpace's dict: mean [1, D], comp [K, 1, D] orthonormal rows, std [K] decreasing."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((width, components)))       # [D, K]
    std = np.sort(rng.uniform(0.5, 3.0, components))[::-1]
    return {"mean": torch.from_numpy(rng.standard_normal((1, width)).astype(np.float32)),
            "comp": torch.from_numpy(q.T.reshape(components, 1, width).astype(np.float32)),
            "std": torch.from_numpy(std.astype(np.float32).copy())}


def write_ganspace_pt(path, pca: dict) -> None:
    torch.save(pca, str(path))
