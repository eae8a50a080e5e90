"""Load: a sampling job of many latents (no images, space w, the toy generator, no
classifier) streams through a driver whose memory stays flat.

For each row count (N/10 and N) a FRESH driver process runs `run_sample` on its own local
Ray cluster while a thread samples the driver's RSS; it reports rows/s end to end (actor
start and model loading included), rows/s in steady state (from the part commit times once
a part has been committed), the driver's RSS once the first part is committed, and its peak
RSS (VmHWM). Flat memory: the peak must not grow with the row count. Beside them, the bare
work of one process on one thread (as each actor): sample_z + G.mapping at the same
micro-batch; workers x that is the limit for the stage.

    python benchmarks/bench_load.py                       # 1,000,000 rows (and 100,000)
    python benchmarks/bench_load.py --count 200000 --workers 2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def rss_mb(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(args) -> None:
    """One driver: run the job, print one JSON line of measurements."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from jobs import runtime, storage
    from jobs.stages.sample import SampleConfig, run_sample
    start_rss = rss_mb()
    samples, stop = [], threading.Event()

    def watch():
        while not stop.wait(0.5):
            samples.append((time.time(), rss_mb()))
    threading.Thread(target=watch, daemon=True).start()
    runtime.ensure_ray(num_cpus=args.workers + 2)
    from ray.data import DataContext
    DataContext.get_current().enable_progress_bars = False
    cfg = SampleConfig(model=args.model, count=args.count, seed=1, space="w",
                       rows_per_part=args.rows_per_part, micro_batch=args.micro_batch,
                       batch_size=args.batch_size, workers=args.workers, device="cpu",
                       out=args.out)
    store = storage.open_store(args.out, create=True)
    commits = {}

    def watch_parts():                       # commit time of each part, seen by the driver
        while not stop.wait(0.2):
            for k in store.list_parts():
                commits.setdefault(k, time.time())
    threading.Thread(target=watch_parts, daemon=True).start()
    t0 = time.time()
    manifest = run_sample(cfg)
    t1 = time.time()
    stop.set()
    assert manifest["rows"] == args.count and manifest["status"] == "complete"
    first = min(commits.values()) if commits else t1
    after_first = [r for t, r in samples if t >= first]
    steady_parts = [k for k, t in commits.items() if t > first]
    steady_rows = sum(p["rows"] for p in manifest["parts"] if p["index"] in steady_parts)
    last = max(commits.values()) if commits else t1
    print(json.dumps({
        "count": args.count, "parts": len(manifest["parts"]), "seconds": t1 - t0,
        "rows_per_s": args.count / (t1 - t0),
        "steady_rows_per_s": steady_rows / (last - first) if last > first else float("nan"),
        "rss_start_mb": start_rss,
        "rss_first_part_mb": after_first[0] if after_first else float("nan"),
        "rss_peak_mb": rss_mb("VmHWM")}), flush=True)


def bare_mapping(model: str, count: int, micro_batch: int, threads: int) -> float:
    """rows/s of sample_z + G.mapping in this process (threads torch threads)."""
    import numpy as np
    import torch
    from gankit.loading import zoo
    from gankit.latent.latents import sample_z
    torch.set_num_threads(threads)
    G = zoo.load_generator(model).eval()
    t0 = time.time()
    with torch.no_grad():
        for s in range(0, count, micro_batch):
            z = sample_z(1, np.arange(s, s + micro_batch, dtype=np.int64), G.z_dim)
            G.mapping(torch.from_numpy(z), None)
    return count / (time.time() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=1_000_000)
    p.add_argument("--model", default="toy")
    p.add_argument("--rows-per-part", type=int, default=20_000)
    p.add_argument("--micro-batch", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    # one torch thread: the actors run one each; more threads on a busy shared CPU spin
    bare = bare_mapping(args.model, min(args.count, 200_000), args.micro_batch, 1)
    tmp = tempfile.mkdtemp(prefix="gankit-load-")
    rows = []
    try:
        for count in (args.count // 10, args.count):
            out = os.path.join(tmp, f"n{count}")
            cmd = [sys.executable, os.path.abspath(__file__), "--child", "--count", str(count),
                   "--out", out, "--model", args.model, "--rows-per-part",
                   str(args.rows_per_part), "--micro-batch", str(args.micro_batch),
                   "--batch-size", str(args.batch_size), "--workers", str(args.workers)]
            env = dict(os.environ, RAY_AUTH_MODE="disabled")
            env.pop("RAY_ADDRESS", None)
            res = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if res.returncode != 0:
                sys.exit(f"driver for {count} rows failed:\n{res.stderr[-3000:]}")
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
            shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"# bench_load: {platform.node()} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, {args.workers} CPU actors, rows_per_part "
          f"{args.rows_per_part}, micro_batch {args.micro_batch}, model {args.model}, space w")
    print("| rows | parts | seconds | rows/s end to end | rows/s steady | driver RSS at "
          "first part (MB) | driver peak RSS (MB) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['count']:,} | {r['parts']} | {r['seconds']:.1f} | {r['rows_per_s']:,.0f} "
              f"| {r['steady_rows_per_s']:,.0f} | {r['rss_first_part_mb']:.0f} "
              f"| {r['rss_peak_mb']:.0f} |")
    print(f"| bare sample_z + mapping, one process, one thread | | | {bare:,.0f} | | | |")
    small, big = rows
    print(f"# peak driver RSS {big['count']:,} rows / {small['count']:,} rows: "
          f"{big['rss_peak_mb'] / small['rss_peak_mb']:.2f}x (flat = ~1.0); steady pipeline / "
          f"({args.workers} x bare one-thread): "
          f"{big['steady_rows_per_s'] / (args.workers * bare):.2f}")


if __name__ == "__main__":
    main()
