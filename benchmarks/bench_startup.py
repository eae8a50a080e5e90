"""Small jobs: `gankit sample --count 500 --classifier toy` with each runner, beside a plain
in-process script doing the same work (load G and the classifier, sample, render, label,
write one Parquet file), and the Ray path's own start-up costs.

Every case is a FRESH process, timed wall-clock from its start to its exit (imports
included), as a user at a shell sees it. The cases run interleaved, `--repeats` rounds, and
the median of each is reported with its ratio to the script. Then, in one more fresh
process each: `import ray`, `ray.init` of a local cluster, the first actor's start (a
round trip to an empty actor), and the same job's model loading, so the gap between the
runners is accounted for.

    python benchmarks/bench_startup.py                  # 500 rows, 3 rounds
    python benchmarks/bench_startup.py --count 2000 --repeats 5
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = """
import sys, numpy as np, pyarrow as pa, pyarrow.parquet as pq, torch
from gankit.loading import zoo
from gankit.latent.latents import sample_z
from jobs.stages.rendering import render_and_label
count, out = int(sys.argv[1]), sys.argv[2]
torch.set_num_threads(1)                      # what one CPU actor (and the local runner) gets
G = zoo.load_generator("toy").eval().requires_grad_(False)
C = zoo.load_classifier("toy").eval()
z = torch.from_numpy(sample_z(0, range(count), G.z_dim))
with torch.no_grad():
    ws = G.mapping(z, None)
    _, logits = render_and_label(G, C, ws)
cols = {"sample_id": pa.array(np.arange(count)),
        "z": pa.FixedSizeListArray.from_arrays(pa.array(z.numpy().ravel()), G.z_dim),
        "w": pa.FixedSizeListArray.from_arrays(pa.array(ws[:, 0].numpy().ravel()), G.w_dim)}
cols.update({f"logit_{a}": pa.array(logits[:, k]) for k, a in enumerate(C.attribute_names)})
pq.write_table(pa.table(cols), out)
"""

RAY_PARTS = """
import time, json
t0 = time.time(); import ray; t1 = time.time()
ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False); t2 = time.time()
@ray.remote(num_cpus=1)
class Empty:
    def ping(self): return 1
ray.get(Empty.remote().ping.remote()); t3 = time.time()
print(json.dumps({"import ray": t1 - t0, "ray.init": t2 - t1, "first actor": t3 - t2}))
"""

LOAD = """
import time, json
t0 = time.time(); import torch; from gankit import zoo; t1 = time.time()
G = zoo.load_generator("toy"); C = zoo.load_classifier("toy"); t2 = time.time()
print(json.dumps({"import torch + gankit": t1 - t0, "load G + classifier": t2 - t1}))
"""


def timed(cmd: list) -> float:
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=ROOT)
    env.pop("RAY_ADDRESS", None)
    t0 = time.time()
    subprocess.run(cmd, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.time() - t0


def cases(count: int, tmp: str) -> dict:
    gankit = [sys.executable, "-m", "jobs.commands.cli", "sample", "--model", "toy", "--count",
              str(count), "--classifier", "toy", "--quiet"]
    return {"script": lambda k: [sys.executable, "-c", SCRIPT, str(count), f"{tmp}/s{k}.pq"],
            **{f"gankit sample --runner {r}": (lambda r: lambda k: gankit + [
                "--runner", r, "--out", f"{tmp}/{r}{k}"])(r) for r in ("auto", "local", "ray")}}


def json_of(code: str) -> dict:
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=ROOT)
    run = subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT,
                         capture_output=True, text=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        todo = cases(args.count, tmp)
        times = {name: [] for name in todo}
        for k in range(args.repeats):
            for name, cmd in todo.items():
                times[name].append(timed(cmd(k)))
        parts = {**json_of(LOAD), **json_of(RAY_PARTS)}
    base = statistics.median(times["script"])
    print(f"# {args.count} rows, median of {args.repeats} fresh processes each, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print("| case | seconds | vs the script |\n| --- | --- | --- |")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"| {name} | {m:.1f} | {m / base:.2f}x |")
    print("\n| start-up cost (one fresh process each) | seconds |\n| --- | --- |")
    for name, s in parts.items():
        print(f"| {name} | {s:.1f} |")


if __name__ == "__main__":
    main()
