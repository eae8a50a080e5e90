"""Batched GAN inversion by optimisation: every image of a batch is its own problem.

A batch of B targets carries B independent latents (W: [B, 1, w_dim] broadcast to num_ws, or
W+: [B, num_ws, w_dim]), B sets of noise maps ([B, 1, r, r] per noise layer) and Adam state.
Independence holds because:
  - the loss is a SUM of per-image losses (a mean would scale each image's gradient by 1/B;
    the sum gives each image exactly the gradient a batch of one gives);
  - the synthesis, the feature net and every loss term act per sample (the noise
    regularisation and renormalisation are per sample too);
  - Adam's state and update are element-wise, and the lr schedule is the same for every image;
    L-BFGS keeps a memory, a step size and a line search per image (gankit.latent.lbfgs);
  - the random w perturbation of image i comes from its own generator seeded by
    (seed, index_i), so batching does not change what image i sees.
So a batch of B gives B runs of one, up to float rounding of batched kernels (which a
quasi-Newton step can grow: results are reproducible per batch, and an image's result does not
depend on the other images of its batch).

Defaults follow NVIDIA's stylegan2-ada-pytorch `projector.py`: start at w_avg, w_std from
10,000 mapped z, 1000 Adam steps (lr 0.1, betas 0.9/0.999), lr ramp-up over the first 5% and
cosine ramp-down over the last 25%, w noise 0.05 * w_std ramped quadratically to 0 over the
first 75%, noise regularisation 1e5 (multi-scale autocorrelation), noise maps renormalised to
zero mean and unit variance after every step.

Losses: 'mse+perceptual' (the default) sums mse_weight * pixel MSE and perceptual_weight *
the feature-net distance, starting from G's tracked w_avg: NVIDIA's schedule with an extra
pixel term. 'nvidia' is NVIDIA's projector itself: the feature-net distance alone (LPIPS with
its vgg16.pt) from the mean of `w_avg_samples` mapped z drawn as its projector draws them.

Modes: 'optimize' starts at w_avg (NVIDIA); 'encode' returns an encoder's output as it is
(`init_ws`, 0 steps, G's const noise: what the encoder was trained with); 'hybrid' starts at
the encoder's output and G's const noise maps and refines them for `steps` (K) steps, so
K = 0 reproduces 'encode' exactly; the hybrid adds no w noise (see w_noise_strength), so its
objective is deterministic, and runs its own optimiser (`hybrid_schedule`): 'fast' (the
default) moves the latents and noise maps by Adamax at `hybrid_lr` with FAST_SCHEDULE's ramps
and betas; 'lbfgs' moves the latents by L-BFGS with a memory and a line search per image
(gankit.latent.lbfgs) and the noise maps as 'fast' does: reconstruction first, it reaches
the 1000-step optimisation's PSNR in 100 steps where 'fast' needs 100-200, and its latents
edit with fewer other attributes kept; 'nvidia' is the optimize mode's Adam schedule (the
hybrid's first). BENCHMARKS.md has the figures. In space 'w' the hybrid
starts from the mean of the encoder's w+ over layers; 'encode' needs space 'wp' (an
encoder's w+ is not a W latent).
'pti' is Pivotal Tuning (gankit.latent.pti): a pivot by mode `pti_pivot`, then a low-rank change
of the synthesis network tuned per image, so its result carries `deltas` beside the pivot.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gankit.latent.lbfgs import BatchedLBFGS
from gankit.latent.metrics import pixel_mse, psnr, ssim

SPACES = ("w", "wp")
MODES = ("optimize", "encode", "hybrid", "pti")
PIVOTS = ("optimize", "encode", "hybrid")   # the pivot modes of 'pti'
HYBRID_SCHEDULES = ("fast", "lbfgs", "nvidia")
# The hybrid's 'fast' schedule: Adamax (Adam with the infinity norm), lr ramped up over 20%
# of the steps and down (cosine) over the last 50%, betas 0.8 / 0.95: measured on the toy
# world from the encoder's start (BENCHMARKS.md, "... the hybrid in fewer steps").
FAST_SCHEDULE = {"lr_rampup": 0.2, "lr_rampdown": 0.5, "betas": (0.8, 0.95)}
LBFGS_HISTORY = 100           # curvature pairs the 'lbfgs' hybrid keeps per image
REPORT_EVERY = 25             # steps between on_step calls (each waits for the device)
LOSSES = ("mse+perceptual", "nvidia")


@dataclass
class InversionConfig:
    space: str = "w"                   # 'w' (one w per image, as NVIDIA) or 'wp' (W+)
    mode: str = "optimize"             # 'optimize' (from w_avg), 'encode' (init_ws as it is,
                                       # 0 steps) or 'hybrid' (init_ws + `steps` refinement)
    steps: int = 1000                  # optimisation steps (K refinement steps in hybrid)
    lr: float = 0.1                    # Adam's initial learning rate
    betas: tuple = (0.9, 0.999)        # Adam's betas
    lr_rampup: float = 0.05            # fraction of steps of the linear lr ramp-up
    lr_rampdown: float = 0.25          # fraction of steps of the cosine lr ramp-down
    w_noise_scale: float = 0.05        # initial w perturbation, in units of w_std (optimize)
    w_noise_ramp: float = 0.75         # fraction of steps over which it decays to 0 (quadratic)
    w_avg_samples: int = 10_000        # mapped z used to estimate w_std
    optimize_noise: bool = True        # optimise per-image noise maps (else G's const noise)
    noise_reg_weight: float = 1e5      # weight of the noise autocorrelation penalty
    loss: str = "mse+perceptual"       # or 'nvidia': perceptual only, from sampled w mean
    mse_weight: float = 1.0            # weight of the pixel MSE ('nvidia' ignores it)
    perceptual_weight: float = 1.0     # weight of the feature-net distance (needs a net)
    early_stop_loss: Optional[float] = None  # freeze an image once its loss is below this
    hybrid_schedule: str = "fast"      # mode hybrid: 'fast' (Adamax at hybrid_lr,
                                       # FAST_SCHEDULE), 'lbfgs' (latents by L-BFGS, noise as
                                       # 'fast') or 'nvidia' (as optimize: Adam at lr)
    hybrid_lr: float = 0.2             # the 'fast' schedule's peak learning rate; 'lbfgs':
                                       # the largest latent change of its first step
    seed: int = 0                      # image i's randomness comes from (seed, index_i)
    # Pivotal Tuning (mode 'pti', gankit.latent.pti); PTI's defaults where it has one, except
    # steps and lr
    pti_pivot: str = "optimize"        # the pivot's mode: optimize (PTI's), encode, hybrid
    pti_steps: int = 200               # tuning steps per image (PTI: 350; BENCHMARKS.md,
                                       # "Pivotal tuning", says why fewer here)
    pti_lr: float = 1e-3               # Adam's learning rate for the change (PTI: 3e-4)
    pti_rank: int = 2                  # rank of each layer's change; 0 = full (PTI's own)
    pti_stop: float = 0.06             # stop an image at this feature distance (PTI: LPIPS
                                       # 0.06); 0 = run every step
    pti_locality: float = 0.0          # locality regulariser weight (PTI: 0.1 when on)
    pti_radius: float = 30.0           # its distance from the pivot in W (PTI's alpha)

    def validate(self) -> None:
        if self.space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {self.space!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        pivot = self.pti_pivot if self.mode == "pti" else self.mode
        if pivot == "encode" and self.space != "wp":
            raise ValueError("mode 'encode' needs space 'wp': the encoder outputs W+ latents "
                             "(use 'hybrid' to start a W optimisation from their layer mean)")
        if not self.hybrid_lr > 0:
            raise ValueError(f"hybrid_lr must be > 0, got {self.hybrid_lr}")
        if self.hybrid_schedule not in HYBRID_SCHEDULES:
            raise ValueError(f"hybrid_schedule must be one of {HYBRID_SCHEDULES}, got "
                             f"{self.hybrid_schedule!r}")
        if self.pti_pivot not in PIVOTS:
            raise ValueError(f"pti_pivot must be one of {PIVOTS}, got {self.pti_pivot!r}")
        if min(self.pti_steps, self.pti_rank, self.pti_stop, self.pti_locality) < 0 \
                or not self.pti_lr > 0:
            raise ValueError("pti_steps, pti_rank, pti_stop and pti_locality must be >= 0, "
                             "and pti_lr > 0")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if not (0 < self.lr_rampup <= 1 and 0 < self.lr_rampdown <= 1):
            raise ValueError("lr_rampup and lr_rampdown must be fractions in (0, 1]")
        if not 0 < self.w_noise_ramp <= 1:
            raise ValueError("w_noise_ramp must be a fraction in (0, 1]")


@dataclass
class InversionResult:
    ws: torch.Tensor                   # [B, num_ws, w_dim] final latents (no w noise)
    noises: Optional[list]             # per noise layer [B, 1, r, r], None = G's const noise
    reconstruction: torch.Tensor       # [B, 3, H, W] in [-1, 1]
    mse: torch.Tensor                  # [B] pixel MSE on the [-1, 1] scale
    psnr: torch.Tensor                 # [B] dB, peak-to-peak 2 (= PSNR of [0, 1] images)
    ssim: torch.Tensor                 # [B] gaussian-window SSIM on [0, 1] images
    perceptual: Optional[torch.Tensor]  # [B] feature distance, None without a feature net
    loss: torch.Tensor                 # [B] final reconstruction loss (mse + perceptual terms)
    steps: torch.Tensor                # [B] int64 steps run per image (early stop)
    history: list = field(default_factory=list)  # [steps] of [B] losses, per step
    deltas: Optional[object] = None    # mode 'pti': gankit.latent.pti.Deltas, each image's change
    pti_steps: Optional[torch.Tensor] = None   # mode 'pti': [B] int64 tuning steps run
    pivot_psnr: Optional[torch.Tensor] = None  # mode 'pti': [B] the pivot's PSNR


# ----------------------------------------------------------------------------------------
# Schedules and per-image randomness


def fast_schedule(cfg: InversionConfig) -> bool:
    """Adamax at FAST_SCHEDULE moves the hybrid's parameters ('lbfgs': the noise maps alone)."""
    return cfg.mode == "hybrid" and cfg.hybrid_schedule in ("fast", "lbfgs")


def lbfgs_hybrid(cfg: InversionConfig) -> bool:
    return cfg.mode == "hybrid" and cfg.hybrid_schedule == "lbfgs"


def scheduled(cfg: InversionConfig) -> InversionConfig:
    """The config the steps run with: a 'fast' or 'lbfgs' hybrid's lr, ramps and betas, else
    cfg."""
    if not fast_schedule(cfg):
        return cfg
    return replace(cfg, lr=cfg.hybrid_lr, **FAST_SCHEDULE)


def optimizer(cfg: InversionConfig, params: list) -> torch.optim.Optimizer:
    """Adam (NVIDIA's), or Adamax for a 'fast' or 'lbfgs' hybrid; cfg as `scheduled` gives
    it."""
    kind = torch.optim.Adamax if fast_schedule(cfg) else torch.optim.Adam
    return kind(params, betas=tuple(cfg.betas), lr=cfg.lr)


def learning_rate(cfg: InversionConfig, step: int) -> float:
    """NVIDIA's schedule: linear ramp-up, cosine ramp-down, at t = step / steps."""
    t = step / max(cfg.steps, 1)
    ramp = min(1.0, (1.0 - t) / cfg.lr_rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return cfg.lr * ramp * min(1.0, t / cfg.lr_rampup)


def w_noise_strength(cfg: InversionConfig, step: int, w_std: float) -> float:
    """NVIDIA's w noise: exploration around w_avg, so 'optimize' only. A hybrid starts at an
    encoder's estimate, which the noise would only knock off (BENCHMARKS.md, "Encoder and
    hybrid inversion", has the PSNR it cost)."""
    if cfg.mode != "optimize":
        return 0.0
    t = step / max(cfg.steps, 1)
    return w_std * cfg.w_noise_scale * max(0.0, 1.0 - t / cfg.w_noise_ramp) ** 2


def image_generators(seed: int, indices: Sequence[int], stream: int = 0) -> list:
    """One torch.Generator per image, seeded by (seed, index) only; `stream` > 0 gives
    another independent stream per image (PTI's tuning draws)."""
    gens = []
    for i in indices:
        key = [int(seed), int(i)] + ([int(stream)] if stream else [])
        state = np.random.SeedSequence(key).generate_state(2, dtype=np.uint32)
        g = torch.Generator(device="cpu")
        g.manual_seed(int(state[0]) << 32 | int(state[1]))
        gens.append(g)
    return gens


def per_image_randn(gens: list, shape: tuple, device) -> torch.Tensor:
    """[B, *shape] standard normal, row b from gens[b] (drawn on CPU: same bits anywhere)."""
    return torch.stack([torch.randn(shape, generator=g) for g in gens]).to(device)


@torch.no_grad()
def w_stats(G, samples: int = 10_000, seed: int = 123, sampled_mean: bool = False) -> tuple:
    """(w_avg [w_dim], w_std scalar) from `samples` mapped z; w_std = sqrt(mean_i ||w_i -
    w_avg||^2), as NVIDIA's projector. w_avg is G's tracked w_avg, or with `sampled_mean`
    the mean of the mapped samples, z drawn by numpy's RandomState(seed) as NVIDIA's
    projector draws them (loss 'nvidia')."""
    device = G.mapping.w_avg.device
    if sampled_mean:
        z = torch.from_numpy(np.random.RandomState(seed).randn(samples, G.z_dim)).float()
    else:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        z = torch.randn([samples, G.z_dim], generator=gen)
    z = z.to(device)                                                         # [S, z_dim]
    w = torch.cat([G.mapping(zc, None)[:, 0] for zc in z.split(2048)])      # [S, w_dim]
    w_avg = w.mean(0) if sampled_mean else G.mapping.w_avg.detach().clone()
    return w_avg, float(((w - w_avg).square().sum() / samples).sqrt())


# ----------------------------------------------------------------------------------------
# Loss terms (all per image: [B])


def noise_regularisation(noises: list) -> torch.Tensor:
    """Multi-scale autocorrelation penalty of NVIDIA's projector, per sample -> [B]."""
    reg = 0
    for n in noises:                                                     # [B, 1, r, r]
        while True:
            reg = reg + (n * torch.roll(n, shifts=1, dims=3)).mean(dim=[1, 2, 3]).square()
            reg = reg + (n * torch.roll(n, shifts=1, dims=2)).mean(dim=[1, 2, 3]).square()
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, kernel_size=2)
    return reg


@torch.no_grad()
def renormalise_noise(noises: list) -> None:
    """Zero mean, unit variance per sample and layer (in place)."""
    for n in noises:                                                     # [B, 1, r, r]
        n -= n.mean(dim=[1, 2, 3], keepdim=True)
        n *= n.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()


def initial_latents(G, cfg: InversionConfig, batch: int, w_avg: torch.Tensor,
                    init_ws: Optional[torch.Tensor]) -> torch.Tensor:
    """[B, 1 or num_ws, w_dim]: w_avg (optimize) or the given ws (encode, hybrid; their mean
    over layers in space 'w')."""
    k = 1 if cfg.space == "w" else G.num_ws
    if cfg.mode == "optimize":
        return w_avg.reshape(1, 1, -1).repeat(batch, k, 1)
    if init_ws is None:
        raise ValueError(f"mode {cfg.mode!r} needs init_ws (e.g. an encoder's output)")
    init = init_ws.to(w_avg.device, torch.float32)
    if init.ndim == 2:                                                   # [B, w_dim]
        init = init[:, None]
    if init.shape[0] != batch or init.shape[2] != G.w_dim:
        raise ValueError(f"init_ws must be [{batch}, num_ws or 1, {G.w_dim}], got {list(init_ws.shape)}")
    if cfg.space == "w":
        return init.mean(dim=1, keepdim=True)                            # W: the layer mean
    return init.expand(batch, G.num_ws, G.w_dim).clone()


def initial_noises(G, gens: list, device, mode: str = "optimize") -> list:
    """Per noise layer [B, 1, r, r]: standard normal from each image's generator (optimize),
    or G's const noise maps as they are (hybrid: what the encoder's output was made with)."""
    if mode == "hybrid":
        return [l.noise_const.detach().to(device, torch.float32).expand(len(gens), 1, -1, -1)
                .clone() for l in G.synthesis.noise_layers()]
    noises = [per_image_randn(gens, (1, l.resolution, l.resolution), device)
              for l in G.synthesis.noise_layers()]
    renormalise_noise(noises)
    return noises


def synthesize(G, w_opt: torch.Tensor, noises: Optional[list]) -> torch.Tensor:
    ws = w_opt.expand(-1, G.num_ws, -1)                                  # [B, num_ws, w_dim]
    return G.synthesis(ws, noise_mode="const", noises=noises)


def reconstruction_loss(cfg: InversionConfig, images, targets, feature_net, target_features):
    """(loss [B], perceptual [B] or None): mse_weight * MSE + perceptual_weight * dist, or
    with loss 'nvidia' the distance alone."""
    mse_weight = 0 if cfg.loss == "nvidia" else cfg.mse_weight
    loss = mse_weight * pixel_mse(images, targets) if mse_weight else 0
    if cfg.loss == "nvidia" and feature_net is None:
        raise ValueError("loss 'nvidia' needs a feature net (NVIDIA's LPIPS vgg16.pt)")
    dist = None
    if feature_net is not None:
        dist = feature_net.distance(feature_net.features(images), target_features)
        loss = loss + cfg.perceptual_weight * dist
    if not torch.is_tensor(loss):
        raise ValueError("the loss is empty: set mse_weight > 0 or give a feature net")
    return loss, dist


def start_stats(G, cfg: InversionConfig, steps: int, w_std: Optional[float]) -> tuple:
    """(w_avg, w_std) the optimisation starts from: a given w_std skips the sampling, except
    under loss 'nvidia', whose start is the sampled mean itself. Only 'optimize' uses them
    (its start and its w noise): the other modes start from init_ws and add no w noise."""
    if cfg.mode != "optimize":
        return G.mapping.w_avg, 0.0
    if steps and cfg.loss == "nvidia":
        w_avg, sampled_std = w_stats(G, cfg.w_avg_samples, sampled_mean=True)
        return w_avg, sampled_std if w_std is None else w_std
    if steps and w_std is None:
        return w_stats(G, cfg.w_avg_samples)
    return G.mapping.w_avg, w_std or 0.0


def invert(G, targets: torch.Tensor, cfg: InversionConfig = InversionConfig(),
           feature_net=None, init_ws: Optional[torch.Tensor] = None,
           indices: Optional[Sequence[int]] = None, w_std: Optional[float] = None,
           record_history: bool = False,
           on_step: Optional[Callable[[int, int, float], None]] = None) -> InversionResult:
    """Invert targets [B, 3, H, W] in [-1, 1] into G's W / W+ (+ noise), B problems at once.

    `on_step(step, steps, loss)` is called every REPORT_EVERY steps and at the last one with
    the batch's mean reconstruction loss (reading it waits for the device, so not every step).

    `indices` [B] name the images for their randomness (default 0..B-1): give global row
    numbers so that the result of an image does not depend on the batch it is in.
    `w_std` skips the estimate from mapped z (pass it when inverting many batches).
    Mode 'pti' runs gankit.latent.pti.invert (its pivot comes back here)."""
    cfg.validate()
    if cfg.mode == "pti":
        from gankit.latent import pti
        return pti.invert(G, targets, cfg, feature_net, init_ws, indices, w_std,
                          record_history, on_step)
    cfg = scheduled(cfg)
    device = targets.device
    B = targets.shape[0]
    assert targets.ndim == 4 and targets.shape[1:] == (G.img_channels, G.img_resolution,
                                                       G.img_resolution), \
        f"targets must be [B, {G.img_channels}, {G.img_resolution}, {G.img_resolution}]"
    indices = list(range(B)) if indices is None else [int(i) for i in indices]
    G = G.requires_grad_(False)
    steps = 0 if cfg.mode == "encode" else cfg.steps
    w_avg, est_std = start_stats(G, cfg, steps, w_std)
    gens = image_generators(cfg.seed, indices)
    targets = targets.to(torch.float32)
    target_features = None
    if feature_net is not None:
        with torch.no_grad():
            target_features = feature_net.features(targets)

    w0 = initial_latents(G, cfg, B, w_avg.to(device), init_ws)           # [B, k, w_dim]
    noises = initial_noises(G, gens, device, cfg.mode) \
        if cfg.optimize_noise and cfg.mode != "encode" else None

    def loss(images: torch.Tensor) -> torch.Tensor:                     # [B, 3, H, W] -> [B]
        return reconstruction_loss(cfg, images, targets, feature_net, target_features)[0]
    steps_of = Steps(steps, loss, record_history, on_step)
    if lbfgs_hybrid(cfg):
        w, steps_run, history = lbfgs_refine(G, cfg, steps_of, w0, noises)
    else:
        w, steps_run, history = adam_refine(G, cfg, steps_of, w0, noises, gens, est_std)
    return finish(G, cfg, w, noises, targets, feature_net, target_features, steps_run,
                  history)


@dataclass
class Steps:
    """What every refinement loop runs: `count` steps of `loss` (images [B, ...] -> [B]),
    with the history kept or not and `on_step` called every REPORT_EVERY steps."""
    count: int
    loss: Callable
    record_history: bool
    on_step: Optional[Callable[[int, int, float], None]]

    def report(self, step: int, rec: torch.Tensor, history: list) -> None:
        """Record a step's losses [B] (when kept) and call `on_step` when due."""
        if self.record_history:
            history.append(rec.detach().cpu())
        if self.on_step is not None and (step % REPORT_EVERY == 0 or step == self.count - 1):
            self.on_step(step + 1, self.count, float(rec.detach().mean()))


def adam_refine(G, cfg: InversionConfig, steps: Steps, w0: torch.Tensor,
                noises: Optional[list], gens: list, w_std: float) -> tuple:
    """NVIDIA's loop ('optimize', and the 'fast' and 'nvidia' hybrids): the latents w0
    [B, k, w_dim] and the noise maps by Adam (Adamax for 'fast') with w noise of w_std.
    Returns (w [B, k, w_dim], steps run [B] int64, history)."""
    w_opt = w0.clone().requires_grad_(True)
    params = [w_opt] + ([n.requires_grad_(True) for n in noises] if noises else [])
    opt = optimizer(cfg, params)
    active = torch.ones(len(w0), dtype=torch.bool, device=w0.device)
    steps_run, history = torch.zeros(len(w0), dtype=torch.int64), []
    for step in range(steps.count):
        if not bool(active.any()):
            break
        for g in opt.param_groups:
            g["lr"] = learning_rate(cfg, step)
        w_noise = per_image_randn(gens, tuple(w_opt.shape[1:]), w0.device)  # [B, k, w_dim]
        rec = steps.loss(synthesize(G, w_opt + w_noise * w_noise_strength(cfg, step, w_std),
                                    noises))                             # [B]
        reg = noise_regularisation(noises) if noises else 0
        steps.report(step, rec, history)
        if cfg.early_stop_loss is not None:   # freeze before this step's update
            active &= rec.detach() >= cfg.early_stop_loss
        steps_run += active.cpu().long()
        opt.zero_grad(set_to_none=True)
        (rec + cfg.noise_reg_weight * reg).sum().backward()   # SUM: each image's own gradient
        frozen = [p.detach()[~active].clone() for p in params] if not bool(active.all()) else None
        opt.step()
        if noises:
            renormalise_noise(noises)
        if frozen is not None:
            with torch.no_grad():
                for p, keep in zip(params, frozen):
                    p[~active] = keep
    return w_opt.detach(), steps_run, history


def lbfgs_refine(G, cfg: InversionConfig, steps: Steps, w0: torch.Tensor,
                 noises: Optional[list]) -> tuple:
    """The 'lbfgs' hybrid: the latents w0 [B, k, w_dim] by BatchedLBFGS, the noise maps by
    Adamax at the 'fast' schedule, both from the same evaluation per step. The line search
    judges the reconstruction loss (the noise penalty does not depend on w).
    Returns (w [B, k, w_dim], steps run [B] int64, history)."""
    opt = BatchedLBFGS(w0.flatten(1), LBFGS_HISTORY, cfg.hybrid_lr)
    noise_opt = optimizer(cfg, [n.requires_grad_(True) for n in noises]) if noises else None
    steps_run, history = torch.zeros(len(w0), dtype=torch.int64), []
    for step in range(steps.count):
        if bool(opt.stopped.all()):
            break
        w = opt.trial().view_as(w0).requires_grad_(True)                 # [B, k, w_dim]
        rec = steps.loss(synthesize(G, w, noises))                       # [B]
        reg = noise_regularisation(noises) if noises else 0
        (rec + cfg.noise_reg_weight * reg).sum().backward()
        steps.report(step, rec, history)
        steps_run += (~opt.stopped).cpu().long()
        opt.observe(rec.detach(), w.grad)
        if cfg.early_stop_loss is not None:
            opt.stop(opt.f < cfg.early_stop_loss)
        if noise_opt is not None:
            noise_step(noise_opt, noises, learning_rate(cfg, step), opt.stopped)
    return opt.x.view_as(w0), steps_run, history


def noise_step(noise_opt: torch.optim.Optimizer, noises: list, lr: float,
               stopped: torch.Tensor) -> None:
    """One Adamax step of the noise maps at lr, renormalised; stopped samples [B] keep theirs."""
    keep = [n.detach()[stopped].clone() for n in noises] if bool(stopped.any()) else None
    for g in noise_opt.param_groups:
        g["lr"] = lr
    noise_opt.step()
    noise_opt.zero_grad(set_to_none=True)
    renormalise_noise(noises)
    if keep is not None:
        with torch.no_grad():
            for n, k in zip(noises, keep):
                n[stopped] = k


@torch.no_grad()
def finish(G, cfg, w_opt, noises, targets, feature_net, target_features, steps,
           history, images: Optional[torch.Tensor] = None) -> InversionResult:
    """Final render without w noise (unless `images` are given), and per-image metrics."""
    noises = [n.detach() for n in noises] if noises else None
    if images is None:
        images = synthesize(G, w_opt, noises)
    rec, dist = reconstruction_loss(cfg, images, targets, feature_net, target_features) \
        if (cfg.mse_weight or feature_net is not None) else (pixel_mse(images, targets), None)
    return InversionResult(
        ws=w_opt.expand(-1, G.num_ws, -1).contiguous(), noises=noises,
        reconstruction=images, mse=pixel_mse(images, targets), psnr=psnr(images, targets),
        ssim=ssim(images, targets), perceptual=dist, loss=rec, steps=steps, history=history)


def reconstruct(G, ws: torch.Tensor, noises: Optional[list] = None) -> torch.Tensor:
    """Render stored inversion outputs exactly: ws [B, num_ws, w_dim] (+ noise maps)."""
    with torch.no_grad():
        return G.synthesis(ws, noise_mode="const", noises=noises)
