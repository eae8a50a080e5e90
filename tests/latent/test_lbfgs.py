"""BatchedLBFGS (gankit.latent.lbfgs): B independent problems, each its own L-BFGS."""
from __future__ import annotations

import torch

from gankit.latent.lbfgs import BatchedLBFGS


def quadratics(B: int, D: int, seed: int) -> tuple:
    """B convex quadratics 0.5 sum_i a_bi (x_i - c_bi)^2, curvatures 1..100 per sample."""
    g = torch.Generator().manual_seed(seed)
    a = 10 ** (2 * torch.rand(B, D, generator=g))                        # [B, D]
    c = torch.randn(B, D, generator=g)                                   # [B, D]
    return a, c


def rosenbrock(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:       # [B, 2], [B] -> [B]
    return (1 - x[:, 0]) ** 2 + b * (x[:, 1] - x[:, 0] ** 2) ** 2


def run(loss, x0: torch.Tensor, steps: int, history: int = 100, first_step: float = 0.2,
        record: list = None) -> BatchedLBFGS:
    opt = BatchedLBFGS(x0, history, first_step)
    for _ in range(steps):
        x = opt.trial().requires_grad_(True)
        f = loss(x)
        f.sum().backward()
        opt.observe(f.detach(), x.grad)
        if record is not None:
            record.append(opt.f.clone())
    return opt


def test_ill_conditioned_quadratics_are_solved_in_few_evaluations():
    a, c = quadratics(5, 30, seed=0)
    opt = run(lambda x: 0.5 * (a * (x - c) ** 2).sum(1), torch.zeros(5, 30), steps=60)
    assert (opt.x - c).abs().max() < 1e-4


def test_rosenbrock_valleys_are_followed_to_their_minimum():
    """Non-convex, curved valleys: the line search must back off and the memory adapt."""
    b = torch.tensor([10.0, 100.0, 30.0])
    x0 = torch.tensor([[-1.2, 1.0], [-1.5, 2.0], [0.5, -0.5]])
    opt = run(lambda x: rosenbrock(x, b), x0, steps=200)
    assert (opt.x - 1).abs().max() < 1e-3, opt.x


def test_the_accepted_loss_never_rises():
    b = torch.tensor([100.0, 100.0])
    record = []
    run(lambda x: rosenbrock(x, b), torch.tensor([[-1.2, 1.0], [2.0, -1.0]]), steps=80,
        record=record)
    f = torch.stack(record)                                              # [steps, B]
    assert (f[1:] <= f[:-1]).all()
    assert (f[-1] < 1e-2 * f[0]).all()


def test_a_sample_follows_the_same_path_whatever_its_batch():
    a, c = quadratics(3, 20, seed=1)
    a2, c2 = quadratics(3, 20, seed=2)
    a2[0], c2[0] = a[0], c[0]                          # sample 0 alike, the others not
    x0 = torch.zeros(3, 20)
    one = run(lambda x: 0.5 * (a * (x - c) ** 2).sum(1), x0, steps=8)
    two = run(lambda x: 0.5 * (a2 * (x - c2) ** 2).sum(1), x0, steps=8)
    assert torch.allclose(one.x[0], two.x[0], atol=1e-6, rtol=0)
    assert (one.x[1] - two.x[1]).abs().max() > 1e-2


def test_a_stopped_sample_stays_where_it_is():
    a, c = quadratics(2, 10, seed=3)
    opt = BatchedLBFGS(torch.zeros(2, 10), 10, 0.2)
    loss = lambda x: 0.5 * (a * (x - c) ** 2).sum(1)                    # noqa: E731
    for step in range(40):
        x = opt.trial().requires_grad_(True)
        f = loss(x)
        f.sum().backward()
        opt.observe(f.detach(), x.grad)
        if step == 3:
            opt.stop(torch.tensor([True, False]))
            held = opt.x[0].clone()
    assert torch.equal(opt.x[0], held)
    assert (opt.x[1] - c[1]).abs().max() < 1e-3 < (held - c[0]).abs().max()
