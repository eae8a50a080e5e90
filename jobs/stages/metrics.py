"""`gankit metrics`: StyleGAN's disentanglement metrics at scale, Z and W side by side.

    separability  read from a sample dataset (z, w and logit_<attr> columns, sampled without
                  truncation: `gankit sample --space w --classifier ...`, itself sharded over
                  actors); the per-attribute SVMs run in the driver (gankit.latent.metrics)
    ppl           perceptual path length: the n paths are sharded into parts of
                  `rows_per_part` paths, each computed by an actor holding G and the feature
                  net and committed as Parquet (path, distance); the driver reads the
                  distances back and applies the paper's 1st-99th percentile filter

Output under `out`:
    ppl_z/, ppl_w/   part datasets: path int64, distance float64 (d / epsilon^2)
    metrics.json     {"separability": {z, w}, "ppl": {z, w}, "config": ...}; `gankit report
                     --metrics URL` puts both in the report

Determinism: path i's endpoints and t depend only on (seed, i) (gankit.latent.metrics.ppl_endpoints)
and parts start at multiples of `micro_batch`, so every model call sees the same rows as the
one-process `perceptual_path_length(..., batch_size=micro_batch)`: the distances are the same
whatever the worker count. Parts resume like every other stage.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pyarrow as pa

from jobs import config, options, runtime, storage
from jobs.config import Joins, option, override, public_config, require
from jobs.options import ActorOptions, MicroBatchOptions, ModelOptions, StorageOptions
from jobs.runtime import PartWorker
from jobs.stages.rendering import load_models, setup_device
from jobs.storage import PartSpec

PPL_SCHEMA = pa.schema([pa.field("path", pa.int64()), pa.field("distance", pa.float64())])


@dataclass
class MetricsConfig(ModelOptions, MicroBatchOptions, ActorOptions, StorageOptions):
    out: str = option("", "output URL: metrics.json and ppl_<space>/ parts", required=True)
    samples: str = option("", "separability: a sample dataset with z, w and logit_* columns "
                              "(default: skip separability)")
    separability_rows: Optional[int] = option(None, "rows read from --samples (default: all; "
                                                    "the paper's 200,000)")
    keep_fraction: float = option(0.5, "separability: per attribute, the most confident "
                                       "share kept")
    feature_net: str = option("toy", "PPL distance: 'toy', NVIDIA's vgg16.pt, a TorchScript "
                                     "or .pt2 file", identity=True)
    ppl_paths: int = option(0, "PPL paths per space (the paper's 100,000; 0 = skip PPL)",
                            identity=True)
    ppl_spaces: list = option(["z", "w"], "PPL spaces", choices=("z", "w"))
    sampling: str = option("full", "PPL path ends: full (t ~ U(0, 1)) or end (t = 0)",
                           choices=("full", "end"), identity=True)
    epsilon: float = option(1e-4, "PPL step along the path", identity=True)
    crop: bool = option(False, "PPL on the central face region, as NVIDIA's ppl_zfull, "
                               "ppl_wfull, ppl_zend and ppl_wend (their published FFHQ "
                               "numbers); its box downsample follows theirs",
                        identity=Joins(unless=False))
    noise: str = option("random", "PPL noise maps: random (NVIDIA's: fresh noise, here drawn "
                                  "per path from (seed, path), so any sharding gives the same "
                                  "values) or const (G's constant noise, as older gankit outputs)",
                        choices=("random", "const"), identity=Joins(unless="const"))
    seed: int = option(0, "PPL paths and the separability SVM splits", identity=True)
    micro_batch: int = override(MicroBatchOptions, "micro_batch", 64)   # rows: PPL paths
    rows_per_part: int = option(1024, "paths per part: a multiple of micro_batch", identity=True)

    def validate(self) -> None:
        require(bool(self.out), "out", "must be an output URL (a local path or s3://...)")
        require(bool(self.samples) or self.ppl_paths > 0, "samples",
                "give a sample dataset (separability) and/or ppl_paths > 0 (PPL)")
        require(self.separability_rows is None or self.separability_rows >= 10,
                "separability_rows", "must be >= 10 or null (every row)")
        require(0 < self.keep_fraction <= 1, "keep_fraction", "must be in (0, 1]")
        require(self.ppl_paths >= 0, "ppl_paths", f"must be >= 0 (got {self.ppl_paths})")
        require(len(self.ppl_spaces) > 0, "ppl_spaces", "must list z and/or w")
        require(self.epsilon > 0, "epsilon", f"must be > 0 (got {self.epsilon})")
        require(self.seed >= 0, "seed", f"must be >= 0 (got {self.seed})")
        require(self.rows_per_part >= 1 and self.rows_per_part % self.micro_batch == 0,
                "rows_per_part", f"must be a positive multiple of micro_batch "
                f"({self.micro_batch}), got {self.rows_per_part}")
        options.validate(self)

    def ppl_config(self, space: str):
        from gankit.latent.metrics import PPLConfig
        return PPLConfig(n=self.ppl_paths, space=space, sampling=self.sampling,
                         epsilon=self.epsilon, batch_size=self.micro_batch, seed=self.seed,
                         crop=self.crop, noise=self.noise)

    def ppl_precision(self) -> str:
        """'auto' means fp32 here on every device, as NVIDIA forces fp32 for PPL: a step of
        epsilon = 1e-4 is below the resolution of fp16 and bf16 images."""
        return "fp32" if self.precision == "auto" else self.precision

    def ppl_identity(self, space: str) -> dict:
        # Outputs written before crop and noise existed used no crop and const noise: those
        # join the identity only when they differ (Joins), so such outputs resume under
        # --noise const, and the new default (random noise) never mixes with them.
        ident = {"space": space, **config.identity_of(self)}
        return dict(ident, **options.identity(self, self.ppl_precision()))


# ----------------------------------------------------------------------------------------
# Separability from a sample dataset


def sample_latents(url: str, limit: Optional[int], options: Optional[dict] = None) -> tuple:
    """The first `limit` rows (None = all) of a sample dataset, streamed: z [N, z_dim],
    w [N, w_dim], logits [N, A] and the attribute names (from the logit_* columns)."""
    store = storage.open_store(url, options, must_exist=True)
    _, schema, _ = storage.dataset_rows(store)
    missing = [c for c in ("z", "w") if c not in schema.names]
    names = [f.name[len("logit_"):] for f in schema if f.name.startswith("logit_")]
    if missing or not names:
        raise ValueError(f"samples {url}: separability needs z, w and logit_<attr> columns "
                         f"(gankit sample --space w --classifier ...); missing "
                         f"{missing or 'logit_*'}")
    limit = limit or np.iinfo(np.int64).max
    zs, ws, logits, n = [], [], [], 0
    for t in storage.iter_tables(store, ["z", "w"] + [f"logit_{a}" for a in names]):
        t = t.slice(0, min(len(t), limit - n))
        zs.append(np.stack(t.column("z").to_numpy(zero_copy_only=False)))
        ws.append(np.stack(t.column("w").to_numpy(zero_copy_only=False)))
        logits.append(np.stack([t.column(f"logit_{a}").to_numpy() for a in names], 1))
        n += len(t)
        if n >= limit:
            break
    return np.concatenate(zs), np.concatenate(ws), np.concatenate(logits), names


def separability(cfg: MetricsConfig) -> dict:
    """{z: ..., w: ...}: gankit.latent.metrics.linear_separability on the same rows in both
    spaces."""
    from gankit.latent.metrics import linear_separability
    z, w, logits, names = sample_latents(cfg.samples, cfg.separability_rows, cfg.storage)
    runtime.log.info(f"[metrics] separability on {len(z)} samples, {len(names)} attributes")
    return {s: linear_separability(x, logits, cfg.keep_fraction, cfg.seed, names)
            for s, x in (("z", z), ("w", w))}


# ----------------------------------------------------------------------------------------
# Perceptual path length, sharded


class PathLengths(PartWorker):
    """Ray Data callable: holds G and the feature net, writes parts of per-path distances."""

    job = "ppl"

    def __init__(self, cfg: dict, space: str, device: str, precision: str, cpus: float, out):
        super().__init__(out)
        from gankit.models.perceptual import load_feature_net
        self.cfg = MetricsConfig(**cfg)
        self.space = space
        device, precision = setup_device(device, precision, cpus)
        self.G, _ = load_models(self.cfg.model, None, device, precision)
        net = load_feature_net(self.cfg.feature_net, device)
        self.distance = lambda a, b: net.distance(net(a), net(b))     # [B]

    def write_part(self, spec: PartSpec, part: runtime.PartContext) -> None:
        from gankit.latent.metrics import ppl_distances
        rows = range(spec.start, spec.stop)
        d = ppl_distances(self.G, self.distance, self.cfg.ppl_config(self.space), rows)
        table = pa.table({"path": np.arange(spec.start, spec.stop, dtype=np.int64),
                          "distance": d}, schema=PPL_SCHEMA)
        with part.writer(PPL_SCHEMA) as w:
            w.write(table)
            w.commit({"index": spec.index, "start": spec.start, "stop": spec.stop, "errors": 0})


def path_lengths(cfg: MetricsConfig, space: str) -> dict:
    """Compute (or resume) the ppl_<space> parts, then the summary over all n distances."""
    from gankit.latent.metrics import ppl_summary
    out = storage.open_store(f"{cfg.out.rstrip('/')}/ppl_{space}", cfg.storage, create=True)
    plan = storage.part_ranges(cfg.ppl_paths, cfg.rows_per_part)
    actors = runtime.actors_for(cfg, len(plan))
    precision = runtime.job_precision(cfg.ppl_precision(), actors)
    kwargs = {"cfg": config.config_dict(cfg), "space": space, "device": actors.device,
              "precision": precision, "cpus": actors.num_cpus}
    runtime.run_parts(f"ppl_{space}", out, plan, PathLengths, kwargs, cfg.ppl_identity(space),
                      public_config(cfg), actors)
    d = storage.read_table(out, ["distance"]).column("distance").to_numpy()   # [n], path order
    return ppl_summary(d, cfg.ppl_config(space))


# ----------------------------------------------------------------------------------------
# Driver and command line


def run_metrics(cfg: MetricsConfig) -> dict:
    """Separability and/or PPL per cfg; writes and returns metrics.json's content."""
    cfg.validate()
    if cfg.ppl_paths:
        runtime.check_model("model", cfg.model, "generator")
    out = storage.open_store(cfg.out, cfg.storage, create=True)
    result = {"separability": separability(cfg) if cfg.samples else None, "ppl": None}
    if cfg.ppl_paths:
        result["ppl"] = {s: path_lengths(cfg, s) for s in cfg.ppl_spaces}
    result["config"] = public_config(cfg)
    result["warnings"] = few_samples(result)
    out.write_json("metrics.json", result)
    for key in ("separability", "ppl"):
        for space, v in (result[key] or {}).items():
            runtime.log.info(f"[metrics] {key} {space}: " + json.dumps(
                {k: v[k] for k in ("score", "mean", "mean_filtered") if k in v}))
    return result


def few_samples(result: dict) -> list:
    """gankit.caveats' sentences for separability and PPL on too few samples, each also
    warned on the console (a score of 1.000 from 50 samples looks like a perfect one)."""
    from gankit.caveats import CaveatWarning, ppl_caveats, separability_caveats
    found = separability_caveats(result["separability"]) + ppl_caveats(result["ppl"])
    for sentence in found:
        warnings.warn(sentence, CaveatWarning, stacklevel=2)
    return found


__all__ = ["MetricsConfig", "run_metrics", "sample_latents"]
