"""Pivotal Tuning beside the other inversion modes on the toy world, side by side.

Every method inverts the same toy-world renders (faces negative for `--attribute`, which
the generator never produced), then `gankit eval-inversion`'s check runs on its result:
each latent (a PTI row: its pivot, rendered through its own change) is moved to distance
+3 of a W boundary fitted here on generated samples, and the edit is compared with the
renderer's counterfactual (the same faces with the factor set). Columns: reconstruction
PSNR and toy feature distance, the edit's flip rate and other attributes kept, the edit's
pixel MSE and feature distance to the counterfactual, seconds per image (the inversion
alone, the pivot included), time relative to hybrid-100, and bytes per image (what a row
needs to render its reconstruction: latent and noise maps in float32, PTI's change in
float16).

Methods: optimize in W and W+ (NVIDIA's schedule from w_avg, 1000 steps; W+ is the
reference the hybrid is measured against), the hybrid (toy encoder + K steps in W+) with
NVIDIA's schedule at 100 steps (the hybrid's first), its default ('fast') and 'lbfgs' at
100 and 400 steps, and PTI (the default 200 steps at lr 1e-3) on the fast hybrid-100 pivot
in W+ at
ranks 1, 2, 4 and 16 (batched), at the default rank with PTI's own 350 steps at lr 3e-4
(`--variant`), in full (batch 1, PTI's own code and settings: 350 steps at 3e-4), and on a
W pivot (PTI's choice, for editing). Loss as
`gankit eval-inversion`: pixel MSE + 1e-3 x toy feature distance; PTI tunes with the same
loss, no early stop (the toy features are not LPIPS: PTI's 0.06 would stop after a few
steps). About 5 minutes on 2 CPU cores at --n 8 (BENCHMARKS.md).

    flock /tmp/gankit-heavy.lock python benchmarks/bench_pti.py --n 8 --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from bench_hybrid import fit_w_boundary
from gankit.loading import zoo
from gankit.latent.inversion import InversionConfig, w_stats
from gankit.models.perceptual import load_feature_net
from gankit.toy.toy_eval import eval_inversion


def methods(args) -> list:
    """[(name, InversionConfig, batch or None)], in table order."""
    base = dict(perceptual_weight=1e-3)
    pti = dict(base, mode="pti", space="wp", pti_pivot="hybrid", steps=args.pivot_steps,
               pti_steps=args.pti_steps, pti_stop=0.0)
    if args.pti_lr is not None:
        pti["pti_lr"] = args.pti_lr
    rank = InversionConfig.pti_rank
    rows = [("optimize W", InversionConfig(space="w", steps=args.ref_steps, **base), None),
            ("optimize W+ (reference)", InversionConfig(space="wp", steps=args.ref_steps,
                                                        **base), None),
            ("hybrid-100, nvidia schedule", InversionConfig(
                space="wp", mode="hybrid", steps=100, hybrid_schedule="nvidia", **base), None)]
    rows += [(f"hybrid-{k}", InversionConfig(space="wp", mode="hybrid", steps=k, **base), None)
             for k in args.hybrid_steps]
    rows += [(f"hybrid-{k}, lbfgs", InversionConfig(space="wp", mode="hybrid", steps=k,
                                                    hybrid_schedule="lbfgs", **base), None)
             for k in args.hybrid_steps]
    rows += [(f"PTI rank {r}", InversionConfig(pti_rank=r, **pti), None) for r in args.ranks]
    own = dict(pti, pti_steps=int(args.variant[0]), pti_lr=args.variant[1]) \
        if args.variant else pti
    rows += [(f"PTI rank {rank}, {int(args.variant[0])} steps at lr {args.variant[1]:g}",
              InversionConfig(**own), None)] if args.variant else []
    rows += [(f"PTI rank {rank}, stop at {stop:g}", InversionConfig(**dict(pti, pti_stop=stop)),
              None) for stop in args.stops]
    if args.full:
        rows.append(("PTI full (batch 1)", InversionConfig(**dict(own, pti_rank=0)), 1))
    rows.append((f"PTI rank {rank}, W pivot", InversionConfig(**dict(pti, space="w")), None))
    return rows


def bytes_per_image(G, cfg: InversionConfig, fig: dict) -> int:
    """A row's latent (float32) + its noise maps (float32, when optimised) + PTI's change."""
    latent = (G.w_dim if cfg.space == "w" else G.num_ws * G.w_dim) * 4
    if cfg.mode == "pti":
        return latent + fig["delta_bytes"]
    noise = sum(l.resolution ** 2 for l in G.synthesis.noise_layers()) * 4 \
        if cfg.optimize_noise and cfg.mode != "encode" else 0
    return latent + noise


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=8, help="renders inverted")
    p.add_argument("--attribute", default="eyeglasses")
    p.add_argument("--ref-steps", type=int, default=1000, help="optimize W / W+ steps")
    p.add_argument("--hybrid-steps", type=int, nargs="+", default=[100, 400])
    p.add_argument("--pivot-steps", type=int, default=100, help="PTI's hybrid pivot steps")
    p.add_argument("--pti-steps", type=int, default=InversionConfig.pti_steps)
    p.add_argument("--pti-lr", type=float, default=None, help="default: InversionConfig's")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4, 16])
    p.add_argument("--variant", type=float, nargs=2, default=[350, 3e-4],
                   metavar=("STEPS", "LR"), help="also PTI at the default rank with these "
                   "steps and lr (default: PTI's own), which full tuning runs with too")
    p.add_argument("--stops", type=float, nargs="*", default=[],
                   help="also PTI at the default rank with these early stops (feature distance)")
    p.add_argument("--full", action=argparse.BooleanOptionalAction, default=True,
                   help="PTI's full tuning at batch 1")
    p.add_argument("--fit-samples", type=int, default=4000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    G, C = zoo.load_generator("toy").eval(), zoo.load_classifier("toy").eval()
    E, net = zoo.load_encoder("toy"), load_feature_net("toy")
    b = fit_w_boundary(G, C, args.attribute, args.fit_samples, seed=1)
    w_std = w_stats(G)[1]                 # once, as a job's actor does
    rows = []
    for name, cfg, batch in methods(args):
        cpu0 = time.process_time()
        fig = eval_inversion(G, C, b, args.attribute, cfg, n=args.n, seed=0, feature_net=net,
                             encoder=E, batch=batch, w_std=w_std)
        fig.pop("examples")
        fig["cpu_seconds"] = time.process_time() - cpu0   # all threads; with the edit check
        rows.append(dict(fig, name=name, bytes=bytes_per_image(G, cfg, fig), batch=batch))
        print(f"  {name}: {fig['seconds']:.1f} s, {fig['recon_psnr']:.2f} dB", flush=True)
    report(args, rows, b, time.perf_counter() - t_start)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


def report(args, rows: list, boundary, total: float) -> None:
    ref = next(r for r in rows if r["name"] == f"hybrid-{args.hybrid_steps[0]}")
    print(f"\ntoy model (32x32), {args.n} renders negative for {args.attribute}, toy feature "
          f"net (loss MSE + 1e-3 x feature), PTI pivot: hybrid-{args.pivot_steps} in W+, "
          f"{args.pti_steps} tuning steps, device={platform.processor() or 'cpu'}, "
          f"threads={args.threads}, cpus={os.cpu_count()}, total {total:.0f} s; W boundary "
          f"val acc {boundary.metrics.get('val_accuracy', float('nan')):.3f}\n")
    print("| method | recon PSNR (dB) | recon feature | flip rate | others kept | edit MSE vs "
          f"cf | edit feature vs cf | s / image | time vs {ref['name']} | CPU time vs "
          f"{ref['name']} | bytes / image |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        per = r["seconds"] / r["faces"]
        print(f"| {r['name']} | {r['recon_psnr']:.2f} | {r['recon_feature']:.3g} | "
              f"{r['flip_rate']:.2f} | {r['others_kept']:.2f} | {r['edit_mse']:.4f} | "
              f"{r['edit_feature']:.1f} | {per:.3f} | {r['seconds'] / ref['seconds']:.2f}x | "
              f"{r['cpu_seconds'] / ref['cpu_seconds']:.2f}x | {r['bytes']:,} |")
    print(f"\ncounterfactual ceiling: flip rate {rows[0]['cf_flip_rate']:.2f}, others kept "
          f"{rows[0]['cf_others_kept']:.2f}")
    default = next((r for r in rows if r["name"] == f"PTI rank {InversionConfig.pti_rank}"),
                   None)
    if default:
        print(f"PTI at the default rank {default['pti_rank']}: "
              f"{default['recon_psnr'] - ref['recon_psnr']:+.2f} dB over {ref['name']} "
              f"(goal >= +5), {default['seconds'] / ref['seconds']:.2f}x its time (goal <= "
              f"4x; CPU time {default['cpu_seconds'] / ref['cpu_seconds']:.2f}x), edit MSE vs cf {default['edit_mse']:.4f} vs {ref['edit_mse']:.4f}, others "
              f"kept {default['others_kept']:.2f} vs {ref['others_kept']:.2f}")


if __name__ == "__main__":
    main()
