"""Shared fixtures: ONE local Ray cluster and ONE S3-protocol server per pytest session,
plus tiny models written to files (the jobs load models by path, like users do).

Order matters: the S3 server's endpoint and keys are put in the environment *before*
ray.init, so every Ray worker process inherits them (in-process mocks would be invisible to
workers; this server is real, on loopback).
"""
from __future__ import annotations

import os
import socket

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1; sets AWS_* so s3fs (driver and workers) talks to it."""
    from moto.server import ThreadedMotoServer
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def s3_bucket(s3_server):
    import s3fs
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir("gankit-test")
    return "gankit-test"


@pytest.fixture(scope="session")
def ray_cluster(s3_server):
    """The session's Ray cluster: 4 logical CPUs (more than the actors), no dashboard."""
    import ray
    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {k: v for k, v in s3_server.items()}})
    from ray.data import DataContext
    DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


# ----------------------------------------------------------------------------------------
# Tiny models on disk


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


@pytest.fixture(scope="session")
def model_files(tmp_path_factory):
    """{'model': path of a tiny G checkpoint, 'classifier': path of a TorchScript file}."""
    import json

    import torch
    from gankit.checkpoints import save_generator
    root = tmp_path_factory.mktemp("models")
    g_path = root / "tiny_g"
    save_generator(tiny_generator(), g_path)
    c_path = root / "tiny_classifier.pt"
    torch.jit.script(tiny_classifier_module()).save(str(c_path))
    with open(str(c_path) + ".json", "w") as f:   # attribute names beside the scripted file
        json.dump({"attribute_names": ATTRIBUTES}, f)
    g32_path = root / "tiny_g32"
    save_generator(tiny_generator(resolution=32), g32_path)
    return {"model": str(g_path), "classifier": str(c_path), "model32": str(g32_path)}
