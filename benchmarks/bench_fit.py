"""Boundary fitting: every solver of gankit.latent.boundaries side by side, on the selections
users run.

Cases, each on Z-like latents x ~ N(0, I) [N, D] and on W-like ones (the toy W's covariance
shape, see make_data), score = x.n_hidden + offset + noise * N(0, 1):

    toy-like     --toy-n samples (20K), low noise, a 20% positive rate, selection 'threshold'
                 (every sample, labelled score > 0): what `gankit demo` fits.
    extremes     InterFaceGAN: --n samples, the top and bottom --fraction (2%), noise 1.0.
    all          the same --n samples, selection 'threshold' (every sample).
    real z / w   with --samples URL: a local gankit sample dataset's z and w and its
                 logit_<--attribute> column, selection 'threshold'.

Every solver fits the same arrays in the same run (the machines are shared and noisy, so
only ratios mean much); 'svc' only where at most --svc-max samples are selected. Prints one
markdown table: fit seconds (selection + split + solver), train / val / all-sample accuracy,
cosine to the hidden normal and to the case's reference normal (svc where it ran, else the
first solver's), and '(auto)' on the solver that solver='auto' picks for the case.

    nice -n 10 python benchmarks/bench_fit.py --n 200000
    nice -n 10 python benchmarks/bench_fit.py --samples demo_out/samples --skip-synthetic
"""
from __future__ import annotations

import argparse
import glob
import os
import platform

import numpy as np
import torch

from gankit.latent.boundaries import SOLVERS, fit_boundary, resolve_solver

FIT_SOLVERS = ["svc"] + [s for s in SOLVERS if s not in ("auto", "svc")]


def make_data(n: int, dim: int, noise: float, offset: float, seed: int, w_like: bool) -> tuple:
    """x [N, D] float32, scores [N], hidden unit normal [D]. Z-like: N(0, I). W-like: the
    toy W's shape (covariance eigenvalues 15 k^-1.3, condition number ~3000, mean 9 from the
    origin), which is what makes first-order solvers take many steps."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)               # [N, D]
    if w_like:
        scale = np.sqrt(15.0 * np.arange(1, dim + 1) ** -1.3)         # [D] std per axis
        rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))  # [D, D]
        x = (x * scale.astype(np.float32)) @ rotation.T.astype(np.float32)
        x += (9.0 * _unit(rng.standard_normal(dim))).astype(np.float32)
    hidden = _unit(rng.standard_normal(dim))                           # [D]
    signal = (x - x.mean(axis=0)) @ hidden
    scores = signal / signal.std() + offset + noise * rng.standard_normal(n)  # [N]
    return x, scores, hidden


def _unit(v):
    return v / np.linalg.norm(v)


def read_samples(url: str, attribute: str) -> dict:
    """A local gankit sample dataset -> {'z': x, 'w': x} and the attribute's logits."""
    import pyarrow.parquet as pq
    table = pq.read_table(sorted(glob.glob(os.path.join(url, "part-*.parquet"))))
    def flat(col):  # fixed_size_list<float32> -> [N, D]
        arr = table.column(col).combine_chunks()
        return arr.values.to_numpy().reshape(len(arr), -1)
    spaces = {s: flat(s) for s in ("z", "w") if s in table.column_names}
    return spaces, table.column(f"logit_{attribute}").to_numpy().astype(np.float64)


def cases(args):
    """Yields (name, x, scores, hidden or None, fit keywords), one data set at a time."""
    for space in ([] if args.skip_synthetic else ["z", "w"]):
        w_like = space == "w"
        x, s, h = make_data(args.toy_n, args.dim, 0.25, -0.84, args.seed, w_like)
        yield f"toy-like {space}", x, s, h, dict(selection="threshold", space=space)
        x, s, h = make_data(args.n, args.dim, 1.0, 0.0, args.seed + 1, w_like)
        yield f"extremes {space}", x, s, h, dict(selection="extremes", fraction=args.fraction,
                                                 space=space)
        yield f"all {space}", x, s, h, dict(selection="threshold", space=space)
    if args.samples:
        spaces, s = read_samples(args.samples, args.attribute)
        for k, x in spaces.items():
            yield f"real {k}", x, s, None, dict(selection="threshold", space=k)


def selected(n: int, kw: dict) -> int:
    """How many samples the case's selection keeps."""
    return n if kw["selection"] == "threshold" else 2 * int(kw["fraction"] * n + 1e-9)


def run_case(name: str, x, scores, hidden, kw: dict, args) -> None:
    """Fit with every solver (svc first: it is the reference) and print one row each."""
    ref = None
    for solver in FIT_SOLVERS:
        if solver == "svc" and selected(len(x), kw) > args.svc_max:
            continue   # libsvm's dual grows with the square of the samples
        secs = float("inf")
        for _ in range(args.repeat):
            b = fit_boundary(x, scores, "synthetic", solver=solver, **kw)
            secs = min(secs, b.metrics["fit_seconds"])
        ref = ref if ref is not None else b
        print_row(name, x, hidden, kw, solver, b, secs, ref)


def fmt(v, digits=4):
    return "-" if v is None else f"{v:.{digits}f}"


def print_row(name: str, x, hidden, kw: dict, solver: str, b, secs: float, ref) -> None:
    m = b.metrics
    auto = resolve_solver("auto", kw["selection"], kw["space"], m["n_train"], x.shape[1])
    cos_hidden = None if hidden is None else float(b.normal @ hidden)
    print(f"| {name} | {x.shape[0]}x{x.shape[1]} | {m['n_train']}+{m['n_val']} | {solver}"
          f"{' (auto)' if solver == auto else ''} | {secs:.2f} | {fmt(m['train_accuracy'])} "
          f"| {fmt(m['val_accuracy'])} | {fmt(m['all_accuracy'])} | {fmt(cos_hidden)} "
          f"| {fmt(float(b.normal @ ref.normal))} ({ref.metrics['solver']}) |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="samples of the extremes/all cases")
    ap.add_argument("--toy-n", type=int, default=20_000, help="samples of the toy-like case")
    ap.add_argument("--dim", type=int, default=512, help="latent dimensionality")
    ap.add_argument("--fraction", type=float, default=0.02, help="InterFaceGAN's top/bottom share")
    ap.add_argument("--svc-max", type=int, default=10_000, help="most selected samples for svc")
    ap.add_argument("--repeat", type=int, default=1, help="fits per row, best time kept")
    ap.add_argument("--samples", default=None, help="local gankit sample dataset (optional)")
    ap.add_argument("--attribute", default="smile", help="its logit column for --samples")
    ap.add_argument("--skip-synthetic", action="store_true", help="only the --samples cases")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| case | data | fitted (train+val) | solver | fit s | train acc | val acc | all acc "
          "| cos(hidden) | cos(ref) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, x, scores, hidden, kw in cases(args):
        run_case(name, x, scores, hidden, kw, args)


if __name__ == "__main__":
    main()
