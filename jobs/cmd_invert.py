"""`gankit invert`: flags -> InvertConfig -> jobs.invert.run_invert."""
from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser("invert", help="invert real images into W / W+ (batched, resumable)")
    p.add_argument("--model", default="toy", help="generator: 'toy' or a checkpoint path")
    p.add_argument("--images", required=True, help="input dataset URL (image + image_id columns)")
    p.add_argument("--out", required=True, help="output URL: a local path or s3://...")
    p.add_argument("--space", default="w", help="w or wp (W+)")
    p.add_argument("--steps", type=int, default=1000, help="optimisation steps per image")
    p.add_argument("--feature-net", default=None,
                   help="perceptual features: 'toy', NVIDIA's vgg16.pt, or a TorchScript file")
    p.add_argument("--mse-weight", type=float, default=1.0)
    p.add_argument("--perceptual-weight", type=float, default=1.0)
    p.add_argument("--no-noise", action="store_true", help="do not optimise noise maps")
    p.add_argument("--early-stop-loss", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-noise", action="store_true", help="store the optimised noise maps")
    p.add_argument("--keep-target", action="store_true", help="store the prepared input image")
    p.add_argument("--image-column", default="image")
    p.add_argument("--id-column", default=None)
    p.add_argument("--batch-size", type=int, default=16, help="images optimised together")
    p.add_argument("--workers", type=int, default=0, help="actors (0 = per GPU, or CPUs-1)")
    p.add_argument("--device", default="auto", help="auto, cuda or cpu")
    p.add_argument("--storage", type=json.loads, default={}, help="fsspec options as JSON")
    p.set_defaults(func=cmd_invert)


def cmd_invert(args) -> None:
    from jobs.invert import InvertConfig, run_invert
    from jobs.runtime import config_from_dict
    run_invert(config_from_dict(InvertConfig, dict(
        model=args.model, images=args.images, out=args.out, space=args.space,
        steps=args.steps, feature_net=args.feature_net, mse_weight=args.mse_weight,
        perceptual_weight=args.perceptual_weight, optimize_noise=not args.no_noise,
        early_stop_loss=args.early_stop_loss, seed=args.seed, save_noise=args.save_noise,
        keep_target=args.keep_target, image_column=args.image_column,
        id_column=args.id_column, batch_size=args.batch_size, workers=args.workers,
        device=args.device, storage=args.storage)))
