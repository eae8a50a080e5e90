"""`gankit train-classifier` and `gankit train-gan`: build the toy world's models."""
from __future__ import annotations


def register(subparsers) -> None:
    c = subparsers.add_parser("train-classifier", help="train the toy attribute classifier")
    c.add_argument("--out", required=True, help="output .safetensors path (config beside it)")
    c.add_argument("--images", type=int, default=60000, help="rendered training images")
    c.add_argument("--steps", type=int, default=4000)
    c.set_defaults(func=train_classifier)
    g = subparsers.add_parser("train-gan", help="train the toy StyleGAN2 (resumable)")
    g.add_argument("--run-dir", required=True, help="training state, grids; rerun to resume")
    g.add_argument("--images", type=int, default=200000, help="rendered real images")
    g.add_argument("--kimg", type=float, default=3000, help="stop after this many kimg")
    g.add_argument("--max-minutes", type=float, default=None, help="stop (resumably) after")
    g.add_argument("--batch-size", type=int, default=64)
    g.add_argument("--export", default=None, help="write G_ema in the native format here")
    g.set_defaults(func=train_gan)
    for p in (c, g):
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")


def _device(args) -> str:
    import torch
    return args.device or ("cuda" if torch.cuda.is_available() else "cpu")


def train_classifier(args) -> None:
    from gankit.train.toy import build_classifier
    build_classifier(args.out, args.images, args.seed, args.steps, _device(args))


def train_gan(args) -> None:
    from gankit.train.toy import build_generator
    build_generator(args.run_dir, args.images, args.seed, args.kimg, _device(args),
                    args.max_minutes, args.batch_size, args.export)
