"""The sample stage: draw latents, map them to W / W+, optionally render and label.

Rows: sample_id i in [0, count) draws z from a generator seeded by (seed, i) only. Part k
holds rows [k * rows_per_part, (k + 1) * rows_per_part). Inside a part the models run on
micro-batches of exactly `micro_batch` rows aligned to the part's first row (the last one
padded): kernels choose their algorithm by batch shape, so this is what makes w, images and
logits bit-identical whatever the worker count, batch_size or number of restarts (on one
kind of device: a CPU and a GPU, or two GPU models, round differently; z never differs).

Output schema (Parquet, one file per part):
    sample_id  int64
    class      int64   a conditional generator's class of the row (`class`, from (seed, i))
    z          fixed_size_list<float32>[z_dim]
    w          fixed_size_list<float32>[w_dim]                (space 'w')
    wp         fixed_size_list<float32>[num_ws * w_dim]       (space 'wp', field metadata
                                                               shape = [num_ws, w_dim])
    image      struct<bytes: binary, path: string>  PNG, JPEG or WebP (images; format,
                                                    quality and size: jobs.options)
    logit_<a>  float32, one per classifier attribute          (classifier)
Labels are computed on the stored 8-bit pixels (at `image_size` when images are stored), not
on the float render, so relabeling a PNG sample dataset reproduces its logits exactly; JPEG
and WebP relabel within their coding noise.

Generators: StyleGAN-family models (z -> w -> image), conditional ones with `class`
(jobs.stages.conditioning), and plain z -> image models (gankit.models.plain: no W, so space 'z'
and truncation 1 only).

The model renders step after step while a pool of `cpus_per_worker` threads encodes the
previous steps' images and writes them (jobs.runtime.cpu_pool).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Optional

import numpy as np
import pyarrow as pa

from gankit.data import latent_column
from gankit.latent.latents import SPACES
from jobs import config, options, runtime, storage
from jobs.config import ConfigError, option, require
from jobs.options import (ActorOptions, BatchOptions, ClassifierOptions, ImageOptions, ModelOptions,
                          StorageOptions, TruncationOptions)
from jobs.runtime import PartWorker
from jobs.runtime.cpu_pool import CpuPool, StepWriter, gather
from jobs.stages.conditioning import (ClassOptions, check_space, class_choices, generator_facts,
                                      needs_facts, one_hot_rows, row_labels)
from jobs.stages.rendering import load_models, render_and_label, setup_device
from jobs.storage import PartSpec


@dataclass
class SampleOptions(ModelOptions, TruncationOptions, BatchOptions, ClassOptions):
    """What the sampled rows are, for whichever job runs the sample stage (sample, dataset)."""
    count: int = option(1000, "rows: sample_id 0 .. count-1", required=True, identity=True)
    seed: int = option(0, "row i draws z from a generator seeded by (seed, i)", identity=True)
    classifier: Optional[str] = option(None, "add logit_<attr> columns: 'toy', a .pt / .pt2 / "
                                             ".safetensors file or package.module:factory",
                                       identity=True)
    rows_per_part: int = option(1000, "rows per part file (fixed row ranges per part)",
                                identity=True)


@dataclass
class SampleConfig(SampleOptions, ActorOptions, ImageOptions, ClassifierOptions,
                   StorageOptions):
    space: str = option("w", "latents stored beside z: z (none), w or wp (W+)",
                        choices=SPACES, identity=True)
    images: bool = option(False, "render and store the images (--image-format, "
                                 "--image-quality, --image-size)", identity=True)
    out: str = option("", "output URL: a local path or s3://bucket/prefix", required=True)

    def validate(self) -> None:
        require(self.count >= 1, "count", f"must be >= 1 (got {self.count})")
        require(self.seed >= 0, "seed", f"must be >= 0 (got {self.seed})")
        require(bool(self.out), "out", "must be an output URL (a local path or s3://...)")
        require(self.rows_per_part >= 1, "rows_per_part", f"must be >= 1 (got {self.rows_per_part})")
        self.validate_classes()
        options.validate(self)

    def identity(self, precision: str) -> dict:
        """The options the rows depend on: a rerun must match them to resume."""
        return dict(config.identity_of(self), **options.identity(self, precision, self.images))

    def check_model(self, G) -> Optional[list]:
        """What G can do against the config (ConfigError): its W, its classes -> the class
        indices rows draw from (None: unconditional)."""
        check_space(G, self.space, self.model)
        require(getattr(G, "has_w", True) or (self.truncation == 1 and
                self.truncation_cutoff is None), "truncation", f"must be 1 for {self.model}: "
                f"truncation applies in W, which a plain z -> image generator does not have")
        return class_choices(self.classes, getattr(G, "c_dim", 0), self.model)


# ----------------------------------------------------------------------------------------
# Schema and per-batch computation


def sample_schema(cfg: SampleConfig, G, classifier) -> pa.Schema:
    from gankit.data import IMAGE_TYPE, wplus_field
    fields = [pa.field("sample_id", pa.int64())]
    if getattr(G, "c_dim", 0):
        fields.append(pa.field("class", pa.int64()))
    fields.append(pa.field("z", pa.list_(pa.float32(), G.z_dim)))
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


class Sampler(PartWorker):
    """Ray Data callable: loads G (+ classifier) once, then writes whole parts."""

    job = "sample"

    def __init__(self, cfg: dict, device: str, precision: str, cpus: float, out):
        super().__init__(out)
        self.cfg = SampleConfig(**cfg)
        self.device, self.precision = setup_device(device, precision, cpus)
        self.G, self.C = load_models(self.cfg.model, self.cfg.classifier, self.device,
                                     self.precision, self.cfg.classifier_input)
        self.choices = self.cfg.check_model(self.G)
        self.schema = sample_schema(self.cfg, self.G, self.C)
        self.pool = CpuPool(cpus)

    def write_part(self, spec: PartSpec, part: runtime.PartContext) -> None:
        m = self.cfg.micro_batch
        step = max(1, -(-self.cfg.batch_size // m)) * m     # whole micro-batches per step
        with part.writer(self.schema) as w, StepWriter(w) as steps:
            for s in range(spec.start, spec.stop, step):
                steps.put(self.rows(s, min(s + step, spec.stop)))
            steps.finish()
            w.commit({"index": spec.index, "start": spec.start, "stop": spec.stop,
                      "errors": 0})

    def fits(self, m: int) -> bool:
        """One model call on m rows (mapping, synthesis, classifier) runs on the device."""
        import torch
        c = one_hot_rows(np.zeros(m, np.int64) if self.choices else None,
                         self.G.c_dim, self.device)
        ws = self.G.mapping(torch.zeros([m, self.G.z_dim], device=self.device), c)
        render_and_label(self.G, self.C, ws, precision=self.precision)
        return True

    def rows(self, start: int, stop: int):
        """Run the models on rows [start, stop); returns a function that builds their
        table once the pool has encoded their images (called on the writer thread)."""
        import torch

        from gankit.latent.latents import sample_z
        cfg, G, m = self.cfg, self.G, self.cfg.micro_batch
        ids = np.arange(start, stop, dtype=np.int64)                      # [n]
        z = sample_z(cfg.seed, ids, G.z_dim)                             # [n, z_dim] float32
        labels = row_labels(cfg.seed, ids, self.choices)                 # [n] int64 or None
        ws_out, images, logits = [], [], []
        size = cfg.image_size if cfg.images else None
        with torch.no_grad():
            for s, e in runtime.micro_batches(start, stop, m):
                zb = runtime.pad_rows(torch.from_numpy(z[s - start:e - start]), m)
                cb = None if labels is None else one_hot_rows(
                    runtime.pad_rows(labels[s - start:e - start], m), G.c_dim, self.device)
                ws = G.mapping(zb.to(self.device), cb, truncation_psi=cfg.truncation,
                               truncation_cutoff=cfg.truncation_cutoff)  # [m, num_ws, w_dim]
                n = e - s
                ws_out.append(ws[:n].cpu().numpy())
                if cfg.images or self.C is not None:
                    u8, l = render_and_label(G, self.C, ws, size, precision=self.precision)
                    if cfg.images:
                        images += self.pool.encode(u8[:n], cfg.image_format, cfg.image_quality)
                    if l is not None:
                        logits.append(l[:n])
        return lambda: self.table(ids, labels, z, np.concatenate(ws_out), images, logits)

    def table(self, ids, labels, z, ws_all, images: list, logits: list) -> pa.Table:
        """labels [n] or None; ws_all [n, num_ws, w_dim]; images: the pool's futures."""
        from gankit.data import image_column
        cfg = self.cfg
        cols = {"sample_id": pa.array(ids), "z": latent_column(z)}
        if labels is not None:
            cols["class"] = pa.array(labels, pa.int64())
        if cfg.space == "w":
            cols["w"] = latent_column(ws_all[:, 0])
        elif cfg.space == "wp":
            cols["wp"] = latent_column(ws_all.reshape(len(ids), -1))
        if "image" in self.schema.names:
            cols["image"] = image_column(gather(images))
        if logits:
            logits = np.concatenate(logits)                              # [n, A]
            for j, a in enumerate(self.C.attribute_names):
                cols[f"logit_{a}"] = pa.array(logits[:, j].astype(np.float32))
        return pa.Table.from_arrays([cols[f.name] for f in self.schema], schema=self.schema)


# ----------------------------------------------------------------------------------------
# Driver


def run_sample(cfg: SampleConfig) -> dict:
    """Sample `cfg.count` rows into `cfg.out`, computing only parts not yet committed.
    Returns the manifest (rows, parts, runs...)."""
    cfg.validate()
    runtime.check_model("model", cfg.model, "generator")
    runtime.check_model("classifier", cfg.classifier, "classifier")
    if needs_facts(cfg.model, cfg.classes):          # a bad class fails here, not in actors
        cfg.check_model(SimpleNamespace(**generator_facts(cfg.model)))
    out = storage.open_store(cfg.out, cfg.storage, create=True)
    plan = storage.part_ranges(cfg.count, cfg.rows_per_part)
    actors = runtime.actors_for(cfg, len(plan))
    precision = runtime.job_precision(cfg.precision, actors)
    kwargs = {"cfg": config.config_dict(cfg), "device": actors.device, "precision": precision,
              "cpus": actors.num_cpus}
    return runtime.run_parts("sample", out, plan, Sampler, kwargs, cfg.identity(precision),
                             config.public_config(cfg), actors)


__all__ = ["SampleConfig", "Sampler", "run_sample", "sample_schema", "ConfigError"]
