"""Alias-free signal processing of StyleGAN3 (Karras et al. 2021, "Alias-Free Generative
Adversarial Networks"), in plain PyTorch and numpy.

- `kaiser_lowpass`: a windowed-sinc low-pass FIR filter, Kaiser window sized by Kaiser's
  formulas (the filter scipy.signal.firwin designs for `numtaps, cutoff, width, fs`).
- `jinc_lowpass`: the radially symmetric 2D version (StyleGAN3-R's down-sampling filters).
- `upfirdn2d`: up-sample by zero insertion, pad or crop, convolve, down-sample, with a 1D
  (separable) or 2D filter, following the reference semantics of NVIDIA's op.
- `filtered_lrelu`: bias, up-sampling, leaky ReLU with gain and clamp, down-sampling: the
  paper's filtered non-linearity, in the order of NVIDIA's reference (non-CUDA) path.

Filters are designed in float64 and stored as float32. Padding is [x0, x1, y0, y1].
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gankit.models.ops import upfirdn2d

# ----------------------------------------------------------------------------------------
# Filter design


def kaiser_attenuation(numtaps: int, width: float) -> float:
    """Stopband attenuation (dB) a Kaiser window of `numtaps` reaches for a transition band
    of `width` (a fraction of Nyquist): Kaiser's empirical formula."""
    return 2.285 * (numtaps - 1) * math.pi * width + 7.95


def kaiser_beta(attenuation: float) -> float:
    """Kaiser's beta for a stopband attenuation in dB."""
    a = attenuation
    if a > 50:
        return 0.1102 * (a - 8.7)
    if a > 21:
        return 0.5842 * (a - 21) ** 0.4 + 0.07886 * (a - 21)
    return 0.0


def _window_beta(numtaps: int, width: float, fs: float) -> float:
    return kaiser_beta(kaiser_attenuation(numtaps, width / (fs / 2)))


def kaiser_lowpass(numtaps: int, cutoff: float, width: float, fs: float) -> Optional[torch.Tensor]:
    """Separable low-pass filter [numtaps] with unit DC gain; None for 1 tap (identity).
    `cutoff` and `width` (the whole transition band) are in the units of `fs`."""
    if numtaps == 1:
        return None
    if not 0 < cutoff < fs / 2:
        raise ValueError(f"cutoff must lie in (0, fs/2 = {fs / 2}), got {cutoff}")
    m = np.arange(numtaps) - (numtaps - 1) / 2                          # taps around the centre
    h = np.sinc(cutoff / (fs / 2) * m) * np.kaiser(numtaps, _window_beta(numtaps, width, fs))
    return torch.as_tensor(h / h.sum(), dtype=torch.float32)


def jinc_lowpass(numtaps: int, cutoff: float, width: float, fs: float) -> Optional[torch.Tensor]:
    """Radially symmetric low-pass filter [numtaps, numtaps]: the jinc (the 2D ideal disc
    low-pass) under a separable Kaiser window, unit DC gain; None for 1 tap."""
    if numtaps == 1:
        return None
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = torch.as_tensor(np.hypot(*np.meshgrid(x, x)), dtype=torch.float64, device="cpu")  # [k, k]
    # J1(2 pi f r) / (pi r) tends to f (times 2 pi / 2 pi) = cutoff at r = 0.
    jinc = torch.where(r > 0, torch.special.bessel_j1(2 * cutoff * math.pi * r) / (math.pi * r),
                       torch.full_like(r, cutoff))
    w = np.kaiser(numtaps, _window_beta(numtaps, width, fs))
    f = jinc.numpy() * np.outer(w, w)
    return torch.as_tensor(f / f.sum(), dtype=torch.float32)


# ----------------------------------------------------------------------------------------
# Resampling


def filter_size(f: Optional[torch.Tensor]) -> "tuple[int, int]":
    """(width, height) of a 1D or 2D filter; (1, 1) for None."""
    if f is None:
        return 1, 1
    return int(f.shape[-1]), int(f.shape[0])


def filtered_lrelu(x: torch.Tensor,            # [N, C, H, W]
                   fu: Optional[torch.Tensor],  # up-sampling filter
                   fd: Optional[torch.Tensor],  # down-sampling filter
                   b: torch.Tensor,             # [C] bias
                   up: int = 1, down: int = 1,
                   padding: Sequence[int] = (0, 0, 0, 0),
                   gain: float = math.sqrt(2), slope: float = 0.2,
                   clamp: Optional[float] = None) -> torch.Tensor:
    """x + b, up-sample (fu, gain up^2) with `padding`, leaky ReLU * gain, clamp to
    [-clamp, clamp], down-sample (fd). The non-linearity runs at the higher sampling rate so
    the harmonics it creates are removed by fd instead of aliasing (the paper's Sec. 3.2)."""
    x = x + b.to(x.dtype).reshape(1, -1, 1, 1)
    x = upfirdn2d(x, fu, up=up, padding=padding, gain=up ** 2)
    x = F.leaky_relu(x, slope) if slope != 1 else x
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return upfirdn2d(x, fd, down=down)
