"""Tolerance of the generator's reduced precisions against fp32, on CPU (the fp16/bf16 math is
the same as on a GPU, only the kernels differ) or, with `--device cuda`, on a GPU, where tf32
is measured too and a config-f 1024 px generator is added (`--rand1024-samples`).

Two generators, same latents for every precision (ws from the fp32 mapping network):
  toy      the bundled toy generator, 32 px; its num_fp16_res 0 -> NVIDIA's 4 -> blocks 8..32
           reduced (b4 never: the formula's floor is 8), 256 samples;
  rand256  a random-weight 256 px generator (z/w 512, channel_base 16384, channel_max 512,
           num_fp16_res 4 -> blocks 32..256 reduced, conv_clamp 256), seeded, 16 samples.
noise_mode='const'. Differences are in 8-bit levels (images * 127.5, before clipping and
rounding); '>2 lv' is the share of pixel values that differ by more than 2 levels.

    python benchmarks/precision_tolerance.py
    python benchmarks/precision_tolerance.py --toy-samples 64 --rand-samples 4 --threads 2
    python benchmarks/precision_tolerance.py --device cuda --rand1024-samples 16
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gankit import precision as numerics  # noqa: E402
from gankit.loading import zoo  # noqa: E402
from gankit.models import ops  # noqa: E402
from gankit.models.stylegan2 import Generator, GeneratorConfig, SynthesisConfig  # noqa: E402


def random_generator(resolution: int, seed: int = 0) -> Generator:
    """256 px: channel_base 16384; 1024 px: NVIDIA's config-f (32768). Random weights."""
    torch.manual_seed(seed)
    base = 32768 if resolution >= 1024 else 16384
    cfg = GeneratorConfig(img_resolution=resolution, z_dim=512, w_dim=512,
                          synthesis=SynthesisConfig(channel_base=base, channel_max=512,
                                                    num_fp16_res=4, conv_clamp=256))
    return Generator(cfg).eval()


def runs(dtype: torch.dtype, device: str) -> bool:
    if device.startswith("cuda"):
        return True
    try:
        x = torch.ones([1, 1, 3, 3], dtype=dtype)
        torch.nn.functional.conv2d(x, x)
        return True
    except (RuntimeError, NotImplementedError):
        return False


@torch.no_grad()
def render(G: Generator, ws: torch.Tensor, precision: str, batch: int) -> torch.Tensor:
    device = ws.device.type
    numerics.configure_backends(device, precision)     # TF32 on for 'tf32' only
    G.set_precision(precision)
    out = torch.cat([G.synthesis(w, noise_mode="const").cpu() for w in ws.split(batch)])
    numerics.configure_backends(device, "fp32")
    return out


def compare(name: str, G: Generator, num: int, batch: int, seed: int,
            device: str = "cpu") -> list:
    G = G.to(device)
    z = torch.randn(num, G.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    with torch.no_grad():
        ws = G.mapping(z)                                               # [N, num_ws, w_dim]
    t0 = time.perf_counter()
    ref = render(G, ws, "fp32", batch)                                  # [N, C, H, W]
    rows = [(name, "fp32", 0.0, 0.0, 0.0, time.perf_counter() - t0, ref)]
    others = (("tf32", None),) if device.startswith("cuda") else ()
    for p, dtype in others + (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        if dtype is not None and not runs(dtype, device):
            print(f"# {p}: no {dtype} conv2d on this CPU, skipped")
            continue
        t0 = time.perf_counter()
        img = render(G, ws, p, batch)
        seconds = time.perf_counter() - t0
        assert img.dtype == torch.float32 and torch.isfinite(img).all(), p
        diff = (img - ref).abs() * 127.5                                # 8-bit levels
        rows.append((name, p, diff.mean().item(), diff.max().item(),
                     (diff > 2).float().mean().item(), seconds, ref))
    G.set_precision("fp32")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--toy-samples", type=int, default=256)
    ap.add_argument("--rand-samples", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rand1024-samples", type=int, default=0, help="config-f, 1024 px")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, {where}; "
          f"reduced dtypes {[str(d) for d in ops.REDUCED_DTYPES]}")
    rows = compare("toy", zoo.load_generator("toy"), args.toy_samples, 64, args.seed,
                   args.device)
    rows += compare("rand256", random_generator(256, args.seed), args.rand_samples, 4,
                    args.seed, args.device)
    if args.rand1024_samples:
        rows += compare("rand1024", random_generator(1024, args.seed), args.rand1024_samples,
                        4, args.seed, args.device)
    print(f"{'model':8} {'prec':5} {'fp32 std':>9} {'mean |d|':>9} {'max |d|':>8} "
          f"{'>2 lv':>8} {'seconds':>8}")
    for name, p, mean, mx, share, seconds, ref in rows:
        std = ref.std().item() * 127.5
        print(f"{name:8} {p:5} {std:9.1f} {mean:9.3f} {mx:8.2f} {share:8.3%} {seconds:8.1f}")


if __name__ == "__main__":
    main()
