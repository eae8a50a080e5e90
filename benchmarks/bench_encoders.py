"""The field's encoders at full size: encoded images per second (and per CPU core) at 256 px,
side by side in one run on one machine.

Networks are built from gankit.models.psp / irse with random weights at the published sizes
(IR-SE50 trunk, widths 64..512, w_dim 512, 18 styles: a 1024 px FFHQ generator's W+); the
cost of a forward does not depend on the weights. Measured, in eval mode under no_grad:

    psp          GradualStyleEncoder, image [N, 3, 256, 256] -> W+        (psp_ffhq_encode.pt)
    e4e          Encoder4Editing, the same input                           (e4e_ffhq_encode.pt)
    restyle_pass one pass of ReStyle's BackboneEncoder, [N, 6, 256, 256]   (restyle_psp_ffhq_...)
    restyle_N    ReStyle's whole inversion, N passes + N - 1 renders of a random-weight
                 StyleGAN2 at --generator-size and the average-pooling to 256 (gankit's
                 ReStyleEncoder as `gankit invert` runs it)
    arcface      ArcFace IR-SE50 embeddings of 256 px aligned faces (crop, pool to 112)

For each, the best rate over --batches (warm-up calls first, torch.cuda.synchronize around
the timed loop on a GPU), images/s per CPU core (CPU: divided by the torch threads), and
each rate relative to e4e's in the same run.

    python benchmarks/bench_encoders.py                       # CPU here: a few minutes
    python benchmarks/bench_encoders.py --device cuda --out out/bench
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gankit.models import irse, psp  # noqa: E402

N_STYLES, W_DIM = 18, 512


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def rate(fn, x: torch.Tensor, device: str, seconds: float, min_calls: int = 2) -> float:
    """Images per second of fn(x) (x's batch), after two warm-up calls."""
    with torch.no_grad():
        for _ in range(2):
            fn(x)
        sync(device)
        calls, t0 = 0, time.perf_counter()
        while calls < min_calls or time.perf_counter() - t0 < seconds:
            fn(x)
            calls += 1
        sync(device)
        return calls * x.shape[0] / (time.perf_counter() - t0)


def generator(size: int, device: str):
    """A random-weight FFHQ-shaped StyleGAN2 (config-f channels) for ReStyle's renders."""
    from gankit.models.stylegan2 import Generator, GeneratorConfig, SynthesisConfig
    base = 32768 if size >= 1024 else 16384
    cfg = GeneratorConfig(img_resolution=size,
                          synthesis=SynthesisConfig(channel_base=base, channel_max=512))
    return Generator(cfg).eval().requires_grad_(False).to(device)


def networks(device: str, iterations: int, generator_size: int) -> dict:
    """name -> (callable on a batch, input channels)."""
    n_styles = 2 * (generator_size.bit_length() - 1) - 2
    pSp = psp.GradualStyleEncoder(N_STYLES).eval().to(device)
    e4e = psp.Encoder4Editing(N_STYLES).eval().to(device)
    one = psp.BackboneEncoder(N_STYLES, input_nc=6).eval().to(device)
    G = generator(generator_size, device)
    restyle = psp.ReStyleEncoder(psp.BackboneEncoder(n_styles, input_nc=6),
                                 G.mapping.w_avg.repeat(n_styles, 1).cpu(), generator_size,
                                 "restyle_psp", iterations=iterations).eval().to(device).bind(G)
    arcface = irse.Backbone().eval().to(device)
    from gankit.faces.identity_arcface import arcface_embeddings
    return {"psp": (pSp, 3), "e4e": (e4e, 3), "restyle_pass": (one, 6),
            f"restyle_{iterations}": (restyle, 3),
            "arcface": (lambda x: arcface_embeddings(arcface, x), 3)}


def machine(device: str) -> str:
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else "none"
    return (f"{platform.platform()}, {os.cpu_count()} CPU cores, GPU {gpu}, torch "
            f"{torch.__version__}, device {device}, {torch.get_num_threads()} torch threads")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default=None,
                    help="default: cuda when a GPU is visible")
    ap.add_argument("--batches", type=int, nargs="+", default=None,
                    help="batch sizes (default GPU 1 8 32, CPU 1 2 4)")
    ap.add_argument("--seconds", type=float, default=None,
                    help="timed seconds per (network, batch) (default GPU 2, CPU 6)")
    ap.add_argument("--iterations", type=int, default=5, help="ReStyle's N")
    ap.add_argument("--generator-size", type=int, default=None,
                    help="ReStyle's generator (default GPU 1024, CPU 256)")
    ap.add_argument("--only", nargs="+", default=None, help="measure these networks only")
    ap.add_argument("--out", default=None, help="folder for bench_encoders.json")
    args = ap.parse_args()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    on_gpu = device == "cuda"
    if on_gpu:
        torch.backends.cudnn.benchmark = True
    batches = args.batches or ([1, 8, 32] if on_gpu else [1, 2, 4])
    seconds = args.seconds or (2.0 if on_gpu else 6.0)
    size = args.generator_size or (1024 if on_gpu else 256)
    threads = 1 if on_gpu else torch.get_num_threads()
    rows = []
    for name, (fn, channels) in networks(device, args.iterations, size).items():
        if args.only and name not in args.only:
            continue
        best = None
        for b in batches:
            x = torch.rand(b, channels, 256, 256, device=device) * 2 - 1
            r = rate(fn, x, device, seconds)
            print(f"  {name:<12} batch {b:>3}: {r:8.2f} images/s", flush=True)
            best = max(best or (0, 0), (r, b))
        rows.append({"network": name, "images_per_s": best[0], "best_batch": best[1],
                     "images_per_s_per_core": best[0] / threads if not on_gpu else None})
    ref = next((r["images_per_s"] for r in rows if r["network"] == "e4e"), None)
    for r in rows:
        r["vs_e4e"] = r["images_per_s"] / ref if ref else None
    res = {"machine": machine(device), "device": device, "batches": batches,
           "generator_size": size, "iterations": args.iterations, "rows": rows}
    print(f"\n{res['machine']}\n")
    print("| network | images/s | per core | best batch | vs e4e |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        per_core = f"{r['images_per_s_per_core']:.2f}" if r["images_per_s_per_core"] else "-"
        vs = f"{r['vs_e4e']:.2f}" if r["vs_e4e"] else "-"
        print(f"| {r['network']} | {r['images_per_s']:.2f} | {per_core} | {r['best_batch']} "
              f"| {vs} |")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "bench_encoders.json"), "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
