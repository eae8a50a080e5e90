"""`gankit invert`: flags -> InvertConfig -> jobs.invert.run_invert; `gankit eval-inversion`:
the toy world's counterfactual check of inversion + editing (gankit.toy_eval)."""
from __future__ import annotations

import json

from gankit.inversion import HYBRID_SCHEDULES, MODES, PIVOTS
from gankit.inversion import InversionConfig as Inversion
from jobs import config


def register(subparsers) -> None:
    from jobs.invert import InvertConfig
    config.add_stage_command(subparsers, "invert", "invert real images into W / W+ (batched, "
                             "resumable)", InvertConfig, "jobs.invert:run_invert")
    register_eval(subparsers)


# ----------------------------------------------------------------------------------------
# gankit eval-inversion: ground truth for real-image editing in the toy world


def register_eval(subparsers) -> None:
    p = subparsers.add_parser("eval-inversion", help="toy world: invert renders, edit one "
                              "attribute, compare with the renderer's counterfactual",
                              formatter_class=config.HelpFormatter)
    p.add_argument("--boundary", required=True, help="a W boundary .npz (from `gankit fit`)")
    p.add_argument("--attribute", required=True, help="toy attribute the boundary edits")
    p.add_argument("--value", type=float, default=None,
                   help="counterfactual factor value (default: the top of its range)")
    p.add_argument("--strength", type=float, default=3.0, help="edit: move to this distance")
    p.add_argument("--n", type=int, default=16, help="faces (negatives for the attribute)")
    p.add_argument("--seed", type=int, default=0, help="faces drawn from this seed")
    p.add_argument("--space", default="w", choices=("w", "wp"), help="w, or wp (W+)")
    p.add_argument("--mode", default="optimize", choices=MODES,
                   help="optimize: from w_avg; encode: the encoder's w+ (0 steps, needs "
                   "--space wp); hybrid: the encoder's w+ refined by --steps steps; pti: a "
                   "pivot (--pti-pivot) and a per-image change of G tuned on it")
    p.add_argument("--encoder", default=None, help="W+ encoder for encode/hybrid: 'toy' or "
                   "a native encoder directory (default: 'toy')")
    p.add_argument("--steps", type=int, default=200, help="optimisation steps per image")
    p.add_argument("--feature-net", default="toy", help="perceptual features: 'toy', "
                   "NVIDIA's vgg16.pt, a TorchScript or .pt2 file")
    p.add_argument("--mse-weight", type=float, default=1.0, help="pixel MSE weight")
    p.add_argument("--perceptual-weight", type=float, default=1e-3,
                   help="toy features' squared distances are O(100): 1e-3 balances the MSE")
    p.add_argument("--hybrid-schedule", default=Inversion.hybrid_schedule,
                   choices=HYBRID_SCHEDULES, help="mode hybrid: fast (Adamax, its own ramps) "
                   "or nvidia (the optimize mode's Adam schedule)")
    p.add_argument("--pti-pivot", default=Inversion.pti_pivot, choices=PIVOTS,
                   help="mode pti: the pivot's mode")
    p.add_argument("--pti-rank", type=int, default=Inversion.pti_rank,
                   help="mode pti: rank of each layer's change (0 = full)")
    p.add_argument("--pti-steps", type=int, default=Inversion.pti_steps,
                   help="mode pti: tuning steps")
    p.add_argument("--pti-lr", type=float, default=Inversion.pti_lr,
                   help="mode pti: Adam's learning rate for the change")
    p.add_argument("--pti-stop", type=float, default=0.0, help="mode pti: stop an image at "
                   "this feature distance (0: every step; the toy features are not LPIPS)")
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> None:
    from gankit import zoo
    from gankit.boundaries import Boundary
    from gankit.inversion import InversionConfig
    from gankit.perceptual import load_feature_net
    cfg = InversionConfig(space=args.space, mode=args.mode, steps=args.steps,
                          mse_weight=args.mse_weight, perceptual_weight=args.perceptual_weight,
                          pti_pivot=args.pti_pivot, pti_rank=args.pti_rank,
                          pti_steps=args.pti_steps, pti_lr=args.pti_lr, pti_stop=args.pti_stop,
                          hybrid_schedule=args.hybrid_schedule)
    cfg.validate()
    G = zoo.load_generator("toy").eval()
    pivot = args.pti_pivot if args.mode == "pti" else args.mode
    E = zoo.load_encoder(args.encoder or "toy") if pivot != "optimize" else None
    from gankit.toy_eval import eval_inversion
    figures = eval_inversion(
        G, zoo.load_classifier("toy").eval(), Boundary.load(args.boundary), args.attribute,
        cfg, args.n, args.seed, args.strength,
        load_feature_net(args.feature_net) if args.feature_net else None, args.value, encoder=E)
    text = json.dumps(figures, indent=2)
    print(json.dumps({k: v for k, v in figures.items() if k != "examples"}, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
