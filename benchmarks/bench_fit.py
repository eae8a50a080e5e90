"""Boundary fitting: gankit's primal solvers vs InterFaceGAN's SVC(kernel='linear'), side by side.

Synthetic latents x ~ N(0, I) [N, D] with scores = x.n_hidden + noise * N(0, 1). Every solver fits
the same data in the same run (the machines are shared and noisy, so only ratios mean much):

    InterFaceGAN selection (top/bottom --fraction, 70/30 split): svc, newton, liblinear
    all samples (fraction 0.5):                                 newton, liblinear

Prints a markdown table: fit seconds (selection + split + solver), speed-up over svc, val and
all-sample accuracy, cosine to the hidden normal and to svc's normal.

    python benchmarks/bench_fit.py --n 500000          # InterFaceGAN's sample count
    python benchmarks/bench_fit.py --n 100000 --skip-all
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from gankit.boundaries import fit_boundary


def make_data(n: int, dim: int, noise: float, seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)               # [N, D]
    hidden = rng.standard_normal(dim)
    hidden /= np.linalg.norm(hidden)                                   # [D]
    scores = x @ hidden + noise * rng.standard_normal(n)               # [N]
    return x, scores, hidden


def run_fit(x, scores, solver: str, fraction: float, repeat: int, device: str):
    """Best-of-`repeat` fit; returns (boundary, fit seconds)."""
    best, boundary = float("inf"), None
    for _ in range(repeat):
        boundary = fit_boundary(x, scores, "synthetic", "z", fraction=fraction, solver=solver,
                                device=device)
        best = min(best, boundary.metrics["fit_seconds"])
    return boundary, best


def fmt(v, digits=4):
    return "-" if v is None else f"{v:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="number of samples")
    ap.add_argument("--dim", type=int, default=512, help="latent dimensionality")
    ap.add_argument("--noise", type=float, default=0.5, help="score noise std (signal std is 1)")
    ap.add_argument("--fraction", type=float, default=0.02, help="InterFaceGAN's top/bottom share")
    ap.add_argument("--repeat", type=int, default=1, help="fits per row, best time kept")
    ap.add_argument("--skip-all", action="store_true", help="skip the fraction=0.5 rows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: torch's); 1 avoids stalls when the "
                         "cores are oversubscribed by other processes")
    ap.add_argument("--device", default="cpu", help="device of the newton solver")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    x, scores, hidden = make_data(args.n, args.dim, args.noise, args.seed)
    print(f"data: {args.n} x {args.dim} float32, noise {args.noise} "
          f"({time.perf_counter() - t0:.1f} s to make)")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads, newton on "
          f"{args.device}, load average {os.getloadavg()[0]:.1f}\n")

    rows = [("svc", args.fraction), ("newton", args.fraction), ("liblinear", args.fraction)]
    if not args.skip_all:
        rows += [("newton", 0.5), ("liblinear", 0.5)]
    results = {key: run_fit(x, scores, *key, repeat=args.repeat, device=args.device)
               for key in rows}
    ref, ref_time = results[("svc", args.fraction)]

    print("| solver | selection | fitted (train+val) | fit s | svc s / this | val acc "
          "| all acc | cos(hidden) | cos(svc) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (solver, fraction), (b, secs) in results.items():
        m = b.metrics
        selection = "all (0.5)" if fraction == 0.5 else f"top/bottom {fraction:g}"
        print(f"| {solver} | {selection} | {m['n_train']}+{m['n_val']} | {secs:.2f} "
              f"| {ref_time / secs:.1f}x | {fmt(m['val_accuracy'])} | {fmt(m['all_accuracy'])} "
              f"| {fmt(float(b.normal @ hidden))} | {fmt(float(b.normal @ ref.normal))} |")


if __name__ == "__main__":
    main()
