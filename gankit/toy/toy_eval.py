"""Ground truth for real-image editing, from the toy world: invert renders, edit one attribute,
and compare with the renderer's counterfactual (the same faces with that factor changed).

`eval_inversion` returns:
  flip_rate      the classifier says positive for the target on the edited render
  others_kept    other attributes: the classifier's label of the edit == the true label
  cf_flip_rate / cf_others_kept   the same on the counterfactual render (the ceiling)
  edit_mse / edit_feature         edited render vs counterfactual render
  recon_mse / recon_psnr          inversion error (reconstruction vs input)
  recon_feature                   feature distance reconstruction vs input (with a net)
  pti_* / delta_bytes / tuned     mode 'pti': pivot, rank, steps, bytes per image
  examples                        the first faces of each column, for the report
  seconds                         time the inversion took (all faces)
"""
from __future__ import annotations

import copy
import time
from typing import Optional

import numpy as np
import torch

from gankit.images import from_uint8, to_uint8
from gankit.latent.editing import edit
from gankit.latent.inversion import invert
from gankit.latent.metrics import pixel_mse
from gankit.latent.pti import render
from gankit.toy import toyfaces


def negatives(attribute: str, n: int, seed: int, value=None) -> tuple:
    """n toy faces negative for `attribute` and their counterfactuals with its factor set to
    `value` (default: the top of its range) -> (factors, counterfactual factors)."""
    f = toyfaces.sample_factors(8 * n, seed)
    f = toyfaces.take(f, np.nonzero(~toyfaces.labels(f)[attribute])[0][:n])
    spec = {a.name: a for a in toyfaces.ATTRIBUTES}[attribute]
    top = toyfaces.FACTOR_RANGES[spec.factor][1]
    return f, toyfaces.counterfactual(f, attribute, top if value is None else value)


def eval_inversion(G, classifier, boundary, attribute: str, cfg, n: int = 16, seed: int = 0,
                   strength: float = 3.0, feature_net=None, value=None, encoder=None,
                   batch: Optional[int] = None, w_std: Optional[float] = None) -> dict:
    """Invert the faces (gankit.latent.inversion config `cfg`; `encoder` gives the initial w+ of
    modes 'encode' / 'hybrid'), `batch` at a time (default: all; `w_std` skips its
    estimate in each), move each latent to
    signed distance `strength` of `boundary` and score the edit against the counterfactual
    (keys: the module's docstring)."""
    names = list(classifier.attribute_names)
    if attribute not in names or attribute not in toyfaces.ATTRIBUTE_NAMES:
        raise ValueError(f"attribute {attribute!r} is not a toy attribute of the classifier")
    f, cf = negatives(attribute, n, seed, value)
    x = from_uint8(toyfaces.render(f, G.img_resolution))                   # [n, 3, R, R]
    x_cf = from_uint8(toyfaces.render(cf, G.img_resolution))
    init = None
    pivot = cfg.pti_pivot if cfg.mode == "pti" else cfg.mode
    if pivot != "optimize":
        if encoder is None:
            raise ValueError(f"mode {pivot!r} needs an encoder")
        with torch.no_grad():
            init = encoder(x)                                              # [n, num_ws, w_dim]
    t0 = time.perf_counter()
    inv = invert_in_batches(G, x, cfg, feature_net, init, batch or len(x), w_std)
    seconds = time.perf_counter() - t0
    ws = edit(inv.ws, boundary, strength, "to_distance",
              layers=None if cfg.space == "w" else (0, G.num_ws))          # [n, num_ws, w_dim]
    with torch.no_grad():
        x_edit = render(G, ws, inv.deltas, noises=inv.noises)           # PTI: own changes
    truth = np.stack([toyfaces.labels(cf)[a] for a in names], axis=1)      # [n, A]
    return {"attribute": attribute, "faces": int(len(x)), "space": cfg.space,
            "mode": cfg.mode, "steps": 0 if pivot == "encode" else cfg.steps,
            "strength": strength, "seconds": seconds, **tuned_summary(cfg, inv),
            **label_scores(classifier, x_edit, x_cf, truth, names.index(attribute)),
            "edit_mse": float(pixel_mse(x_edit, x_cf).mean()),
            "edit_feature": feature_distance(feature_net, x_edit, x_cf),
            "recon_mse": float(inv.mse.mean()), "recon_psnr": float(inv.psnr.mean()),
            "recon_feature": feature_distance(feature_net, inv.reconstruction, x),
            "examples": examples([("input", x), ("reconstruction", inv.reconstruction),
                                  ("edited", x_edit), ("counterfactual", x_cf)])}


def invert_in_batches(G, x, cfg, feature_net, init, batch: int, w_std=None):
    """gankit.latent.inversion.invert of x [n, ...] in batches of `batch` (image i keeps index i),
    as one InversionResult."""
    from gankit.latent.pti import Deltas
    parts = [invert(G, x[s:s + batch], cfg, feature_net=feature_net,
                    init_ws=None if init is None else init[s:s + batch],
                    indices=range(s, min(s + batch, len(x))), w_std=w_std)
             for s in range(0, len(x), batch)]
    if len(parts) == 1:
        return parts[0]
    cat = lambda name: None if getattr(parts[0], name) is None else \
        torch.cat([getattr(p, name) for p in parts])                      # noqa: E731
    out = copy.copy(parts[0])
    for name in ("ws", "reconstruction", "mse", "psnr", "ssim", "perceptual", "loss",
                 "steps", "pti_steps", "pivot_psnr"):
        setattr(out, name, cat(name))
    if out.noises is not None:
        out.noises = [torch.cat([p.noises[j] for p in parts]) for j in range(len(out.noises))]
    if out.deltas is not None:
        out.deltas = Deltas.cat([p.deltas for p in parts])
    return out


def tuned_summary(cfg, inv) -> dict:
    """Mode 'pti': its pivot, rank, mean tuning steps and bytes per image."""
    if inv.deltas is None:
        return {}
    return {"pti_pivot": cfg.pti_pivot, "pti_rank": cfg.pti_rank,
            "pti_steps": float(inv.pti_steps.float().mean()),
            "pivot_psnr": float(inv.pivot_psnr.mean()),
            "delta_bytes": inv.deltas.layout.nbytes,
            "tuned": f"rank {cfg.pti_rank or 'full'}, {cfg.pti_pivot} pivot, "
                     f"{inv.deltas.layout.nbytes / 1e3:,.1f} kB"}


@torch.no_grad()
def label_scores(classifier, x_edit, x_cf, truth: np.ndarray, t: int) -> dict:
    """Flip rate of target t and the other attributes kept, on the edit and the counterfactual."""
    others = [j for j in range(truth.shape[1]) if j != t]
    scores = {}
    for prefix, images in (("", x_edit), ("cf_", x_cf)):
        pred = classifier(images).numpy() > 0                               # [n, A]
        scores[prefix + "flip_rate"] = float(pred[:, t].mean())
        scores[prefix + "others_kept"] = float((pred[:, others] == truth[:, others]).mean())
    return scores


@torch.no_grad()
def feature_distance(feature_net, a, b):
    """Mean feature distance of two image batches (None without a feature net)."""
    if feature_net is None:
        return None
    return float(feature_net.distance(feature_net.features(a), feature_net.features(b)).mean())


def examples(columns: list, faces: int = 4) -> dict:
    """The first faces of each column, packed for the report's inversion rows."""
    from gankit.report import pack_examples
    return pack_examples([(name, to_uint8(x[:faces].detach())) for name, x in columns])
