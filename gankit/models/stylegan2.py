"""StyleGAN2 generator and discriminator, written here to be mathematically identical to
NVIDIA's stylegan2-ada-pytorch `training/networks.py` (reference, non-CUDA code path, fp32).

Module and parameter names mirror NVIDIA's state-dict keys (`mapping.fc0.weight`,
`synthesis.b8.conv0.affine.weight`, `synthesis.b8.resample_filter`, ...), so importing an
official checkpoint is a name- and shape-checked copy (see gankit.loading.checkpoints).

Equalized learning rate: every weight is stored as N(0, 1) / lr_multiplier and scaled by
`weight_gain` at run time, exactly as NVIDIA stores it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import NamedTuple, Optional

import numpy as np
import torch
from torch import nn

from gankit import precision as gk_precision
from gankit.models import ops

# ----------------------------------------------------------------------------------------
# Configs


@dataclass
class MappingConfig:
    num_layers: int = 8                    # Number of mapping layers.
    embed_features: Optional[int] = None   # Label embedding width, None = w_dim.
    layer_features: Optional[int] = None   # Hidden width of the mapping layers, None = w_dim.
    activation: str = "lrelu"              # Activation of every mapping layer.
    lr_multiplier: float = 0.01            # Learning-rate multiplier of the mapping layers.
    w_avg_beta: Optional[float] = 0.995    # Decay of the tracked W average, None = no tracking.


@dataclass
class SynthesisConfig:
    channel_base: int = 32768              # Overall multiplier for the number of channels.
    channel_max: int = 512                 # Maximum number of channels in any layer.
    num_fp16_res: int = 0                  # Top blocks set_precision runs in fp16/bf16; 0 = 4.
    conv_clamp: Optional[float] = None     # Clamp conv outputs to +-X, None = no clamping.
    architecture: str = "skip"             # 'orig', 'skip' or 'resnet'.
    resample_filter: tuple = (1, 3, 3, 1)  # Low-pass filter for up-sampling.
    use_noise: bool = True                 # Per-pixel noise inputs.


@dataclass
class GeneratorConfig:
    z_dim: int = 512                       # Input latent (Z) dimensionality.
    c_dim: int = 0                         # Conditioning label (C) dimensionality, 0 = none.
    w_dim: int = 512                       # Intermediate latent (W) dimensionality.
    img_resolution: int = 1024             # Output resolution, a power of two >= 4.
    img_channels: int = 3                  # Number of output color channels.
    mapping: MappingConfig = field(default_factory=MappingConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["synthesis"]["resample_filter"] = list(self.synthesis.resample_filter)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GeneratorConfig":
        d = dict(d)
        mapping = MappingConfig(**d.pop("mapping", {}))
        syn = dict(d.pop("synthesis", {}))
        if "resample_filter" in syn:
            syn["resample_filter"] = tuple(syn["resample_filter"])
        return cls(**d, mapping=mapping, synthesis=SynthesisConfig(**syn))

    def channels(self, res: int) -> int:
        return min(self.synthesis.channel_base // res, self.synthesis.channel_max)

    def num_parameters(self) -> int:
        """About how many parameters this generator holds (mapping layers; per block the
        style affines, the two 3x3 convs and the toRGB conv): known before allocating."""
        m = self.mapping
        hidden = m.layer_features or self.w_dim
        embed = (m.embed_features or self.w_dim) if self.c_dim else 0
        n = (self.z_dim + embed) * hidden + (m.num_layers - 1) * hidden * hidden
        prev = 0
        for log2 in range(2, int(math.log2(self.img_resolution)) + 1):
            ch = self.channels(2 ** log2)
            n += self.w_dim * (prev + 2 * ch) + 9 * ch * (prev + ch) + ch * self.img_channels
            prev = ch
        return n

    def validate(self) -> None:
        """Refuse values no generator has, and sizes no machine holds, before allocating
        (a checkpoint's config is data: it can say anything)."""
        ints = {"z_dim": self.z_dim, "w_dim": self.w_dim, "img_channels": self.img_channels,
                "img_resolution": self.img_resolution, "mapping.num_layers": self.mapping.num_layers,
                "synthesis.channel_base": self.synthesis.channel_base,
                "synthesis.channel_max": self.synthesis.channel_max}
        check_sizes(ints, self.c_dim, self.img_resolution, 4)
        check_parameters(self.num_parameters())


# Bounds a checkpoint's config must respect: config-f (1024 px) has ~3e7 parameters.
MAX_RESOLUTION = 2 ** 14
MAX_PARAMETERS = 2 * 10 ** 9


def check_sizes(ints: dict, c_dim, resolution, min_resolution: int) -> None:
    """The checks every generator config makes (StyleGAN2's, StyleGAN3's): `ints` positive
    integers, c_dim >= 0, the resolution a power of two in [min_resolution, MAX_RESOLUTION]."""
    for name, v in dict(ints, c_dim=c_dim + 1 if isinstance(c_dim, int) else c_dim).items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:     # (c_dim may be 0)
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    r = resolution
    if r < min_resolution or r > MAX_RESOLUTION or r & (r - 1):
        raise ValueError(f"img_resolution must be a power of two from {min_resolution} to "
                         f"{MAX_RESOLUTION}, got {r}")


def check_parameters(n: int) -> None:
    """Refuse a config of more than MAX_PARAMETERS parameters, before allocating them."""
    if n > MAX_PARAMETERS:
        raise ValueError(f"this config asks for about {n:.2g} parameters ({n * 4 / 2**30:,.0f} "
                         f"GiB in fp32), more than the {MAX_PARAMETERS:.0e} gankit allocates")


# ----------------------------------------------------------------------------------------
# Layers


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Pixel norm of z: x / sqrt(mean(x^2))."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class FullyConnectedLayer(nn.Module):
    """Equalized-lr dense layer (NVIDIA's FullyConnectedLayer, rosinality's EqualLinear)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 activation: str = "linear", lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, I] -> [N, O]
        w = self.weight * self.weight_gain
        b = self.bias * self.bias_gain if self.bias is not None else None
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return ops.bias_act(x.matmul(w.t()), b, act=self.activation)


class Conv2dLayer(nn.Module):
    """Plain equalized-lr convolution with optional up/down-sampling (D, and G's resnet skip)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 bias: bool = True, activation: str = "linear", up: int = 1, down: int = 1,
                 resample_filter=(1, 3, 3, 1), conv_clamp: Optional[float] = None):
        super().__init__()
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.act_gain = ops.ACT_GAIN[activation]
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1) -> torch.Tensor:
        w = self.weight * self.weight_gain  # ops cast w and the bias to a reduced-precision x
        x = ops.conv2d_resample(x, w, f=self.resample_filter, up=self.up, down=self.down,
                                padding=self.padding)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(x, self.bias, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


def modulated_conv2d(x: torch.Tensor,            # [N, I, H, W]
                     weight: torch.Tensor,       # [O, I, k, k]
                     styles: torch.Tensor,       # [N, I]
                     noise: Optional[torch.Tensor] = None,  # broadcastable to output
                     up: int = 1, padding: int = 0,
                     resample_filter: Optional[torch.Tensor] = None,
                     demodulate: bool = True, fused: bool = True,
                     delta=None) -> torch.Tensor:
    """StyleGAN2 weight modulation/demodulation.

    fused=True runs one grouped convolution with per-sample weights (NVIDIA's eval path);
    fused=False scales activations instead and shares one convolution across the batch,
    the same math up to float rounding and much faster on CPUs for large batches.

    x in float16/bfloat16 (a reduced-precision block): NVIDIA's fp16 math. Weight and styles
    are pre-normalised, which demodulation undoes exactly, so that the activations scaled by
    the styles cannot overflow; the per-sample weights and dcoefs stay fp32 and the
    non-fused path runs (NVIDIA's default for fp16 blocks).

    `delta`: sample n convolves with its own weight W + delta_n (Pivotal Tuning's per-image
    generators, gankit.latent.pti): see delta_modulated_conv2d.
    """
    if delta is not None:
        return delta_modulated_conv2d(x, weight, styles, delta, noise, up, padding,
                                      resample_filter, demodulate)
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    reduced = x.dtype in ops.REDUCED_DTYPES
    if reduced and demodulate:
        weight = weight * (1 / math.sqrt(in_channels * kh * kw)
                           / weight.abs().amax(dim=[1, 2, 3], keepdim=True))  # max over I, k, k
        styles = styles / styles.abs().amax(dim=1, keepdim=True)         # max over I
    w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)  # [N, O, I, k, k]
    dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt() if demodulate else None  # [N, O]
    if not fused or reduced:  # the .to(x.dtype) casts are no-ops in fp32
        x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
        x = ops.conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, padding=padding)
        if dcoefs is not None:
            x = x * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
        return x + noise.to(x.dtype) if noise is not None else x
    if dcoefs is not None:
        w = w * dcoefs.reshape(batch_size, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])                                   # [1, N*I, H, W]
    w = w.reshape(-1, in_channels, kh, kw)                               # [N*O, I, k, k]
    x = ops.conv2d_resample(x, w, f=resample_filter, up=up, padding=padding, groups=batch_size)
    x = x.reshape(batch_size, -1, *x.shape[2:])                          # [N, O, H', W']
    if noise is not None:
        x = x + noise
    return x


class LayerDelta(NamedTuple):
    """One modulated layer's change for each sample of a batch (gankit.latent.pti's per-image
    generators): sample n uses weight W + delta_n and bias b + bias_n."""
    weight: object                   # (U [N, O, r], V [N, r, I, k, k]): rank r, U_n V_n;
                                     # or [N, O, I, k, k]: the change itself
    bias: Optional[torch.Tensor]     # [N, O], or None: G's bias


def delta_weight(delta) -> torch.Tensor:
    """A LayerDelta's weight -> the change itself [N, O, I, k, k]."""
    if isinstance(delta, tuple):
        u, v = delta
        return torch.einsum("nor,nrikl->noikl", u, v)
    return delta


def low_rank_dcoefs(weight: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
                    styles: torch.Tensor) -> torch.Tensor:
    """Demodulation coefficients [N, O] of the weights (W + U_n V_n) * s_n without
    materialising them: sum_j (W + UV)_oj^2 s_j^2 expands into W's own term, a cross term
    through V and a rank-r quadratic form (j runs over I, k, k)."""
    n, r = v.shape[:2]
    k2 = weight.shape[2] * weight.shape[3]
    s2 = styles.square().repeat_interleave(k2, dim=1)                    # [N, I*k*k]
    wf = weight.reshape(weight.shape[0], -1)                             # [O, I*k*k]
    vs = v.reshape(n, r, -1) * s2[:, None]                               # [N, r, I*k*k]
    base = s2 @ wf.square().t()                                          # [N, O]
    cross = torch.einsum("oj,nrj->nor", wf, vs)                          # [N, O, r]
    gram = vs @ v.reshape(n, r, -1).transpose(1, 2)                      # [N, r, r]
    quad = torch.einsum("nor,nrq,noq->no", u, gram, u)                   # [N, O]
    total = base + 2 * (u * cross).sum(dim=2) + quad
    return (total.clamp_min(0) + 1e-8).rsqrt()


def per_sample_conv(x: torch.Tensor,                  # [N, I, H, W]
                    v: torch.Tensor,                  # [N, r, I, k, k]
                    f: Optional[torch.Tensor], up: int, padding: int,
                    chunk: int) -> torch.Tensor:      # -> [N, r, H', W']
    """Sample n convolved with its own r filters V_n. A 1x1 one is a batched matmul; else
    `chunk` samples at a time run one shared convolution with all their chunk * r filters
    and keep each sample's own block (the diagonal): chunk times the needed work, but CPU
    kernels run a grouped convolution of r filters per group far slower than that. The
    other blocks get no gradient, so V_n's gradient is sample n's alone."""
    n, r = v.shape[:2]
    if v.shape[3] == 1 and v.shape[4] == 1 and up == 1:
        return torch.einsum("nri,nihw->nrhw", v[..., 0, 0], x)
    out = []
    for s in range(0, n, chunk):
        xs, vs = x[s:s + chunk], v[s:s + chunk]
        c = xs.shape[0]
        h = ops.conv2d_resample(xs, vs.reshape(c * r, *vs.shape[2:]), f=f, up=up,
                                padding=padding)                         # [c, c*r, H', W']
        h = h.reshape(c, c, r, *h.shape[2:]).diagonal(dim1=0, dim2=1)    # [r, H', W', c]
        out.append(h.permute(3, 0, 1, 2))                                # [c, r, H', W']
    return out[0] if len(out) == 1 else torch.cat(out)


def delta_modulated_conv2d(x: torch.Tensor,       # [N, I, H, W]
                           weight: torch.Tensor,  # [O, I, k, k] G's weight W
                           styles: torch.Tensor,  # [N, I]
                           delta,                 # LayerDelta.weight
                           noise: Optional[torch.Tensor] = None, up: int = 1,
                           padding: int = 0, resample_filter: Optional[torch.Tensor] = None,
                           demodulate: bool = True) -> torch.Tensor:
    """modulated_conv2d where sample n's weight is W + delta_n, each sample its own.

    A rank-r delta runs G's shared convolution plus each sample's r filters V_n
    (per_sample_conv), mixed back to O channels by U_n, where materialising N weights (the
    fused path) costs a grouped convolution of full size and a full weight gradient. A
    full delta runs the fused path. Demodulation uses each sample's whole weight. A tuned
    layer runs in fp32, also in a reduced-precision block."""
    dtype, x = x.dtype, x.to(torch.float32)
    batch_size, in_channels = x.shape[:2]
    kh, kw = weight.shape[2:]
    if isinstance(delta, tuple):
        u, v = delta
        dcoefs = low_rank_dcoefs(weight, u, v, styles) if demodulate else None  # [N, O]
        x = x * styles.reshape(batch_size, -1, 1, 1)
        y = ops.conv2d_resample(x, weight, f=resample_filter, up=up, padding=padding)
        h = per_sample_conv(x, v, resample_filter, up, padding,          # [N, r, H', W']
                            chunk=max(1, weight.shape[0] // (4 * v.shape[1])))
        y = y + torch.einsum("nor,nrhw->nohw", u, h)                     # [N, O, H', W']
        if dcoefs is not None:
            y = y * dcoefs.reshape(batch_size, -1, 1, 1)
    else:
        w = (weight.unsqueeze(0) + delta) * styles.reshape(batch_size, 1, -1, 1, 1)
        if demodulate:                                                   # [N, O, I, k, k]
            w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt().reshape(
                batch_size, -1, 1, 1, 1)
        y = ops.conv2d_resample(x.reshape(1, -1, *x.shape[2:]),
                                w.reshape(-1, in_channels, kh, kw), f=resample_filter,
                                up=up, padding=padding, groups=batch_size)
        y = y.reshape(batch_size, -1, *y.shape[2:])                      # [N, O, H', W']
    if noise is not None:
        y = y + noise
    return y.to(dtype)


def add_bias_delta(x: torch.Tensor, delta: Optional[LayerDelta]) -> torch.Tensor:
    """x [N, O, H, W] + each sample's bias change (before G's bias and activation)."""
    if delta is None or delta.bias is None:
        return x
    return x + delta.bias.to(x.dtype).reshape(x.shape[0], -1, 1, 1)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv + noise + bias + lrelu; `up=2` for the first conv of a block."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 kernel_size: int = 3, up: int = 1, use_noise: bool = True,
                 resample_filter=(1, 3, 3, 1), conv_clamp: Optional[float] = None):
        super().__init__()
        self.resolution, self.up, self.use_noise, self.conv_clamp = resolution, up, use_noise, conv_clamp
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = ops.ACT_GAIN["lrelu"]
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def make_noise(self, x: torch.Tensor, noise_mode: str,
                   noise: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        if not self.use_noise or noise_mode == "none":
            return None
        if noise is not None:  # caller-supplied noise map [N, 1, H, W] or [H, W] (inversion)
            return noise * self.noise_strength
        if noise_mode == "random":  # drawn in fp32 in reduced-precision blocks, as NVIDIA does
            r = self.resolution
            dtype = torch.float32 if x.dtype in ops.REDUCED_DTYPES else x.dtype
            return torch.randn([x.shape[0], 1, r, r], device=x.device, dtype=dtype) * self.noise_strength
        if noise_mode == "const":
            return self.noise_const * self.noise_strength
        raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random",
                gain: float = 1, noise: Optional[torch.Tensor] = None,
                fused_modconv: bool = False, delta: Optional[LayerDelta] = None) -> torch.Tensor:
        styles = self.affine(w)                                          # [N, I]
        x = modulated_conv2d(x, self.weight, styles, noise=self.make_noise(x, noise_mode, noise),
                             up=self.up, padding=self.padding, resample_filter=self.resample_filter,
                             fused=fused_modconv, delta=None if delta is None else delta.weight)
        x = add_bias_delta(x, delta)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(x, self.bias, act="lrelu", gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv to image channels, no demodulation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: Optional[float] = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = False,
                delta: Optional[LayerDelta] = None) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused_modconv,
                             delta=None if delta is None else delta.weight)
        return ops.bias_act(add_bias_delta(x, delta), self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: [conv0 (up x2)] conv1 [torgb], with orig/skip/resnet wiring."""

    def __init__(self, in_channels: int,       # 0 = first block (learned constant input)
                 out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = "skip", resample_filter=(1, 3, 3, 1),
                 conv_clamp: Optional[float] = None, use_noise: bool = True):
        super().__init__()
        assert architecture in ("orig", "skip", "resnet"), architecture
        self.in_channels, self.resolution, self.is_last = in_channels, resolution, is_last
        self.architecture = architecture
        self.dtype = torch.float32  # dtype of x inside the block; img stays fp32 (set_dtype)
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))
        layer = dict(w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp, use_noise=use_noise)
        self.num_conv, self.num_torgb = 0, 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=2,
                                        resample_filter=resample_filter, **layer)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, **layer)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter)

    def set_dtype(self, dtype: torch.dtype, conv_clamp: Optional[float]) -> None:
        """Run x in `dtype` with conv outputs clamped to +-conv_clamp (None = no clamp)."""
        self.dtype = dtype
        for name in ("conv0", "conv1", "torgb"):
            if hasattr(self, name):
                getattr(self, name).conv_clamp = conv_clamp

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor],
                ws: torch.Tensor,                # [N, num_conv + num_torgb, w_dim]
                noise_mode: str = "random", noises: tuple = (), fused_modconv: bool = False,
                deltas: Optional[dict] = None):   # {'conv0' | 'conv1' | 'torgb': LayerDelta}
        w_iter = iter(ws.unbind(dim=1))
        n_iter = iter(noises) if noises else iter(lambda: None, 0)
        kw = dict(noise_mode=noise_mode, fused_modconv=fused_modconv)
        d = deltas or {}
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])  # [N, C, 4, 4]
        x = x.to(self.dtype)  # NVIDIA casts x (and the const) on entry; a no-op in fp32
        if self.in_channels == 0:
            x = self.conv1(x, next(w_iter), noise=next(n_iter), delta=d.get("conv1"), **kw)
        elif self.architecture == "resnet":
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x, next(w_iter), noise=next(n_iter), delta=d.get("conv0"), **kw)
            x = self.conv1(x, next(w_iter), gain=np.sqrt(0.5), noise=next(n_iter),
                           delta=d.get("conv1"), **kw)
            x = y + x
        else:
            x = self.conv0(x, next(w_iter), noise=next(n_iter), delta=d.get("conv0"), **kw)
            x = self.conv1(x, next(w_iter), noise=next(n_iter), delta=d.get("conv1"), **kw)
        if img is not None:  # the skip image stays fp32 in every block
            img = ops.upsample2d(img, self.resample_filter)
        if self.num_torgb:
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv,
                           delta=d.get("torgb")).to(torch.float32)
            img = img + y if img is not None else y
        return x, img


# ----------------------------------------------------------------------------------------
# Networks

# Reduced precision (fp16/bf16) where a checkpoint does not say: NVIDIA's values.
NUM_FP16_RES_DEFAULT = 4       # NVIDIA's training default; its legacy-converted FFHQ pickles say 0
FP16_CONV_CLAMP_DEFAULT = 256  # NVIDIA's conv_clamp whenever fp16 blocks are on


class MappingNetwork(nn.Module):
    """z (+ c) -> w, broadcast to num_ws, with truncation towards the tracked w_avg."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: Optional[int],
                 cfg: MappingConfig = MappingConfig()):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = cfg.num_layers, cfg.w_avg_beta
        embed = (cfg.embed_features or w_dim) if c_dim > 0 else 0
        hidden = cfg.layer_features or w_dim
        features = [z_dim + embed] + [hidden] * (cfg.num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed)
        for idx in range(cfg.num_layers):
            setattr(self, f"fc{idx}", FullyConnectedLayer(
                features[idx], features[idx + 1], activation=cfg.activation,
                lr_multiplier=cfg.lr_multiplier))
        if num_ws is not None and cfg.w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def embed_inputs(self, z: Optional[torch.Tensor], c: Optional[torch.Tensor]) -> torch.Tensor:
        x = None
        if self.z_dim > 0:
            assert z is not None and z.shape[1:] == (self.z_dim,), f"z must be [N, {self.z_dim}]"
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            assert c is not None and c.shape[1:] == (self.c_dim,), f"c must be [N, {self.c_dim}]"
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        return x

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None,
                truncation_psi: float = 1, truncation_cutoff: Optional[int] = None,
                update_w_avg: bool = False) -> torch.Tensor:
        x = self.embed_inputs(z, c)                                      # [N, z_dim + embed]
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)                             # [N, w_dim]
        if update_w_avg and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])               # [N, num_ws, w_dim]
        if truncation_psi != 1:
            x = truncate(x, self.w_avg, truncation_psi, truncation_cutoff)
        return x


def truncate(ws: torch.Tensor, w_avg: torch.Tensor, psi: float,
             cutoff: Optional[int] = None) -> torch.Tensor:
    """Truncation trick: w' = w_avg + psi (w - w_avg), on the first `cutoff` layers only."""
    if ws.ndim == 2 or cutoff is None:
        return w_avg.lerp(ws, psi)
    ws = ws.clone()
    ws[:, :cutoff] = w_avg.lerp(ws[:, :cutoff], psi)
    return ws


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> images [N, C, H, W], one SynthesisBlock per resolution."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int,
                 cfg: SynthesisConfig = SynthesisConfig()):
        super().__init__()
        log2 = int(np.log2(img_resolution))
        assert img_resolution == 2 ** log2 and img_resolution >= 4, "resolution must be 2^k >= 4"
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        self.num_fp16_res, self.conv_clamp = cfg.num_fp16_res, cfg.conv_clamp  # the checkpoint's
        self.precision = "fp32"
        channels = {r: min(cfg.channel_base // r, cfg.channel_max) for r in self.block_resolutions}
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(
                channels[res // 2] if res > 4 else 0, channels[res], w_dim=w_dim,
                resolution=res, img_channels=img_channels, is_last=(res == img_resolution),
                architecture=cfg.architecture, resample_filter=cfg.resample_filter,
                conv_clamp=cfg.conv_clamp, use_noise=cfg.use_noise)
            self.num_ws += block.num_conv + (block.num_torgb if res == img_resolution else 0)
            setattr(self, f"b{res}", block)

    def blocks(self):
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def fp16_resolution(self) -> int:
        """Lowest block resolution that runs in reduced precision (NVIDIA's formula, floor 8)."""
        num_fp16_res = self.num_fp16_res or NUM_FP16_RES_DEFAULT
        return max(2 ** (int(np.log2(self.img_resolution)) + 1 - num_fp16_res), 8)

    def set_precision(self, precision: str) -> "SynthesisNetwork":
        """'fp32'/'tf32': every block fp32 with the checkpoint's clamp (tf32 is a backend flag,
        see gankit.precision.configure_backends). 'fp16'/'bf16': blocks at >= fp16_resolution()
        run in that dtype with conv outputs clamped (the checkpoint's clamp, or NVIDIA's 256);
        the others, and the skip image, stay exactly fp32. 'auto': by the parameters' device.
        """
        device = next(self.parameters()).device
        precision = gk_precision.resolve(precision, device.type)
        dtype = gk_precision.reduced_dtype(precision)
        reduced_clamp = self.conv_clamp if self.conv_clamp is not None else FP16_CONV_CLAMP_DEFAULT
        for block in self.blocks():
            if dtype is not None and block.resolution >= self.fp16_resolution():
                block.set_dtype(dtype, reduced_clamp)
            else:
                block.set_dtype(torch.float32, self.conv_clamp)
        self.precision = precision
        return self

    def noise_layers(self) -> list:
        """Every SynthesisLayer with a noise input, in forward order."""
        layers = []
        for block in self.blocks():
            layers += [getattr(block, n) for n in ("conv0", "conv1") if hasattr(block, n)]
        return [l for l in layers if l.use_noise]

    def forward(self, ws: torch.Tensor, noise_mode: str = "random",
                noises: Optional[list] = None, fused_modconv: bool = False,
                deltas: Optional[dict] = None) -> torch.Tensor:
        """`noises`: optional list, one map per noise layer ([N,1,H,W] or [H,W]), unscaled.
        `fused_modconv`: NVIDIA's grouped-conv evaluation path (bit-identical to theirs); the
        default shares one conv across the batch (same math, faster on CPU and in training).
        `deltas`: {'b8.conv0': LayerDelta, ...}, each sample's own change of those layers
        (gankit.latent.pti's tuned generators); the other layers are G's."""
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim), \
            f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}"
        ws = ws.to(torch.float32)
        noise_iter = iter(noises) if noises is not None else None
        x = img = None
        w_idx = 0
        for block in self.blocks():
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            block_noise = ()
            if noise_iter is not None:
                block_noise = tuple(next(noise_iter) for _ in range(block.num_conv))
            x, img = block(x, img, block_ws, noise_mode=noise_mode, noises=block_noise,
                           fused_modconv=fused_modconv, deltas=block_deltas(deltas, block))
            w_idx += block.num_conv
        return img


def block_deltas(deltas: Optional[dict], block: SynthesisBlock) -> Optional[dict]:
    """{'b8.conv0': d, ...} -> block b8's {'conv0': d, ...} (None when it has none)."""
    if not deltas:
        return None
    prefix = f"b{block.resolution}."
    return {k[len(prefix):]: d for k, d in deltas.items() if k.startswith(prefix)} or None


class Generator(nn.Module):
    """G(z, c) = synthesis(mapping(z, c)). Images are [N, C, H, W] in about [-1, 1].
    StyleGAN3's Generator is this one with its own synthesis network (`synthesis_class`)."""

    synthesis_class = SynthesisNetwork

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.c_dim, self.w_dim = cfg.z_dim, cfg.c_dim, cfg.w_dim
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.synthesis = self.synthesis_class(cfg.w_dim, cfg.img_resolution, cfg.img_channels,
                                              cfg.synthesis)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(cfg.z_dim, cfg.c_dim, cfg.w_dim, self.num_ws, cfg.mapping)

    def set_precision(self, precision: str) -> "Generator":
        """See SynthesisNetwork.set_precision; the mapping network always runs fp32."""
        self.synthesis.set_precision(precision)
        return self

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None,
                truncation_psi: float = 1, truncation_cutoff: Optional[int] = None,
                noise_mode: str = "random", fused_modconv: bool = False) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, fused_modconv=fused_modconv)


# ----------------------------------------------------------------------------------------
# Discriminator (for training the toy model; NVIDIA's resnet D with minibatch-stddev)


class DiscriminatorBlock(nn.Module):
    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int,
                 img_channels: int, conv_clamp: Optional[float] = None):
        super().__init__()
        self.in_channels = in_channels
        self.register_buffer("resample_filter", ops.setup_filter((1, 3, 3, 1)))
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu",
                                       conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu",
                                 conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=2,
                                 conv_clamp=conv_clamp)
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x: Optional[torch.Tensor], img: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 0:
            x = self.fromrgb(img)
        y = self.skip(x, gain=np.sqrt(0.5))
        x = self.conv0(x)
        x = self.conv1(x, gain=np.sqrt(0.5))
        return y + x


class MinibatchStdLayer(nn.Module):
    def __init__(self, group_size: int = 4, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, C, H, W] -> [N, C+F, H, W]
        N, C, H, W = x.shape
        G = min(self.group_size, N) if self.group_size else N
        while N % G:  # groups must tile the batch
            G -= 1
        F_, c = self.num_channels, C // self.num_channels
        y = x.reshape(G, -1, F_, c, H, W)
        y = (y - y.mean(dim=0)).square().mean(dim=0)
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])                        # [N/G, F]
        y = y.reshape(-1, F_, 1, 1).repeat(G, 1, H, W)                   # [N, F, H, W]
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    def __init__(self, in_channels: int, resolution: int, c_dim: int = 0, cmap_dim: int = 0,
                 mbstd_group_size: int = 4, mbstd_num_channels: int = 1):
        super().__init__()
        self.cmap_dim = cmap_dim
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels)
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, 3, activation="lrelu")
        self.fc = FullyConnectedLayer(in_channels * resolution ** 2, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: torch.Tensor, cmap: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.conv(self.mbstd(x))
        x = self.out(self.fc(x.flatten(1)))
        if self.cmap_dim > 0:  # projection discriminator
            x = (x * cmap).sum(dim=1, keepdim=True) / np.sqrt(self.cmap_dim)
        return x                                                         # [N, 1]


class Discriminator(nn.Module):
    """Resnet discriminator matching NVIDIA's, names included (b{res}.fromrgb, b4.out, ...)."""

    def __init__(self, c_dim: int, img_resolution: int, img_channels: int = 3,
                 channel_base: int = 32768, channel_max: int = 512,
                 conv_clamp: Optional[float] = None, mbstd_group_size: int = 4):
        super().__init__()
        self.c_dim, self.img_resolution = c_dim, img_resolution
        log2 = int(np.log2(img_resolution))
        self.block_resolutions = [2 ** i for i in range(log2, 2, -1)]
        ch = {r: min(channel_base // r, channel_max) for r in self.block_resolutions + [4]}
        cmap_dim = ch[4] if c_dim > 0 else 0
        for res in self.block_resolutions:
            block = DiscriminatorBlock(ch[res] if res < img_resolution else 0, ch[res],
                                       ch[res // 2], img_channels, conv_clamp=conv_clamp)
            setattr(self, f"b{res}", block)
        if c_dim > 0:
            self.mapping = MappingNetwork(0, c_dim, cmap_dim, num_ws=None,
                                          cfg=MappingConfig(w_avg_beta=None))
        self.b4 = DiscriminatorEpilogue(ch[4], 4, c_dim, cmap_dim, mbstd_group_size)

    def forward(self, img: torch.Tensor, c: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, cmap)                                          # [N, 1] logits
