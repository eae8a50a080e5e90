"""What a model actor does with its models: load them at a precision, render, label.

Shared by the stages that hold a generator (sample, edit, invert, metrics, dataset) or a
classifier (label), so no stage imports another for these.
"""
from __future__ import annotations

from typing import Optional

import numpy as np


def setup_device(device: str, precision: str, cpus: Optional[float]) -> tuple:
    """(device, precision) of an actor: the device resolved ('auto' -> what it sees), the
    job's precision (resolved once, by the driver: runtime.job_precision) checked on it, and
    the backends set for them (deterministic kernels, TF32 only for 'tf32'). A CPU actor
    runs `cpus` torch threads."""
    from gankit import precision as numerics
    from jobs.runtime import resolve_device
    if precision == "auto":
        raise ValueError("setup_device takes the job's resolved precision "
                         "(runtime.job_precision), not 'auto'")
    device = resolve_device(device)
    numerics.check(precision, device)
    threads = int(cpus) if cpus and not device.startswith("cuda") else None
    numerics.configure_backends(device, precision, threads)
    return device, precision


def load_models(model: str, classifier: Optional[str], device: str, precision: str = "fp32",
                classifier_input: Optional[dict] = None):
    """Generator (eval, on `device`, at `precision`) and optional classifier."""
    from gankit.loading import zoo
    G = zoo.load_generator(model, device=device).eval().requires_grad_(False)
    if hasattr(G, "set_precision"):
        G.set_precision(precision)
    C = None
    if classifier:
        C = zoo.load_classifier(classifier, device=device, input_spec=classifier_input).eval()
    return G, C


def classify(C, images, precision: str) -> np.ndarray:
    """images [M, 3, H, W] in [-1, 1] on C's device -> logits [M, A] float32."""
    import torch

    from gankit import precision as numerics
    with torch.no_grad(), numerics.autocast(images.device.type, precision):
        return C(images).float().cpu().numpy()


def render_and_label(G, C, ws, image_size: Optional[int] = None, noises: Optional[list] = None,
                     precision: str = "fp32", deltas: Optional[dict] = None) -> tuple:
    """ws [M, num_ws, w_dim] -> (uint8 images [M, S, S, 3] on the host, logits [M, A]
    float32 or None). S = image_size (an antialiased downscale) or G's resolution.

    `noises`: per noise layer [M, 1, r, r] maps (an inversion's), else G's const noise. The
    classifier sees the stored 8-bit pixels mapped back to [-1, 1] (what `gankit label`
    decodes from a PNG), quantised and downscaled on the device. `deltas`: each row's PTI
    change of G (gankit.latent.pti), where the latents are PTI pivots."""
    from gankit.images import dequantize, downscale, quantize
    tuned = {} if deltas is None else {"deltas": deltas}
    img = G.synthesis(ws, noise_mode="const", noises=noises, **tuned)  # [M, 3, H, W], [-1, 1]
    if image_size:
        img = downscale(img, image_size)                           # [M, 3, S, S]
    u8 = quantize(img)                                             # [M, S, S, 3] uint8
    logits = classify(C, dequantize(u8), precision) if C is not None else None
    return u8.cpu().numpy(), logits
