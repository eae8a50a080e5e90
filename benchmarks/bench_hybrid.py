"""Encoder, hybrid and optimisation inversion side by side on the same toy renders.

1. Steps to quality: NVIDIA-style optimisation in W+ for `--ref-steps` (1000) steps from w_avg
   is the reference; the hybrid (the toy encoder's w+ and G's const noise, refined for K
   steps with its own K-step schedule, `--hybrid-schedule` lbfgs, fast or nvidia) runs for each K
   of `--ks`; the table gives mean
   PSNR / feature distance per K, and the smallest K that reaches the reference's mean PSNR
   and mean feature distance. K = 0 is the encoder alone ('encode').
2. Counterfactual edits per mode (gankit eval-inversion's figures): optimize W, optimize W+,
   encode, hybrid; the W boundary of one attribute is fitted here on generated samples.

Images: toy-world renders (the generator never produced them). Loss as `gankit
eval-inversion`: pixel MSE + 1e-3 x toy feature distance, noise optimised.

    python benchmarks/bench_hybrid.py                    # toy model, CPU, one thread
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from gankit.toy import toyfaces
from gankit.loading import zoo
from gankit.images import from_uint8
from gankit.latent.inversion import HYBRID_SCHEDULES, InversionConfig, invert, w_stats
from gankit.models.perceptual import load_feature_net


SCHEDULE = {"hybrid_schedule": InversionConfig.hybrid_schedule}   # --hybrid-schedule


def run_mode(G, E, net, x, mode: str, space: str, steps: int, w_std: float) -> tuple:
    """(seconds, mean PSNR, mean feature distance) of one inversion of all images x."""
    cfg = InversionConfig(space=space, mode=mode, steps=steps, perceptual_weight=1e-3,
                          **SCHEDULE)
    t0 = time.perf_counter()
    with torch.no_grad():
        init = E(x) if mode != "optimize" else None
    res = invert(G, x, cfg, feature_net=net, init_ws=init, w_std=w_std)
    return time.perf_counter() - t0, float(res.psnr.mean()), float(res.perceptual.mean())


def steps_to_quality(G, E, net, x, ks: list, ref_steps: int, w_std: float) -> dict:
    ref = run_mode(G, E, net, x, "optimize", "wp", ref_steps, w_std)
    rows = []
    for k in ks:
        rows.append((k,) + run_mode(G, E, net, x, "encode" if k == 0 else "hybrid", "wp", k,
                                    w_std))
    reach_psnr = next((k for k, _, p, _ in rows if p >= ref[1]), None)
    reach_feat = next((k for k, _, _, f in rows if f <= ref[2]), None)
    return {"reference": ref, "rows": rows, "reach_psnr": reach_psnr, "reach_feature": reach_feat}


def fit_w_boundary(G, C, attribute: str, n: int, seed: int):
    """A W boundary for `attribute` from n generated samples (classifier logits, top/bottom
    10%), as `gankit fit` does it."""
    from gankit.latent.boundaries import fit_boundary
    from gankit.latent.latents import sample_z
    z = torch.from_numpy(sample_z(seed, np.arange(n), G.z_dim))
    ws, logits = [], []
    with torch.no_grad():
        for zc in z.split(256):
            w = G.mapping(zc, None)                                      # [b, num_ws, w_dim]
            ws.append(w[:, 0].numpy())
            logits.append(C(G.synthesis(w, noise_mode="const"))[:, C.attribute_names.index(
                attribute)].numpy())
    return fit_boundary(np.concatenate(ws), np.concatenate(logits), attribute, "w",
                        fraction=0.1, seed=seed)


def edits_per_mode(G, C, E, net, boundary, attribute: str, n: int, steps: int, k: int) -> list:
    from gankit.toy.toy_eval import eval_inversion
    modes = [("optimize", "w", steps), ("optimize", "wp", steps), ("encode", "wp", 0),
             ("hybrid", "wp", k)]
    out = []
    for mode, space, s in modes:
        t0 = time.perf_counter()
        fig = eval_inversion(G, C, boundary, attribute, InversionConfig(
            space=space, mode=mode, steps=s, perceptual_weight=1e-3, **SCHEDULE), n=n, seed=0,
            feature_net=net, encoder=E)
        out.append(dict(fig, seconds=time.perf_counter() - t0))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=16, help="renders inverted")
    p.add_argument("--ref-steps", type=int, default=1000, help="reference optimisation steps")
    p.add_argument("--ks", type=int, nargs="+", default=[0, 25, 50, 100, 200, 400])
    p.add_argument("--attribute", default="eyeglasses")
    p.add_argument("--edit-steps", type=int, default=200, help="optimize W / W+ in the edits")
    p.add_argument("--edit-k", type=int, default=50, help="hybrid steps in the edits")
    p.add_argument("--fit-samples", type=int, default=4000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--hybrid-schedule", default=InversionConfig.hybrid_schedule,
                   choices=HYBRID_SCHEDULES)
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args()
    SCHEDULE["hybrid_schedule"] = args.hybrid_schedule
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    G, C = zoo.load_generator("toy").eval(), zoo.load_classifier("toy").eval()
    E, net = zoo.load_encoder("toy"), load_feature_net("toy")
    x = from_uint8(toyfaces.render(toyfaces.sample_factors(args.n, seed=11), G.img_resolution))
    w_std = w_stats(G)[1]
    sq = steps_to_quality(G, E, net, x, args.ks, args.ref_steps, w_std)
    b = fit_w_boundary(G, C, args.attribute, args.fit_samples, seed=1)
    edits = edits_per_mode(G, C, E, net, b, args.attribute, args.n, args.edit_steps, args.edit_k)
    print(f"toy model (32x32), {args.n} renders, toy feature net (loss MSE + 1e-3 x feature), "
          f"device={platform.processor() or 'cpu'}, threads={args.threads}, "
          f"cpus={os.cpu_count()}, total {time.perf_counter() - t_start:.0f} s\n")
    ref = sq["reference"]
    print("| inversion | steps | seconds | mean PSNR (dB) | mean feature distance |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| optimize W+ (reference) | {args.ref_steps} | {ref[0]:.1f} | {ref[1]:.2f} | {ref[2]:.3g} |")
    for k, t, ps, fd in sq["rows"]:
        name = "encode" if k == 0 else "hybrid"
        print(f"| {name} | {k} | {t:.1f} | {ps:.2f} | {fd:.3g} |")
    print(f"\nhybrid steps to reach the reference: PSNR {sq['reach_psnr']}, feature distance "
          f"{sq['reach_feature']} (None: not within {max(args.ks)})\n")
    print(f"Counterfactual edits ({args.attribute}, W boundary fitted on {args.fit_samples} "
          f"samples, val acc {b.metrics.get('val_accuracy', float('nan')):.3f}):\n")
    print("| mode | space | steps | recon PSNR | recon feature | flip rate | others kept | "
          "edit MSE vs counterfactual | edit feature vs counterfactual | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for f in edits:
        print(f"| {f['mode']} | {f['space']} | {f['steps']} | {f['recon_psnr']:.2f} | "
              f"{f['recon_feature']:.3g} | {f['flip_rate']:.2f} | {f['others_kept']:.2f} | "
              f"{f['edit_mse']:.4f} | {f['edit_feature']:.1f} | {f['seconds']:.1f} |")
    print(f"\ncounterfactual ceiling: flip rate {edits[0]['cf_flip_rate']:.2f}, others kept "
          f"{edits[0]['cf_others_kept']:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"steps_to_quality": sq, "edits": edits}, fh, indent=2)


if __name__ == "__main__":
    main()
