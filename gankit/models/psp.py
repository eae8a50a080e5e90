"""The field's StyleGAN encoders: pSp's GradualStyleEncoder, e4e's Encoder4Editing and
ReStyle's iterative encoders, written from their papers' and repositories' layouts (module
names mirror their checkpoints' `encoder.*` keys).

Every encoder reads an image [N, C, 256, 256] in [-1, 1] with an IR-SE50 trunk (or, in
ReStyle's non-face models, a ResNet-34 one) and maps features to one style vector per W+
layer with `GradualStyleBlock`s (stride-2 convs down to 1x1, then an equalised linear):

- GradualStyleEncoder (pSp): a feature pyramid. Styles 0-2 (coarse) read the 16x16 map
  c3; styles 3-6 (middle) read p2 = up(c3) + latlayer1(c2) at 32x32; styles 7.. (fine) read
  p1 = up(p2) + latlayer2(c1) at 64x64 (`up`: bilinear, align_corners=True).
- Encoder4Editing (e4e): the same pyramid, but style 0 gives one w0 for every layer and
  styles i >= 1 add a delta to layer i: W+ = w0 + (0, d1, d2, ...). Training switches the
  deltas on one by one (the progressive stage); inference uses all of them.
- BackboneEncoder / ProgressiveBackboneEncoder (ReStyle's pSp and e4e flavours): every style
  block reads the final 16x16 map; the e4e flavour again is w0 + deltas.

`FieldEncoder` wraps one of them with its checkpoint's `latent_avg` and preprocessing
(images resized to 256, antialiased bilinear as torchvision's Resize on a PIL image) and
gives W+ [N, num_ws, w_dim]; `ReStyleEncoder` runs ReStyle's iterations with a generator:
y_0 = pool256(G(latent_avg)), then for i = 1..N: w_i = w_{i-1} + E(cat(x, y_{i-1})) with
w_0 = latent_avg, y_i = pool256(G(w_i)) (pool256: adaptive average pooling to 256x256,
their `face_pool`).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gankit.models import irse

INPUT_SIZE = 256                  # the encoders' input side (their transforms resize to it)
COARSE, MIDDLE = 3, 7             # styles [0, 3) coarse, [3, 7) middle, [7, n) fine
RESNET34_UNITS = (3, 4, 6, 3)     # torchvision's resnet34 layer1..layer4


class EqualLinear(nn.Module):
    """rosinality's equalised linear layer: y = x (W / sqrt(in) * lr)^T + b * lr."""

    def __init__(self, in_dim: int, out_dim: int, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.scale, self.lr_mul = lr_mul / math.sqrt(in_dim), lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:            # [N, I] -> [N, O]
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class GradualStyleBlock(nn.Module):
    """Feature map [N, in_c, s, s] -> one style [N, out_c]: log2(s) stride-2 3x3 convs with
    leaky ReLU (slope 0.01) down to 1x1, then an equalised linear ("map2style")."""

    def __init__(self, in_c: int, out_c: int, spatial: int):
        super().__init__()
        self.out_c = out_c
        layers, c = [], in_c
        for _ in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(c, out_c, 3, stride=2, padding=1), nn.LeakyReLU()]
            c = out_c
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_c, out_c, lr_mul=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:            # [N, I, s, s] -> [N, O]
        return self.linear(self.convs(x).view(-1, self.out_c))


def upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """FPN's top-down step: x bilinearly resized to y's size (align_corners) plus y."""
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


# ----------------------------------------------------------------------------------------
# Trunks: the features c1 (1/4 of the input side), c2 (1/8), c3 (1/16)


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock: conv3x3 (stride s)-BN-ReLU-conv3x3-BN + shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                            nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


def resnet34_body(widths: Sequence[int]) -> nn.Sequential:
    """resnet34's layer1..layer4 flattened into one Sequential (ReStyle's `body`)."""
    units, c_in = [], widths[0]
    for k, (c, n) in enumerate(zip(widths, RESNET34_UNITS)):
        for j in range(n):
            units.append(BasicBlock(c_in, c, 2 if (j == 0 and k > 0) else 1))
            c_in = c
    return nn.Sequential(*units)


class Trunk(nn.Module):
    """Base of the encoders: builds the stem and body ('ir_se' or 'resnet34') under the
    checkpoints' names and returns the three feature maps the heads read."""

    def build_trunk(self, backbone: str, input_nc: int, widths: Sequence[int]) -> None:
        self.backbone = backbone
        if backbone == "resnet34":          # conv7x7 stride 2, BN, PReLU; no max-pool
            self.conv1 = nn.Conv2d(input_nc, widths[0], 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(widths[0])
            self.relu = nn.PReLU(widths[0])
            self.body = resnet34_body(widths)
            units = RESNET34_UNITS
        elif backbone in irse.UNIT_CLASSES:
            self.input_layer = irse.input_layer(input_nc, widths[0])
            self.body = irse.body(50, backbone, widths)
            units = irse.UNITS[50]
        else:
            raise ValueError(f"backbone must be 'ir_se', 'ir' or 'resnet34', got {backbone!r}")
        ends = [sum(units[:k + 1]) - 1 for k in range(4)]
        self.taps = (ends[1], ends[2], ends[3])   # last unit of stages 2, 3, 4

    def features(self, x: torch.Tensor) -> tuple:
        """x [N, C, 256, 256] -> (c1 [N, w1, 64, 64], c2 [N, w2, 32, 32], c3 [N, w3, 16, 16])."""
        if self.backbone == "resnet34":
            x = self.relu(self.bn1(self.conv1(x)))
        else:
            x = self.input_layer(x)
        out = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.taps:
                out.append(x)
        return tuple(out)


class GradualStyleEncoder(Trunk):
    """pSp's encoder: image -> W+ offsets [N, n_styles, style_dim] from a feature pyramid."""

    def __init__(self, n_styles: int,                  # W+ layers of the generator
                 input_nc: int = 3,                    # 3: an image; 6: image + reconstruction
                 backbone: str = "ir_se",              # 'ir_se' (IR-SE50) or 'resnet34'
                 widths: Sequence[int] = irse.WIDTHS,  # trunk stage widths
                 style_dim: int = 512):                # w_dim of the generator
        super().__init__()
        self.build_trunk(backbone, input_nc, widths)
        self.style_count, self.style_dim = n_styles, style_dim
        self.styles = nn.ModuleList([GradualStyleBlock(widths[3], style_dim, self.spatial(i))
                                     for i in range(n_styles)])
        self.latlayer1 = nn.Conv2d(widths[2], widths[3], 1)
        self.latlayer2 = nn.Conv2d(widths[1], widths[3], 1)

    @staticmethod
    def spatial(i: int) -> int:
        """The side of the map style i reads: 16 (coarse), 32 (middle), 64 (fine)."""
        return 16 if i < COARSE else 32 if i < MIDDLE else 64

    def pyramid(self, x: torch.Tensor) -> list:
        """[c3, p2, p1]: the maps of the coarse, middle and fine styles."""
        c1, c2, c3 = self.features(x)
        p2 = upsample_add(c3, self.latlayer1(c2))                  # [N, w3, 32, 32]
        p1 = upsample_add(p2, self.latlayer2(c1))                  # [N, w3, 64, 64]
        return [c3, p2, p1]

    @staticmethod
    def level(i: int) -> int:
        return 0 if i < COARSE else 1 if i < MIDDLE else 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, C, 256, 256] -> [N, n, style_dim]
        maps = self.pyramid(x)
        return torch.stack([s(maps[self.level(i)]) for i, s in enumerate(self.styles)], dim=1)


class Encoder4Editing(GradualStyleEncoder):
    """e4e's encoder: one w0 for every layer, plus a delta per layer i >= 1 (up to
    `progressive_stage`; None: all, as at inference)."""

    def __init__(self, *args, progressive_stage: Optional[int] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.progressive_stage = progressive_stage

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, C, 256, 256] -> [N, n, style_dim]
        maps = self.pyramid(x)
        return progressive_codes(self.styles, [maps[self.level(i)] for i in
                                               range(self.style_count)], self.progressive_stage)


def progressive_codes(styles: nn.ModuleList, maps: list, stage: Optional[int]) -> torch.Tensor:
    """e4e's W+ [N, n, style_dim]: w0 = styles[0](maps[0]) on every layer, plus
    styles[i](maps[i]) on layer i for 1 <= i <= stage (None: every layer)."""
    n = len(styles)
    last = n - 1 if stage is None else min(stage, n - 1)
    w0 = styles[0](maps[0])                                        # [N, style_dim]
    rows = [w0 + styles[i](maps[i]) if 1 <= i <= last else w0 for i in range(n)]
    return torch.stack(rows, dim=1)


class BackboneEncoder(Trunk):
    """ReStyle's pSp-flavour encoder: every style from the final 16x16 map."""

    def __init__(self, n_styles: int, input_nc: int = 6, backbone: str = "ir_se",
                 widths: Sequence[int] = irse.WIDTHS, style_dim: int = 512):
        super().__init__()
        self.build_trunk(backbone, input_nc, widths)
        self.style_count, self.style_dim = n_styles, style_dim
        self.styles = nn.ModuleList([GradualStyleBlock(widths[3], style_dim, 16)
                                     for _ in range(n_styles)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, C, 256, 256] -> [N, n, style_dim]
        c3 = self.features(x)[2]
        return torch.stack([s(c3) for s in self.styles], dim=1)


class ProgressiveBackboneEncoder(BackboneEncoder):
    """ReStyle's e4e-flavour encoder: w0 + per-layer deltas, all from the final map."""

    def __init__(self, *args, progressive_stage: Optional[int] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.progressive_stage = progressive_stage

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c3 = self.features(x)[2]
        return progressive_codes(self.styles, [c3] * self.style_count, self.progressive_stage)


# ----------------------------------------------------------------------------------------
# From an image to W+


def resize_input(images: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, size, size], antialiased bilinear (as PIL's resize, which
    their transforms use); unchanged at that size already."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True)


def face_pool(images: torch.Tensor) -> torch.Tensor:
    """Their `face_pool`: adaptive average pooling of a reconstruction to 256x256."""
    return F.adaptive_avg_pool2d(images, (INPUT_SIZE, INPUT_SIZE))


class FieldEncoder(nn.Module):
    """A pSp / e4e encoder with its checkpoint's average latent: images [N, 3, H, W] in
    [-1, 1] -> W+ [N, num_ws, w_dim] = encoder(resize256(x)) (+ latent_avg when the
    checkpoint was trained with start_from_latent_avg)."""

    def __init__(self, encoder: nn.Module, latent_avg: Optional[torch.Tensor],
                 generator_resolution: int, family: str, source: str = ""):
        super().__init__()
        self.encoder = encoder
        self.num_ws, self.w_dim = encoder.style_count, encoder.style_dim
        self.generator_resolution, self.family, self.source = generator_resolution, family, source
        avg = None if latent_avg is None else \
            latent_avg.detach().float().reshape(-1, self.w_dim).expand(self.num_ws, -1).clone()
        self.register_buffer("latent_avg", avg)                    # [num_ws, w_dim] or None

    def forward(self, images: torch.Tensor) -> torch.Tensor:     # [N, 3, H, W] -> [N, n, w]
        assert images.ndim == 4 and images.shape[1] == 3, \
            f"images must be [N, 3, H, W], got {list(images.shape)}"
        codes = self.encoder(resize_input(images.float()))
        return codes if self.latent_avg is None else codes + self.latent_avg.unsqueeze(0)


class ReStyleEncoder(FieldEncoder):
    """ReStyle: `iterations` residual steps from the average image, with a generator
    (`decoder`, set by `bind`) rendering each step's reconstruction."""

    def __init__(self, encoder: nn.Module, latent_avg: torch.Tensor, generator_resolution: int,
                 family: str, source: str = "", iterations: int = 5):
        super().__init__(encoder, latent_avg, generator_resolution, family, source)
        if latent_avg is None:
            raise ValueError(f"{source}: a ReStyle encoder needs the checkpoint's latent_avg")
        if iterations < 1:
            raise ValueError(f"ReStyle needs at least 1 iteration, got {iterations}")
        self.iterations = iterations
        self.decoder = None

    def bind(self, G: nn.Module) -> "ReStyleEncoder":
        """Use G (its `synthesis(ws, noise_mode='const')`) for the reconstructions; the
        average image y_0 = pool256(G(latent_avg)) is rendered here, once."""
        self.decoder = G
        device = self.latent_avg.device
        with torch.no_grad():
            y0 = face_pool(G.synthesis(self.latent_avg.unsqueeze(0).to(device),
                                       noise_mode="const").float())  # [1, 3, 256, 256]
        self.register_buffer("avg_image", y0, persistent=False)
        return self

    def forward(self, images: torch.Tensor, iterations: Optional[int] = None) -> torch.Tensor:
        if self.decoder is None:
            raise RuntimeError("a ReStyle encoder renders with a generator: call bind(G) first")
        x = resize_input(images.float())                           # [N, 3, 256, 256]
        y = self.avg_image.expand(x.shape[0], -1, -1, -1)
        w = self.latent_avg.unsqueeze(0).expand(x.shape[0], -1, -1)
        n = self.iterations if iterations is None else iterations
        for i in range(n):
            w = self.encoder(torch.cat([x, y], dim=1)) + w         # [N, num_ws, w_dim]
            if i + 1 < n:                                           # the last one is not used
                y = face_pool(self.decoder.synthesis(w, noise_mode="const").float())
        return w


__all__ = ["GradualStyleEncoder", "Encoder4Editing", "BackboneEncoder",
           "ProgressiveBackboneEncoder", "GradualStyleBlock", "EqualLinear", "FieldEncoder",
           "ReStyleEncoder", "resize_input", "face_pool", "INPUT_SIZE"]
