"""The sample stage: draw latents, map them to W / W+, optionally render and label.

Rows: sample_id i in [0, count) draws z from a generator seeded by (seed, i) only. Part k
holds rows [k * rows_per_part, (k + 1) * rows_per_part). Inside a part the models run on
micro-batches of exactly `micro_batch` rows aligned to the part's first row (the last one
padded): kernels choose their algorithm by batch shape, so this is what makes w, images and
logits bit-identical whatever the worker count, batch_size or number of restarts (on one
kind of device: a CPU and a GPU, or two GPU models, round differently; z never differs).

Output schema (Parquet, one file per part):
    sample_id  int64
    z          fixed_size_list<float32>[z_dim]
    w          fixed_size_list<float32>[w_dim]                (space 'w')
    wp         fixed_size_list<float32>[num_ws * w_dim]       (space 'wp', field metadata
                                                               shape = [num_ws, w_dim])
    image      struct<bytes: binary, path: string>  PNG      (images)
    logit_<a>  float32, one per classifier attribute          (classifier)
Labels are computed on the stored 8-bit image (what `gankit label` would see), not on the
float render, so relabeling a sample dataset reproduces its logits.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pyarrow as pa

from jobs import runtime, storage
from jobs.runtime import ConfigError, PartWorker, choice, require
from jobs.storage import PartSpec, PartWriter

SPACES = ("z", "w", "wp")


@dataclass
class SampleConfig:
    model: str = "toy"                 # generator: 'toy' or a checkpoint path
    count: int = 1000                  # rows: sample_id 0 .. count-1
    seed: int = 0                      # row i draws z from a generator seeded by (seed, i)
    space: str = "w"                   # latents stored besides z: 'z' (none), 'w', 'wp' (W+)
    truncation: float = 1.0            # truncation psi (1 = no truncation)
    truncation_cutoff: Optional[int] = None  # truncate only the first N W+ layers (None = all)
    images: bool = False               # render and store PNG images
    classifier: Optional[str] = None   # add logit_<attr> columns: 'toy', a .pt/.safetensors
                                       # file or 'package.module:factory'
    out: str = ""                      # output URL: a local path or s3://bucket/prefix
    rows_per_part: int = 1000          # rows per part file; fixed row ranges per part
    micro_batch: int = 16              # rows per model call; outputs depend on it, so it
                                       # is part of the job's identity
    batch_size: int = 256              # rows per actor step and Parquet row group (memory
                                       # knob; rows do not depend on it)
    workers: int = 0                   # actors; 0 = one per GPU, or CPUs - 1 on CPU
    cpus_per_worker: int = 1           # CPU actors: CPUs (torch threads) per actor
    device: str = "auto"               # 'auto' (GPU actors when the cluster has GPUs),
                                       # 'cuda' or 'cpu'
    storage: dict = field(default_factory=dict)  # fsspec options for `out` (endpoint_url...)

    def validate(self) -> None:
        require(bool(self.model), "model", "must name a generator ('toy' or a path)")
        require(self.count >= 1, "count", f"must be >= 1 (got {self.count})")
        require(self.seed >= 0, "seed", f"must be >= 0 (got {self.seed})")
        choice(self.space, SPACES, "space")
        require(math.isfinite(self.truncation), "truncation", "must be a finite number")
        require(self.truncation_cutoff is None or self.truncation_cutoff >= 1,
                "truncation_cutoff", f"must be >= 1 or null (got {self.truncation_cutoff})")
        require(bool(self.out), "out", "must be an output URL (a local path or s3://...)")
        require(self.rows_per_part >= 1, "rows_per_part", f"must be >= 1 (got {self.rows_per_part})")
        runtime.validate_actor_fields(self)

    def identity(self) -> dict:
        """The fields the rows depend on: a rerun must match them to resume."""
        keys = ("model", "count", "seed", "space", "truncation", "truncation_cutoff", "images",
                "classifier", "rows_per_part", "micro_batch")
        return {k: getattr(self, k) for k in keys}


def public_config(cfg) -> dict:
    """The config as recorded in manifests: storage secrets redacted."""
    d = runtime.config_dict(cfg)
    if d.get("storage"):
        d["storage"] = {k: ("***" if any(s in k.lower() for s in ("key", "secret", "token"))
                            else v) for k, v in d["storage"].items()}
    return d


# ----------------------------------------------------------------------------------------
# Schema and per-batch computation


def sample_schema(cfg: SampleConfig, G, classifier) -> pa.Schema:
    from gankit.data import IMAGE_TYPE, wplus_field
    fields = [pa.field("sample_id", pa.int64()),
              pa.field("z", pa.list_(pa.float32(), G.z_dim))]
    if cfg.space == "w":
        fields.append(pa.field("w", pa.list_(pa.float32(), G.w_dim)))
    elif cfg.space == "wp":
        fields.append(wplus_field("wp", G.num_ws, G.w_dim))
    if cfg.images:
        fields.append(pa.field("image", IMAGE_TYPE))
    names = list(classifier.attribute_names) if classifier is not None else []
    fields += [pa.field(f"logit_{a}", pa.float32()) for a in names]
    meta = {"gankit.job": "sample", "gankit.attributes": json.dumps(names),
            "gankit.resolution": str(G.img_resolution), "gankit.num_ws": str(G.num_ws)}
    return pa.schema(fields, metadata=meta)


def load_models(model: str, classifier: Optional[str], device: str):
    """Generator (eval, on `device`) and optional classifier, through gankit.zoo."""
    from gankit import zoo
    G = zoo.load_generator(model, device=device).eval().requires_grad_(False)
    C = None
    if classifier:
        C = zoo.load_classifier(classifier, device=device).eval()
    return G, C


def render_and_label(G, C, ws, want_png: bool, noises: Optional[list] = None):
    """ws [M, num_ws, w_dim] -> (PNG bytes list, logits [M, A] float32 or None).

    `noises`: per noise layer [M, 1, r, r] maps (an inversion's), else G's const noise.
    The classifier sees the stored 8-bit image, mapped back to [-1, 1]."""
    from gankit.images import encode_png, from_uint8, to_uint8
    img = G.synthesis(ws, noise_mode="const", noises=noises)       # [M, 3, H, W] in [-1, 1]
    u8 = to_uint8(img)                                             # [M, H, W, 3] uint8
    logits = None
    if C is not None:
        logits = C(from_uint8(u8).to(ws.device)).float().cpu().numpy()   # [M, A]
    pngs = [encode_png(a) for a in u8] if want_png else None
    return pngs, logits


class Sampler(PartWorker):
    """Ray Data callable: loads G (+ classifier) once, then writes whole parts."""

    job = "sample"

    def __init__(self, cfg: dict, device: str, threads: int, out):
        super().__init__(out)
        self.cfg = SampleConfig(**cfg)
        self.device = runtime.resolve_device(device)
        runtime.set_deterministic(self.device, threads)
        self.G, self.C = load_models(self.cfg.model, self.cfg.classifier, self.device)
        if getattr(self.G, "c_dim", 0):
            raise ValueError(f"{self.cfg.model}: conditional generators (c_dim="
                             f"{self.G.c_dim}) are not supported by the sample job")
        self.schema = sample_schema(self.cfg, self.G, self.C)

    def write_part(self, spec: PartSpec) -> dict:
        m = self.cfg.micro_batch
        step = max(1, -(-self.cfg.batch_size // m)) * m     # whole micro-batches per step
        with PartWriter(self.out, storage.part_name(spec.index), self.schema) as w:
            for s in range(spec.start, spec.stop, step):
                w.write(self.rows(s, min(s + step, spec.stop)))
                runtime.fault_point()                       # test-only fault injection
            w.commit({"index": spec.index, "start": spec.start, "stop": spec.stop,
                      "errors": 0})
        return {"rows": spec.rows, "errors": 0}

    def rows(self, start: int, stop: int) -> pa.Table:
        import torch
        from gankit.data import image_column
        from gankit.latents import sample_z
        cfg, G, m = self.cfg, self.G, self.cfg.micro_batch
        ids = np.arange(start, stop, dtype=np.int64)                      # [n]
        z = sample_z(cfg.seed, ids, G.z_dim)                             # [n, z_dim] float32
        ws_out, pngs, logits = [], [], []
        with torch.no_grad():
            for s, e in runtime.micro_batches(start, stop, m):
                zb = runtime.pad_rows(torch.from_numpy(z[s - start:e - start]), m)
                ws = G.mapping(zb.to(self.device), None, truncation_psi=cfg.truncation,
                               truncation_cutoff=cfg.truncation_cutoff)  # [m, num_ws, w_dim]
                n = e - s
                ws_out.append(ws[:n].cpu().numpy())
                if cfg.images or self.C is not None:
                    p, l = render_and_label(G, self.C, ws, cfg.images)
                    if p is not None:
                        pngs += p[:n]
                    if l is not None:
                        logits.append(l[:n])
        cols = {"sample_id": pa.array(ids), "z": latent_array(z)}
        ws_all = np.concatenate(ws_out)                                  # [n, num_ws, w_dim]
        if cfg.space == "w":
            cols["w"] = latent_array(ws_all[:, 0])
        elif cfg.space == "wp":
            cols["wp"] = latent_array(ws_all.reshape(len(ids), -1))
        if "image" in self.schema.names:
            cols["image"] = image_column(pngs)
        if logits:
            logits = np.concatenate(logits)                              # [n, A]
            for j, a in enumerate(self.C.attribute_names):
                cols[f"logit_{a}"] = pa.array(logits[:, j].astype(np.float32))
        return pa.Table.from_arrays([cols[f.name] for f in self.schema], schema=self.schema)


def latent_array(x: np.ndarray) -> pa.FixedSizeListArray:
    from gankit.data import latent_column
    return latent_column(np.ascontiguousarray(x, dtype=np.float32))


# ----------------------------------------------------------------------------------------
# Driver


def run_sample(cfg: SampleConfig) -> dict:
    """Sample `cfg.count` rows into `cfg.out`, computing only parts not yet committed.
    Returns the manifest (rows, parts, runs...)."""
    cfg.validate()
    runtime.check_model("model", cfg.model, "generator")
    runtime.check_model("classifier", cfg.classifier, "classifier")
    out = storage.open_store(cfg.out, cfg.storage, create=True)
    runtime.ensure_ray()
    plan = storage.part_ranges(cfg.count, cfg.rows_per_part)
    actors = runtime.plan_actors(cfg.workers, cfg.device, len(plan), cfg.cpus_per_worker)
    kwargs = {"cfg": runtime.config_dict(cfg), "device": actors.device,
              "threads": int(actors.num_cpus) if not actors.num_gpus else None}
    return runtime.run_parts("sample", out, plan, Sampler, kwargs, cfg.identity(),
                             public_config(cfg), actors)


__all__ = ["SampleConfig", "Sampler", "run_sample", "sample_schema", "ConfigError"]
