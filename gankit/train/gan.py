"""Single-process StyleGAN2 training, used to build the bundled toy model.

Losses follow StyleGAN2: non-saturating logistic loss for G and D, R1 on reals with lazy
regularisation (every `r1_interval` minibatches, scaled by the interval), optional path
length regularisation, style mixing, and an exponential moving average G_ema whose
half-life ramps up with the images seen. Adam's lr and betas are corrected for lazy
regularisation as in the paper (Appendix B).

One term is ours, off by default: the attribute-linearity term (`linear_attr_weight`). A
linear head on w is trained to predict a frozen attribute classifier's probabilities of G(w),
and G is trained, through the classifier, towards the head's prediction, so every attribute
becomes a linear function of w. The toy recipe uses it: on the toy world plain StyleGAN2
training folds yaw and skin tone in W (an MLP on w predicts them far better than a linear
SVM; MODELS.md, "The attribute-linearity term", has the accuracies), and a W
where attributes are linear is what the boundary pipeline assumes of large models.

A second term of ours, also off by default, is meant to undo what the first does to the
attribute distribution: attribute moment matching (`attr_moment_weight`), feature matching
(Salimans et al. 2016) in the classifier's probability space. It pulls the mean and covariance
of the classifier's probabilities on generated images towards those on the reals: each
attribute's rate, and the correlations the data has and no others. MODELS.md has what it did
to the toy model (rates and correlations fixed in 50 kimg, separability lost); the shipped
recipe does not use it.
"""
from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from gankit import atomic
from gankit.models.stylegan2 import Discriminator, Generator, GeneratorConfig


@dataclass
class GanTrainConfig:
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    d_channel_base: int = 4096        # discriminator widths: min(base // res, max)
    d_channel_max: int = 128
    batch_size: int = 64
    lr: float = 0.0025                # Adam lr of G and D (before the lazy-reg correction)
    betas: tuple = (0.0, 0.99)
    r1_gamma: float = 0.01            # R1 weight; NVIDIA's auto rule gives 0.0002 * res^2 / batch
    r1_interval: int = 16             # lazy R1: every this many minibatches
    pl_weight: float = 0.0            # path length regularisation weight, 0 = off (paper: 2)
    pl_interval: int = 4
    style_mixing_prob: float = 0.9    # share of G minibatches with two ws mixed at a random layer
    linear_attr_weight: float = 0.0   # attribute-linearity term (needs a classifier), 0 = off
    attr_moment_weight: float = 0.0   # attribute moment matching (classifier and reals), 0 = off
    attr_interval: int = 4            # lazy attribute terms: every this many minibatches
    ema_kimg: float = 10.0            # G_ema half-life in thousands of images
    ema_rampup: float = 0.05          # half-life at most this share of the images seen so far
    total_kimg: float = 1000.0        # stop after this many thousand real images
    seed: int = 0
    device: str = "cpu"


def adam_for(params, cfg: GanTrainConfig, reg_interval: int) -> torch.optim.Adam:
    """Adam with lr and betas corrected for lazy regularisation every `reg_interval` steps."""
    ratio = reg_interval / (reg_interval + 1) if reg_interval else 1.0
    betas = tuple(b ** ratio for b in cfg.betas)
    return torch.optim.Adam(params, lr=cfg.lr * ratio, betas=betas, eps=1e-8)


class GanTrainer:
    """Holds G, D, G_ema, the optimisers and the counters; `step(reals)` trains one minibatch."""

    def __init__(self, cfg: GanTrainConfig, classifier: Optional[torch.nn.Module] = None,
                 attr_reals: Optional[torch.Tensor] = None):     # [N, 3, H, W] for moment matching
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        g = cfg.generator
        self.G = Generator(g).to(cfg.device).train()
        self.D = Discriminator(g.c_dim, g.img_resolution, g.img_channels, cfg.d_channel_base,
                               cfg.d_channel_max).to(cfg.device).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.opt_G = adam_for(self.G.parameters(), cfg, cfg.pl_interval if cfg.pl_weight else 0)
        self.opt_D = adam_for(self.D.parameters(), cfg, cfg.r1_interval)
        self.step_idx, self.nimg = 0, 0
        self.pl_mean = torch.zeros([], device=cfg.device)
        self.classifier, self.attr_head, self.attr_target = None, None, None
        if cfg.linear_attr_weight or cfg.attr_moment_weight:
            if classifier is None:
                raise ValueError("linear_attr_weight and attr_moment_weight need an attribute "
                                 "classifier")
            self.classifier = classifier.to(cfg.device).eval().requires_grad_(False)
        if cfg.linear_attr_weight:
            n_attr = len(classifier.attribute_names)
            self.attr_head = torch.nn.Linear(g.w_dim, n_attr).to(cfg.device)   # w -> logits [A]
            self.opt_head = torch.optim.Adam(self.attr_head.parameters(), lr=1e-2)
        if cfg.attr_moment_weight:
            if attr_reals is None:
                raise ValueError("attr_moment_weight > 0 needs reals (attr_reals) to take the "
                                 "moments of")
            self.attr_target = attr_moments(self.classifier, attr_reals.to(cfg.device))

    # -- forward helpers ------------------------------------------------------------------

    def sample_ws(self, n: int, update_w_avg: bool = False) -> torch.Tensor:
        """ws [n, num_ws, w_dim], with style mixing at a random crossover layer."""
        G, dev = self.G, self.cfg.device
        ws = G.mapping(torch.randn(n, G.z_dim, device=dev), None, update_w_avg=update_w_avg)
        if float(torch.rand(())) < self.cfg.style_mixing_prob:
            cut = int(torch.randint(1, G.num_ws, ()))                # layers [cut:] from z2
            ws2 = G.mapping(torch.randn(n, G.z_dim, device=dev), None)
            ws = torch.cat([ws[:, :cut], ws2[:, cut:]], dim=1)
        return ws

    def generate(self, n: int, update_w_avg: bool = False):
        ws = self.sample_ws(n, update_w_avg)
        return self.G.synthesis(ws, noise_mode="random"), ws

    # -- losses ---------------------------------------------------------------------------

    def g_main(self) -> torch.Tensor:
        fake, _ = self.generate(self.cfg.batch_size, update_w_avg=True)
        loss = F.softplus(-self.D(fake)).mean()            # non-saturating logistic
        self.opt_G.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_G.step()
        return loss.detach()

    def g_path_length(self) -> None:
        """Penalise |J_w^T y| deviating from its running mean (StyleGAN2 section 3.2)."""
        n = max(self.cfg.batch_size // 2, 1)
        fake, ws = self.generate(n)
        y = torch.randn_like(fake) / math.sqrt(fake.shape[2] * fake.shape[3])
        (grad,) = torch.autograd.grad((fake * y).sum(), ws, create_graph=True)
        lengths = grad.square().sum(2).mean(1).sqrt()                # [n]
        self.pl_mean.copy_(self.pl_mean.lerp(lengths.mean().detach(), 0.01))
        loss = (lengths - self.pl_mean).square().mean() * self.cfg.pl_weight * self.cfg.pl_interval
        self.opt_G.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_G.step()

    def g_attr(self) -> None:
        """The attribute terms on one half batch of G(w), through the frozen classifier.
        Linearity: BCE between the head's logits on w and the classifier's probabilities; the
        head learns the best linear fit, and G (dL/dp = -head logit) follows the head.
        Moments: squared distance of the batch's probability mean and covariance to the reals'."""
        cfg, G, n = self.cfg, self.G, max(self.cfg.batch_size // 2, 2)
        ws = G.mapping(torch.randn(n, G.z_dim, device=cfg.device), None)        # [n, L, w_dim]
        prob = torch.sigmoid(self.classifier(G.synthesis(ws, noise_mode="random")))   # [n, A]
        loss = torch.zeros([], device=cfg.device)
        if self.attr_head is not None:
            bce = F.binary_cross_entropy_with_logits(self.attr_head(ws[:, 0]), prob)
            loss = loss + bce * cfg.linear_attr_weight
            self.opt_head.zero_grad(set_to_none=True)
        if self.attr_target is not None:
            loss = loss + moment_distance(prob, *self.attr_target) * cfg.attr_moment_weight
        self.opt_G.zero_grad(set_to_none=True)
        (loss * cfg.attr_interval).backward()
        self.opt_G.step()
        if self.attr_head is not None:
            self.opt_head.step()

    def d_main(self, reals: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            fake, _ = self.generate(reals.shape[0])
        loss = F.softplus(self.D(fake)).mean() + F.softplus(-self.D(reals)).mean()
        self.opt_D.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_D.step()
        return loss.detach()

    def d_r1(self, reals: torch.Tensor) -> None:
        reals = reals.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.D(reals).sum(), reals, create_graph=True)
        penalty = grad.square().sum(dim=[1, 2, 3]).mean()
        loss = penalty * (self.cfg.r1_gamma / 2) * self.cfg.r1_interval
        self.opt_D.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_D.step()

    def update_ema(self) -> None:
        cfg = self.cfg
        ema_nimg = min(cfg.ema_kimg * 1000, self.nimg * cfg.ema_rampup) if cfg.ema_rampup else cfg.ema_kimg * 1000
        beta = 0.5 ** (cfg.batch_size / max(ema_nimg, 1e-8))
        with torch.no_grad():  # foreach: one kernel launch per op, not one per tensor
            torch._foreach_lerp_(list(self.G_ema.parameters()), list(self.G.parameters()), 1.0 - beta)
            torch._foreach_copy_(list(self.G_ema.buffers()), list(self.G.buffers()))

    def step(self, reals: torch.Tensor) -> dict:
        """One minibatch of G and D; lazy regularisers on their intervals. The losses come back
        as device tensors: reading them every step would stall the GPU queue."""
        cfg = self.cfg
        stats = {"loss_G": self.g_main()}
        if cfg.pl_weight and self.step_idx % cfg.pl_interval == 0:
            self.g_path_length()
        if self.classifier is not None and self.step_idx % cfg.attr_interval == 0:
            self.g_attr()
        stats["loss_D"] = self.d_main(reals)
        if cfg.r1_gamma and self.step_idx % cfg.r1_interval == 0:
            self.d_r1(reals)
        self.step_idx += 1
        self.nimg += reals.shape[0]
        self.update_ema()
        return stats

    # -- resumable state ------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
                "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
                "step_idx": self.step_idx, "nimg": self.nimg, "pl_mean": self.pl_mean,
                "torch_rng": torch.get_rng_state(), **self._head_state()}

    def _head_state(self) -> dict:
        if self.attr_head is None:
            return {}
        return {"attr_head": self.attr_head.state_dict(), "opt_head": self.opt_head.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """A state saved without the linearity term resumes with a fresh head."""
        names = ("G", "D", "G_ema", "opt_G", "opt_D")
        if self.attr_head is not None and "attr_head" in state:
            names += ("attr_head", "opt_head")
        for name in names:
            getattr(self, name).load_state_dict(state[name])
        self.step_idx, self.nimg = int(state["step_idx"]), int(state["nimg"])
        self.pl_mean.copy_(state["pl_mean"])
        torch.set_rng_state(state["torch_rng"].cpu())


def moments(prob: torch.Tensor) -> tuple:
    """Mean [A] and covariance [A, A] of probabilities [n, A]."""
    mean = prob.mean(0)
    centred = prob - mean
    return mean, centred.T @ centred / max(prob.shape[0] - 1, 1)


@torch.no_grad()
def attr_moments(classifier: torch.nn.Module, reals: torch.Tensor, batch: int = 500) -> tuple:
    """The classifier's probability moments on reals [N, 3, H, W]: (mean [A], cov [A, A])."""
    prob = torch.cat([torch.sigmoid(classifier(reals[i:i + batch]))
                      for i in range(0, len(reals), batch)])
    return moments(prob)


def moment_distance(prob: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """|mean(prob) - mean|^2 + |cov(prob) - cov|_F^2 for a batch of probabilities [n, A]."""
    batch_mean, batch_cov = moments(prob)
    return (batch_mean - mean).square().sum() + (batch_cov - cov).square().sum()


def save_training_state(trainer: GanTrainer, path: str) -> None:
    """Atomic: a killed run leaves the previous checkpoint intact."""
    with atomic.replacing(path) as tmp:
        torch.save({"config": _config_dict(trainer.cfg), "state": trainer.state_dict()}, tmp)


def load_training_state(trainer: GanTrainer, path: str) -> None:
    blob = torch.load(path, map_location=trainer.cfg.device, weights_only=True)
    trainer.load_state_dict(blob["state"])


def _config_dict(cfg: GanTrainConfig) -> dict:
    d = asdict(cfg)
    d["generator"] = cfg.generator.to_dict()
    d["betas"] = list(cfg.betas)
    return d


def train_gan(cfg: GanTrainConfig,
              sample_reals: Callable[[int], torch.Tensor],   # n -> [n, 3, H, W] in [-1, 1]
              run_dir: str,
              max_seconds: Optional[float] = None,
              snapshot_kimg: float = 50.0,
              on_snapshot: Optional[Callable[[GanTrainer], None]] = None,
              progress: bool = True,
              classifier: Optional[torch.nn.Module] = None,
              attr_reals: Optional[torch.Tensor] = None) -> GanTrainer:
    """Train until `total_kimg` (or `max_seconds`), resuming from run_dir/training.pt if there."""
    from tqdm import tqdm
    os.makedirs(run_dir, exist_ok=True)
    ckpt = os.path.join(run_dir, "training.pt")
    trainer = GanTrainer(cfg, classifier, attr_reals)
    if os.path.exists(ckpt):
        load_training_state(trainer, ckpt)
        print(f"resumed from {ckpt} at {trainer.nimg / 1000:.1f} kimg")
    total = int(cfg.total_kimg * 1000)
    bar = tqdm(total=total, initial=trainer.nimg, unit="img", disable=not progress, smoothing=0.1,
               mininterval=1 if os.isatty(2) else 30)
    start, next_snap = time.time(), trainer.nimg + snapshot_kimg * 1000
    while trainer.nimg < total:
        stats = trainer.step(sample_reals(cfg.batch_size).to(cfg.device))
        bar.update(cfg.batch_size)
        if trainer.step_idx % 100 == 0:     # a host sync: not every step
            bar.set_postfix({k: f"{float(v):.3f}" for k, v in stats.items()}, refresh=False)
        out_of_time = max_seconds is not None and time.time() - start > max_seconds
        if trainer.nimg >= next_snap or trainer.nimg >= total or out_of_time:
            save_training_state(trainer, ckpt)
            if on_snapshot:
                on_snapshot(trainer)
            next_snap += snapshot_kimg * 1000
        if out_of_time:
            break
    bar.close()
    return trainer
