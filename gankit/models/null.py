"""A generator that costs nothing: it measures the pipeline's ceiling.

`NullGenerator` has the interface the jobs use on a StyleGAN2 `Generator` (z_dim, c_dim,
w_dim, num_ws, img_resolution, img_channels; `mapping(z, c, truncation_psi,
truncation_cutoff) -> ws [N, num_ws, w_dim]`; `synthesis(ws, noise_mode, noises,
fused_modconv) -> images [N, 3, R, R]` in [-1, 1]; `set_precision`), but its mapping only
copies z and its synthesis returns one fixed, precomputed image. A job run on it therefore
measures everything but the model: latent drawing, device transfers, uint8 conversion,
image codecs, Parquet, storage and Ray. That rate is the ceiling of the pipeline at this
resolution: with a real model, the pipeline can run no faster than the smaller of the
model's bare rate and this one.

The image is photo-like on purpose (smooth gradients, soft shapes, mid-frequency stripes and
a fine grain of a few 8-bit levels, like a GAN render's texture), so PNG, JPEG and WebP
spend about the time and bytes they spend on real 1024 px faces; a flat colour would
compress to nothing and overstate the ceiling. Each row gets the image with a faint colour
tint taken from its w (about +-2 levels of 255): identical rows would be stored once by
Parquet's dictionary encoding and overstate the ceiling too. That tint is the synthesis'
only arithmetic, one broadcast add.

Entry points for `gankit.loading.zoo.load_generator` and the jobs' `model` field:
`gankit.models.null:null_256`, `gankit.models.null:null_1024`.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

__all__ = ["NullGenerator", "NullMapping", "NullSynthesis", "photo_like_image", "null_256",
           "null_1024"]


def num_ws_for(resolution: int) -> int:
    """StyleGAN2's W+ layer count at `resolution` (18 at 1024 px, 14 at 256 px)."""
    log2 = int(round(math.log2(resolution)))
    if resolution < 4 or 2 ** log2 != resolution:
        raise ValueError(f"resolution must be a power of two >= 4 (got {resolution})")
    return 2 * log2 - 2


def photo_like_image(resolution: int, seed: int = 0) -> torch.Tensor:
    """A deterministic [3, R, R] float32 image in [-1, 1]: a lit backdrop, a soft face-like
    ellipse, hair-like stripes above it, low-frequency shading and a fine grain."""
    g = torch.Generator().manual_seed(seed)
    r = resolution
    t = torch.linspace(-1, 1, r)
    v, u = torch.meshgrid(t, t, indexing="ij")                       # rows (down), columns
    color = lambda a, b, c: torch.tensor([a, b, c]).view(3, 1, 1)    # noqa: E731

    backdrop = color(0.25, 0.35, 0.55) + 0.35 * v * color(-0.6, -0.4, 0.2) \
        + 0.15 * torch.sin(2.1 * u + 0.7) * color(0.3, 0.2, -0.1)      # [3, R, R]
    face_d = (u / 0.52) ** 2 + ((v + 0.02) / 0.70) ** 2
    face = torch.sigmoid((1 - face_d) * 9)                           # soft ellipse mask
    skin = color(0.55, 0.15, -0.05) + 0.25 * (0.3 - u - 0.5 * v) * color(1, 0.9, 0.8) \
        - 0.35 * face_d * color(1, 1, 1)
    hair_d = (u / 0.62) ** 2 + ((v + 0.35) / 0.55) ** 2
    hair = torch.sigmoid((1 - hair_d) * 8) * torch.sigmoid(-(v + 0.05) * 12)
    strands = torch.sin(60 * u + 9 * torch.sin(5 * v)) * 0.5 + 0.5
    hair_rgb = color(-0.45, -0.6, -0.7) + 0.25 * strands * color(0.8, 0.6, 0.4)
    eyes = sum(torch.exp(-(((u - x) / 0.07) ** 2 + ((v + 0.1) / 0.035) ** 2))
               for x in (-0.2, 0.2))
    img = backdrop * (1 - face) + skin * face
    img = img * (1 - hair) + hair_rgb * hair
    img = img - 1.2 * eyes * color(1, 1, 1)

    # Grain: coarse noise (correlated over 4 px, bilinear) plus a fine one, a few 8-bit levels.
    coarse = torch.randn(1, 3, r // 4, r // 4, generator=g)
    coarse = nn.functional.interpolate(coarse, size=(r, r), mode="bilinear",
                                       align_corners=False)[0]
    fine = torch.randn(3, r, r, generator=g)
    img = img + 0.06 * coarse + 0.02 * fine
    return img.clamp(-1, 1).contiguous()


class NullMapping(nn.Module):
    """z [N, z_dim] -> ws [N, num_ws, w_dim]: z itself, float32, repeated over the layers
    (truncation towards `w_avg`, which is zero, scales it)."""

    def __init__(self, z_dim: int, w_dim: int, num_ws: int):
        super().__init__()
        if z_dim != w_dim:
            raise ValueError(f"NullMapping copies z into w: z_dim ({z_dim}) must equal w_dim "
                             f"({w_dim})")
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, 0, w_dim, num_ws
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None,
                truncation_psi: float = 1, truncation_cutoff: Optional[int] = None,
                update_w_avg: bool = False) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [N, {self.z_dim}], got {list(z.shape)}")
        ws = z.to(torch.float32).unsqueeze(1).repeat(1, self.num_ws, 1)   # [N, num_ws, w_dim]
        if truncation_psi != 1:
            cut = self.num_ws if truncation_cutoff is None else truncation_cutoff
            ws[:, :cut] = self.w_avg.lerp(ws[:, :cut], truncation_psi)
        return ws


class NullSynthesis(nn.Module):
    """ws [N, num_ws, w_dim] -> the fixed image [N, 3, R, R], tinted per row by
    TINT * ws[:, 0, :3] (distinct rows, distinct encoded bytes)."""

    TINT = 0.008                           # x N(0, 1) latents: about +-2 levels of 255

    def __init__(self, w_dim: int, num_ws: int, img_resolution: int, seed: int = 0):
        super().__init__()
        self.w_dim, self.num_ws = w_dim, num_ws
        self.img_resolution, self.img_channels = img_resolution, 3
        # Not persistent: the state_dict stays empty, .to(device) still moves it.
        self.register_buffer("image", photo_like_image(img_resolution, seed), persistent=False)

    def forward(self, ws: torch.Tensor, noise_mode: str = "const",
                noises: Optional[list] = None, fused_modconv: bool = False) -> torch.Tensor:
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        tint = self.TINT * ws[:, 0, :3].to(self.image.dtype)                 # [N, 3]
        return self.image.unsqueeze(0) + tint[:, :, None, None]             # [N, 3, R, R]

    def noise_layers(self) -> list:
        return []


class NullGenerator(nn.Module):
    """Everything but the model: see the module docstring. c_dim is 0 (unconditional)."""

    def __init__(self, img_resolution: int = 1024, z_dim: int = 512, seed: int = 0):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, 0, z_dim
        self.img_resolution, self.img_channels = img_resolution, 3
        self.num_ws = num_ws_for(img_resolution)
        self.mapping = NullMapping(z_dim, z_dim, self.num_ws)
        self.synthesis = NullSynthesis(z_dim, self.num_ws, img_resolution, seed)

    def set_precision(self, precision: str) -> "NullGenerator":
        """No-op (there is no arithmetic to run in another precision); returns self."""
        return self

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None,
                truncation_psi: float = 1, truncation_cutoff: Optional[int] = None,
                noise_mode: str = "const", fused_modconv: bool = False) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi,
                          truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)


def null_256() -> NullGenerator:
    """256 px, z/w 512, 14 W+ layers (the shape of a 256 px StyleGAN2)."""
    return NullGenerator(256).eval().requires_grad_(False)


def null_1024() -> NullGenerator:
    """1024 px, z/w 512, 18 W+ layers (the shape of FFHQ-1024 config-f)."""
    return NullGenerator(1024).eval().requires_grad_(False)
