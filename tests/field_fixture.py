"""Writers of small random-weight files in the field's encoder layouts, so tests need no
downloads (as nvidia_fixture.py writes NVIDIA pickles):

- pSp / e4e / ReStyle checkpoints: `torch.save({'state_dict': {encoder.*, decoder.*},
  'latent_avg': [n_styles, w_dim], 'opts': {...}})`, what their coaches' __get_save_dict
  writes (training snapshots add optimizer, global_step, best_val_loss and the latent
  discriminator's state);
- ArcFace `model_ir_se50.pth`: a plain state dict of TreB1eN's Backbone.

Key names are the field's (gankit's networks mirror them; the reference match in MODELS.md
checks them against the repositories' own code). The encoders keep the IR-SE50 layout but
default to narrow widths, and the decoder (a rosinality StyleGAN2, written by
test_checkpoints.to_rosinality) is a 32 or 64 px one, so a file is a few MB.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from gankit.loading.field_encoders import ENCODER_TYPES
from gankit.models import irse
from gankit.models.stylegan2 import Generator, GeneratorConfig, MappingConfig, SynthesisConfig

NARROW = (16, 32, 64, 128)        # trunk widths of the test files (published: 64..512)
W_DIM = 64

# family -> (encoder_type, input channels, the options its training script stores)
FAMILIES = {
    "psp": ("GradualStyleEncoder", 3, {"output_size": None, "learn_in_w": False,
                                       "label_nc": 0}),
    "e4e": ("Encoder4Editing", 3, {"stylegan_size": None, "progressive_steps": [0, 20000],
                                   "w_discriminator_lambda": 0.1}),
    "restyle_psp": ("BackboneEncoder", 6, {"output_size": None, "n_iters_per_batch": 3}),
    "restyle_e4e": ("ProgressiveBackboneEncoder", 6, {"output_size": None,
                                                      "n_iters_per_batch": 3}),
}


def decoder(resolution: int = 32, w_dim: int = W_DIM, seed: int = 0) -> Generator:
    """A small StyleGAN2 that rosinality's layout can hold (skip, [1,3,3,1], no clamp)."""
    cfg = GeneratorConfig(
        z_dim=w_dim, w_dim=w_dim, img_resolution=resolution,
        mapping=MappingConfig(num_layers=2, lr_multiplier=0.01),
        synthesis=SynthesisConfig(channel_base=1024, channel_max=32, num_fp16_res=0,
                                  conv_clamp=None, architecture="skip"))
    torch.manual_seed(seed)
    G = Generator(cfg).eval()
    with torch.no_grad():
        for p in G.parameters():
            if p.ndim <= 1:
                p.add_(0.1 * torch.randn_like(p))
        G.mapping.w_avg.normal_(0, 0.5)
    return G


def randomize_batchnorm(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """BatchNorm scales, shifts and running statistics away from identity, so that a key
    copied to the wrong place changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                m.num_batches_tracked.fill_(1000)
                if m.affine:
                    m.weight.copy_(0.5 + 0.5 * torch.rand(n, generator=g))
                    m.bias.copy_(0.1 * torch.randn(n, generator=g))
            elif isinstance(m, torch.nn.PReLU):
                m.weight.copy_(0.1 + 0.3 * torch.rand(m.weight.shape, generator=g))
    return module


def encoder_network(encoder_type: str, n_styles: int, input_nc: int, widths=NARROW,
                    w_dim: int = W_DIM, seed: int = 0) -> torch.nn.Module:
    cls, backbone = ENCODER_TYPES[encoder_type]
    torch.manual_seed(seed)
    net = cls(n_styles, input_nc=input_nc, backbone=backbone, widths=widths, style_dim=w_dim)
    return randomize_batchnorm(net, seed).eval()


def checkpoint_dict(family: str, G: Optional[Generator] = None, widths=NARROW, seed: int = 0,
                    snapshot: bool = False, start_from_latent_avg: bool = True,
                    with_decoder: bool = True, encoder_type: Optional[str] = None) -> dict:
    """The dict their training scripts save, with our random weights."""
    from test_checkpoints import to_rosinality
    G = G if G is not None else decoder()
    kind, input_nc, extra = FAMILIES[family]
    encoder_type = encoder_type or kind
    E = encoder_network(encoder_type, G.num_ws, input_nc, widths, G.w_dim, seed)
    state = {f"encoder.{k}": v.clone() for k, v in E.state_dict().items()}
    if with_decoder:
        state.update({f"decoder.{k}": v for k, v in to_rosinality(G).items()})
    opts = {"exp_dir": "experiment", "dataset_type": "ffhq_encode", "encoder_type": encoder_type,
            "input_nc": input_nc, "batch_size": 8, "learning_rate": 0.0001,
            "start_from_latent_avg": start_from_latent_avg, "checkpoint_path": None,
            "stylegan_weights": "pretrained_models/stylegan2-ffhq-config-f.pt"}
    opts.update({k: (G.img_resolution if v is None else v) for k, v in extra.items()})
    if family.startswith("restyle"):
        opts.pop("start_from_latent_avg")           # ReStyle always starts from latent_avg
    out = {"state_dict": state, "opts": opts}
    if start_from_latent_avg or family.startswith("restyle"):
        out["latent_avg"] = G.mapping.w_avg.detach().clone().repeat(G.num_ws, 1)
    if snapshot:
        out.update(snapshot_extras(E, seed))
    return out


def snapshot_extras(E: torch.nn.Module, seed: int) -> dict:
    """What a training snapshot adds: optimizer state, step, the W discriminator."""
    params = list(E.parameters())[:3]
    opt = torch.optim.Adam(params, lr=1e-4)
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()
    disc = torch.nn.Sequential(torch.nn.Linear(W_DIM, 8), torch.nn.Linear(8, 1))
    return {"global_step": 20000, "best_val_loss": 0.25, "optimizer": opt.state_dict(),
            "discriminator_state_dict": disc.state_dict(),
            "discriminator_optimizer_state_dict": torch.optim.Adam(disc.parameters()).state_dict()}


def write_encoder_checkpoint(path, family: str, **kw) -> Path:
    torch.save(checkpoint_dict(family, **kw), str(path))
    return Path(path)


def arcface_network(widths=NARROW, seed: int = 0, embedding_dim: int = 512) -> irse.Backbone:
    torch.manual_seed(seed)
    return randomize_batchnorm(irse.Backbone(50, "ir_se", widths, embedding_dim), seed).eval()


def write_arcface(path, widths=NARROW, seed: int = 0, legacy: bool = False) -> Path:
    """model_ir_se50.pth: the Backbone's plain state dict (`legacy`: the pre-1.6 format)."""
    torch.save(arcface_network(widths, seed).state_dict(), str(path),
               _use_new_zipfile_serialization=not legacy)
    return Path(path)
