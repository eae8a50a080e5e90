"""StyleGAN3 generator (configs T and R), written here to follow the math of NVIDIA's stylegan3
`training/networks_stylegan3.py` (reference, non-CUDA path) from the paper "Alias-Free
Generative Adversarial Networks" (Karras et al. 2021).

    z (+c) -> mapping -> ws [N, num_ws, w_dim]
    ws[0]  -> SynthesisInput: Fourier features on a grid, rotated/translated by an affine of w
    ws[i+1] -> L{i}_{size}_{channels}: modulated conv, then the filtered leaky ReLU
              (up-sample, bias + lrelu, down-sample) at each layer's own sampling rate
    the last layer is the ToRGB layer (1x1 conv, no demodulation, no non-linearity)

Names mirror NVIDIA's state-dict keys (`synthesis.input.freqs`, `synthesis.L3_52_1024.affine
.weight`, `...magnitude_ema`, `...up_filter`), so importing a pickle is a name- and
shape-checked copy (gankit.loading.checkpoints). The interface is the StyleGAN2 Generator's
(mapping, synthesis, num_ws, z_dim/w_dim/c_dim, img_resolution, set_precision); StyleGAN3 has no
noise inputs, so `noise_layers()` is empty and `noise_mode` is accepted and ignored.

The user transform: `G.synthesis.set_transform(translate=(tx, ty), angle=deg)` rotates the
output by `angle` degrees and moves it by `translate` (units of the image width), as
NVIDIA's gen_images.py `--translate/--rotate` do. The matrix is a buffer, saved with the model.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gankit import precision as gk_precision
from gankit.models import filters, stylegan2
from gankit.models.stylegan2 import (FP16_CONV_CLAMP_DEFAULT, NUM_FP16_RES_DEFAULT,
                                     FullyConnectedLayer, MappingConfig)

# ----------------------------------------------------------------------------------------
# Configs


def _mapping_default() -> MappingConfig:
    return MappingConfig(num_layers=2, w_avg_beta=0.998)  # NVIDIA's StyleGAN3 defaults


@dataclass
class SynthesisConfig:
    channel_base: int = 32768              # Overall multiplier for the number of channels.
    channel_max: int = 512                 # Maximum number of channels in any layer.
    num_layers: int = 14                   # Layers excluding the Fourier input and ToRGB.
    num_critical: int = 2                  # Critically sampled layers at the end.
    first_cutoff: float = 2                # Cutoff frequency of the first layer (f_c,0).
    first_stopband: float = 2 ** 2.1       # Minimum stopband of the first layer (f_t,0).
    last_stopband_rel: float = 2 ** 0.3    # Minimum stopband of the last layer, / its cutoff.
    margin_size: int = 10                  # Extra pixels computed outside the image, each side.
    output_scale: float = 0.25             # Scale factor of the output image.
    num_fp16_res: int = 4                  # Highest resolutions set_precision reduces; 0 = 4.
    conv_kernel: int = 3                   # Kernel size: 3 for config T, 1 for config R.
    filter_size: int = 6                   # Low-pass taps per sample of the lower rate.
    lrelu_upsampling: int = 2              # Sampling rate of the lrelu, relative to the layer's.
    use_radial_filters: bool = False       # Radially symmetric down-sampling filters (R).
    conv_clamp: Optional[float] = 256      # Clamp layer outputs to +-X, None = no clamping.
    magnitude_ema_beta: float = 0.999      # Decay of the tracked input magnitude (training).


@dataclass
class GeneratorConfig:
    z_dim: int = 512                       # Input latent (Z) dimensionality.
    c_dim: int = 0                         # Conditioning label (C) dimensionality, 0 = none.
    w_dim: int = 512                       # Intermediate latent (W) dimensionality.
    img_resolution: int = 1024             # Output resolution, a power of two >= 16.
    img_channels: int = 3                  # Number of output color channels.
    mapping: MappingConfig = field(default_factory=_mapping_default)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GeneratorConfig":
        d = dict(d)
        mapping = MappingConfig(**d.pop("mapping", {"num_layers": 2, "w_avg_beta": 0.998}))
        synthesis = SynthesisConfig(**d.pop("synthesis", {}))
        return cls(**d, mapping=mapping, synthesis=synthesis)

    def num_parameters(self) -> int:
        """About how many parameters this generator holds, known before allocating."""
        hidden, m = self.w_dim, self.mapping
        n = (self.z_dim + (hidden if self.c_dim else 0)) * hidden + (m.num_layers - 1) * hidden ** 2
        specs = layer_specs(self.img_resolution, self.img_channels, self.synthesis)
        n += specs.channels[0] ** 2
        k = self.synthesis.conv_kernel
        for i in range(self.synthesis.num_layers + 1):
            cin, cout = specs.channels[max(i - 1, 0)], specs.channels[i]
            n += self.w_dim * cin + cin * cout * (k * k if i < self.synthesis.num_layers else 1)
        return int(n)

    def validate(self) -> None:
        """Refuse values no generator has, and sizes no machine holds, before allocating."""
        s = self.synthesis
        ints = {"z_dim": self.z_dim, "w_dim": self.w_dim, "img_channels": self.img_channels,
                "img_resolution": self.img_resolution, "mapping.num_layers": self.mapping.num_layers,
                "synthesis.channel_base": s.channel_base, "synthesis.channel_max": s.channel_max,
                "synthesis.num_layers": s.num_layers, "synthesis.conv_kernel": s.conv_kernel,
                "synthesis.filter_size": s.filter_size, "synthesis.lrelu_upsampling": s.lrelu_upsampling}
        stylegan2.check_sizes(ints, self.c_dim, self.img_resolution, 16)
        if not 0 <= s.num_critical < s.num_layers:
            raise ValueError(f"synthesis.num_critical must be in [0, num_layers), got {s.num_critical}")
        stylegan2.check_parameters(self.num_parameters())


# ----------------------------------------------------------------------------------------
# Layer specifications (the paper's Sec. 3.2 and Appendix F; NVIDIA's SynthesisNetwork)


@dataclass
class LayerSpecs:
    """Per layer i in [0, num_layers]: arrays of length num_layers + 1 (index 0 also
    describes the Fourier input, which layer 0 reads)."""
    cutoffs: np.ndarray          # f_c[i]: cutoff frequency
    stopbands: np.ndarray        # f_t[i]: minimum stopband
    sampling_rates: np.ndarray   # s[i]: the smallest power of two >= 2 f_t (at most the image's)
    half_widths: np.ndarray      # f_h[i]: transition band half-width
    sizes: np.ndarray            # spatial size: s[i] + 2 margins; the image size at the end
    channels: np.ndarray         # feature maps, inversely proportional to the cutoff


def layer_specs(img_resolution: int, img_channels: int, cfg: SynthesisConfig) -> LayerSpecs:
    """Cutoffs and stopbands grow geometrically from the first layer's to the image's
    Nyquist frequency, reached `num_critical` layers before the end (critical sampling)."""
    last_cutoff = img_resolution / 2                                     # f_c,N
    last_stopband = last_cutoff * cfg.last_stopband_rel                  # f_t,N
    exponents = np.minimum(np.arange(cfg.num_layers + 1) / (cfg.num_layers - cfg.num_critical), 1)
    cutoffs = cfg.first_cutoff * (last_cutoff / cfg.first_cutoff) ** exponents
    stopbands = cfg.first_stopband * (last_stopband / cfg.first_stopband) ** exponents
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
    sizes = sampling_rates + cfg.margin_size * 2
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum((cfg.channel_base / 2) / cutoffs, cfg.channel_max))
    channels[-1] = img_channels
    return LayerSpecs(cutoffs, stopbands, sampling_rates, half_widths, sizes, channels)


# ----------------------------------------------------------------------------------------
# Layers


def make_transform(translate: Sequence[float] = (0.0, 0.0), angle: float = 0.0) -> np.ndarray:
    """[3, 3] float64: rotation by `angle` degrees and translation, in the convention of
    NVIDIA's gen_images.py (the network is given its inverse)."""
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return np.array([[c, s, translate[0]], [-s, c, translate[1]], [0.0, 0.0, 1.0]])


class SynthesisInput(nn.Module):
    """Fourier features sin(2 pi (f . x + phi)) with frequencies in a disc of radius
    `bandwidth`, rotated and translated per sample by an affine of w, then mixed by a
    learned channel matrix. `transform` is the user's inverse transform of the image."""

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float,
                 bandwidth: float):
        super().__init__()
        self.w_dim, self.channels, self.size = w_dim, channels, size
        self.sampling_rate, self.bandwidth = float(sampling_rate), float(bandwidth)
        freqs = torch.randn([channels, 2])                               # uniform in the disc:
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()           # a Gaussian direction,
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth  # a radius law
        self.weight = nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4)
        with torch.no_grad():  # starts as the identity transform: (cos, sin, tx, ty) = (1, 0, 0, 0)
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        self.register_buffer("transform", torch.eye(3))
        self.register_buffer("freqs", freqs)                             # [C, 2]
        self.register_buffer("phases", torch.rand([channels]) - 0.5)     # [C]

    def set_transform(self, translate: Sequence[float] = (0.0, 0.0), angle: float = 0.0) -> None:
        """Rotate the output image by `angle` degrees and translate it by `translate`
        (x right, y down, in units of the image width/height)."""
        inverse = np.linalg.inv(make_transform(translate, angle))
        self.transform.copy_(torch.from_numpy(inverse).to(self.transform))

    def learned_transform(self, w: torch.Tensor) -> torch.Tensor:
        """[N, 3, 3]: rotation then translation predicted from w, then the user's transform."""
        t = self.affine(w)                                               # [N, 4] (r_c, r_s, t_x, t_y)
        t = t / t[:, :2].norm(dim=1, keepdim=True)                       # a pure rotation
        eye = torch.eye(3, device=w.device).unsqueeze(0).repeat([w.shape[0], 1, 1])
        m_r, m_t = eye, eye.clone()
        m_r[:, 0, 0], m_r[:, 0, 1], m_r[:, 1, 0], m_r[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        m_t[:, 0, 2], m_t[:, 1, 2] = -t[:, 2], -t[:, 3]
        return m_r @ m_t @ self.transform.unsqueeze(0)

    def forward(self, w: torch.Tensor) -> torch.Tensor:                 # [N, w_dim] -> [N, C, S, S]
        transforms = self.learned_transform(w)                           # [N, 3, 3]
        freqs = self.freqs.unsqueeze(0)                                  # [1, C, 2]
        phases = self.phases.unsqueeze(0) + (freqs @ transforms[:, :2, 2:]).squeeze(2)  # [N, C]
        freqs = freqs @ transforms[:, :2, :2]                            # [N, C, 2]
        # A user rotation/scale can push frequencies past the band: fade them out.
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth)
                      / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)  # [N, C]
        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = theta[1, 1] = 0.5 * self.size / self.sampling_rate
        grids = F.affine_grid(theta.unsqueeze(0), [1, 1, self.size, self.size],
                              align_corners=False)                       # [1, S, S, 2]
        x = (grids.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)
        x = x + phases.unsqueeze(1).unsqueeze(2)                         # [N, S, S, C]
        x = torch.sin(x * (np.pi * 2)) * amplitudes.unsqueeze(1).unsqueeze(2)
        x = x @ (self.weight / np.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)                                     # [N, C, S, S]


def modulated_conv2d(x: torch.Tensor,            # [N, I, H, W]
                     weight: torch.Tensor,       # [O, I, k, k]
                     styles: torch.Tensor,       # [N, I]
                     input_gain: torch.Tensor,   # [] scales every input channel
                     demodulate: bool = True, padding: int = 0,
                     fused: bool = False) -> torch.Tensor:
    """StyleGAN3's modulated convolution. With demodulation, weight and styles are first
    normalised to unit RMS; demodulation undoes any scale, so this changes nothing but keeps
    fp16 from overflowing. NVIDIA normalises the styles by their RMS over the whole batch;
    here it is per sample (the same images up to rounding, and independent of the batch).

    fused=True: one grouped convolution with per-sample weights (NVIDIA's path, used in
    reduced precision); False: activations scaled instead, one convolution for the batch."""
    N, (O, I, kh, kw) = x.shape[0], weight.shape
    if demodulate:
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean(dim=1, keepdim=True).rsqrt()
    w = weight.unsqueeze(0) * styles.reshape(N, 1, I, 1, 1)              # [N, O, I, k, k]
    dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt() if demodulate else None  # [N, O]
    if not fused:
        x = x * (styles * input_gain).to(x.dtype).reshape(N, I, 1, 1)
        x = F.conv2d(x, weight.to(x.dtype), padding=padding)
        return x * dcoefs.to(x.dtype).reshape(N, O, 1, 1) if demodulate else x
    if demodulate:
        w = w * dcoefs.reshape(N, O, 1, 1, 1)
    w = w * input_gain
    x = F.conv2d(x.reshape(1, N * I, *x.shape[2:]), w.reshape(N * O, I, kh, kw).to(x.dtype),
                 padding=padding, groups=N)
    return x.reshape(N, O, *x.shape[2:])


@dataclass
class LayerSpec:
    """One SynthesisLayer's input and output signals (see layer_specs)."""
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    in_sampling_rate: int
    out_sampling_rate: int
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    is_torgb: bool = False
    is_critically_sampled: bool = False


class SynthesisLayer(nn.Module):
    """Modulated conv -> filtered leaky ReLU: bias, up-sample to the lrelu's rate, lrelu,
    clamp, down-sample to the output rate. As ToRGB: 1x1 conv, no demodulation, identity."""

    def __init__(self, w_dim: int, spec: LayerSpec, cfg: SynthesisConfig):
        super().__init__()
        self.spec, self.is_torgb = spec, spec.is_torgb
        self.in_channels, self.out_channels = spec.in_channels, spec.out_channels
        self.conv_kernel = 1 if spec.is_torgb else cfg.conv_kernel
        self.conv_clamp = self.clamp = cfg.conv_clamp  # the clamp in use (set_dtype may set one)
        self.dtype = torch.float32
        self.weight_gain = 1 / np.sqrt(spec.in_channels * self.conv_kernel ** 2)
        self.affine = FullyConnectedLayer(w_dim, spec.in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([spec.out_channels, spec.in_channels,
                                                self.conv_kernel, self.conv_kernel]))
        self.bias = nn.Parameter(torch.zeros([spec.out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))
        self._design_filters(spec, cfg)

    def _design_filters(self, spec: LayerSpec, cfg: SynthesisConfig) -> None:
        tmp_rate = max(spec.in_sampling_rate, spec.out_sampling_rate) * (
            1 if spec.is_torgb else cfg.lrelu_upsampling)                 # the lrelu's rate
        self.up_factor = int(np.rint(tmp_rate / spec.in_sampling_rate))
        self.down_factor = int(np.rint(tmp_rate / spec.out_sampling_rate))
        up_taps = cfg.filter_size * self.up_factor if self.up_factor > 1 and not spec.is_torgb else 1
        down_taps = (cfg.filter_size * self.down_factor
                     if self.down_factor > 1 and not spec.is_torgb else 1)
        radial = cfg.use_radial_filters and not spec.is_critically_sampled
        self.register_buffer("up_filter", filters.kaiser_lowpass(
            up_taps, spec.in_cutoff, spec.in_half_width * 2, tmp_rate))
        design = filters.jinc_lowpass if radial else filters.kaiser_lowpass
        self.register_buffer("down_filter", design(
            down_taps, spec.out_cutoff, spec.out_half_width * 2, tmp_rate))
        # Pad so that the output has out_size samples, centred as in the paper's App. C.3.
        pad_total = ((spec.out_size - 1) * self.down_factor + 1
                     - (spec.in_size + self.conv_kernel - 1) * self.up_factor
                     + up_taps + down_taps - 2)
        pad_lo = (pad_total + self.up_factor) // 2
        self.padding = [pad_lo, pad_total - pad_lo] * 2                  # [x0, x1, y0, y1]

    def set_dtype(self, dtype: torch.dtype, clamp: Optional[float]) -> None:
        self.dtype, self.clamp = dtype, clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = False) -> torch.Tensor:
        s = self.spec
        assert x.shape[1:] == (s.in_channels, s.in_size, s.in_size), \
            f"x must be [N, {s.in_channels}, {s.in_size}, {s.in_size}], got {list(x.shape)}"
        styles = self.affine(w)                                          # [N, I]
        if self.is_torgb:
            styles = styles * self.weight_gain
        reduced = self.dtype != torch.float32
        x = modulated_conv2d(x.to(self.dtype), self.weight, styles, self.magnitude_ema.rsqrt(),
                             demodulate=not self.is_torgb, padding=self.conv_kernel - 1,
                             fused=fused_modconv or reduced)             # [N, O, H + k - 1, ...]
        gain, slope = (1, 1) if self.is_torgb else (np.sqrt(2), 0.2)
        return filters.filtered_lrelu(x, self.up_filter, self.down_filter, self.bias,
                                      up=self.up_factor, down=self.down_factor,
                                      padding=self.padding, gain=gain, slope=slope,
                                      clamp=self.clamp)                  # [N, O, out, out]


# ----------------------------------------------------------------------------------------
# Networks


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> images [N, C, H, W]: the Fourier input, num_layers layers
    and ToRGB (num_ws = num_layers + 2)."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int,
                 cfg: SynthesisConfig = SynthesisConfig()):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.num_layers, self.num_ws = cfg.num_layers, cfg.num_layers + 2
        self.output_scale, self.num_fp16_res, self.conv_clamp = (
            cfg.output_scale, cfg.num_fp16_res, cfg.conv_clamp)
        self.precision = "fp32"
        sp = layer_specs(img_resolution, img_channels, cfg)
        self.sampling_rates = [int(r) for r in sp.sampling_rates]
        self.input = SynthesisInput(w_dim, int(sp.channels[0]), int(sp.sizes[0]),
                                    sp.sampling_rates[0], sp.cutoffs[0])
        self.layer_names = []
        for idx in range(cfg.num_layers + 1):
            prev = max(idx - 1, 0)
            spec = LayerSpec(
                int(sp.channels[prev]), int(sp.channels[idx]), int(sp.sizes[prev]),
                int(sp.sizes[idx]), int(sp.sampling_rates[prev]), int(sp.sampling_rates[idx]),
                float(sp.cutoffs[prev]), float(sp.cutoffs[idx]), float(sp.half_widths[prev]),
                float(sp.half_widths[idx]), is_torgb=idx == cfg.num_layers,
                is_critically_sampled=idx >= cfg.num_layers - cfg.num_critical)
            name = f"L{idx}_{spec.out_size}_{spec.out_channels}"
            setattr(self, name, SynthesisLayer(w_dim, spec, cfg))
            self.layer_names.append(name)

    def layers(self) -> list:
        return [getattr(self, name) for name in self.layer_names]

    def set_transform(self, translate: Sequence[float] = (0.0, 0.0), angle: float = 0.0
                      ) -> "SynthesisNetwork":
        """Rotate the output by `angle` degrees (counter-clockwise as displayed) and move it
        by `translate` (x right, y down; 1.0 = the image width), for every image rendered
        from now on; NVIDIA's gen_images.py `--rotate/--translate`. (0, 0), 0 is the identity."""
        self.input.set_transform(translate, angle)
        return self

    def style_affines(self) -> list:
        """[(ws_index, name, FullyConnectedLayer)] of every layer's style affine (ws[i + 1]
        drives L{i}); the input's affine predicts a rotation and translation, not styles."""
        return [(i + 1, name, getattr(self, name).affine) for i, name in enumerate(self.layer_names)]

    def noise_layers(self) -> list:
        """StyleGAN3 has no per-pixel noise inputs."""
        return []

    def fp16_sampling_rate(self) -> int:
        """Layers whose sampling rate exceeds this run in reduced precision (NVIDIA's rule)."""
        return self.img_resolution // 2 ** (self.num_fp16_res or NUM_FP16_RES_DEFAULT)

    def set_precision(self, precision: str) -> "SynthesisNetwork":
        """'fp32'/'tf32': every layer fp32 with the checkpoint's clamp. 'fp16'/'bf16': the
        layers NVIDIA runs in fp16 (sampling rate * 2^num_fp16_res > resolution) take that
        dtype, clamped (the checkpoint's clamp, or NVIDIA's 256); the input stays fp32."""
        device = next(self.parameters()).device
        precision = gk_precision.resolve(precision, device.type)
        dtype = gk_precision.reduced_dtype(precision)
        clamp = self.conv_clamp if self.conv_clamp is not None else FP16_CONV_CLAMP_DEFAULT
        for layer in self.layers():
            if dtype is not None and layer.spec.out_sampling_rate > self.fp16_sampling_rate():
                layer.set_dtype(dtype, clamp)
            else:
                layer.set_dtype(torch.float32, self.conv_clamp)
        self.precision = precision
        return self

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", noises: Optional[list] = None,
                fused_modconv: bool = False) -> torch.Tensor:
        """`noise_mode` is accepted for the StyleGAN2 interface; `noises` must be empty.
        `fused_modconv`: NVIDIA's grouped-convolution path (the default shares one conv)."""
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim), \
            f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}"
        if noise_mode not in ("random", "const", "none"):
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        if noises:
            raise ValueError("a StyleGAN3 generator has no noise inputs; noises must be empty")
        ws = ws.to(torch.float32).unbind(dim=1)
        x = self.input(ws[0])                                            # [N, C0, S0, S0]
        for layer, w in zip(self.layers(), ws[1:]):
            x = layer(x, w, fused_modconv=fused_modconv)
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.to(torch.float32)                                       # [N, C, R, R]


class Generator(stylegan2.Generator):
    """G(z, c) = synthesis(mapping(z, c)): StyleGAN2's Generator with StyleGAN3's synthesis
    network (no noise inputs: `noise_mode` is accepted and ignored)."""

    model_name = "stylegan3"
    synthesis_class = SynthesisNetwork
