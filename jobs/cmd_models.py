"""`gankit inspect PATH` and `gankit convert IN OUT`: thin wrappers over gankit.checkpoints."""
from __future__ import annotations

import argparse
import json

NETWORKS = ("G_ema", "G")


def inspect_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="'toy', NVIDIA .pkl, rosinality .pt, or gankit checkpoint "
                                "directory")
    p.add_argument("--network", default="G_ema", choices=NETWORKS,
                   help="which generator of a multi-network file (default G_ema)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def convert_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="NVIDIA .pkl, rosinality .pt, or gankit checkpoint directory")
    p.add_argument("output", help="output directory (config.json + model.safetensors)")
    p.add_argument("--network", default="G_ema", choices=NETWORKS,
                   help="which generator of a multi-network file (default G_ema)")
    p.add_argument("--translate", type=float, nargs=2, metavar=("TX", "TY"), default=None,
                   help="StyleGAN3: move every image the converted model renders by TX, TY "
                        "(x right, y down; 1.0 = the image width), as NVIDIA's --translate")
    p.add_argument("--rotate", type=float, default=None, metavar="DEGREES",
                   help="StyleGAN3: rotate every image it renders (counter-clockwise)")


def checkpoint_path(name: str) -> str:
    """'toy' names the bundled generator, as --model toy does everywhere else."""
    from gankit import zoo
    return zoo.TOY_GENERATOR if name == "toy" else name


def inspect_command(args: argparse.Namespace) -> int:
    from gankit.checkpoints import inspect_checkpoint

    info = inspect_checkpoint(checkpoint_path(args.path), network=args.network)
    if args.json:
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


def convert_command(args: argparse.Namespace) -> int:
    from gankit.checkpoints import convert_checkpoint

    transform = None
    if args.translate is not None or args.rotate is not None:
        transform = (tuple(args.translate or (0.0, 0.0)), args.rotate or 0.0)
    out = convert_checkpoint(checkpoint_path(args.input), args.output, network=args.network,
                             transform=transform)
    print(f"wrote {out}")
    return 0
