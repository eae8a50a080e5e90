"""Real scale: StyleGAN2 at 256 and 1024 px (FFHQ config-f) through the sample pipeline,
against the bare model forward and against the pipeline's own ceiling, side by side in one
run on one machine (shared machines are noisy: only the ratios mean much).

Generators are built from their configs with random weights (the cost of a forward does not
depend on the weights) and saved in gankit's native format in a temp dir: the jobs load
models by path, as users do.
    256 px   z/w 512, 8 mapping layers, channel_base 16384, channel_max 512,
             num_fp16_res 4, conv_clamp 256
    1024 px  config-f: the same with channel_base 32768

(a) bare forward, one process, no Ray: z -> mapping -> synthesis(noise_mode='const') ->
    uint8 on the device -> classifier 'toy' (gankit.loading.zoo.load_classifier) on the dequantized
    pixels, as the sample actor does, for every precision gankit.precision.check accepts on
    the device (GPU: fp32, tf32, bf16, fp16; CPU: fp32, bf16) and a few batch sizes;
    warm-up calls first, torch.cuda.synchronize around the timed loop on a GPU. The best
    batch is the limit for the stage.
(b) the sample pipeline (jobs.stages.sample.run_sample on Ray, one actor on the same device, same
    model, precision and micro_batch = (a)'s best batch): classifier labels with JPEG
    images stored, and without images; rows/s and the ratio to (a).
(c) the pipeline's ceiling: the null generator (gankit.models.null:null_1024: a fixed
    1024 px image, no model arithmetic) with images stored as PNG, JPEG and WebP, one actor
    with cpus_per_worker 1, 2 and 4 (the codec threads beside the model); rows/s and the
    speed-up of 2 and 4 CPUs over 1.

Rates of the pipeline (nothing subtracted):
    end to end   count / (time from the run_sample call to its return): Ray Data planning,
                 actor start, model loading and the manifest included
    steady       chosen method: from the commit times of the part files of ONE run (as
                 bench_pipeline.py does): the rows of the parts committed after the first
                 commit of every actor, over the time between that commit and the last
                 one. Actor start, model loading and the first part's warm-up fall before
                 the window; no second run is needed. Every run has >= 6 parts.
(a) runs before Ray starts (no idle Ray workers beside it); then one ray.init serves the rest
of the run, and a tiny warm-up job runs first so that the first measured job does not pay
Ray's cold start. Every measurement writes to a fresh output folder.

    python benchmarks/bench_scale.py                      # GPU if there is one, full sizes
    python benchmarks/bench_scale.py --device cpu --quick # ~3 minutes on a 2-core CPU
    python benchmarks/bench_scale.py --sizes 1024 --out out/scale
    python benchmarks/bench_scale.py --save-models DIR --sizes 1024   # only write models
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

NULL_MODEL = "gankit.models.null:null_1024"
CLASSIFIER = "toy"
FORMATS = ("png", "jpeg", "webp")


# ----------------------------------------------------------------------------------------
# Models


def generator_config(size: int):
    """StyleGAN2 at `size` px: config-f at 1024 (channel_base 32768), 16384 below."""
    from gankit.models.stylegan2 import GeneratorConfig, MappingConfig, SynthesisConfig
    base = 32768 if size >= 1024 else 16384
    return GeneratorConfig(z_dim=512, w_dim=512, img_resolution=size,
                           mapping=MappingConfig(num_layers=8),
                           synthesis=SynthesisConfig(channel_base=base, channel_max=512,
                                                     num_fp16_res=4, conv_clamp=256))


def save_models(sizes, root: str) -> dict:
    """{size: path of a native checkpoint of a random-weight generator at that size}."""
    from gankit.loading.checkpoints import save_generator
    from gankit.models.stylegan2 import Generator
    paths = {}
    for size in sizes:
        torch.manual_seed(size)
        G = Generator(generator_config(size)).eval()
        path = os.path.join(root, f"stylegan2-{size}-random")
        save_generator(G, path, source={"note": "random weights, benchmarks/bench_scale.py"})
        paths[size] = path
    return paths


# ----------------------------------------------------------------------------------------
# (a) bare forward


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def precisions_for(device: str) -> list:
    """The named precisions gankit.precision.check accepts on `device`."""
    from gankit import precision as numerics
    ok = []
    for p in numerics.PRECISIONS:
        if p == "auto":
            continue
        try:
            numerics.check(p, device)
            ok.append(p)
        except ValueError:
            pass
    return ok


@torch.no_grad()
def bare_rate(G, C, precision: str, batch: int, device: str, seconds: float,
              min_calls: int) -> float:
    """rows/s of mapping + synthesis + uint8 + classifier at `batch` on pre-drawn z."""
    from gankit import precision as numerics
    from gankit.images import dequantize, quantize
    numerics.configure_backends(device, precision)
    G.set_precision(precision)
    gen = torch.Generator().manual_seed(batch)
    zs = [torch.randn(batch, G.z_dim, generator=gen).to(device) for _ in range(4)]

    def call(z):
        ws = G.mapping(z, None)                                        # [B, num_ws, w_dim]
        u8 = quantize(G.synthesis(ws, noise_mode="const"))             # [B, R, R, 3] uint8
        with numerics.autocast(device, precision):
            return C(dequantize(u8))                                   # [B, A]

    for i in range(2):                                                 # warm-up
        call(zs[i])
    sync(device)
    calls, t0 = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - t0 < seconds:
        call(zs[calls % len(zs)])
        calls += 1
        if calls % 4 == 0:
            sync(device)        # bounds the queue so the clock check means something
    sync(device)
    return calls * batch / (time.perf_counter() - t0)


def measure_bare(size: int, path: str, device: str, precisions: list, batches: list,
                 args) -> list:
    from gankit.loading import zoo
    G = zoo.load_generator(path, device=device).eval().requires_grad_(False)
    C = zoo.load_classifier(CLASSIFIER, device=device).eval()
    rows = []
    for p in precisions:
        rates = {}
        for b in batches:
            try:
                rates[b] = bare_rate(G, C, p, b, device, args.bare_seconds, args.min_calls)
            except torch.cuda.OutOfMemoryError:
                rates[b] = None
                torch.cuda.empty_cache()
            print(f"  (a) {size}px {p} batch {b}: "
                  f"{'OOM' if rates[b] is None else f'{rates[b]:.2f} rows/s'}", flush=True)
        best = max((b for b in rates if rates[b]), key=lambda b: rates[b])
        rows.append({"size": size, "precision": p, "best_batch": best,
                     "rows_per_s": rates[best], "by_batch": rates})
    del G, C
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    from gankit import precision as numerics
    numerics.configure_backends(device, "fp32")
    return rows


# ----------------------------------------------------------------------------------------
# The pipeline


def run_pipeline(model: str, out: str, count: int, micro_batch: int, rows_per_part: int,
                 device: str, precision: str, cpus: int, images: bool, image_format: str,
                 classifier, batch_size: int) -> dict:
    """One run_sample into a fresh folder: end-to-end and steady rows/s (see docstring)."""
    from jobs.stages.sample import SampleConfig, run_sample
    if os.path.exists(out):
        shutil.rmtree(out)
    cfg = SampleConfig(model=model, classifier=classifier, count=count, seed=0, space="w",
                       images=images, image_format=image_format, rows_per_part=rows_per_part,
                       micro_batch=micro_batch, batch_size=batch_size, workers=1,
                       cpus_per_worker=cpus, device=device, precision=precision, out=out)
    t = time.perf_counter()
    manifest = run_sample(cfg)
    wall = time.perf_counter() - t
    parts = manifest["parts"]
    commits = sorted((os.stat(os.path.join(out, p["file"])).st_mtime, p["rows"]) for p in parts)
    k = 1                                        # one actor: its first commit opens the window
    window = commits[-1][0] - commits[k - 1][0]
    steady = sum(r for _, r in commits[k:]) / window if len(commits) > k and window > 0 \
        else float("nan")
    data_bytes = sum(os.path.getsize(os.path.join(out, p["file"])) for p in parts)
    shutil.rmtree(out, ignore_errors=True)
    return {"count": count, "parts": len(parts), "rows_per_part": rows_per_part,
            "micro_batch": micro_batch, "batch_size": batch_size, "seconds": wall,
            "e2e_rows_per_s": count / wall, "steady_rows_per_s": steady,
            "kib_per_row": data_bytes / 1024 / count}


def plan_count(rate: float, seconds: float, m: int, min_parts: int = 6) -> tuple:
    """(count, rows_per_part): about `seconds` of rows at `rate`, >= min_parts parts of
    whole micro-batches."""
    rows = max(int(rate * seconds), min_parts * m)
    per_part = m * max(1, math.ceil(rows / (min_parts * m)))
    return per_part * min_parts, per_part


# ----------------------------------------------------------------------------------------
# Report


def fmt(x, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:,.{digits}f}"


def tables(res: dict) -> str:
    lines = [f"machine: {res['machine']}", ""]
    lines += ["(a) bare G + classifier forward (one process, no Ray): rows/s by batch", "",
              "| size | precision | " + " | ".join(f"batch {b}" for b in res["batches"])
              + " | best batch | best rows/s |",
              "|---|---|" + "---:|" * (len(res["batches"]) + 2)]
    for r in res["bare"]:
        cells = [fmt(r["by_batch"].get(b), 2) if r["by_batch"].get(b) is not None else "OOM"
                 for b in res["batches"]]
        lines.append(f"| {r['size']} | {r['precision']} | " + " | ".join(cells)
                     + f" | {r['best_batch']} | **{fmt(r['rows_per_s'], 2)}** |")
    if res["pipeline"]:
        lines += ["", "(b) sample pipeline (1 actor, classifier labels) vs (a) at the same "
                  "precision and micro_batch", "",
                  "| size | precision | micro_batch | images | cpus/actor | rows | parts | "
                  "steady rows/s | end-to-end rows/s | steady / bare | end-to-end / bare | "
                  "KiB/row |",
                  "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in res["pipeline"]:
            lines.append(
                f"| {r['size']} | {r['precision']} | {r['micro_batch']} | {r['images']} | "
                f"{r['cpus']} | {r['count']} | {r['parts']} | {fmt(r['steady_rows_per_s'], 2)} | "
                f"{fmt(r['e2e_rows_per_s'], 2)} | **{fmt(r['steady_vs_bare'], 2)}** | "
                f"{fmt(r['e2e_vs_bare'], 2)} | {fmt(r['kib_per_row'])} |")
    if res.get("ceiling_skipped"):
        lines += ["", f"(c) SKIPPED: {res['ceiling_skipped']}"]
    elif res["ceiling"]:
        lines += ["", f"(c) pipeline ceiling: null generator ({NULL_MODEL}), 1024 px images "
                  "stored, no classifier, 1 actor", "",
                  "| format | cpus/actor | rows | steady rows/s | end-to-end rows/s | "
                  "steady vs 1 CPU | KiB/row |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for r in res["ceiling"]:
            lines.append(f"| {r['format']} | {r['cpus']} | {r['count']} | "
                         f"{fmt(r['steady_rows_per_s'], 2)} | {fmt(r['e2e_rows_per_s'], 2)} | "
                         f"**{fmt(r['speedup_vs_1'], 2)}x** | {fmt(r['kib_per_row'])} |")
    return "\n".join(lines) + "\n"


def machine(device: str) -> str:
    import ray
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else "none"
    return (f"{platform.platform()}, {os.cpu_count()} CPU cores, GPU {gpu}, torch "
            f"{torch.__version__}, ray {ray.__version__}, device {device}, "
            f"{torch.get_num_threads()} torch threads in the bare process")


# ----------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default=None,
                    help="default: cuda when a GPU is visible")
    ap.add_argument("--sizes", type=int, nargs="+", default=None,
                    help="generator sizes for (a) and (b) (default 256 1024; --quick: 256)")
    ap.add_argument("--quick", action="store_true",
                    help="tiny counts (~3 minutes on a 2-core CPU)")
    ap.add_argument("--out", default="out/bench_scale", help="folder for the JSON and table")
    ap.add_argument("--batches", type=int, nargs="+", default=None,
                    help="(a) batch sizes (default GPU 1 4 8 16 32, CPU 1 2 4)")
    ap.add_argument("--precisions", nargs="+", default=None,
                    help="(a) precisions (default: all the device accepts)")
    ap.add_argument("--pipeline-precisions", nargs="+", default=None,
                    help="(b) precisions (default: 'auto' resolved: fp16 GPU, fp32 CPU)")
    ap.add_argument("--cpus-per-worker", type=int, default=None,
                    help="(b) CPUs per actor (default GPU 4, CPU all cores)")
    ap.add_argument("--pipeline-seconds", type=float, default=None,
                    help="(b) rows per run = bare rate x this (default GPU 10, CPU 20, --quick 6)")
    ap.add_argument("--ceiling-count", type=int, default=None,
                    help="(c) rows per run (default 192, --quick 48)")
    ap.add_argument("--ceiling-cpus", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--ceiling-formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    ap.add_argument("--skip-bare", action="store_true", help="skip (a) and (b)")
    ap.add_argument("--skip-pipeline", action="store_true", help="skip (b)")
    ap.add_argument("--skip-ceiling", action="store_true", help="skip (c)")
    ap.add_argument("--save-models", metavar="DIR", default=None,
                    help="only write the random-weight generators of --sizes to DIR")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    gpu = torch.cuda.is_available()
    device = args.device or ("cuda" if gpu else "cpu")
    if device == "cuda" and not gpu:
        ap.error("--device cuda but torch sees no CUDA GPU")
    sizes = args.sizes or ([256] if args.quick else [256, 1024])
    if args.save_models:
        for size, path in save_models(sizes, args.save_models).items():
            print(f"{size} px: {path}")
        return
    on_gpu = device == "cuda"
    batches = args.batches or ([1, 4, 8, 16, 32] if on_gpu else ([1, 2] if args.quick
                                                                  else [1, 2, 4]))
    args.bare_seconds = 2.0 if on_gpu else (2.0 if args.quick else 4.0)
    args.min_calls = 3 if on_gpu else 2
    pipe_seconds = args.pipeline_seconds or (6.0 if args.quick else (10.0 if on_gpu else 20.0))
    ceiling_count = args.ceiling_count or (48 if args.quick else 192)
    cpus = args.cpus_per_worker or (4 if on_gpu else (os.cpu_count() or 1))

    from gankit import precision as numerics
    from jobs.runtime import ensure_ray
    accepted = precisions_for(device)
    precisions = args.precisions or accepted
    for p in precisions:
        numerics.check(p, device)                        # a clear ValueError if not here
    pipe_precisions = [numerics.resolve(p, device)
                       for p in (args.pipeline_precisions or ["auto"])]

    tmp = tempfile.mkdtemp(prefix="gankit-bench-scale-")
    os.makedirs(args.out, exist_ok=True)
    res = {"machine": machine(device), "device": device, "batches": batches,
           "args": {k: v for k, v in vars(args).items()}, "bare": [], "pipeline": [],
           "ceiling": [], "ceiling_skipped": None}
    run_id = iter(range(10 ** 6))
    folder = lambda tag: os.path.join(tmp, f"{next(run_id):03d}-{tag}")   # noqa: E731
    try:
        paths = {} if args.skip_bare else save_models(sizes, tmp)
        # (a) first, before Ray starts: no idle Ray workers share the cores with it.
        bare = {size: measure_bare(size, path, device, precisions, batches, args)
                for size, path in paths.items()}
        res["bare"] = [r for rows in bare.values() for r in rows]
        # One Ray for the rest of the run, with more logical CPUs than the actors ask for.
        ensure_ray(num_cpus=max(os.cpu_count() or 1, 8, max(args.ceiling_cpus) + 2, cpus + 2))
        from ray.data import DataContext
        DataContext.get_current().enable_progress_bars = False
        # Warm-up job (the toy model): Ray's worker pool, imports, file cache; not measured.
        run_pipeline("toy", folder("warmup"), 8, 2, 2, device, "fp32", 1, True, "jpeg",
                     CLASSIFIER, 2)
        for size, path in paths.items():
            if args.skip_pipeline:
                break
            for p in pipe_precisions:
                ref = next((r for r in bare[size] if r["precision"] == p), None)
                if ref is None:
                    continue
                m = ref["best_batch"]
                count, per_part = plan_count(ref["rows_per_s"], pipe_seconds, m)
                for images in (True, False):
                    print(f"  (b) {size}px {p} micro_batch {m}, {count} rows, images "
                          f"{'jpeg' if images else 'none'} ...", flush=True)
                    r = run_pipeline(path, folder(f"b{size}{p}{int(images)}"), count, m,
                                     per_part, device, p, cpus, images, "jpeg", CLASSIFIER,
                                     max(m, per_part // 4 // m * m))
                    r.update(size=size, precision=p, images="jpeg" if images else "none",
                             cpus=cpus, bare_rows_per_s=ref["rows_per_s"],
                             steady_vs_bare=r["steady_rows_per_s"] / ref["rows_per_s"],
                             e2e_vs_bare=r["e2e_rows_per_s"] / ref["rows_per_s"])
                    res["pipeline"].append(r)
                    print(f"      steady {fmt(r['steady_rows_per_s'], 2)} rows/s, end to end "
                          f"{fmt(r['e2e_rows_per_s'], 2)} rows/s", flush=True)
        if not args.skip_ceiling:
            try:
                from gankit.loading import zoo
                zoo.load_generator(NULL_MODEL, device="cpu")
            except Exception as e:                         # an older zoo: no entry points
                res["ceiling_skipped"] = (f"gankit.loading.zoo.load_generator cannot load "
                                          f"{NULL_MODEL}: {type(e).__name__}: {e}")
                print(f"  (c) SKIPPED: {res['ceiling_skipped']}", flush=True)
            else:
                m = 4 if args.quick else 8
                per_part = max(m, ceiling_count // 6 // m * m)
                count = per_part * max(6, ceiling_count // per_part)
                for f in args.ceiling_formats:
                    base = None
                    for c in args.ceiling_cpus:
                        print(f"  (c) null 1024px {f}, {c} CPU(s), {count} rows ...", flush=True)
                        r = run_pipeline(NULL_MODEL, folder(f"c{f}{c}"), count, m, per_part,
                                         device, "fp32", c, True, f, None, m)
                        base = base or r["steady_rows_per_s"]
                        r.update(format=f, cpus=c, speedup_vs_1=r["steady_rows_per_s"] / base)
                        res["ceiling"].append(r)
                        print(f"      steady {fmt(r['steady_rows_per_s'], 2)} rows/s, end to "
                              f"end {fmt(r['e2e_rows_per_s'], 2)} rows/s", flush=True)
    finally:
        import ray
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)

    table = tables(res)
    print("\n" + table)
    with open(os.path.join(args.out, "bench_scale.json"), "w") as f:
        json.dump(res, f, indent=2, default=str)
    with open(os.path.join(args.out, "bench_scale.md"), "w") as f:
        f.write(table)
    print(f"wrote {args.out}/bench_scale.json and bench_scale.md")


if __name__ == "__main__":
    main()
