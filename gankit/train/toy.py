"""Build the bundled toy model: render the toy world, train the classifier and StyleGAN2.

Run as `gankit train-classifier` / `gankit train-gan` (jobs/commands/train.py), or directly with
`python -m gankit.train.toy ...` on a machine without Ray (a rented GPU, say).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from gankit.images import from_uint8, make_grid, save_png, to_uint8
from gankit.models.stylegan2 import GeneratorConfig, MappingConfig, SynthesisConfig
from gankit.toy import toyfaces
from gankit.train.classifier import ClassifierTrainConfig, train_classifier
from gankit.train.gan import GanTrainConfig, train_gan

# The shipped toy generator: 32x32, channels 128 up to 16x16 and 64 at 32x32, W of 128.
TOY_GENERATOR = GeneratorConfig(
    z_dim=128, w_dim=128, img_resolution=32, img_channels=3,
    mapping=MappingConfig(num_layers=4),
    synthesis=SynthesisConfig(channel_base=2048, channel_max=128, architecture="skip"))

MOMENT_REALS = 10000   # reals whose classifier moments the attribute moment term matches


def attribute_names() -> list:
    return list(toyfaces.ATTRIBUTE_NAMES)


def render_dataset(n: int, seed: int, resolution: int = 32):
    """Rendered images [n, H, W, 3] uint8 and labels [n, A] bool; rows fixed by (seed, row)."""
    images, factors = toyfaces.render_dataset(n, seed, resolution)
    return images, toyfaces.label_matrix(factors)


def build_classifier(out: str, n_images: int, seed: int, steps: int, device: str,
                     resolution: int = 32) -> None:
    from gankit.models.classifier import save_classifier
    t0 = time.time()
    images, labels = render_dataset(n_images, seed, resolution)
    print(f"rendered {n_images} images in {time.time() - t0:.0f}s")
    cfg = ClassifierTrainConfig(steps=steps, seed=seed, device=device)
    model = train_classifier(images, labels, attribute_names(), cfg)
    save_classifier(model.cpu(), out)
    print(f"classifier written to {out} ({time.time() - t0:.0f}s in all)")


class RealSampler:
    """Random minibatches of rendered reals, held on the training device. Indices come from
    torch's global RNG, whose state the training checkpoint saves, so a resumed run draws the
    same minibatches as an uninterrupted one."""

    def __init__(self, images: np.ndarray, device: str):
        self.reals = from_uint8(images).to(device)                   # [N, 3, H, W]

    def __call__(self, n: int) -> torch.Tensor:
        idx = torch.randint(0, len(self.reals), (n,))
        return self.reals[idx.to(self.reals.device)]


def snapshot_grid(trainer, run_dir: str, seed: int = 123) -> None:
    G = trainer.G_ema
    z = torch.randn(64, G.z_dim, generator=torch.Generator().manual_seed(seed)).to(trainer.cfg.device)
    with torch.no_grad():
        images = to_uint8(G(z, noise_mode="const").cpu())
    save_png(os.path.join(run_dir, f"grid-{trainer.nimg // 1000:06d}kimg.png"), make_grid(images, 8))


def build_generator(run_dir: str, n_images: int, seed: int, kimg: float, device: str,
                    max_minutes: float = None, batch_size: int = 64, export: str = None,
                    linear_attr_weight: float = 0.0, attr_moment_weight: float = 0.0):
    t0 = time.time()
    if device.startswith("cuda"):  # TF32 convs/matmuls: ~free speed, GAN training is not precision-bound
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    images, _ = render_dataset(n_images, seed + 1, TOY_GENERATOR.img_resolution)
    print(f"rendered {n_images} reals in {time.time() - t0:.0f}s")
    cfg = GanTrainConfig(generator=TOY_GENERATOR, batch_size=batch_size, total_kimg=kimg,
                         pl_weight=2.0, linear_attr_weight=linear_attr_weight,
                         attr_moment_weight=attr_moment_weight, seed=seed, device=device)
    classifier = attr_reals = None
    if linear_attr_weight or attr_moment_weight:
        from gankit.loading.zoo import load_classifier
        classifier = load_classifier("toy")
        attr_reals = from_uint8(images[:MOMENT_REALS])
    trainer = train_gan(cfg, RealSampler(images, device), run_dir,
                        max_seconds=max_minutes * 60 if max_minutes else None,
                        on_snapshot=lambda t: snapshot_grid(t, run_dir), classifier=classifier,
                        attr_reals=attr_reals)
    print(f"trained to {trainer.nimg / 1000:.1f} kimg, {time.time() - t0:.0f}s this run")
    if export:
        from gankit.loading.checkpoints import save_generator
        save_generator(trainer.G_ema.cpu().eval(), export)
        print(f"G_ema written to {export}")
    return trainer


def add_classifier_flags(p: argparse.ArgumentParser) -> None:
    """The flags of `gankit train-classifier` and `python -m gankit.train.toy classifier`."""
    p.add_argument("--out", required=True, help="output .safetensors path (config beside it)")
    p.add_argument("--images", type=int, default=60000, help="rendered training images")
    p.add_argument("--steps", type=int, default=4000, help="optimiser steps")
    add_common_flags(p)


def add_gan_flags(p: argparse.ArgumentParser) -> None:
    """The flags of `gankit train-gan` and `python -m gankit.train.toy gan`."""
    p.add_argument("--run-dir", required=True, help="training state, grids; rerun to resume")
    p.add_argument("--images", type=int, default=200000, help="rendered real images")
    p.add_argument("--kimg", type=float, default=3000, help="stop after this many kimg")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (resumably) after")
    p.add_argument("--batch-size", type=int, default=64, help="images per step")
    p.add_argument("--export", default=None, help="write G_ema in the native format here")
    p.add_argument("--linear-attr-weight", type=float, default=0.0,
                   help="attribute-linearity term through the toy classifier (MODELS.md), 0 = off")
    p.add_argument("--attr-moment-weight", type=float, default=0.0,
                   help="match the toy classifier's probability mean and covariance on reals "
                        "(MODELS.md), 0 = off")
    add_common_flags(p)


def add_common_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="seeds the data and the weights")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    add_classifier_flags(sub.add_parser("classifier"))
    add_gan_flags(sub.add_parser("gan"))
    a = p.parse_args(argv)
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if a.what == "classifier":
        build_classifier(a.out, a.images, a.seed, a.steps, device)
    else:
        build_generator(a.run_dir, a.images, a.seed, a.kimg, device, a.max_minutes,
                        a.batch_size, a.export, a.linear_attr_weight, a.attr_moment_weight)


if __name__ == "__main__":
    main()
