"""Plain helpers the tests share (fixtures are in conftest.py): tiny models and a free port."""
from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------------------
# Tiny models


def tiny_generator_config(resolution: int = 8):
    """8px: ~0.2 ms/row on one CPU thread; 32px (wider): ~1.4 ms/row."""
    from gankit.models.stylegan2 import GeneratorConfig, MappingConfig, SynthesisConfig
    base, top = (64, 16) if resolution <= 8 else (1024, 32)
    return GeneratorConfig(z_dim=16, w_dim=16, img_resolution=resolution,
                           synthesis=SynthesisConfig(channel_base=base, channel_max=top),
                           mapping=MappingConfig(num_layers=2))


def tiny_generator(seed: int = 0, resolution: int = 8):
    import torch
    from gankit.models.stylegan2 import Generator
    torch.manual_seed(seed)
    G = Generator(tiny_generator_config(resolution)).eval()
    with torch.no_grad():
        G.mapping.w_avg.normal_(0, 0.5)   # non-zero so truncation shows
    return G


ATTRIBUTES = ["smile", "age", "glasses"]


def tiny_classifier_module(seed: int = 0):
    """A small scripted-able classifier: images [N,3,H,W] -> logits [N,3]."""
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.head = nn.Linear(4, len(ATTRIBUTES))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.conv(x)).mean(dim=[2, 3]))

    torch.manual_seed(seed)
    return Tiny().eval()


# ----------------------------------------------------------------------------------------
# The toy model's samples and fit, and a report over them (in-process: one part, no Ray)

REPORT_SAMPLES = 300


def fit_toy_samples(root) -> None:
    """REPORT_SAMPLES toy samples (W) in root/samples, their W boundaries in root/fit."""
    from jobs import storage
    from jobs.runtime import PartContext
    from jobs.stages.fit import FitConfig, run_fit
    from jobs.stages.sample import SampleConfig, Sampler
    cfg = SampleConfig(model="toy", classifier="toy", count=REPORT_SAMPLES, space="w",
                       out=f"{root}/samples")
    out = storage.open_store(cfg.out, create=True)
    spec = storage.PartSpec(0, 0, REPORT_SAMPLES)
    Sampler(cfg.__dict__, "cpu", "fp32", 2, out).write_part(spec, PartContext(out, spec))
    run_fit(FitConfig(samples=cfg.out, out=f"{root}/fit", spaces=["w"], fraction=0.1))


def make_tiny_report(root, **report_kwargs) -> dict:
    """The report stage over root/samples and root/fit (made by fit_toy_samples if not
    there yet) with `report_kwargs`; returns report.json's dict."""
    from jobs import storage
    from jobs.stages.report import ReportConfig, run_report
    root = str(root)
    if not storage.open_store(f"{root}/fit").exists("boundaries.json"):
        fit_toy_samples(root)
    return run_report(ReportConfig(fit=f"{root}/fit", samples=f"{root}/samples",
                                   **report_kwargs))
