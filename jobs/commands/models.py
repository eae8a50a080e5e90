"""`gankit inspect PATH` and `gankit convert IN OUT`: thin wrappers over
gankit.loading.checkpoints."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

from jobs.config import option

NETWORKS = ("G_ema", "G")


@dataclass
class InspectConfig:
    path: str = option("", "'toy', NVIDIA .pkl, rosinality .pt, or gankit checkpoint "
                           "directory", positional=True)
    network: str = option("G_ema", "which generator of a multi-network file (default G_ema)",
                          choices=NETWORKS)
    json: bool = option(False, "print the summary as JSON", switch=True)

    def validate(self) -> None:
        """The checkpoint loader names what is wrong with the file."""


@dataclass
class ConvertConfig:
    input: str = option("", "NVIDIA .pkl, rosinality .pt, or gankit checkpoint directory",
                        positional=True)
    output: str = option("", "output directory (config.json + model.safetensors)",
                         positional=True)
    network: str = option("G_ema", "which generator of a multi-network file (default G_ema)",
                          choices=NETWORKS)
    translate: Optional[list[float]] = option(None, "StyleGAN3: move every image the "
                                                    "converted model renders by TX, TY (x "
                                                    "right, y down; 1.0 = the image width), as "
                                                    "NVIDIA's --translate", length=2,
                                              metavar=("TX", "TY"))
    rotate: Optional[float] = option(None, "StyleGAN3: rotate every image it renders "
                                           "(counter-clockwise)", metavar="DEGREES")

    def validate(self) -> None:
        """The converter names what is wrong with the file."""


def checkpoint_path(name: str) -> str:
    """'toy' names the bundled generator, as --model toy does everywhere else."""
    from gankit.loading import zoo
    return zoo.TOY_GENERATOR if name == "toy" else name


def inspect_command(cfg: InspectConfig) -> int:
    from gankit.loading.checkpoints import inspect_checkpoint

    info = inspect_checkpoint(checkpoint_path(cfg.path), network=cfg.network)
    if cfg.json:
        print(json.dumps(info, indent=2))
        return 0
    channels = ", ".join(f"{res}: {ch}" for res, ch in info["channels"].items())
    conditioning = f"c_dim={info['c_dim']}" if info["c_dim"] else "none"
    for key, value in [("format", info["format"]), ("network", info["network"]),
                       ("resolution", info["resolution"]), ("num_ws", info["num_ws"]),
                       ("w_dim", info["w_dim"]), ("z_dim", info["z_dim"]),
                       ("conditioning", conditioning), ("channels", channels),
                       ("architecture", info["architecture"]),
                       ("mapping_layers", info["mapping_layers"]),
                       ("parameters", info["num_params"])]:
        print(f"{key}: {value}")
    return 0


def convert_command(cfg: ConvertConfig) -> int:
    from gankit.loading.checkpoints import convert_checkpoint

    transform = None
    if cfg.translate is not None or cfg.rotate is not None:
        transform = (tuple(cfg.translate or (0.0, 0.0)), cfg.rotate or 0.0)
    out = convert_checkpoint(checkpoint_path(cfg.input), cfg.output, network=cfg.network,
                             transform=transform)
    print(f"wrote {out}")
    return 0
