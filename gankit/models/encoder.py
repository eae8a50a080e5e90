"""A small CNN W+ encoder: image [N, 3, H, W] in [-1, 1] -> w+ [N, num_ws, w_dim].

In the spirit of pSp / e4e (encoders into StyleGAN's W+), sized for the toy world: a
convolutional trunk halves the resolution down to 2x2, a bottleneck MLP reads the 2x2
features, and a linear head predicts every layer's w as an OFFSET from the generator's w_avg
(kept as a buffer: pSp likewise adds the average latent to its encoder's output, so training
learns deviations from the average face). Images at another resolution are resized to the encoder's.

Native format (as generators): a directory with `config.json` + `model.safetensors`; loading
reads JSON and tensors only, never code.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

from gankit import atomic
from gankit.models.config import WidthsConfig

FORMAT_NAME = "gankit.encoder"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class EncoderConfig(WidthsConfig):
    resolution: int = 32          # input resolution (the generator's); a power of two >= 4
    num_ws: int = 8               # W+ layers of the generator
    w_dim: int = 128              # w width of the generator
    widths: tuple = (32, 64, 128, 128)  # channels of the stages; each halves H, W (32 -> 2)
    bottleneck: int = 256         # MLP width between the 2x2 features and the w+ head
    generator: str = ""           # what it was trained for (informational)

    def validate(self) -> None:
        log2 = int(math.log2(self.resolution))
        if self.resolution != 2 ** log2 or self.resolution < 4:
            raise ValueError(f"encoder resolution must be a power of two >= 4, got {self.resolution}")
        if len(self.widths) != log2 - 1:
            raise ValueError(f"widths must name {log2 - 1} stages ({self.resolution}px down to "
                             f"2px), got {list(self.widths)}")


class DownBlock(nn.Module):
    """3x3 conv (c_in -> c_out), then a stride-2 3x3 conv: halves H and W."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.down = nn.Conv2d(c_out, c_out, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:      # [N, I, H, W] -> [N, O, H/2, W/2]
        x = F.leaky_relu(self.conv(x), 0.2)
        return F.leaky_relu(self.down(x), 0.2)


class WPlusEncoder(nn.Module):
    def __init__(self, cfg: EncoderConfig, w_avg: torch.Tensor = None):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.resolution, self.num_ws, self.w_dim = cfg.resolution, cfg.num_ws, cfg.w_dim
        chans = (3,) + tuple(cfg.widths)
        # stage i: resolution / 2^i -> resolution / 2^(i+1), the last one ends at 2x2
        self.blocks = nn.Sequential(*[DownBlock(a, b) for a, b in zip(chans[:-1], chans[1:])])
        feat = chans[-1] * 2 * 2                   # [C, 2, 2] flattened
        self.fc = nn.Linear(feat, cfg.bottleneck)
        self.head = nn.Linear(cfg.bottleneck, cfg.num_ws * cfg.w_dim)
        with torch.no_grad():                      # small initial offsets: start near w_avg
            self.head.weight.mul_(0.1)
            self.head.bias.zero_()
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim) if w_avg is None
                             else w_avg.detach().to(torch.float32).reshape(cfg.w_dim).clone())

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] == self.resolution:
            return images
        mode = "area" if images.shape[-1] > self.resolution else "bilinear"
        return F.interpolate(images, size=(self.resolution, self.resolution), mode=mode)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # [N, 3, H, W] -> [N, num_ws, w_dim]
        assert images.ndim == 4 and images.shape[1] == 3, \
            f"images must be [N, 3, H, W], got {list(images.shape)}"
        x = self.blocks(self.resize(images.to(torch.float32)))          # [N, C, 2, 2]
        h = F.leaky_relu(self.fc(x.flatten(1)), 0.2)                    # [N, bottleneck]
        offset = self.head(h).view(-1, self.num_ws, self.w_dim)          # [N, num_ws, w_dim]
        return self.w_avg.view(1, 1, -1) + offset


def new_encoder(G, widths: tuple = None, bottleneck: int = None, generator: str = "") -> WPlusEncoder:
    """An untrained encoder for generator G (its resolution, num_ws, w_dim and w_avg)."""
    log2 = int(math.log2(G.img_resolution))
    default = EncoderConfig()
    widths = widths or tuple(min(32 * 2 ** i, 128) for i in range(log2 - 1))
    cfg = EncoderConfig(resolution=G.img_resolution, num_ws=G.num_ws, w_dim=G.w_dim,
                        widths=tuple(widths), bottleneck=bottleneck or default.bottleneck,
                        generator=generator)
    return WPlusEncoder(cfg, G.mapping.w_avg)


# ----------------------------------------------------------------------------------------
# Native format


def save_encoder(E: WPlusEncoder, path: Union[str, Path], source: dict = None) -> Path:
    """Write E to directory `path`: config.json + model.safetensors (each replaced atomically)."""
    from safetensors.torch import save_file
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in E.state_dict().items()}
    with atomic.replacing(out / WEIGHTS_FILE) as tmp:
        save_file(tensors, tmp, metadata={"format": FORMAT_NAME})
    config = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
              "config": E.cfg.to_dict(), "source": source or {}}
    atomic.write_bytes(out / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
    return out


def load_encoder(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> WPlusEncoder:
    """Read a native encoder directory (JSON + safetensors, no code) -> eval-mode encoder."""
    from safetensors.torch import load_file
    root = Path(path)
    if not (root / CONFIG_FILE).is_file() or not (root / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{root}: not an encoder directory (needs {CONFIG_FILE} and "
                                f"{WEIGHTS_FILE})")
    meta = json.loads((root / CONFIG_FILE).read_text())
    if meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{root / CONFIG_FILE}: format is {meta.get('format')!r}, "
                         f"expected {FORMAT_NAME!r}")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{root}: encoder format version {meta['format_version']} is newer "
                         f"than this gankit reads ({FORMAT_VERSION})")
    E = WPlusEncoder(EncoderConfig.from_dict(meta["config"]))
    state = load_file(str(root / WEIGHTS_FILE), device="cpu")
    missing, unexpected = set(E.state_dict()) - set(state), set(state) - set(E.state_dict())
    if missing or unexpected:
        raise ValueError(f"{root}: weights do not match the config (missing {sorted(missing)[:3]}, "
                         f"unexpected {sorted(unexpected)[:3]})")
    E.load_state_dict(state)
    return E.to(device).eval().requires_grad_(False)


def check_compatible(E: WPlusEncoder, G) -> None:
    """Refuse an encoder trained for another generator shape (num_ws / w_dim; a field
    encoder's resolution too: gankit.loading.field_encoders.check_generator)."""
    if hasattr(E, "generator_resolution"):
        from gankit.loading.field_encoders import check_generator
        return check_generator(E, G)
    if E.num_ws != G.num_ws or E.w_dim != G.w_dim:
        raise ValueError(f"encoder outputs w+ [{E.num_ws}, {E.w_dim}] but the generator takes "
                         f"[{G.num_ws}, {G.w_dim}]: use an encoder trained for this generator")
