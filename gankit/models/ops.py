"""Low-level ops of StyleGAN2 in plain PyTorch: bias + activation, FIR filtering with
up/down-sampling (upfirdn2d), and convolution with resampling.

These follow the reference (non-CUDA) semantics of NVIDIA's `torch_utils/ops`, so a
checkpoint gives the same images here as there in fp32. Every op also runs in float16 or
bfloat16: weights, biases and filters are cast to the activations' dtype (a no-op in fp32).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

# Default gain of each activation: keeps the signal's second moment through the layer.
ACT_GAIN = {"linear": 1.0, "relu": math.sqrt(2), "lrelu": math.sqrt(2)}

# Half-width float types StyleGAN2's reduced-precision blocks run in (NVIDIA's fp16, and bf16).
REDUCED_DTYPES = (torch.float16, torch.bfloat16)


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor] = None, act: str = "linear",
             gain: Optional[float] = None, clamp: Optional[float] = None) -> torch.Tensor:
    """act(x + b) * gain, then clamp to [-clamp, clamp]. `b` is added along dim 1."""
    if b is not None:  # parameters are fp32: cast to a reduced-precision x (NVIDIA does too)
        x = x + b.to(x.dtype).reshape([1, -1] + [1] * (x.ndim - 2))
    if act == "lrelu":
        x = F.leaky_relu(x, 0.2)
    elif act == "relu":
        x = F.relu(x)
    elif act != "linear":
        raise ValueError(f"unknown activation {act!r}")
    gain = ACT_GAIN[act] if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def setup_filter(f: Sequence[float]) -> torch.Tensor:
    """Separable 1D taps -> normalized 2D FIR filter [k, k] (sum 1)."""
    f = torch.as_tensor(f, dtype=torch.float32)
    f = f[:, None] * f[None, :]                                          # [k, k]
    return f / f.sum()


def upfirdn2d(x: torch.Tensor,                 # [N, C, H, W]
              f: Optional[torch.Tensor],       # [k] separable, [k, k], or None (identity)
              up: int = 1, down: int = 1,
              padding: Sequence[int] = (0, 0, 0, 0),   # [x0, x1, y0, y1]; negative crops
              gain: float = 1) -> torch.Tensor:
    """Up-sample by zero insertion, pad, convolve with f (total gain `gain`), down-sample.
    StyleGAN2 uses [k, k] filters; StyleGAN3's are separable [k] (or None)."""
    N, C, H, W = x.shape
    px0, px1, py0, py1 = padding
    if up > 1:
        x = x.reshape(N, C, H, 1, W, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(N, C, H * up, W * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    if f is None:
        f = torch.ones([1, 1], device=x.device)
    # A separable filter applies the gain's square root once per axis.
    f = (f * gain ** (f.ndim / 2)).to(x.dtype).flip(list(range(f.ndim)))  # convolution, not correlation
    f = f[None, None].repeat([C, 1] + [1] * f.ndim)                   # [C, 1, k] or [C, 1, k, k]
    if f.ndim == 4:
        x = F.conv2d(x, f, groups=C)
    else:  # rows first, then columns, in NVIDIA's order (same rounding)
        x = F.conv2d(x, f.unsqueeze(2), groups=C)
        x = F.conv2d(x, f.unsqueeze(3), groups=C)
    return x[:, :, ::down, ::down]


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """2x up-sampling with the FIR filter; output H*up x W*up."""
    k = f.shape[-1]
    p = [(k + up - 1) // 2, (k - up) // 2]
    return upfirdn2d(x, f, up=up, padding=p + p, gain=up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2) -> torch.Tensor:
    """2x down-sampling with the FIR filter; output H/down x W/down."""
    k = f.shape[-1]
    p = [(k - down + 1) // 2, (k - down) // 2]
    return upfirdn2d(x, f, down=down, padding=p + p)


def conv2d_resample(x: torch.Tensor,           # [N, I*groups, H, W]
                    w: torch.Tensor,           # [O, I, k, k]
                    f: Optional[torch.Tensor] = None,
                    up: int = 1, down: int = 1, padding: int = 0,
                    groups: int = 1) -> torch.Tensor:
    """Convolution fused with FIR up- or down-sampling, as StyleGAN2 defines it.

    up=2: transposed conv with stride 2, then the FIR filter (gain 4).
    down=2: FIR filter, then conv with stride 2.
    """
    assert not (up > 1 and down > 1), "up and down together are not used by StyleGAN2"
    out_channels, in_per_group, kh, kw = w.shape
    w = w.to(x.dtype)  # fp32 weights into a reduced-precision conv; a no-op in fp32
    if up == 1 and down == 1:
        return F.conv2d(x, w, padding=padding, groups=groups)
    k = f.shape[-1]
    if up > 1:
        if kw == 1:  # 1x1: convolve, then up-sample
            return upsample2d(F.conv2d(x, w, groups=groups), f, up)
        # transposed conv wants [I*groups, O/groups, k, k]
        wt = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
        wt = wt.reshape(groups * in_per_group, out_channels // groups, kh, kw)
        x = F.conv_transpose2d(x, wt, stride=up, groups=groups)
        p0 = padding + (k + up - 1) // 2 - (kw - 1)
        p1 = padding + (k - up) // 2 - (kw - up)
        assert p0 >= 0 and p1 >= 0, "filter too short for this kernel"
        return upfirdn2d(x, f, padding=[p0, p1, p0, p1], gain=up * up)
    # down > 1
    if kw == 1:  # 1x1: down-sample, then convolve
        return F.conv2d(downsample2d(x, f, down), w, groups=groups)
    p0 = padding + (k - down + 1) // 2
    p1 = padding + (k - down) // 2
    x = upfirdn2d(x, f, padding=[p0, p1, p0, p1])
    return F.conv2d(x, w, stride=down, groups=groups)
