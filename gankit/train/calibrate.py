"""Attribute calibration of a trained generator: refit its mapping network so that the
classifier's label distribution on generated images comes as close to the data's as the
generator can draw.

A generator can draw good images in the wrong proportions, and can miss a mode (a label
combination it almost never draws, seen as a spurious label correlation). Shifting W along
the boundary normals does not fix the proportions when those normals are far from
orthogonal: the shift needed is a large move of every sample. Drawing the images it makes
in other proportions does (MODELS.md, "Calibrating the attribute rates", has what the toy
model showed and what each alternative left). This module

1. draws a bank of N latents w = f(z) and labels y = C(g(w)) > 0 (f the mapping network, g
   the synthesis network, C the classifier);
2. chooses a target distribution q over the 2^A label cells: the data's joint distribution,
   restricted to the cells the bank covers (at least `min_cell_count` samples), then
   raked to the data's marginal rates by iterative proportional fitting. That is the
   I-projection of the data's reachable joint onto the distributions with the data's rates
   (Csiszar 1975): exact rates, and the data's correlations wherever the generator can
   draw them. Each bank sample gets the weight q(cell) / p_bank(cell);
3. fits a logistic head per attribute on the bank (w -> label), and fine-tunes f against
   three losses in W, none needing an image: a non-saturating adversarial loss against an
   MLP discriminator whose reals are bank samples drawn by weight (it keeps f near the
   bank's support); the squared distance between the mean and covariance of the heads'
   probabilities on f(z) and on the weighted bank (it moves the rates); and the KL
   divergence from the target's cell distribution to the cells of f(z), each cell's
   probability the product of the heads' (off by default, `cell_weight`: it keeps small
   cells, which the moments barely see, from being dropped; MODELS.md has what it did);
4. re-estimates w_avg, the centre of truncation, as the mean of the new f(z).

The synthesis network is not touched, so a w the new mapping draws on the bank's support is
rendered exactly as before: the attributes' surfaces in W (hence linear separability) and any
encoder trained for g are kept. Only where in W the samples fall changes. After step 1
nothing needs an image, so step 3 is cheap next to rendering (its speed is in MODELS.md).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class CalibrateConfig:
    bank_size: int = 60000        # latents drawn, rendered and labelled once
    min_cell_count: int = 20      # a label cell with fewer bank samples counts as not drawable
    target_joint: str = "data"    # joint raked to the data's rates: 'data' (its correlations
                                  # where reachable) or 'generated' (the generator's own)
    steps: int = 4000             # refit steps in W (cosine lr decay to 0)
    batch_size: int = 512
    lr_mapping: float = 0.03      # Adam lr of the mapping's stored parameters (equalized lr:
                                  # the effective step is lr * lr_multiplier)
    lr_d: float = 0.002           # Adam lr of the W discriminator
    r1_gamma: float = 0.1         # R1 on the weighted bank samples
    moment_weight: float = 1000.0  # weight of the label moment term (heads' mean and covariance)
    cell_weight: float = 0.0      # weight of KL(target cells || soft cells of the new samples)
    d_hidden: int = 256
    w_avg_samples: int = 100000   # z drawn to re-estimate w_avg
    seed: int = 0
    device: str = "cpu"


# ----------------------------------------------------------------------------------------
# Label cells and the target distribution over them


def label_cells(labels: np.ndarray) -> np.ndarray:
    """Boolean labels [N, A] -> cell index [N] in [0, 2^A): bit a is attribute a."""
    labels = np.asarray(labels, dtype=bool)
    if labels.ndim != 2 or not 0 < labels.shape[1] <= 20:
        raise ValueError(f"labels must be [N, A] with 1 <= A <= 20, got shape {labels.shape}")
    return (labels.astype(np.int64) << np.arange(labels.shape[1])).sum(axis=1)


def cell_frequencies(labels: np.ndarray) -> np.ndarray:
    """Share of samples in each label cell [2^A]."""
    return np.bincount(label_cells(labels), minlength=1 << labels.shape[1]) / len(labels)


def cell_bits(n_attributes: int) -> np.ndarray:
    """[2^A, A] bool: which attributes are positive in each cell."""
    return ((np.arange(1 << n_attributes)[:, None] >> np.arange(n_attributes)) & 1).astype(bool)


def drawn_cells(gen_labels: np.ndarray, min_count: int) -> np.ndarray:
    """[2^A] bool: the cells the generator draws at least `min_count` times."""
    return cell_frequencies(gen_labels) * len(gen_labels) >= min_count


def reachable_target(gen_labels: np.ndarray, data_labels: np.ndarray, min_count: int = 20,
                     start: str = "data", iters: int = 500, tol: float = 1e-9) -> np.ndarray:
    """Target q [2^A] over label cells: the data's joint ('data') or the generator's own
    ('generated') on the cells with >= min_count generated samples, raked to the data's
    marginal rates (iterative proportional fitting)."""
    if gen_labels.shape[1] != data_labels.shape[1]:
        raise ValueError(f"generated labels have {gen_labels.shape[1]} attributes, data "
                         f"labels {data_labels.shape[1]}")
    if start not in ("data", "generated"):
        raise ValueError(f"start must be 'data' or 'generated', got {start!r}")
    joint = cell_frequencies(data_labels if start == "data" else gen_labels)
    q = np.where(drawn_cells(gen_labels, min_count), joint, 0.0)
    if q.sum() == 0:
        raise ValueError("no label cell of the data is drawn by the generator "
                         f"{min_count} times or more: nothing to calibrate towards")
    q /= q.sum()
    rates = np.asarray(data_labels, dtype=np.float64).mean(axis=0)
    bits = cell_bits(data_labels.shape[1])                              # [2^A, A]
    for _ in range(iters):
        for a, r in enumerate(rates):
            # scale by the masses as they are, not by 1 - positive mass: with a nearly
            # one-sided attribute, 1 - m loses every digit and the total drifts past 1
            pos, neg = q[bits[:, a]].sum(), q[~bits[:, a]].sum()
            if pos > 0 and neg > 0:
                q[bits[:, a]] *= r / pos
                q[~bits[:, a]] *= (1 - r) / neg
        if np.abs(q @ bits - rates).max() < tol:
            break
    return q / q.sum()


def sample_weights(gen_labels: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-sample weights [N], mean 1, that give the generated samples the cell distribution q."""
    p_gen = cell_frequencies(gen_labels)                                 # [2^A]
    w = np.divide(q, p_gen, out=np.zeros_like(q), where=p_gen > 0)[label_cells(gen_labels)]
    return w / w.mean()


def uncovered_mass(gen_labels: np.ndarray, data_labels: np.ndarray, min_count: int = 1) -> float:
    """Share of the data's samples whose label cell the generator draws fewer than
    `min_count` times: no weighting can reach them."""
    return float(1 - drawn_cells(gen_labels, min_count)[label_cells(data_labels)].mean())


# ----------------------------------------------------------------------------------------
# The bank, the heads, and the refit in W


@torch.no_grad()
def draw_bank(G, classifier, n: int, seed: int, batch_size: int = 500,
              device: str = "cpu") -> tuple:
    """w [n, w_dim] float32 and classifier logits [n, A] of g(w), for z ~ N(0, I) from `seed`."""
    gen = torch.Generator().manual_seed(seed)
    ws, logits = [], []
    for i in range(0, n, batch_size):
        z = torch.randn(min(batch_size, n - i), G.z_dim, generator=gen).to(device)
        w = G.mapping(z, None)                                           # [B, num_ws, w_dim]
        logits.append(classifier(G.synthesis(w, noise_mode="const")).cpu())
        ws.append(w[:, 0].cpu())
    return torch.cat(ws).numpy(), torch.cat(logits).numpy()


def fit_heads(bank_w: np.ndarray, labels: np.ndarray, names: list, seed: int = 0) -> tuple:
    """Logistic regression per attribute, w -> label: a frozen nn.Linear [w_dim -> A] of
    logits, and each head's accuracy on a held-out 30% of the bank."""
    from sklearn.linear_model import LogisticRegression
    n_train = int(len(bank_w) * 0.7)
    heads = nn.Linear(bank_w.shape[1], labels.shape[1])
    accuracy = []
    with torch.no_grad():
        for a in range(labels.shape[1]):
            if labels[:n_train, a].all() or not labels[:n_train, a].any():
                raise ValueError(f"{names[a]}: every generated sample in the bank has the "
                                 "same label, so there is nothing to move")
            lr = LogisticRegression(max_iter=2000, random_state=seed)
            lr.fit(bank_w[:n_train], labels[:n_train, a])
            heads.weight[a] = torch.from_numpy(lr.coef_[0])
            heads.bias[a] = float(lr.intercept_[0])
            accuracy.append(float(lr.score(bank_w[n_train:], labels[n_train:, a])))
    return heads.requires_grad_(False), accuracy


def soft_cells(p: torch.Tensor, weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean over samples of each label cell's probability under independent per-attribute
    probabilities p [N, A]: [2^A], sums to 1."""
    bits = torch.from_numpy(cell_bits(p.shape[1])).to(p.device, p.dtype)     # [2^A, A]
    p = p.clamp(1e-6, 1 - 1e-6)
    cells = torch.exp(p.log() @ bits.T + (1 - p).log() @ (1 - bits).T)    # [N, 2^A]
    weights = torch.ones(len(p), device=p.device, dtype=p.dtype) if weights is None else weights
    return (weights / weights.sum()).to(p.dtype) @ cells


def label_moments(p: torch.Tensor, weights: Optional[torch.Tensor] = None) -> tuple:
    """Mean [A] and covariance [A, A] of soft labels p [N, A], optionally weighted."""
    weights = torch.ones(len(p), device=p.device) if weights is None else weights
    weights = (weights / weights.sum()).unsqueeze(1)                     # [N, 1]
    mean = (weights * p).sum(0)
    centred = p - mean
    return mean, (weights * centred).T @ centred


class WDiscriminator(nn.Module):
    """MLP on w: [N, w_dim] -> [N] logit, real = drawn from the weighted bank."""

    def __init__(self, w_dim: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(w_dim, hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, 1))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.net(w).squeeze(1)


class MappingRefit:
    """One step at a time: a copy of G.mapping against D in W, plus the label terms.

    `label_moments` is weighted (the bank's target) and biased; gankit.train.gan.moments is
    the unweighted, unbiased form the GAN trainer uses. They are kept apart so that the
    shipped toy generator stays reproducible by `gankit calibrate-gan`."""

    def __init__(self, mapping: nn.Module, bank_w: torch.Tensor, weights: torch.Tensor,
                 heads: nn.Linear, cfg: CalibrateConfig):
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.mapping = copy.deepcopy(mapping).to(cfg.device).train().requires_grad_(True)
        self.D = WDiscriminator(mapping.w_dim, cfg.d_hidden).to(cfg.device)
        self.heads = heads.to(cfg.device)
        self.bank_w, self.weights = bank_w.to(cfg.device), weights.to(cfg.device)
        with torch.no_grad():                                            # the moments to reach
            bank_p = torch.sigmoid(self.heads(self.bank_w))
            self.target = label_moments(bank_p, self.weights)
            self.target_cells = soft_cells(bank_p, self.weights)
        self.opt_g = torch.optim.Adam(self.mapping.parameters(), lr=cfg.lr_mapping, betas=(0.0, 0.99))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=(0.0, 0.99))
        self.schedules = [torch.optim.lr_scheduler.CosineAnnealingLR(o, max(cfg.steps, 1))
                          for o in (self.opt_g, self.opt_d)]
        self.gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed)

    def fake_w(self) -> torch.Tensor:                                    # [B, w_dim]
        z = torch.randn(self.cfg.batch_size, self.mapping.z_dim, generator=self.gen,
                        device=self.cfg.device)
        return self.mapping(z, None)[:, 0]

    def real_w(self) -> torch.Tensor:                                    # [B, w_dim]
        idx = torch.multinomial(self.weights, self.cfg.batch_size, replacement=True,
                                generator=self.gen)
        return self.bank_w[idx]

    def moment_distance(self, w: torch.Tensor) -> torch.Tensor:
        mean, cov = label_moments(torch.sigmoid(self.heads(w)))
        return (mean - self.target[0]).square().sum() + (cov - self.target[1]).square().sum()

    def cell_divergence(self, w: torch.Tensor) -> torch.Tensor:
        """KL(target cells || soft cells of w)."""
        t = self.target_cells
        return (t * (t.clamp_min(1e-12).log() - soft_cells(torch.sigmoid(self.heads(w))).log())).sum()

    def step(self) -> dict:
        fake = self.fake_w()
        adversarial = F.softplus(-self.D(fake)).mean()
        moment = self.moment_distance(fake)
        loss = adversarial + self.cfg.moment_weight * moment
        if self.cfg.cell_weight:
            loss = loss + self.cfg.cell_weight * self.cell_divergence(fake)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        real = self.real_w().requires_grad_(True)
        d_real = self.D(real)
        (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
        loss_d = (F.softplus(self.D(fake.detach())).mean() + F.softplus(-d_real).mean()
                  + self.cfg.r1_gamma / 2 * grad.square().sum(1).mean())
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        for s in self.schedules:
            s.step()
        return {"adversarial": adversarial.item(), "moment": moment.item(), "loss_d": loss_d.item()}


@torch.no_grad()
def mean_w(mapping: nn.Module, n: int, seed: int, device: str = "cpu",
           batch_size: int = 10000) -> torch.Tensor:
    """Mean of f(z) over n draws of z: the centre the truncation trick pulls towards."""
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros(mapping.w_dim, dtype=torch.float64)
    for i in range(0, n, batch_size):
        z = torch.randn(min(batch_size, n - i), mapping.z_dim, generator=gen).to(device)
        total += mapping(z, None)[:, 0].double().sum(0).cpu()
    return (total / n).float()


def calibrate_generator(G, classifier, data_labels: np.ndarray, cfg: CalibrateConfig,
                        log: Callable[[str], None] = print) -> tuple:
    """A copy of G whose mapping draws the reachable target (module docstring), and a dict of
    what was measured on the bank."""
    data_labels = np.asarray(data_labels, dtype=bool)
    G = copy.deepcopy(G).to(cfg.device).eval().requires_grad_(False)
    classifier = classifier.to(cfg.device).eval()
    bank_w, logits = draw_bank(G, classifier, cfg.bank_size, cfg.seed + 1, device=cfg.device)
    labels = logits > 0                                                  # [N, A]
    q = reachable_target(labels, data_labels, cfg.min_cell_count, cfg.target_joint)
    weights = sample_weights(labels, q)
    names = list(getattr(classifier, "attribute_names", range(labels.shape[1])))
    heads, head_accuracy = fit_heads(bank_w, labels, names, cfg.seed)
    info = {"bank_rates": _rounded(labels.mean(0)), "data_rates": _rounded(data_labels.mean(0)),
            "target_rates": _rounded(q @ cell_bits(labels.shape[1])),
            "uncovered_data_mass": round(uncovered_mass(labels, data_labels, cfg.min_cell_count), 4),
            "effective_bank_size": int(weights.sum() ** 2 / (weights ** 2).sum()),
            "head_accuracy": _rounded(head_accuracy)}
    log(f"bank rates {info['bank_rates']}, target {info['target_rates']}, data "
        f"{info['data_rates']}; {info['uncovered_data_mass']} of the data in cells the "
        "generator does not draw")
    refit = MappingRefit(G.mapping, torch.from_numpy(bank_w), torch.from_numpy(weights).float(),
                         heads, cfg)
    for s in range(cfg.steps):
        stats = refit.step()
        if s % 1000 == 0 or s == cfg.steps - 1:
            log(f"step {s}: " + " ".join(f"{k} {v:.4g}" for k, v in stats.items()))
    G.mapping = refit.mapping.eval().requires_grad_(False)
    G.mapping.w_avg.copy_(mean_w(G.mapping, cfg.w_avg_samples, cfg.seed + 2, cfg.device))
    return G, info


def _rounded(x) -> list:
    return np.round(np.asarray(x, dtype=np.float64), 4).tolist()
