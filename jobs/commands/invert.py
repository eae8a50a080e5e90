"""`gankit eval-inversion`: the toy world's counterfactual check of inversion + editing
(gankit.toy.toy_eval). (`gankit invert` is InvertConfig -> jobs.stages.invert.run_invert.)"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

from gankit.latent.inversion import HYBRID_SCHEDULES, MODES, PIVOTS
from gankit.latent.inversion import InversionConfig as Inversion
from jobs.config import option


@dataclass
class EvalInversionConfig:
    """The toy world's check of inversion + editing (gankit.toy.toy_eval)."""
    boundary: str = option("", "a W boundary .npz (from `gankit fit`)", required=True)
    attribute: str = option("", "toy attribute the boundary edits", required=True)
    value: Optional[float] = option(None, "counterfactual factor value (default: the top of "
                                          "its range)")
    strength: float = option(3.0, "edit: move to this distance")
    n: int = option(16, "faces (negatives for the attribute)")
    seed: int = option(0, "faces drawn from this seed")
    space: str = option("w", "w, or wp (W+)", choices=("w", "wp"))
    mode: str = option("optimize", "optimize: from w_avg; encode: the encoder's w+ (0 steps, "
                                   "needs --space wp); hybrid: the encoder's w+ refined by "
                                   "--steps steps; pti: a pivot (--pti-pivot) and a "
                                   "per-image change of G tuned on it", choices=MODES)
    encoder: Optional[str] = option(None, "W+ encoder for encode/hybrid: 'toy' or a native "
                                          "encoder directory (default: 'toy')")
    steps: int = option(200, "optimisation steps per image")
    feature_net: str = option("toy", "perceptual features: 'toy', NVIDIA's vgg16.pt, a "
                                     "TorchScript or .pt2 file")
    mse_weight: float = option(1.0, "pixel MSE weight")
    perceptual_weight: float = option(1e-3, "toy features' squared distances are O(100): "
                                            "1e-3 balances the MSE")
    hybrid_schedule: str = option(Inversion.hybrid_schedule, "mode hybrid: fast (Adamax, its "
                                  "own ramps), lbfgs (the latents by L-BFGS per image) or "
                                  "nvidia (the optimize mode's Adam schedule)",
                                  choices=HYBRID_SCHEDULES)
    pti_pivot: str = option(Inversion.pti_pivot, "mode pti: the pivot's mode", choices=PIVOTS)
    pti_rank: int = option(Inversion.pti_rank, "mode pti: rank of each layer's change "
                                               "(0 = full)")
    pti_steps: int = option(Inversion.pti_steps, "mode pti: tuning steps")
    pti_lr: float = option(Inversion.pti_lr, "mode pti: Adam's learning rate for the change")
    pti_stop: float = option(0.0, "mode pti: stop an image at this feature distance (0: "
                                  "every step; the toy features are not LPIPS)")
    out: Optional[str] = option(None, "write the figures as JSON here")

    def validate(self) -> None:
        self.inversion().validate()

    def inversion(self) -> Inversion:
        return Inversion(space=self.space, mode=self.mode, steps=self.steps,
                         mse_weight=self.mse_weight, perceptual_weight=self.perceptual_weight,
                         pti_pivot=self.pti_pivot, pti_rank=self.pti_rank,
                         pti_steps=self.pti_steps, pti_lr=self.pti_lr, pti_stop=self.pti_stop,
                         hybrid_schedule=self.hybrid_schedule)


def cmd_eval(job: EvalInversionConfig) -> None:
    """`gankit eval-inversion`: print the figures (and write them to --out)."""
    from gankit.latent.boundaries import Boundary
    from gankit.loading import zoo
    from gankit.models.perceptual import load_feature_net
    from gankit.toy.toy_eval import eval_inversion
    cfg = job.inversion()
    G = zoo.load_generator("toy").eval()
    pivot = job.pti_pivot if job.mode == "pti" else job.mode
    E = zoo.load_encoder(job.encoder or "toy") if pivot != "optimize" else None
    figures = eval_inversion(
        G, zoo.load_classifier("toy").eval(), Boundary.load(job.boundary), job.attribute,
        cfg, job.n, job.seed, job.strength,
        load_feature_net(job.feature_net) if job.feature_net else None, job.value, encoder=E)
    text = json.dumps(figures, indent=2)
    print(json.dumps({k: v for k, v in figures.items() if k != "examples"}, indent=2))
    if job.out:
        with open(job.out, "w") as f:
            f.write(text)
