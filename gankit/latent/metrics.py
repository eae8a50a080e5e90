"""Distribution, disentanglement and reconstruction metrics (pure numpy / torch)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from gankit.latent.logits import sigmoid


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets [N, F]:
    |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)).
    Tr((S_a S_b)^(1/2)) is the sum of square roots of the eigenvalues of S_a S_b, which are
    real and non-negative for covariance matrices (tiny negative rounding is clipped)."""
    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    eig = np.linalg.eigvals(cov_a @ cov_b)
    tr_sqrt = np.sqrt(np.clip(eig.real, 0, None)).sum()
    return float(np.square(mu_a - mu_b).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_sqrt)


# ----------------------------------------------------------------------------------------
# Shared sampling helpers: z rows from the determinism contract, images without noise


def _device(G) -> torch.device:
    return next(G.parameters()).device


def _synthesize(G, ws: torch.Tensor, noises: Optional[list] = None) -> torch.Tensor:
    """ws [N, num_ws, w_dim] -> images [N, C, H, W]: the given noise maps, else G's const
    noise (no variation from noise)."""
    kw = {"noises": noises} if noises is not None else {}
    with torch.no_grad():
        return G.synthesis(ws.to(_device(G)), noise_mode="const", **kw)


def _map(G, z) -> torch.Tensor:
    """z [N, z_dim] -> ws [N, num_ws, w_dim], no truncation."""
    z = torch.as_tensor(np.asarray(z), dtype=torch.float32, device=_device(G))
    with torch.no_grad():
        return G.mapping(z, None, truncation_psi=1)


# ----------------------------------------------------------------------------------------
# Linear separability (StyleGAN, Karras et al. 2019, sec. 4.2)


def conditional_entropy(y: np.ndarray, x: np.ndarray) -> float:
    """H(Y|X) in nats for two discrete label vectors [N]: sum_x p(x) H(Y | X=x)."""
    y, x = np.asarray(y).reshape(-1), np.asarray(x).reshape(-1)
    if y.shape != x.shape or y.size == 0:
        raise ValueError(f"y and x must be non-empty and the same length, got {y.size}, {x.size}")
    h = 0.0
    for xv in np.unique(x):
        y_x = y[x == xv]
        p_y = np.unique(y_x, return_counts=True)[1] / y_x.size    # p(y | x)
        h -= (y_x.size / y.size) * float(np.sum(p_y * np.log(p_y)))
    return h


def _svm_predictions(latents: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """Fit a linear SVM (primal, with intercept) and predict the training points back."""
    from sklearn.svm import LinearSVC
    if np.unique(labels).size < 2:   # one class only: the SVM predicts it perfectly
        return labels.copy()
    svm = LinearSVC(dual=False, C=1.0, max_iter=1000, random_state=seed)
    return svm.fit(latents, labels).predict(latents)


def linear_separability(latents, logits, keep_fraction: float = 0.5, seed: int = 0,
                        attribute_names=None) -> dict:
    """StyleGAN linear separability of latents [N, D] w.r.t. classifier logits [N, A].

    Per attribute: keep the `keep_fraction` most confident samples by |logit|, label them
    logit > 0, fit a linear SVM on the latents, and measure the conditional entropy H(Y|X)
    of the classifier label Y given the SVM's prediction X (nats). Score = exp(sum_a H_a);
    1 means every attribute is linearly separable (the paper reports Z 165.0, W 3.74 on
    FFHQ with 40 CelebA attributes).
    """
    X = np.asarray(latents, np.float32).reshape(len(latents), -1)   # [N, D]
    logits = np.asarray(logits, np.float32)                         # [N, A]
    if logits.ndim != 2 or logits.shape[0] != X.shape[0]:
        raise ValueError(f"logits must be [{X.shape[0]}, A], got {list(logits.shape)}")
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
    names = list(attribute_names or [f"attr{a}" for a in range(logits.shape[1])])
    keep = max(2, int(round(keep_fraction * X.shape[0])))
    entropy = {}
    for a, name in enumerate(names):
        idx = np.argsort(-np.abs(logits[:, a]), kind="stable")[:keep]  # most confident
        y = logits[idx, a] > 0
        entropy[name] = conditional_entropy(y, _svm_predictions(X[idx], y, seed))
    return {"score": float(np.exp(sum(entropy.values()))), "entropy": entropy,
            "num_samples": int(X.shape[0]), "num_kept": keep}


def sample_latents_and_logits(G, classifier, n: int, seed: int = 0,
                              batch_size: int = 256) -> tuple:
    """n samples without truncation: z [n, z_dim], w [n, w_dim], logits [n, A] (numpy)."""
    from gankit.latent.latents import sample_z
    zs, ws, logits = [], [], []
    for start in range(0, n, batch_size):
        z = sample_z(seed, range(start, min(n, start + batch_size)), G.z_dim)   # [B, z_dim]
        w_all = _map(G, z)                                                      # [B, L, w_dim]
        with torch.no_grad():
            logits.append(classifier(_synthesize(G, w_all)).float().cpu().numpy())
        zs.append(z)
        ws.append(w_all[:, 0].cpu().numpy())
    return np.concatenate(zs), np.concatenate(ws), np.concatenate(logits)


def separability_z_w(G, classifier, n: int, seed: int = 0, batch_size: int = 256,
                     keep_fraction: float = 0.5) -> dict:
    """Linear separability of the same n samples in Z and in W, side by side."""
    z, w, logits = sample_latents_and_logits(G, classifier, n, seed, batch_size)
    names = list(getattr(classifier, "attribute_names", []) or []) or None
    return {space: linear_separability(x, logits, keep_fraction, seed, names)
            for space, x in (("z", z), ("w", w))}


# ----------------------------------------------------------------------------------------
# Perceptual path length (StyleGAN, sec. 4.1; StyleGAN2-ADA metrics/perceptual_path_length)


def feature_distance(feature_fn: Callable) -> Callable:
    """images -> features [N, F] becomes (images_a, images_b) -> squared L2 distance [N]."""
    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = feature_fn(a).flatten(1), feature_fn(b).flatten(1)
        return (fa.double() - fb.double()).square().sum(1)
    return distance


def lpips_torchscript_features(path: str, device: str = "cpu") -> Callable:
    """NVIDIA's LPIPS-VGG16 TorchScript (`vgg16.pt`) as a feature function: images in
    [-1, 1] are mapped to [0, 255], and the module returns its normalised LPIPS features,
    whose squared L2 distance is the LPIPS distance. A `.pt2` export of it loads too."""
    from gankit.loading.zoo import load_program
    vgg16 = load_program(path, device).eval()

    def features(images: torch.Tensor) -> torch.Tensor:
        x = (images.to(torch.float32) + 1) * 127.5
        if x.shape[-1] > 256:   # the StyleGAN2-ADA protocol evaluates LPIPS at 256 px
            x = torch.nn.functional.interpolate(x, size=(256, 256), mode="area")
        return vgg16(x, resize_images=False, return_lpips=True)
    return features


PPL_NOISE = ("random", "const")
NOISE_STREAM = 1   # SeedSequence word that keeps a path's noise apart from its z draws


@dataclass
class PPLConfig:
    n: int = 2000                  # number of paths (the paper: 100K)
    space: str = "z"               # 'z': slerp between z's; 'w': lerp between w's
    sampling: str = "full"         # 'full': t ~ U(0, 1); 'end': t = 0 (path endpoints)
    epsilon: float = 1e-4          # step along the path
    batch_size: int = 64
    seed: int = 0
    crop: bool = False             # NVIDIA's ppl_zfull/wfull/zend/wend: the central face only
    noise: str = "random"          # 'random': per-path noise maps (NVIDIA draws fresh noise
                                   # per batch); 'const': G's noise_const buffers

    def check(self) -> None:
        if self.space not in ("z", "w"):
            raise ValueError(f"space must be 'z' or 'w', got {self.space!r}")
        if self.sampling not in ("full", "end"):
            raise ValueError(f"sampling must be 'full' or 'end', got {self.sampling!r}")
        if self.noise not in PPL_NOISE:
            raise ValueError(f"noise must be one of {PPL_NOISE}, got {self.noise!r}")
        if self.n < 1 or self.batch_size < 1 or not self.epsilon > 0:
            raise ValueError("n and batch_size must be >= 1 and epsilon > 0")


def ppl_endpoints(cfg: PPLConfig, z_dim: int, rows: Optional[range] = None) -> tuple:
    """The paths' z endpoints and positions: path i has z0 = row i and z1 = row n + i of
    seed's stream (latents.sample_z), t = the i-th draw of default_rng(seed). `rows` picks a
    shard of paths (default: all n), so shards computed apart equal the whole.
    Returns z0, z1 [len(rows), z_dim], t [len(rows)]."""
    from gankit.latent.latents import sample_z
    rows = range(cfg.n) if rows is None else rows
    z0 = sample_z(cfg.seed, rows, z_dim)
    z1 = sample_z(cfg.seed, range(cfg.n + rows.start, cfg.n + rows.stop), z_dim)
    t = np.random.default_rng(cfg.seed).uniform(0, 1, cfg.n).astype(np.float32)[rows.start:rows.stop]
    return z0, z1, t * (1 if cfg.sampling == "full" else 0)


def _path_ws(G, z0, z1, t, cfg: PPLConfig) -> tuple:
    """ws at t and t + epsilon on one batch of paths: two [B, num_ws, w_dim]."""
    from gankit.latent.latents import lerp, slerp
    t = torch.as_tensor(t, dtype=torch.float32)[:, None]               # [B, 1]
    z0, z1 = torch.as_tensor(z0), torch.as_tensor(z1)
    if cfg.space == "z":
        return _map(G, slerp(z0, z1, t)), _map(G, slerp(z0, z1, t + cfg.epsilon))
    w0, w1 = _map(G, z0), _map(G, z1)                                  # [B, L, w_dim]
    t = t[:, :, None].to(w0.device)                                    # [B, 1, 1]
    return lerp(w0, w1, t), lerp(w0, w1, t + cfg.epsilon)


def ppl_distances(G, distance_fn: Callable, cfg: PPLConfig,
                  rows: Optional[range] = None) -> np.ndarray:
    """Per-path d(G(x(t)), G(x(t + eps))) / eps^2, float64 [len(rows)] (default: all n)."""
    cfg.check()
    rows = range(cfg.n) if rows is None else rows
    if rows.step != 1 or not 0 <= rows.start <= rows.stop <= cfg.n:
        raise ValueError(f"rows must be a contiguous range inside [0, {cfg.n}), got {rows}")
    z0, z1, t = ppl_endpoints(cfg, G.z_dim, rows)
    resolution = G.img_resolution if cfg.crop else None
    out = []
    for s in range(0, len(rows), cfg.batch_size):
        b = slice(s, s + cfg.batch_size)
        ws_a, ws_b = _path_ws(G, z0[b], z1[b], t[b], cfg)
        paths = range(rows.start + s, rows.start + s + len(ws_a))
        noises = path_noises(G, cfg.seed, paths) if cfg.noise == "random" else None
        with torch.no_grad():
            images = [ppl_view(_synthesize(G, ws, noises), resolution, cfg.crop)
                      for ws in (ws_a, ws_b)]                           # both ends, same noise
            d = distance_fn(*images)                                     # [B]
        out.append(d.double().cpu().numpy() / cfg.epsilon ** 2)
    return np.concatenate(out) if out else np.zeros(0)


def path_noises(G, seed: int, paths: range) -> Optional[list]:
    """Noise maps for a batch of paths, one [B, 1, r, r] per noise layer of G (None when G
    has none). Path i draws from a torch generator on G's device seeded by (seed, i) only,
    so a path sees the same noise whatever the batch or shard it falls in; both images of a
    path share it, as both halves of NVIDIA's batch share its noise buffers."""
    layers = getattr(G.synthesis, "noise_layers", lambda: [])()
    if not layers:
        return None
    device = _device(G)
    per_path = []
    for i in paths:
        key = np.random.SeedSequence([seed, i, NOISE_STREAM]).generate_state(1, np.uint64)[0]
        gen = torch.Generator(device=device).manual_seed(int(key) >> 1)   # 63-bit seed
        per_path.append([torch.randn([1, 1, l.resolution, l.resolution], generator=gen,
                                     device=device) for l in layers])
    return [torch.cat(maps) for maps in zip(*per_path)]                 # [B, 1, r, r] each


def ppl_crop(images: torch.Tensor) -> torch.Tensor:
    """NVIDIA's PPL face crop (`crop=True`): rows [3H/8, 7H/8), columns [2W/8, 6W/8) of a
    square image, in units of H // 8 as its sampler computes them.
    [N, C, H, H] -> [N, C, H/2, H/2]"""
    if images.shape[2] != images.shape[3]:
        raise ValueError(f"PPL crop needs square images, got {list(images.shape[2:])}")
    c = images.shape[2] // 8
    return images[:, :, c * 3: c * 7, c * 2: c * 6]


def ppl_view(images: torch.Tensor, resolution: Optional[int], crop: bool) -> torch.Tensor:
    """What the feature net sees. Without crop: the rendered images (an LPIPS net
    downsamples them to 256 itself). With crop: NVIDIA's sampler, the crop, then a box
    downsample by G's resolution // 256: the crop of a 1024 px face reaches VGG at 128 px."""
    if not crop:
        return images
    x = ppl_crop(images)                                                 # [N, C, h, h]
    factor = resolution // 256
    if factor > 1:
        n, ch, h, w = x.shape
        x = x.reshape(n, ch, h // factor, factor, w // factor, factor).mean([3, 5])
    return x


def ppl_summary(d: np.ndarray, cfg: PPLConfig) -> dict:
    """The reported numbers from all n per-path distances: `mean`, and `mean_filtered`, the
    paper's outlier-robust mean over the distances between the 1st and 99th percentiles."""
    lo = np.percentile(d, 1, method="lower")
    hi = np.percentile(d, 99, method="higher")
    kept = d[(d >= lo) & (d <= hi)]
    return {"mean": float(d.mean()), "mean_filtered": float(kept.mean()),
            "median": float(np.median(d)), "n": int(len(d)), "space": cfg.space,
            "sampling": cfg.sampling, "epsilon": cfg.epsilon, "crop": cfg.crop,
            "noise": cfg.noise}


def perceptual_path_length(G, distance_fn: Callable, n: int = 2000, space: str = "z",
                           sampling: str = "full", epsilon: float = 1e-4,
                           batch_size: int = 64, seed: int = 0, crop: bool = False,
                           noise: str = "random") -> dict:
    """StyleGAN perceptual path length over n paths in one process (see ppl_summary).
    `distance_fn(images_a, images_b) -> [N]`, e.g. feature_distance(classifier.features).
    NVIDIA's published numbers: crop=True, noise='random', LPIPS-VGG16, n=50,000.
    jobs/stages/metrics.py shards the same paths over actors."""
    cfg = PPLConfig(n=n, space=space, sampling=sampling, epsilon=epsilon,
                    batch_size=batch_size, seed=seed, crop=crop, noise=noise)
    return ppl_summary(ppl_distances(G, distance_fn, cfg), cfg)


# ----------------------------------------------------------------------------------------
# Correlation of attribute scores (InterFaceGAN sec. 3.3)


def correlation_matrix(scores) -> np.ndarray:
    """Pearson correlation between the columns of scores [N, A] -> [A, A]. A constant
    column has no defined correlation: its row and column are NaN (diagonal 1)."""
    s = np.asarray(scores, np.float64)
    if s.ndim != 2 or s.shape[0] < 2:
        raise ValueError(f"scores must be [N >= 2, A], got {list(s.shape)}")
    c = s - s.mean(0)
    norm = np.sqrt(np.square(c).sum(0))                                  # [A]
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (c.T @ c) / np.outer(norm, norm)
    np.fill_diagonal(corr, 1.0)
    return np.clip(corr, -1, 1)


def toy_correlations(G, classifier, n: int = 2000, seed: int = 0,
                     batch_size: int = 256) -> dict:
    """The toy world's three [A, A] correlation matrices side by side: classifier
    probabilities on generated samples, on rendered (real) faces, and the true labels of
    those faces (toyfaces factors)."""
    from gankit.images import from_uint8
    from gankit.toy import toyfaces
    _, _, logits = sample_latents_and_logits(G, classifier, n, seed, batch_size)
    factors = toyfaces.sample_factors(n, seed)
    real = []
    for s in range(0, n, batch_size):
        images = from_uint8(toyfaces.render(toyfaces.take(factors, slice(s, s + batch_size)),
                                            G.img_resolution)).to(_device(G))
        with torch.no_grad():
            real.append(classifier(images).float().cpu().numpy())
    return {"attribute_names": list(classifier.attribute_names),
            "generated": correlation_matrix(sigmoid(logits)),
            "real": correlation_matrix(sigmoid(np.concatenate(real))),
            "true": correlation_matrix(toyfaces.label_matrix(factors).astype(np.float64))}


def pixel_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] x2 -> [B]
    return (a - b).square().mean(dim=[1, 2, 3])


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[B] PSNR in dB of images in [-1, 1], peak-to-peak 2: 10 log10(4 / MSE)."""
    return 10 * torch.log10(4 / pixel_mse(a, b).clamp_min(1e-12))


def gaussian_window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-x.square() / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]                                       # [size, size]


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """[B] SSIM (Wang et al. 2004) of images in [-1, 1], computed on [0, 1] (L = 1,
    K1 = 0.01, K2 = 0.03), gaussian window 11 / sigma 1.5 (shrunk to the image), valid
    positions only, mean over positions and channels. Float64: the variances are
    differences of nearly equal moments, which float32 gets wrong by ~1e-7 (vs C2 = 9e-4)."""
    x, y = (a.double() + 1) / 2, (b.double() + 1) / 2
    size = min(window, x.shape[2], x.shape[3])
    c = x.shape[1]
    k = gaussian_window(size, sigma).to(x.device, x.dtype).expand(c, 1, size, size)
    blur = lambda t: F.conv2d(t, k, groups=c)                            # noqa: E731
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx.square()
    syy = blur(y * y) - my.square()
    sxy = blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx.square() + my.square() + c1) * (sxx + syy + c2))
    return s.mean(dim=[1, 2, 3]).float()


# ----------------------------------------------------------------------------------------
# The optimisation
