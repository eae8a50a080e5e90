"""`gankit invert`: flags -> InvertConfig -> jobs.invert.run_invert; `gankit eval-inversion`:
the toy world's counterfactual check of inversion + editing (eval_inversion)."""
from __future__ import annotations

import json

from gankit.inversion import MODES

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
                   "--space wp); hybrid: the encoder's w+ refined by --steps steps")
    p.add_argument("--encoder", default=None, help="W+ encoder for encode/hybrid: 'toy' or "
                   "a native encoder directory (default: 'toy')")
    p.add_argument("--steps", type=int, default=200, help="optimisation steps per image")
    p.add_argument("--feature-net", default="toy", help="perceptual features: 'toy', "
                   "NVIDIA's vgg16.pt, a TorchScript or .pt2 file")
    p.add_argument("--mse-weight", type=float, default=1.0, help="pixel MSE weight")
    p.add_argument("--perceptual-weight", type=float, default=1e-3,
                   help="toy features' squared distances are O(100): 1e-3 balances the MSE")
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> None:
    from gankit import zoo
    from gankit.boundaries import Boundary
    from gankit.inversion import InversionConfig
    from gankit.perceptual import load_feature_net
    cfg = InversionConfig(space=args.space, mode=args.mode, steps=args.steps,
                          mse_weight=args.mse_weight, perceptual_weight=args.perceptual_weight)
    cfg.validate()
    G = zoo.load_generator("toy").eval()
    E = zoo.load_encoder(args.encoder or "toy") if args.mode != "optimize" else None
    figures = eval_inversion(
        G, zoo.load_classifier("toy").eval(), Boundary.load(args.boundary), args.attribute,
        cfg, args.n, args.seed, args.strength,
        load_feature_net(args.feature_net) if args.feature_net else None, args.value, encoder=E)
    text = json.dumps(figures, indent=2)
    print(json.dumps({k: v for k, v in figures.items() if k != "examples"}, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


def eval_inversion(G, classifier, boundary, attribute: str, cfg, n: int = 16, seed: int = 0,
                   strength: float = 3.0, feature_net=None, value=None, encoder=None) -> dict:
    """Render n toy faces negative for `attribute`, invert them (cfg), move each latent to
    signed distance `strength` of `boundary`, and compare the edited render with the
    renderer's counterfactual (the same faces with the attribute's factor set to `value`):
      flip_rate      classifier says positive for the target on the edited render
      others_kept    other attributes: classifier label of the edit == true label
      cf_flip_rate / cf_others_kept   the same on the counterfactual render (the ceiling)
      edit_mse / edit_feature         edited render vs counterfactual render
      recon_mse / recon_psnr          inversion error (reconstruction vs input)
      recon_feature                   feature distance reconstruction vs input (with a net)
    `encoder` gives init_ws for cfg.mode 'encode' / 'hybrid'."""
    import numpy as np
    import torch
    from gankit import toyfaces
    from gankit.editing import edit
    from gankit.images import from_uint8
    from gankit.inversion import invert, pixel_mse
    names = list(classifier.attribute_names)
    if attribute not in names or attribute not in toyfaces.ATTRIBUTE_NAMES:
        raise ValueError(f"attribute {attribute!r} is not a toy attribute of the classifier")
    f = toyfaces.sample_factors(8 * n, seed)
    keep = np.nonzero(~toyfaces.labels(f)[attribute])[0][:n]           # negatives only
    f = toyfaces.take(f, keep)
    spec = {a.name: a for a in toyfaces.ATTRIBUTES}[attribute]
    cf = toyfaces.counterfactual(f, attribute, toyfaces.FACTOR_RANGES[spec.factor][1]
                                 if value is None else value)
    res = G.img_resolution
    x = from_uint8(toyfaces.render(f, res))                             # [n, 3, R, R]
    x_cf = from_uint8(toyfaces.render(cf, res))
    init = None
    if cfg.mode != "optimize":
        if encoder is None:
            raise ValueError(f"mode {cfg.mode!r} needs an encoder")
        with torch.no_grad():
            init = encoder(x)                                           # [n, num_ws, w_dim]
    inv = invert(G, x, cfg, feature_net=feature_net, init_ws=init)
    ws = edit(inv.ws, boundary, strength, "to_distance",
              layers=None if cfg.space == "w" else (0, G.num_ws))       # [n, num_ws, w_dim]
    with torch.no_grad():
        x_edit = G.synthesis(ws, noise_mode="const", noises=inv.noises)
        pred_edit = classifier(x_edit).numpy() > 0                      # [n, A]
        pred_cf = classifier(x_cf).numpy() > 0
        truth = np.stack([toyfaces.labels(cf)[a] for a in names], axis=1)
        t = names.index(attribute)
        others = [j for j in range(len(names)) if j != t]
        dist = None
        if feature_net is not None:
            dist = float(feature_net.distance(feature_net.features(x_edit),
                                              feature_net.features(x_cf)).mean())
    return {"attribute": attribute, "faces": int(len(keep)), "space": cfg.space,
            "mode": cfg.mode, "steps": 0 if cfg.mode == "encode" else cfg.steps,
            "strength": strength,
            "flip_rate": float(pred_edit[:, t].mean()),
            "others_kept": float((pred_edit[:, others] == truth[:, others]).mean()),
            "cf_flip_rate": float(pred_cf[:, t].mean()),
            "cf_others_kept": float((pred_cf[:, others] == truth[:, others]).mean()),
            "edit_mse": float(pixel_mse(x_edit, x_cf).mean()), "edit_feature": dist,
            "recon_mse": float(inv.mse.mean()), "recon_psnr": float(inv.psnr.mean()),
            "recon_feature": recon_feature(inv, x, feature_net),
            "examples": examples([("input", x), ("reconstruction", inv.reconstruction),
                                  ("edited", x_edit), ("counterfactual", x_cf)])}


def examples(columns: list, faces: int = 4) -> dict:
    """The first faces of each column, packed for the report's inversion rows."""
    from gankit.images import to_uint8
    from gankit.report import pack_examples
    return pack_examples([(name, to_uint8(x[:faces].detach())) for name, x in columns])


def recon_feature(inv, x, feature_net):
    """Mean feature distance reconstruction vs input (None without a feature net)."""
    import torch
    if feature_net is None:
        return None
    with torch.no_grad():
        return float(feature_net.distance(feature_net.features(inv.reconstruction),
                                          feature_net.features(x)).mean())
