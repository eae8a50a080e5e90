"""Training of the attribute classifier on rendered images with their true labels."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from gankit.images import from_uint8
from gankit.models.classifier import AttributeClassifier, ClassifierConfig


@dataclass
class ClassifierTrainConfig:
    steps: int = 3000           # optimiser steps
    batch_size: int = 128
    lr: float = 2e-3            # AdamW, cosine decay to 0
    weight_decay: float = 1e-4
    augment: bool = True        # small random translations (+-2 px) and brightness jitter
    seed: int = 0
    device: str = "cpu"


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:  # [N, 3, H, W]
    """Random translation by up to 2 px (reflect padding) and +-10% contrast/brightness."""
    n = x.shape[0]
    shift = torch.randint(-2, 3, (2,), generator=gen).tolist()
    x = torch.roll(F.pad(x, [2, 2, 2, 2], mode="reflect"), shifts=shift, dims=(2, 3))[..., 2:-2, 2:-2]
    gain = 1 + 0.1 * (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1)
    bias = 0.1 * (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1)
    return (x * gain.to(x.device) + bias.to(x.device)).clamp(-1, 1)


def train_classifier(images: np.ndarray,        # [N, H, W, 3] uint8
                     labels: np.ndarray,        # [N, A] bool
                     attribute_names: list,
                     cfg: ClassifierTrainConfig,
                     model_cfg: ClassifierConfig = None,
                     progress: bool = True) -> AttributeClassifier:
    from tqdm import trange
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model_cfg = model_cfg or ClassifierConfig(attribute_names=list(attribute_names),
                                              resolution=images.shape[1])
    model = AttributeClassifier(model_cfg).to(cfg.device).train()
    x_all = from_uint8(images).to(cfg.device)                       # [N, 3, H, W]
    y_all = torch.as_tensor(labels, dtype=torch.float32, device=cfg.device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    for step in trange(cfg.steps, disable=not progress, desc="classifier",
                       mininterval=1 if os.isatty(2) else 30):
        idx = torch.randint(0, len(x_all), (cfg.batch_size,), generator=gen).to(cfg.device)
        x = augment(x_all[idx], gen) if cfg.augment else x_all[idx]
        loss = F.binary_cross_entropy_with_logits(model(x), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def predict_logits(model, images: np.ndarray, batch_size: int = 512, device: str = "cpu") -> np.ndarray:
    """uint8 images [N, H, W, 3] -> logits [N, A] float32."""
    out = []
    for i in range(0, len(images), batch_size):
        out.append(model(from_uint8(images[i:i + batch_size]).to(device)).float().cpu())
    return torch.cat(out).numpy()
