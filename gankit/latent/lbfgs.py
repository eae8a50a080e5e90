"""L-BFGS with one memory and one line search per sample: B independent problems at once.

The hybrid inversion's objective is deterministic (no w noise) and smooth from an encoder's
start, the setting a quasi-Newton method is made for: it learns the curvature of each image's
loss from its own last steps and takes steps scaled by it, where Adam-like methods take steps
of a fixed scale per coordinate (Nocedal & Wright, "Numerical Optimization", ch. 7.2).

Every sample keeps its own curvature pairs (s_i = x_{i+1} - x_i, y_i = g_{i+1} - g_i), its own
step size and its own Armijo test, and the two-loop recursion uses per-sample dot products, so
a sample's path never depends on the other samples of its batch. One evaluation (forward and
backward of the batch) per step, as Adam: a trial point either passes its sample's Armijo test
and is taken, or the sample stays where it was and tries a shorter step along the same
direction at the next evaluation (quadratic interpolation, safeguarded). Every trial gives a
curvature pair, a rejected one too (the secant between x and the trial: an overshoot tells the
memory how curved the loss is along d); a pair with s.y <= 0 (no positive curvature seen) is
stored as a no-op (rho = 0).

    opt = BatchedLBFGS(x0, history=100, first_step=0.2)     # x0 [B, D]
    for _ in range(steps):
        x = opt.trial().requires_grad_(True)                # [B, D]
        f = loss(x)                                         # [B], each sample's own
        f.sum().backward()
        opt.observe(f.detach(), x.grad)
    opt.x                                                   # [B, D] the accepted points
"""
from __future__ import annotations

from typing import Optional

import torch

ARMIJO_C1 = 1e-4              # sufficient decrease: f(x + t d) <= f(x) + c1 t g.d
BACKTRACK = (0.1, 0.5)        # a rejected step is retried at the minimum of the quadratic
                              # through f(x), g.d and f(x + t d), kept in this fraction of t


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:          # [B, D] x2 -> [B]
    return (a * b).sum(dim=1)


class BatchedLBFGS:
    """Per-sample L-BFGS over x [B, D] (see the module docstring for the loop)."""

    def __init__(self, x0: torch.Tensor, history: int, first_step: float):
        self.x = x0.detach().clone()                                  # [B, D] accepted
        self.history, self.first_step = history, first_step
        self.f: Optional[torch.Tensor] = None                         # [B] at self.x
        self.g: Optional[torch.Tensor] = None                         # [B, D] at self.x
        self.d = torch.zeros_like(self.x)                             # [B, D] direction
        self.t = torch.zeros(len(self.x), device=x0.device)           # [B] step along d
        self.pairs: list = []                     # (s [B, D], y [B, D], rho [B]), oldest first
        self.gamma = torch.ones(len(self.x), device=x0.device)       # [B] H0 = gamma I
        self.known = torch.zeros(len(self.x), dtype=torch.bool, device=x0.device)  # [B]
        self.stopped = torch.zeros_like(self.known)                   # [B] early stop

    def trial(self) -> torch.Tensor:
        """[B, D] the point to evaluate next: x at the first call, then x + t d."""
        return self.x + self.t[:, None] * self.d

    @torch.no_grad()
    def observe(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Take f [B] and its gradient g [B, D] at `trial()`. Returns [B] bool: the samples
        whose trial was taken."""
        g = g.detach().reshape(self.x.shape)
        x_new = self.trial()
        if self.f is None:
            taken, shorter = torch.ones_like(f, dtype=torch.bool), self.t
        else:
            slope = dot(self.g, self.d)                                   # [B] g.d < 0
            taken = f <= self.f + ARMIJO_C1 * self.t * slope
            shorter = self.backtrack(f, slope)
            self.remember(x_new - self.x, g - self.g)
        taken &= ~self.stopped
        self.x = torch.where(taken[:, None], x_new, self.x)
        self.f = f.clone() if self.f is None else torch.where(taken, f, self.f)
        self.g = g.clone() if self.g is None else torch.where(taken[:, None], g, self.g)
        self.next_step(taken, shorter)
        return taken

    def backtrack(self, f: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
        """[B] the step to retry after f [B] at t: the minimum of the quadratic q(s) with
        q(0) = f(x), q'(0) = g.d, q(t) = f, kept within BACKTRACK's fractions of t
        (Nocedal & Wright, eq. 3.57)."""
        t = self.t
        excess = (f - self.f - slope * t).clamp_min(1e-30)                # > 0 when rejected
        t_q = -slope * t * t / (2 * excess)
        t_q = torch.where(torch.isfinite(t_q), t_q, BACKTRACK[0] * t)
        return torch.minimum(torch.maximum(t_q, BACKTRACK[0] * t), BACKTRACK[1] * t)

    def stop(self, samples: torch.Tensor) -> None:
        """Keep these samples [B] bool where they are from now on (an early stop)."""
        self.stopped |= samples
        self.t = torch.where(samples, torch.zeros_like(self.t), self.t)

    def remember(self, s: torch.Tensor, y: torch.Tensor) -> None:
        """Store (s, y) for the samples that saw positive curvature, and their gamma =
        s.y / y.y. Every evaluation stores a pair (a no-op for the others: a stopped sample's
        s is 0), so a sample's memory is its own last `history` evaluations whatever its
        batch does."""
        sy = dot(s, y)
        keep = sy > 0
        safe_sy = torch.where(keep, sy, torch.ones_like(sy))
        rho = torch.where(keep, 1.0 / safe_sy, torch.zeros_like(sy))
        self.pairs.append((s * keep[:, None], y * keep[:, None], rho))
        if len(self.pairs) > self.history:
            self.pairs.pop(0)
        self.gamma = torch.where(keep, safe_sy / dot(y, y).clamp_min(1e-30), self.gamma)
        self.known |= keep

    def next_step(self, taken: torch.Tensor, shorter: torch.Tensor) -> None:
        """A new quasi-Newton direction where the step was taken (t = 1 once curvature is
        known, else a first step whose largest change is `first_step`); the `shorter` step
        [B] along the old direction where it was not; none for stopped samples."""
        d = self.direction(self.g)
        first = self.first_step / self.g.abs().amax(dim=1).clamp_min(1e-30)
        t_new = torch.where(self.known, torch.ones_like(self.t), first)
        self.t = torch.where(taken, t_new, shorter)
        self.d = torch.where(taken[:, None], d, self.d)
        self.t = torch.where(self.stopped, torch.zeros_like(self.t), self.t)

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        """[B, D] -H g by the two-loop recursion, H0 = gamma I with each sample's latest
        gamma = s.y / y.y (1 until it has one); -gamma g where that is not a descent
        direction."""
        q, alphas = g.clone(), []
        for s, y, rho in reversed(self.pairs):
            a = rho * dot(s, q)
            q -= a[:, None] * y
            alphas.append(a)
        q *= self.gamma[:, None]
        for (s, y, rho), a in zip(self.pairs, reversed(alphas)):
            b = rho * dot(y, q)
            q += (a - b)[:, None] * s
        descent = dot(g, q) > 0
        return torch.where(descent[:, None], -q, -self.gamma[:, None] * g)
