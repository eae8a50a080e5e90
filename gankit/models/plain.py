"""Generators users bring: a plain z -> image model, and a conditional one bound to a class.

A plain generator (PGGAN, DCGAN-style, BigGAN-like) has no mapping network and so no W:
`ZImageGenerator` wraps any module with the contract

    z_dim                   int, the latent width
    c_dim                   int, optional (0 = unconditional): one-hot class labels
    forward(z, c)           z [N, z_dim], c [N, c_dim] -> images [N, 3, H, W] in [-1, 1]

and gives it the two calls the stages make on a StyleGAN (`mapping`, `synthesis`), with
`has_w = False` so that a stage can refuse W / W+ in one sentence. Its "ws" are its inputs:
mapping(z, c) = concat(z, c) as one layer [N, 1, z_dim + c_dim], synthesis splits them and
calls forward. Only Z-space work is meaningful for it; the stages check `has_w`.

`ClassConditioned` binds a conditional StyleGAN to one class (inversion with a given class):
its mapping always sees that class's one-hot label and its `w_avg` is that class's mean w.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

RANGE_TOLERANCE = 1.5   # |pixel| above this breaks the [-1, 1] contract (PGGAN's linear
                        # output overshoots 1 a little; a [0, 255] or [0, 1]-shifted model
                        # is far outside)
PROBE_SEED = 2024       # the probe's z: fixed, so loading is deterministic


def one_hot(classes, c_dim: int, device=None) -> Optional[torch.Tensor]:
    """Class indices [N] -> one-hot labels c [N, c_dim] float32; None when c_dim is 0."""
    if not c_dim:
        return None
    k = torch.tensor(np.asarray(classes, dtype=np.int64).reshape(-1), device=device)  # [N]
    return nn.functional.one_hot(k, c_dim).to(torch.float32)                   # [N, c_dim]


def check_images(images: torch.Tensor, n: int, name: str) -> None:
    """Raise ValueError (one sentence naming the model) unless images [n, 3, H, H] are
    finite and within +-RANGE_TOLERANCE."""
    shape = list(images.shape)
    if images.ndim != 4 or shape[0] != n or shape[1] != 3 or shape[2] != shape[3]:
        raise ValueError(f"{name}: the z -> image model returned shape {shape} for {n} "
                         f"latents, expected [{n}, 3, H, H] (square RGB images)")
    if not bool(torch.isfinite(images).all()):
        raise ValueError(f"{name}: the z -> image model returned NaN or inf pixels")
    peak = float(images.detach().abs().max())
    if peak > RANGE_TOLERANCE:
        raise ValueError(f"{name}: the z -> image model returned pixels up to {peak:.3g} in "
                         f"magnitude, expected images in [-1, 1] (tolerance "
                         f"+-{RANGE_TOLERANCE})")


class PlainMapping(nn.Module):
    """The identity 'mapping' of a plain generator: (z, c) -> ws [N, 1, z_dim + c_dim]."""

    def __init__(self, z_dim: int, c_dim: int):
        super().__init__()
        self.z_dim, self.c_dim = z_dim, c_dim

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None,
                truncation_psi: float = 1, truncation_cutoff: Optional[int] = None):
        if truncation_psi != 1 or truncation_cutoff is not None:
            raise ValueError("truncation applies in W, which a plain z -> image generator "
                             "does not have: use truncation 1")
        if self.c_dim and (c is None or c.shape[1:] != (self.c_dim,)):
            raise ValueError(f"this generator is conditional: c must be [N, {self.c_dim}]")
        parts = [z] + ([c.to(z.dtype)] if self.c_dim else [])
        return torch.cat(parts, dim=1)[:, None, :]                # [N, 1, z_dim + c_dim]


class ZImageGenerator(nn.Module):
    """A z -> image module with the calls the stages make; see the module docstring."""

    has_w = False
    num_ws = 1
    img_channels = 3

    def __init__(self, module: nn.Module, name: str, z_dim: Optional[int] = None,
                 c_dim: Optional[int] = None):
        super().__init__()
        self.module, self.name = module, name
        z_dim = z_dim if z_dim is not None else getattr(module, "z_dim", None)
        if not isinstance(z_dim, int) or z_dim < 1:
            raise ValueError(f"{name}: a z -> image generator needs an int `z_dim` >= 1 (an "
                             f"attribute of the model, or 'z_dim' in its sidecar JSON)")
        self.z_dim = z_dim
        self.c_dim = int(c_dim if c_dim is not None else getattr(module, "c_dim", 0) or 0)
        self.w_dim = self.z_dim + self.c_dim          # the width of its pseudo-ws
        self.mapping = PlainMapping(self.z_dim, self.c_dim)
        self.img_resolution = self.probe()
        self.checked = False                          # the first real batch is checked too

    def device(self) -> torch.device:
        return next(iter(self.module.parameters()), torch.zeros(())).device

    @torch.no_grad()
    def probe(self) -> int:
        """One forward on 2 fixed latents (and class 0): the contract holds, and H."""
        gen = torch.Generator().manual_seed(PROBE_SEED)
        device = self.device()
        z = torch.randn([2, self.z_dim], generator=gen).to(device)     # [2, z_dim]
        c = one_hot([0, 0], self.c_dim, device)
        images = self.module(z, c if c is not None else torch.zeros([2, 0], device=device))
        check_images(images, 2, self.name)
        return int(images.shape[-1])

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const", noises=None,
                  **kwargs) -> torch.Tensor:
        """ws [N, 1, z_dim + c_dim] -> images [N, 3, H, W]; noise does not apply."""
        if noises is not None:
            raise ValueError(f"{self.name}: a z -> image generator has no noise inputs")
        x = ws[:, 0]                                                    # [N, z_dim + c_dim]
        z, c = x[:, :self.z_dim], x[:, self.z_dim:]                     # c [N, c_dim or 0]
        images = self.module(z, c)                                      # [N, 3, H, W]
        if not self.checked:
            check_images(images, len(z), self.name)
            self.checked = True
        elif images.shape[1:] != (3, self.img_resolution, self.img_resolution):
            check_images(images, len(z), self.name)
        return images

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None, **kwargs):
        return self.synthesis(self.mapping(z, c))


class BoundMapping(nn.Module):
    """A conditional mapping with its label fixed: forward(z, c ignored) = mapping(z, c_k)."""

    def __init__(self, mapping: nn.Module, c: torch.Tensor, w_avg_samples: int = 10_000):
        super().__init__()
        self.inner = mapping
        self.register_buffer("c", c)                                    # [1, c_dim]
        self.register_buffer("w_avg", self.class_mean(w_avg_samples))   # [w_dim]

    @torch.no_grad()
    def class_mean(self, samples: int) -> torch.Tensor:
        """The class's mean w (the tracked w_avg averages over every class)."""
        gen = torch.Generator().manual_seed(PROBE_SEED)
        z = torch.randn([samples, self.inner.z_dim], generator=gen).to(self.c.device)
        w = torch.cat([self.inner(zc, self.c.expand(len(zc), -1))[:, 0]
                       for zc in z.split(2048)])                         # [S, w_dim]
        return w.mean(dim=0)

    def forward(self, z: torch.Tensor, c=None, **kwargs) -> torch.Tensor:
        return self.inner(z, self.c.expand(len(z), -1), **kwargs)


class ClassConditioned(nn.Module):
    """A conditional StyleGAN bound to class `k`: it looks unconditional (c_dim 0) to code
    written for unconditional models, such as gankit.latent.inversion."""

    def __init__(self, G: nn.Module, k: int):
        super().__init__()
        if not 0 <= k < G.c_dim:
            raise ValueError(f"class {k} is out of range for a generator with c_dim={G.c_dim}")
        device = next(G.parameters()).device
        self.mapping = BoundMapping(G.mapping, one_hot([k], G.c_dim, device))
        self.synthesis = G.synthesis
        for key in ("z_dim", "w_dim", "num_ws", "img_resolution", "img_channels"):
            setattr(self, key, getattr(G, key))
        self.c_dim, self.label = 0, k
        self.G = G

    def set_precision(self, precision: str) -> None:
        if hasattr(self.G, "set_precision"):
            self.G.set_precision(precision)

    def forward(self, z: torch.Tensor, c=None, **kwargs) -> torch.Tensor:
        return self.synthesis(self.mapping(z), **kwargs)
