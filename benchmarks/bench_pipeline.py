"""Sampling + labeling throughput of the Ray pipeline against the bare model forward, and the
driver's peak memory as the row count grows. Everything is measured side by side in one run
on one machine (shared machines are noisy: only the ratios mean much).

Rows of the throughput table (same generator, classifier and batch size everywhere):
    bare forward        G.mapping + G.synthesis + classifier on pre-drawn z, one process,
                        every core (or the GPU): the limit for the stage
    pipeline            `run_sample` (classifier labels, W stored, Parquet parts) on Ray
                        actors using the same cores (or the GPU): steady state, from the
                        part commit times once every actor has committed a part, and end
                        to end including actor start and model loading
    pipeline + PNG      the same with --images (PNG encoding and larger parts)
    InterFaceGAN loop   InterFaceGAN's generate_data.py pattern: batch 4, numpy z, images
                        and scores kept in memory
Memory: a fresh driver process runs the sample job (with images) for N and 10 N rows and
then streams the whole output back (storage.iter_tables); its peak RSS must stay flat.

    python benchmarks/bench_pipeline.py                       # toy model, CPU defaults
    python benchmarks/bench_pipeline.py --count 20000 --batch 32 --workers 2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ----------------------------------------------------------------------------------------
# Baselines (in this process)


@torch.no_grad()
def bare_forward(G, C, count: int, batch: int, device: str) -> float:
    """rows/s of mapping + synthesis + classifier on pre-drawn z at `batch`."""
    z = torch.randn(count, G.z_dim, generator=torch.Generator().manual_seed(0)).to(device)
    run = lambda zb: C(G.synthesis(G.mapping(zb, None), noise_mode="const"))  # noqa: E731
    run(z[:batch])                                                    # warm-up
    sync(device)
    t = time.perf_counter()
    for s in range(0, count - batch + 1, batch):
        run(z[s:s + batch])
    sync(device)
    return (count - count % batch) / (time.perf_counter() - t)


@torch.no_grad()
def interfacegan_loop(G, C, count: int, device: str) -> float:
    """rows/s of InterFaceGAN's generate_data.py pattern: batch 4, everything in memory."""
    rng = np.random.RandomState(0)
    zs, ws, images, scores = [], [], [], []
    t = time.perf_counter()
    for _ in range(count // 4):
        z = rng.randn(4, G.z_dim).astype(np.float32)
        w = G.mapping(torch.from_numpy(z).to(device), None)
        img = G.synthesis(w, noise_mode="const")
        zs.append(z)
        ws.append(w[:, 0].cpu().numpy())
        images.append(((img.clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy())
        scores.append(C(img).cpu().numpy())
    sync(device)
    return (count // 4 * 4) / (time.perf_counter() - t)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------------------
# The pipeline


def pipeline(model: str, classifier: str, count: int, batch: int, workers: int, images: bool,
             out: str) -> tuple:
    """(steady rows/s from part commit times, end-to-end rows/s) of run_sample."""
    from jobs.stages.sample import SampleConfig, run_sample
    per_part = max(batch, count // (workers * 8))
    cfg = SampleConfig(model=model, classifier=classifier, count=count, seed=0, space="w",
                       images=images, rows_per_part=per_part, micro_batch=batch,
                       batch_size=max(256, batch), workers=workers, out=out)
    t = time.perf_counter()
    manifest = run_sample(cfg)
    wall = time.perf_counter() - t
    commits = sorted((os.stat(os.path.join(out, p["file"])).st_mtime, p["rows"])
                     for p in manifest["parts"])
    k = min(max(workers, 1), len(commits) - 1)     # once every actor has committed a part
    rows_after = sum(r for _, r in commits[k:])
    steady = rows_after / max(commits[-1][0] - commits[k - 1][0], 1e-9)
    return steady, count / wall


def driver_rss_child(args) -> None:
    """Child mode: run the job with images, stream its output back, print peak RSS (MB)."""
    from jobs import storage
    from jobs.runtime import ensure_ray
    from jobs.stages.sample import SampleConfig, run_sample
    ensure_ray()
    cfg = SampleConfig(model=args.model, classifier=args.classifier, count=args.rss_child,
                       images=True, space="w", rows_per_part=1000, micro_batch=args.batch,
                       workers=args.workers, out=args.out)
    run_sample(cfg)
    rows, size = 0, 0
    for table in storage.iter_tables(args.out):
        rows += table.num_rows
        size += table.nbytes
    assert rows == args.rss_child
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "data_mb": size / 2 ** 20, "peak_rss_mb": peak}))


def driver_rss(args, model: str, classifier: str, rows: int, tmp: str) -> dict:
    out = os.path.join(tmp, f"rss-{rows}")
    cmd = [sys.executable, os.path.abspath(__file__), "--rss-child", str(rows), "--model", model,
           "--classifier", classifier, "--batch", str(args.batch), "--workers",
           str(args.workers), "--out", out]
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-3000:])
    line = [l for l in res.stdout.splitlines() if l.startswith("{")][-1]
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(line)


# ----------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="toy")
    ap.add_argument("--classifier", default="toy")
    ap.add_argument("--count", type=int, default=4096, help="rows per throughput run")
    ap.add_argument("--batch", type=int, default=16, help="model batch (= pipeline micro_batch)")
    ap.add_argument("--workers", type=int, default=0, help="actors (0: one per GPU / core)")
    ap.add_argument("--rss-rows", type=int, default=2000, help="N of the N vs 10N memory runs")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (best kept)")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--rss-child", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if args.rss_child:
        return driver_rss_child(args)

    import ray
    from gankit.loading import zoo
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cores = os.cpu_count() or 1
    args.workers = args.workers or (torch.cuda.device_count() if device == "cuda" else cores)
    tmp = tempfile.mkdtemp(prefix="gankit-bench-")
    model, classifier = args.model, args.classifier   # the jobs fail fast on a missing model
    G = zoo.load_generator(model, device=device).eval()
    C = zoo.load_classifier(classifier, device=device).eval()

    ray.init(num_cpus=max(cores, args.workers) + 2, include_dashboard=False, log_to_driver=False)
    from ray.data import DataContext
    DataContext.get_current().enable_progress_bars = False
    runs = {k: [] for k in ("bare", "ifg", "steady", "e2e", "steady_png", "e2e_png")}
    for r in range(args.rounds):              # interleaved rounds; the best of each is kept
        runs["bare"].append(bare_forward(G, C, args.count, args.batch, device))
        runs["ifg"].append(interfacegan_loop(G, C, min(args.count, 2048), device))
        for png in (False, True):
            steady, e2e = pipeline(model, classifier, args.count, args.batch, args.workers,
                                   png, os.path.join(tmp, f"p{r}{int(png)}"))
            runs["steady_png" if png else "steady"].append(steady)
            runs["e2e_png" if png else "e2e"].append(e2e)
    best = {k: max(v) for k, v in runs.items()}
    bare, ifg, steady = best["bare"], best["ifg"], best["steady"]
    rss = []
    if not args.skip_rss:
        os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
        rss = [driver_rss(args, model, classifier, n, tmp)
               for n in (args.rss_rows, 10 * args.rss_rows)]
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)

    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "none"
    print(f"\nmachine: {platform.platform()}, {cores} cores, GPU {gpu}, torch "
          f"{torch.__version__}, ray {ray.__version__}; model {args.model}, classifier "
          f"{args.classifier}, batch {args.batch}, {args.count} rows, {args.workers} actor(s)"
          f"{' x 1 GPU' if device == 'cuda' else ' x 1 thread'} vs "
          f"{'1 GPU' if device == 'cuda' else f'{torch.get_num_threads()} threads'} bare\n")
    print(f"best of {args.rounds} interleaved rounds; all rounds (rows/s): "
          + "; ".join(f"{k} " + "/".join(f"{v:.0f}" for v in vals) for k, vals in runs.items()))
    print("\n| measure | rows/s | pipeline steady / it |")
    print("| --- | ---: | ---: |")
    print(f"| bare G + classifier forward, batch {args.batch} | {bare:.0f} | {steady / bare:.2f} |")
    print(f"| InterFaceGAN-style loop, batch 4, in memory | {ifg:.0f} | {steady / ifg:.2f} |")
    print(f"| pipeline sample + label, steady state | {steady:.0f} | 1.00 |")
    print(f"| pipeline sample + label, end to end (actor start included) | {best['e2e']:.0f} | "
          f"{steady / best['e2e']:.2f} |")
    print(f"| pipeline sample + label + PNG, steady state | {best['steady_png']:.0f} | "
          f"{steady / best['steady_png']:.2f} |")
    print(f"| pipeline sample + label + PNG, end to end | {best['e2e_png']:.0f} | "
          f"{steady / best['e2e_png']:.2f} |")
    if rss:
        print("\n| driver: rows sampled (with PNG) then streamed back | data (MB) | "
              "peak driver RSS (MB) |")
        print("| ---: | ---: | ---: |")
        for r in rss:
            print(f"| {r['rows']} | {r['data_mb']:.1f} | {r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
