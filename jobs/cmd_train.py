"""`gankit train-classifier`, `gankit train-gan` and `gankit train-encoder`: build the toy
world's models (the encoder works for any generator gankit loads)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


def register(subparsers) -> None:
    from gankit.train.toy import add_classifier_flags, add_common_flags, add_gan_flags
    c = subparsers.add_parser("train-classifier", help="train the toy attribute classifier")
    add_classifier_flags(c)
    c.set_defaults(func=train_classifier)
    g = subparsers.add_parser("train-gan", help="train the toy StyleGAN2 (resumable)")
    add_gan_flags(g)
    g.set_defaults(func=train_gan)
    e = subparsers.add_parser("train-encoder", help="train a W+ encoder on synthetic pairs "
                              "(image, w+) of a generator (resumable)")
    e.add_argument("--model", default="toy", help="generator: 'toy' or a checkpoint path")
    e.add_argument("--run-dir", required=True, help="training state; rerun to resume")
    e.add_argument("--out", required=True, help="write the encoder (native format) here")
    e.add_argument("--samples", default=None, help="pairs from a `gankit sample --images "
                   "--space wp` dataset URL instead of generating them on the fly")
    e.add_argument("--feature-net", default="toy", help="image-space feature loss net "
                   "('toy', vgg16.pt, TorchScript) or 'none'")
    from gankit.train.encoder import EncoderTrainConfig
    trained = EncoderTrainConfig()      # the defaults, shown in --help
    e.add_argument("--steps", type=int, default=trained.steps, help="optimiser steps")
    e.add_argument("--batch-size", type=int, default=trained.batch_size, help="pairs per step")
    e.add_argument("--lr", type=float, default=trained.lr,
                   help="Adam's learning rate (cosine decay)")
    e.add_argument("--pool-size", type=int, default=trained.pool_size,
                   help="pairs held; a multiple of --refresh")
    e.add_argument("--refresh", type=int, default=trained.refresh,
                   help="fresh pairs per step (0: a fixed pool, e.g. from --samples)")
    e.add_argument("--image-every", type=int, default=trained.image_every,
                   help="image-space loss every N steps (0 = latent loss only)")
    e.add_argument("--max-minutes", type=float, default=None, help="stop (resumably) after")
    e.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    e.set_defaults(func=train_encoder)
    add_common_flags(e)


@dataclass
class TrainEncoderConfig:
    model: str = "toy"                 # generator: 'toy' or a checkpoint path
    run_dir: str = ""                  # training state (training.pt); rerun to resume
    out: str = ""                      # encoder directory (config.json + model.safetensors)
    samples: Optional[str] = None      # pairs from a samples dataset URL (None = generate)
    feature_net: Optional[str] = "toy"  # image-space feature loss (None = pixel MSE only)
    threads: int = 1                   # torch CPU threads
    device: str = "cpu"                # 'cpu' or 'cuda'
    eval_images: int = 256             # held-out renders / generated images for the figures
    train: Optional[object] = None     # gankit.train.encoder.EncoderTrainConfig (None = defaults)

    def __post_init__(self):
        if self.train is None:
            from gankit.train.encoder import EncoderTrainConfig
            self.train = EncoderTrainConfig()

    def validate(self) -> None:
        from jobs.config import require
        require(bool(self.run_dir), "run_dir", "must be a directory for the training state")
        require(bool(self.out), "out", "must be the output encoder directory")
        require(self.threads >= 1, "threads", f"must be >= 1 (got {self.threads})")
        try:
            self.train.validate()
        except ValueError as err:
            raise ValueError(f"train: {err}") from None


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


def train_encoder(args) -> None:
    from gankit.train.encoder import EncoderTrainConfig
    given = {k: getattr(args, k) for k in ("steps", "batch_size", "lr", "pool_size", "refresh",
                                           "image_every", "max_minutes", "seed")
             if getattr(args, k) is not None}
    cfg = TrainEncoderConfig(
        model=args.model, run_dir=args.run_dir, out=args.out, samples=args.samples,
        feature_net=None if args.feature_net in (None, "none") else args.feature_net,
        threads=args.threads, device=_device(args), train=EncoderTrainConfig(**given))
    import json
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

    from gankit import zoo
    from gankit.models.encoder import save_encoder
    from gankit.perceptual import load_feature_net
    from gankit.train.encoder import train_encoder as train
    from gankit.train.encoder import trained_steps
    G = zoo.load_generator(cfg.model, device=cfg.device).eval().requires_grad_(False)
    net = load_feature_net(cfg.feature_net, cfg.device) if cfg.feature_net else None
    fixed, train_cfg = None, cfg.train
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
    held_out = replace(cfg.train, seed=cfg.train.seed + 1_000_003)
    x, _ = generate_pairs(G, np.arange(n), held_out)
    out = {"generated": encode_quality(E, G, x, net)}
    if cfg.model == "toy":
        from gankit import toyfaces
        from gankit.images import from_uint8
        faces = toyfaces.render(toyfaces.sample_factors(n, seed=987_654), G.img_resolution)
        out["renders"] = encode_quality(E, G, from_uint8(faces).to(x.device), net)
    return out
