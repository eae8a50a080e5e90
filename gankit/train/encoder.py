"""Training a W+ encoder (gankit.models.encoder) on synthetic pairs (image, w+).

Pairs come from the frozen generator itself: z ~ N(0, I) mapped to w, style mixing (two w's,
a random crossover layer) for W+ diversity, images from G.synthesis with const noise: the
encoder learns exactly what inversion needs (an image G can make -> the w+ that made it).
Or pairs come from a samples dataset written by `gankit sample --space wp --images`
(`pairs_from_table`): then the pool is that fixed set.

The pool: rendering is the expensive part on a CPU (a G forward costs several times an
encoder forward + backward at 32px; MODELS.md, "Toy encoder"), so pairs live in a pool of
`pool_size` and every step replaces `refresh` of them with fresh ones (and samples its batch from
the whole pool): each pair is seen about batch_size * pool_size / (refresh * pool_size) =
batch_size / refresh times.

Loss (per step, means over the batch):
    latent_weight * MSE(E(x), w+)                        always
  + pixel_weight * MSE(G(E(x)), x)                       every `image_every` steps, on the
  + feature_weight * |F(G(E(x))) - F(x)|^2               first `image_batch` rows (through
                                                         the frozen G; F = the feature net)

Determinism and resume: pair k is drawn from (seed, k) only, in groups of `refresh` ids that
are always rendered together (the same batch shape, so the same bits); the pool content at
step s is a function of s, so a resumed run rebuilds it and continues bit-identically
(encoder, Adam and the batch sampler's RNG state are in the checkpoint).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import torch

from gankit import atomic
from gankit.models.encoder import WPlusEncoder, new_encoder

CHECKPOINT = "training.pt"


@dataclass
class EncoderTrainConfig:
    steps: int = 6000              # optimiser steps (batches)
    batch_size: int = 64           # pairs per step
    lr: float = 1e-3               # Adam; cosine decay to lr_final_frac * lr
    lr_final_frac: float = 0.05
    pool_size: int = 2048          # pairs held; a multiple of refresh
    refresh: int = 8               # fresh pairs per step (0: fixed pool, e.g. from samples)
    style_mixing: float = 0.9      # probability a pair mixes two w's (StyleGAN2's 0.9)
    truncation: float = 1.0        # psi of the generated pairs (1 = none)
    latent_weight: float = 1.0     # MSE on w+
    pixel_weight: float = 10.0     # pixel MSE through the frozen G (small next to the w+ MSE,
                                   # so weighted up; MODELS.md, "Toy encoder")
    feature_weight: float = 1e-3   # feature distance through G (toy features are O(100))
    image_every: int = 2           # image-space loss every this many steps (0 = never)
    image_batch: int = 16          # rows of the batch that get the image-space loss
    seed: int = 0
    checkpoint_every: int = 500    # steps between checkpoints (also written at the end)
    max_minutes: Optional[float] = None  # stop (resumably) after this much wall time

    def validate(self) -> None:
        if self.refresh and self.pool_size % self.refresh:
            raise ValueError(f"pool_size ({self.pool_size}) must be a multiple of refresh "
                             f"({self.refresh})")
        if self.batch_size < 1 or self.steps < 0 or self.lr <= 0:
            raise ValueError("batch_size must be >= 1, steps >= 0 and lr > 0")
        if not 0 <= self.style_mixing <= 1:
            raise ValueError(f"style_mixing must be a probability, got {self.style_mixing}")


# ----------------------------------------------------------------------------------------
# Pairs


@torch.no_grad()
def generate_pairs(G, ids: np.ndarray, cfg: EncoderTrainConfig) -> tuple:
    """Pairs for ids [n], drawn from (seed, id) only -> (images [n, 3, R, R], w+ [n, num_ws,
    w_dim])."""
    from gankit.latent.latents import sample_z
    device = G.mapping.w_avg.device
    ids = np.asarray(ids, dtype=np.int64)
    z1 = torch.from_numpy(sample_z(cfg.seed, 2 * ids, G.z_dim)).to(device)       # [n, z_dim]
    z2 = torch.from_numpy(sample_z(cfg.seed, 2 * ids + 1, G.z_dim)).to(device)
    ws = G.mapping(z1, None, truncation_psi=cfg.truncation)                    # [n, num_ws, w_dim]
    ws2 = G.mapping(z2, None, truncation_psi=cfg.truncation)
    cut = np.array([mixing_cutoff(cfg, G.num_ws, int(i)) for i in ids])        # [n]
    layer = torch.arange(G.num_ws, device=device)[None, :, None]               # [1, num_ws, 1]
    ws = torch.where(layer < torch.from_numpy(cut).to(device)[:, None, None], ws, ws2)
    return G.synthesis(ws, noise_mode="const"), ws


def mixing_cutoff(cfg: EncoderTrainConfig, num_ws: int, pair_id: int) -> int:
    """Layers [0, cut) take the first w, [cut, num_ws) the second; num_ws = no mixing."""
    rng = np.random.default_rng([cfg.seed, pair_id, 1])
    if rng.random() >= cfg.style_mixing:
        return num_ws
    return int(rng.integers(1, num_ws))


def pairs_from_table(table, num_ws: int, w_dim: int) -> tuple:
    """A `gankit sample --images --space wp` (or 'w') table -> (images [n, 3, R, R] in
    [-1, 1], w+ [n, num_ws, w_dim]): the stored 8-bit images and their latents."""
    from gankit.data import latents_from_column
    from gankit.images import decode_image, from_uint8
    if "image" not in table.column_names:
        raise ValueError("samples: no 'image' column; write them with `gankit sample --images`")
    if "wp" in table.column_names:
        ws = latents_from_column(table.column("wp")).reshape(-1, num_ws, w_dim)
    elif "w" in table.column_names:
        w = latents_from_column(table.column("w"))                             # [n, w_dim]
        ws = np.repeat(w[:, None], num_ws, axis=1)
    else:
        raise ValueError("samples: no 'wp' or 'w' column; sample with --space wp")
    if ws.shape[1:] != (num_ws, w_dim):
        raise ValueError(f"samples: latents are {list(ws.shape[1:])}, generator takes "
                         f"[{num_ws}, {w_dim}]")
    u8 = np.stack([decode_image(item["bytes"]) for item in table.column("image").to_pylist()])
    return from_uint8(u8), torch.from_numpy(np.array(ws, dtype=np.float32))      # a copy


class PairPool:
    """`pool_size` pairs; slot j holds the newest pair id = j (mod pool_size) issued so far.

    Ids are issued in groups of `refresh` (always rendered as one batch): the initial pool is
    groups 0 .. P/refresh - 1, step s adds group P/refresh + s."""

    def __init__(self, G, cfg: EncoderTrainConfig, fixed: Optional[tuple] = None):
        self.G, self.cfg = G, cfg
        if fixed is not None:                       # a samples dataset: never refreshed
            self.images, self.ws = fixed
            self.size = len(self.ws)
            self.refresh = 0
            return
        self.size, self.refresh = cfg.pool_size, cfg.refresh
        R = G.img_resolution
        self.images = torch.empty(self.size, G.img_channels, R, R)
        self.ws = torch.empty(self.size, G.num_ws, G.w_dim)

    def fill(self, step: int) -> None:
        """The pool as it is before step `step` (after the refreshes of steps < step)."""
        if not self.refresh:
            return
        groups = self.size // self.refresh
        issued = groups + step                       # groups 0 .. issued-1 exist
        for slot_group in range(groups):             # newest group landing on these slots
            newest = slot_group + groups * ((issued - 1 - slot_group) // groups)
            self.put_group(newest)

    def put_group(self, group: int) -> None:
        r = self.refresh
        ids = np.arange(group * r, (group + 1) * r)
        x, ws = generate_pairs(self.G, ids, self.cfg)
        slots = torch.from_numpy(ids % self.size)
        self.images[slots], self.ws[slots] = x.cpu(), ws.cpu()

    def advance(self, step: int) -> None:
        """Step `step`'s refresh: group pool_size / refresh + step replaces its slots."""
        if self.refresh:
            self.put_group(self.size // self.refresh + step)


# ----------------------------------------------------------------------------------------
# Loss and loop


def learning_rate(cfg: EncoderTrainConfig, step: int) -> float:
    t = step / max(cfg.steps, 1)
    f = cfg.lr_final_frac
    return float(cfg.lr * (f + (1 - f) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))))


def encoder_loss(E, G, x, ws, cfg: EncoderTrainConfig, step: int, feature_net=None) -> tuple:
    """(loss scalar, {term: float}) for images x [B, 3, R, R] with their true w+ [B, num_ws,
    w_dim]."""
    pred = E(x)                                                             # [B, num_ws, w_dim]
    latent = (pred - ws).square().mean()
    loss = cfg.latent_weight * latent
    terms = {"latent": latent.detach()}
    if cfg.image_every and step % cfg.image_every == 0 and (cfg.pixel_weight or feature_net):
        k = min(cfg.image_batch, len(x))
        y = G.synthesis(pred[:k], noise_mode="const")                       # [k, 3, R, R]
        pixel = (y - x[:k]).square().mean()
        loss = loss + cfg.pixel_weight * pixel
        terms["pixel"] = pixel.detach()
        if feature_net is not None and cfg.feature_weight:
            with torch.no_grad():
                target = feature_net.features(x[:k])
            feat = feature_net.distance(feature_net.features(y), target).mean()
            loss = loss + cfg.feature_weight * feat
            terms["feature"] = feat.detach()
    return loss, terms


def save_state(path: str, E, opt, sampler: torch.Generator, step: int, cfg, log: list,
               sums: dict) -> None:
    state = {"encoder": E.state_dict(), "optimizer": opt.state_dict(),
             "sampler": sampler.get_state(), "step": torch.tensor(step),
             "config": {k: v for k, v in asdict(cfg).items() if k != "max_minutes"},
             "log": log, "sums": sums}
    with atomic.replacing(path) as tmp:
        torch.save(state, tmp)


def train_encoder(G, cfg: EncoderTrainConfig, run_dir: str, feature_net=None,
                  fixed_pairs: Optional[tuple] = None, E: Optional[WPlusEncoder] = None,
                  progress: bool = True, stop_after: Optional[int] = None) -> tuple:
    """Train (or resume from run_dir/training.pt) an encoder for the frozen G.
    `stop_after`: checkpoint and return after this step (an interruption, for tests).
    Returns (encoder in eval mode, log: list of {step, loss terms, pairs_seen} every 50
    steps and at the end; `trained_steps(run_dir)` gives the step a stopped run reached)."""
    from tqdm import tqdm
    cfg.validate()
    os.makedirs(run_dir, exist_ok=True)
    G = G.eval().requires_grad_(False)
    device = G.mapping.w_avg.device
    torch.manual_seed(cfg.seed)                      # the encoder's initial weights
    E = (E or new_encoder(G)).to(device).train()
    opt = torch.optim.Adam(E.parameters(), lr=cfg.lr)
    sampler = torch.Generator().manual_seed(cfg.seed)
    step, log, sums = 0, [], {}                      # sums: term -> [sum, count] since the last log
    ckpt = os.path.join(run_dir, CHECKPOINT)
    if os.path.exists(ckpt):
        state = torch.load(ckpt, map_location=device, weights_only=True)
        E.load_state_dict(state["encoder"])
        opt.load_state_dict(state["optimizer"])
        sampler.set_state(state["sampler"])
        step, log, sums = int(state["step"]), list(state["log"]), dict(state["sums"])
    pool = PairPool(G, cfg, fixed_pairs)
    pool.fill(step)
    t0 = time.monotonic()
    bar = tqdm(total=cfg.steps, initial=step, unit="step", disable=not progress)
    while step < cfg.steps:
        pool.advance(step)
        idx = torch.randint(pool.size, (cfg.batch_size,), generator=sampler)
        x, ws = pool.images[idx].to(device), pool.ws[idx].to(device)
        for g in opt.param_groups:
            g["lr"] = learning_rate(cfg, step)
        loss, terms = encoder_loss(E, G, x, ws, cfg, step, feature_net)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.update(1)
        for k, v in terms.items():
            sums.setdefault(k, [0.0, 0])
            sums[k][0] += float(v)
            sums[k][1] += 1
        out_of_time = (cfg.max_minutes is not None and time.monotonic() - t0 > 60 * cfg.max_minutes
                       ) or step == stop_after
        if step % 50 == 0 or step == cfg.steps:
            entry = {"step": step, "pairs_seen": pairs_seen(cfg, pool, step),
                     **{k: s / n for k, (s, n) in sums.items()}}
            sums = {}
            log.append(entry)
            bar.set_postfix({k: f"{v:.4g}" for k, v in entry.items() if k not in ("step",)})
        if step % cfg.checkpoint_every == 0 or step == cfg.steps or out_of_time:
            save_state(ckpt, E, opt, sampler, step, cfg, log, sums)
        if out_of_time:
            break
    bar.close()
    return E.eval().requires_grad_(False), log


def trained_steps(run_dir: str) -> int:
    """The step of the checkpoint in run_dir (0 without one)."""
    path = os.path.join(run_dir, CHECKPOINT)
    if not os.path.exists(path):
        return 0
    return int(torch.load(path, map_location="cpu", weights_only=True)["step"])


def pairs_seen(cfg: EncoderTrainConfig, pool: PairPool, step: int) -> int:
    """Distinct pairs the run has drawn so far (generated ones, or the fixed pool's size)."""
    return pool.size + pool.refresh * step


@torch.no_grad()
def encode_quality(E, G, images: torch.Tensor, feature_net=None, batch: int = 64) -> dict:
    """Mean PSNR / feature distance of G(E(x)) vs x (const noise) and of G(w_avg) vs x."""
    from gankit.latent.metrics import psnr
    ps, ps0, fd, fd0 = [], [], [], []
    w_avg = G.mapping.w_avg.reshape(1, 1, -1).expand(1, G.num_ws, -1)
    for x in images.split(batch):
        y = G.synthesis(E(x), noise_mode="const")
        y0 = G.synthesis(w_avg.expand(len(x), -1, -1), noise_mode="const")
        ps.append(psnr(y, x))
        ps0.append(psnr(y0, x))
        if feature_net is not None:
            fx = feature_net.features(x)
            fd.append(feature_net.distance(feature_net.features(y), fx))
            fd0.append(feature_net.distance(feature_net.features(y0), fx))
    out = {"encode_psnr": float(torch.cat(ps).mean()), "w_avg_psnr": float(torch.cat(ps0).mean())}
    if fd:
        out.update(encode_feature=float(torch.cat(fd).mean()),
                   w_avg_feature=float(torch.cat(fd0).mean()))
    return out
