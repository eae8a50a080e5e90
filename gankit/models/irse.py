"""InsightFace's IR / IR-SE residual networks: ArcFace's face-recognition backbone, and the
trunk of the pSp / e4e / ReStyle encoders.

The layout is that of TreB1eN's InsightFace_Pytorch (`model_ir_se50.pth`), which pSp, e4e
and ReStyle reuse unchanged: module names here mirror its state-dict keys, so loading a file
is a name- and shape-checked copy.

    input_layer   conv3x3 (C_in -> 64, no bias), BN, PReLU             # [N, 64, H, W]
    body.{i}      bottleneck_IR(_SE) units, 4 stages of (64, 128, 256, 512) channels,
                  each stage's first unit with stride 2                 # [N, 512, H/16, W/16]
    output_layer  (ArcFace only) BN2d, dropout, flatten, linear, BN1d   # [N, 512]

A unit is `res_layer(x) + shortcut_layer(x)`: res_layer = BN, conv3x3, PReLU, conv3x3
(stride s), BN (, SE: squeeze-and-excitation with reduction 16); the shortcut is the input
subsampled by s (`MaxPool2d(1, s)`) or, where the width changes, conv1x1 (stride s) + BN.

Widths are arguments (64..512 in every published file) so that tests can build the same
layout narrower; the stage lengths come from the depth (50, 100 or 152 layers).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

WIDTHS = (64, 128, 256, 512)          # channels of the four stages in every published file
UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}   # units per stage
SE_REDUCTION = 16


class Unit(NamedTuple):
    """One residual unit: input channels, output channels (the paper's depth), stride."""
    in_channel: int
    depth: int
    stride: int


def get_blocks(num_layers: int, widths: Sequence[int] = WIDTHS) -> list:
    """The units of each stage, [[Unit, ...] x 4]: a stage opens with a stride-2 unit."""
    if num_layers not in UNITS:
        raise ValueError(f"num_layers must be one of {sorted(UNITS)}, got {num_layers}")
    stages, c_in = [], widths[0]
    for depth, n in zip(widths, UNITS[num_layers]):
        stages.append([Unit(c_in, depth, 2)] + [Unit(depth, depth, 1)] * (n - 1))
        c_in = depth
    return stages


def depth_of(n_units: int) -> int:
    """num_layers (50, 100, 152) of a body with `n_units` units."""
    for layers, units in UNITS.items():
        if sum(units) == n_units:
            return layers
    raise ValueError(f"a body of {n_units} units is neither IR-50, IR-100 nor IR-152")


class SEModule(nn.Module):
    """Squeeze-and-excitation: channel weights from the pooled features (two 1x1 convs)."""

    def __init__(self, channels: int, reduction: int = SE_REDUCTION):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:          # [N, C, H, W]
        s = F.adaptive_avg_pool2d(x, 1)                            # [N, C, 1, 1]
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class BottleneckIR(nn.Module):
    """bottleneck_IR: the improved residual unit of ArcFace (BN-conv-PReLU-conv-BN)."""

    se = False

    def __init__(self, in_channel: int, depth: int, stride: int):
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)         # subsampling, no weights
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channel, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        layers = [nn.BatchNorm2d(in_channel),
                  nn.Conv2d(in_channel, depth, 3, 1, 1, bias=False), nn.PReLU(depth),
                  nn.Conv2d(depth, depth, 3, stride, 1, bias=False), nn.BatchNorm2d(depth)]
        if self.se:
            layers.append(SEModule(depth))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # [N, I, H, W] -> [N, D, H/s, W/s]
        return self.res_layer(x) + self.shortcut_layer(x)


class BottleneckIRSE(BottleneckIR):
    """bottleneck_IR_SE: the unit with squeeze-and-excitation (the 'ir_se' mode)."""

    se = True


UNIT_CLASSES = {"ir": BottleneckIR, "ir_se": BottleneckIRSE}


def input_layer(in_channels: int, width: int = WIDTHS[0]) -> nn.Sequential:
    """conv3x3 (no bias), BN, PReLU: the stem of every IR network."""
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
                         nn.BatchNorm2d(width), nn.PReLU(width))


def body(num_layers: int = 50, mode: str = "ir_se", widths: Sequence[int] = WIDTHS
         ) -> nn.Sequential:
    """The residual units of all four stages, in one Sequential (keys body.{i}.*)."""
    if mode not in UNIT_CLASSES:
        raise ValueError(f"mode must be one of {sorted(UNIT_CLASSES)}, got {mode!r}")
    unit = UNIT_CLASSES[mode]
    return nn.Sequential(*[unit(*u) for stage in get_blocks(num_layers, widths) for u in stage])


class Backbone(nn.Module):
    """ArcFace's IR(-SE) network: aligned face [N, 3, 112, 112] in [-1, 1] -> unit-length
    embedding [N, 512]. `affine`: the last BatchNorm1d's scale and shift (TreB1eN's and
    pSp's IDLoss builds keep it; `IR_SE_50` of pSp's model_irse drops it)."""

    input_size = 112

    def __init__(self, num_layers: int = 50, mode: str = "ir_se", widths: Sequence[int] = WIDTHS,
                 embedding_dim: int = 512, affine: bool = True, drop_ratio: float = 0.6):
        super().__init__()
        self.input_layer = input_layer(3, widths[0])
        self.body = body(num_layers, mode, widths)
        side = self.input_size // 16                               # 7: four stride-2 stages
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(widths[-1]), nn.Dropout(drop_ratio), nn.Flatten(),
            nn.Linear(widths[-1] * side * side, embedding_dim),
            nn.BatchNorm1d(embedding_dim, affine=affine))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, 3, 112, 112] -> [N, 512]
        assert x.shape[-2:] == (self.input_size, self.input_size), \
            f"ArcFace takes [N, 3, 112, 112], got {list(x.shape)}"
        x = self.output_layer(self.body(self.input_layer(x)))
        return x / torch.norm(x, 2, 1, True)                       # l2-normalised, as theirs


__all__ = ["Backbone", "BottleneckIR", "BottleneckIRSE", "SEModule", "Unit", "get_blocks",
           "body", "input_layer", "depth_of", "WIDTHS", "UNITS"]
