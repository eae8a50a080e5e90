"""Planning an input of image files at scale: `gankit label --images LIST.txt` (and a folder
tree, and an S3 prefix on moto) through its planning and first part only, for listings of
100 thousand to 10 million entries, the code before and after side by side in one run.

Each (code, input) runs in a fresh subprocess: it runs `jobs.stages.label.run_label` (toy
classifier, the ray runner, one actor) on the whole plan and stops the job once `--parts`
parts are committed (a rerun would resume from there), and reports

    plan_s          time in plan_image_inputs (listing, sorting, writing the listing)
    us_per_entry    plan_s / entries
    rss_mb          the driver's peak RSS (ru_maxrss) when the first part is committed
    actor_bytes     what the actor receives for its part: the pickled constructor
                    arguments (what Ray ships it) + the part's descriptor + the bytes it
                    reads from the listing for the part
    first_part_s    process start to the first part committed (Ray's start included)
    listing_mb      the listing on disk (`_inputs.json`, or `_inputs/`)

The files need not exist: the first part's rows become error records, which is the same
work before and after. Inputs are made once under --work and reused.

    python benchmarks/bench_inputs.py                      # after: 100k, 1M, 10M lists
    python benchmarks/bench_inputs.py --before /work/main  # + the code at /work/main
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------------------
# Inputs


def entry_name(i: int) -> str:
    return f"d{i // 1000:05d}/img{i:08d}.jpg"


def make_list(path: str, n: int, seed: int = 0) -> None:
    """A .txt list of n relative paths, in shuffled order (the files do not exist)."""
    if os.path.exists(path):
        return
    import numpy as np
    order = np.random.default_rng(seed).permutation(n)
    with open(path + ".tmp", "w") as f:
        for s in range(0, n, 100_000):
            f.write("".join(f"photos/{entry_name(int(i))}\n" for i in order[s:s + 100_000]))
    os.replace(path + ".tmp", path)


def make_tree(root: str, n: int) -> None:
    """n empty files, 1,000 a folder."""
    done = root + ".done"
    if os.path.exists(done):
        return
    for i in range(n):
        name = os.path.join(root, entry_name(i))
        if i % 1000 == 0:
            os.makedirs(os.path.dirname(name), exist_ok=True)
        os.close(os.open(name, os.O_CREAT | os.O_WRONLY, 0o644))
    open(done, "w").close()


def make_s3(n: int) -> tuple:
    """A moto S3 server in this process holding n empty objects: (env, url, server)."""
    import boto3
    from concurrent.futures import ThreadPoolExecutor
    from moto.server import ThreadedMotoServer
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update(env)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    client = boto3.client("s3")
    client.create_bucket(Bucket="bench")
    try:                       # straight into the server's store (a PUT costs ~4 ms here)
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends
        backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
        for i in range(n):
            backend.put_object("bench", f"photos/{entry_name(i)}", b"")
    except (ImportError, KeyError, AttributeError, TypeError):
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: client.put_object(
                Bucket="bench", Key=f"photos/{entry_name(i)}", Body=b""), range(n)))
    return env, "s3://bench/photos", server


# ----------------------------------------------------------------------------------------
# One measurement (in a fresh process)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def listing_bytes_read(inputs, spec) -> int:
    """Bytes a worker reads from the listing for part `spec`, its footer cache empty (0:
    none, the old layout). Counted at the local filesystem's reads."""
    found = getattr(inputs, "listing", None)
    if found is None:
        return 0
    from fsspec.implementations.local import LocalFileOpener

    from jobs.storage import listing
    listing._footers.clear()
    counter, read = [0], LocalFileOpener.read

    def counted_read(self, *a, **k):            # cat_file reads through it too
        data = read(self, *a, **k)
        counter[0] += len(data)
        return data
    LocalFileOpener.read = counted_read
    try:
        found.read(spec.start, spec.stop)
    finally:
        LocalFileOpener.read = read
    return counter[0]


def disk_mb(out: str) -> float:
    total = 0
    for name in ("_inputs.json", "_inputs"):
        path = os.path.join(out, name)
        if os.path.isfile(path):
            total += os.path.getsize(path)
        for folder, _, files in os.walk(path):
            total += sum(os.path.getsize(os.path.join(folder, f)) for f in files)
    return total / 1e6


class FirstParts(Exception):
    """Raised when the first parts are committed: the job stops there."""


def child(args) -> None:
    start = time.perf_counter()
    sys.path.insert(0, args.code)
    import cloudpickle

    import jobs.stages.label as label
    from jobs.runtime import progress
    from jobs import runtime
    rec, plan_fn, run_parts = {}, label.plan_image_inputs, runtime.run_parts
    committed = progress.Progress.committed

    def timed_plan(*a, **k):
        s = time.perf_counter()
        inputs = plan_fn(*a, **k)
        rec.update(plan_s=time.perf_counter() - s, plan_rss_mb=peak_mb(), entries=inputs.rows,
                   parts=len(inputs.plan))
        return inputs

    def count_commit(bar, k):
        committed(bar, k)
        rec["committed"] = rec.get("committed", 0) + 1
        if rec["committed"] == args.parts:
            rec.update(first_part_s=time.perf_counter() - start, rss_mb=peak_mb())
            raise FirstParts()

    def whole_plan(job, out, plan, worker_cls, worker_kwargs, *rest):
        rec["plan"], rec["kwargs"] = plan[0], worker_kwargs
        return run_parts(job, out, plan, worker_cls, worker_kwargs, *rest)

    label.plan_image_inputs, runtime.run_parts = timed_plan, whole_plan
    progress.Progress.committed = count_commit
    cfg = label.LabelConfig(images=args.images, out=args.out, classifier="toy", resolution=64,
                            workers=1, runner="ray")
    try:
        label.run_label(cfg)
    except Exception as e:                  # the job stopped after its first parts
        if "first_part_s" not in rec:
            raise
        assert isinstance(e.__cause__, FirstParts) or isinstance(e, FirstParts), e
    spec, kwargs = rec.pop("plan"), rec.pop("kwargs")
    item = {"index": spec.index, "start": spec.start, "stop": spec.stop, "run": "0" * 32,
            "attempts": 3}
    rec["kwargs_bytes"] = len(cloudpickle.dumps(kwargs))
    rec["read_bytes"] = listing_bytes_read(kwargs["inputs"], spec)
    rec["actor_bytes"] = rec["kwargs_bytes"] + len(cloudpickle.dumps(item)) + rec["read_bytes"]
    rec.update(us_per_entry=rec["plan_s"] / rec["entries"] * 1e6, listing_mb=disk_mb(args.out))
    print("RESULT " + json.dumps(rec), flush=True)


def measure(code: str, images: str, out: str, parts: int, env: dict) -> dict:
    import shutil
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--code", code,
           "--images", images, "--out", out, "--parts", str(parts)]
    res = subprocess.run(cmd, env=dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=code,
                                       **env), capture_output=True, text=True,
                         cwd=code)              # Ray's workers import from the driver's cwd
    shutil.rmtree(out, ignore_errors=True)
    for line in res.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    lines = (res.stderr + res.stdout).strip().splitlines()
    said = [ln for ln in lines if "Error" in ln or "error" in ln][-2:] or lines[-2:]
    return {"failed": " | ".join(said)}


# ----------------------------------------------------------------------------------------
# The table


def row(code: str, kind: str, n: int, r: dict) -> str:
    if "failed" in r:
        return f"| {code} | {kind} | {n:,} | failed: {r['failed'][:200]} |"
    return (f"| {code} | {kind} | {n:,} | {r['plan_s']:.1f} | {r['us_per_entry']:.1f} | "
            f"{r['plan_rss_mb']:.0f} / {r['rss_mb']:.0f} | {r['actor_bytes'] / 1e3:,.1f} "
            f"({r['kwargs_bytes'] / 1e3:,.1f} + {r['read_bytes'] / 1e3:,.1f}) | "
            f"{r['first_part_s']:.1f} | {r['listing_mb']:.1f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000, 10_000_000],
                   help="entries of the .txt lists")
    p.add_argument("--folder-sizes", type=int, nargs="*", default=[100_000, 1_000_000],
                   help="files of the local folder trees")
    p.add_argument("--s3-sizes", type=int, nargs="*", default=[],
                   help="objects of a moto S3 prefix")
    p.add_argument("--before", default=None, help="a checkout of the code before")
    p.add_argument("--before-max", type=int, default=1_000_000,
                   help="largest listing the code before is run on")
    p.add_argument("--parts", type=int, default=1, help="parts computed after planning")
    p.add_argument("--work", default="/tmp/gankit-bench-inputs")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--code", default=HERE, help=argparse.SUPPRESS)
    p.add_argument("--images", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    os.makedirs(args.work, exist_ok=True)
    codes = [("after", HERE)] + ([("before", args.before)] if args.before else [])
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"after = {HERE}" + (f", before = {args.before}" if args.before else ""))
    print("| code | input | entries | planning (s) | us/entry | driver peak RSS (MB): planned / "
          "first part | "
          "actor receives (kB: args + listing read) | first part (s) | listing on disk (MB) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    inputs = []
    for n in args.sizes:
        path = os.path.join(args.work, "lists", f"list-{n}.txt")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        make_list(path, n)
        inputs.append(("list", n, path, {}))
    for n in args.folder_sizes:
        root = os.path.join(args.work, f"tree-{n}")
        make_tree(root, n)
        inputs.append(("folder", n, root, {}))
    for kind, n, url, env in inputs:
        for code, root in codes:
            if code == "before" and n > args.before_max:
                continue
            r = measure(root, url, os.path.join(args.work, f"out-{code}"), args.parts, env)
            print(row(code, kind, n, r), flush=True)
    for n in args.s3_sizes:
        env, url, server = make_s3(n)
        try:
            for code, root in codes:
                r = measure(root, url, os.path.join(args.work, f"out-{code}"), args.parts, env)
                print(row(code, "s3", n, r), flush=True)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
