"""`gankit train-classifier`, `gankit train-gan` and `gankit train-encoder`: build the toy
world's models (the encoder works for any generator gankit loads)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

from gankit.train.encoder import EncoderTrainConfig
from jobs.config import option, require
from jobs.options import LocalDeviceOptions, ModelOptions

TRAINED = EncoderTrainConfig()          # the trainer's defaults, shown in --help


@dataclass
class TrainEncoderConfig(ModelOptions, LocalDeviceOptions):
    run_dir: str = option("", "training state (training.pt); rerun to resume", required=True)
    out: str = option("", "write the encoder (native format: config.json + "
                          "model.safetensors) here", required=True)
    samples: Optional[str] = option(None, "pairs from a `gankit sample --images --space wp` "
                                          "dataset URL instead of generating them on the fly")
    feature_net: Optional[str] = option("toy", "image-space feature loss net ('toy', "
                                               "vgg16.pt, TorchScript) or 'none'")
    steps: int = option(TRAINED.steps, "optimiser steps")
    batch_size: int = option(TRAINED.batch_size, "pairs per step")
    lr: float = option(TRAINED.lr, "Adam's learning rate (cosine decay)")
    pool_size: int = option(TRAINED.pool_size, "pairs held; a multiple of --refresh")
    refresh: int = option(TRAINED.refresh, "fresh pairs per step (0: a fixed pool, e.g. "
                                           "from --samples)")
    image_every: int = option(TRAINED.image_every, "image-space loss every N steps (0 = "
                                                   "latent loss only)")
    max_minutes: Optional[float] = option(None, "stop (resumably) after")
    threads: int = option(1, "torch CPU threads")
    seed: int = option(TRAINED.seed, "seeds the pairs and the weights")
    eval_images: int = option(256, "held-out renders / generated images for the figures",
                              flag=False)
    train: dict = option({}, "other gankit.train.encoder.EncoderTrainConfig fields "
                             "(style_mixing, pixel_weight, ...)", flag=False)

    def validate(self) -> None:
        require(bool(self.run_dir), "run_dir", "must be a directory for the training state")
        require(bool(self.out), "out", "must be the output encoder directory")
        require(self.threads >= 1, "threads", f"must be >= 1 (got {self.threads})")
        try:
            self.train_config().validate()
        except (TypeError, ValueError) as err:
            raise ValueError(f"train: {err}") from None

    def train_config(self) -> EncoderTrainConfig:
        flags = ("steps", "batch_size", "lr", "pool_size", "refresh", "image_every",
                 "max_minutes", "seed")
        return EncoderTrainConfig(**dict(self.train, **{k: getattr(self, k) for k in flags}))

    def features(self) -> Optional[str]:
        return None if self.feature_net in (None, "none") else self.feature_net


def _device(args) -> str:
    from jobs.runtime import resolve_device
    return resolve_device(args.device or "auto")


def train_classifier(args) -> None:
    import os

    from gankit.train.toy import build_classifier
    folder = os.path.dirname(os.path.abspath(args.out))
    try:                      # before minutes of training, not after: the result must land
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out {args.out}: cannot create its folder {folder}: "
                         f"{e.strerror}") from None
    build_classifier(args.out, args.images, args.seed, args.steps, _device(args))


def train_gan(args) -> None:
    from gankit.train.toy import build_generator
    build_generator(args.run_dir, args.images, args.seed, args.kimg, _device(args),
                    args.max_minutes, args.batch_size, args.export, args.linear_attr_weight,
                    args.attr_moment_weight)


def train_encoder(cfg: TrainEncoderConfig) -> None:
    """`gankit train-encoder`: train, then print the figures as JSON."""
    print(json.dumps(run_train_encoder(cfg), indent=2))


def run_train_encoder(cfg: TrainEncoderConfig) -> dict:
    """Train (resuming from cfg.run_dir), save the encoder to cfg.out, return its figures."""
    import torch
    cfg.validate()
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return train_and_save(cfg)
    finally:
        torch.set_num_threads(threads)


def train_and_save(cfg: TrainEncoderConfig) -> dict:
    import time

    from gankit.loading import zoo
    from gankit.models.encoder import save_encoder
    from gankit.models.perceptual import load_feature_net
    from gankit.train.encoder import train_encoder as train
    from gankit.train.encoder import trained_steps
    from jobs.runtime import resolve_device
    device = resolve_device(cfg.device)
    G = zoo.load_generator(cfg.model, device=device).eval().requires_grad_(False)
    net = load_feature_net(cfg.features(), device) if cfg.features() else None
    fixed, train_cfg = None, cfg.train_config()
    if cfg.samples:
        fixed = samples_pairs(cfg.samples, G)
        train_cfg = replace_fixed(train_cfg)
    t0 = time.monotonic()
    E, log = train(G, train_cfg, cfg.run_dir, feature_net=net, fixed_pairs=fixed)
    minutes = (time.monotonic() - t0) / 60
    steps = trained_steps(cfg.run_dir)
    pool = len(fixed[1]) if fixed is not None else train_cfg.pool_size
    figures = {"steps": steps, "pairs_seen": pool + train_cfg.refresh * steps,
               "minutes_this_run": round(minutes, 2), **evaluate_encoder(E, G, net, cfg)}
    save_encoder(E, cfg.out, source={"generator": cfg.model, "seed": train_cfg.seed,
                                     "train": {k: v for k, v in vars(train_cfg).items()},
                                     "samples": cfg.samples, "figures": figures})
    return figures


def replace_fixed(train_cfg):
    """A fixed pool (the samples dataset): no refresh."""
    from dataclasses import replace
    return replace(train_cfg, refresh=0)


def samples_pairs(url: str, G) -> tuple:
    from gankit.train.encoder import pairs_from_table
    from jobs import storage
    table = storage.read_table(url)
    return pairs_from_table(table, G.num_ws, G.w_dim)


def evaluate_encoder(E, G, net, cfg: TrainEncoderConfig) -> dict:
    """Encode-only figures on held-out generated pairs (another seed) and, for the toy
    model, on toy-world renders the generator never produced."""
    from dataclasses import replace

    import numpy as np

    from gankit.train.encoder import encode_quality, generate_pairs
    n = cfg.eval_images
    held_out = replace(cfg.train_config(), seed=cfg.seed + 1_000_003)
    x, _ = generate_pairs(G, np.arange(n), held_out)
    out = {"generated": encode_quality(E, G, x, net)}
    if cfg.model == "toy":
        from gankit.images import from_uint8
        from gankit.toy import toyfaces
        faces = toyfaces.render(toyfaces.sample_factors(n, seed=987_654), G.img_resolution)
        out["renders"] = encode_quality(E, G, from_uint8(faces).to(x.device), net)
    return out
