"""GAN training throughput of the toy configuration per batch size (img/s of GanTrainer.step,
path length regularisation on, lazy R1), to pick the batch size on a given machine.

    python benchmarks/bench_gan_step.py --device cuda --batch-sizes 128 256 512
"""
from __future__ import annotations

import argparse
import time

import torch

from gankit.train.gan import GanTrainConfig, GanTrainer
from gankit.train.toy import TOY_GENERATOR


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def images_per_second(batch_size: int, device: str, warmup: int, steps: int) -> float:
    trainer = GanTrainer(GanTrainConfig(generator=TOY_GENERATOR, batch_size=batch_size,
                                        pl_weight=2.0, device=device))
    reals = torch.rand(batch_size, 3, 32, 32, device=device) * 2 - 1   # [B, 3, 32, 32]
    for _ in range(warmup):
        trainer.step(reals)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.step(reals)
    sync(device)
    return steps * batch_size / (time.perf_counter() - t0)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 256, 512])
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--steps", type=int, default=48)   # a multiple of 16: R1 and PL steps included
    a = p.parse_args(argv)
    if a.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    for bs in a.batch_sizes:
        rate = images_per_second(bs, a.device, a.warmup, a.steps)
        print(f"batch {bs}: {rate:.0f} img/s ({bs / rate * 1000:.1f} ms/step)", flush=True)


if __name__ == "__main__":
    main()
