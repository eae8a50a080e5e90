"""The label stage: score an existing image dataset with an attribute classifier.

Input: a dataset of Parquet files with an image column (struct {bytes, path}; PNG, JPEG or
WebP bytes)
and an id column (`sample_id` or `image_id`): a gankit dataset (`part-XXXXX.parquet`) or
any directory of `*.parquet` files (taken in name order, file j = part j); or image files
(a folder, a glob, a .txt list: jobs.storage.image_inputs), `images_per_part` to a part.
Output part k <- input part k: the id, the kept input columns, and `logit_<attr>` float32.

Bad rows (no bytes, undecodable bytes, not RESOLUTION x RESOLUTION) are left out of the
output and become error records (id, stage='label', reason) in `_errors/part-k.parquet`;
the job goes on. RESOLUTION is `resolution` or the size of the dataset's first good image.
Model calls see micro-batches of exactly `micro_batch` input rows aligned to the part's
first row (bad rows as zero images), so logits do not depend on batch_size or workers.
Decoding runs on `cpus_per_worker` threads, a step ahead of the classifier (jobs.runtime.cpu_pool).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pyarrow as pa

from jobs import config, options, runtime, storage
from jobs.config import option, public_config, require
from jobs.options import ActorOptions, BatchOptions, ClassifierOptions, StorageOptions
from jobs.runtime import PartWorker
from jobs.runtime.cpu_pool import CpuPool, StepWriter, gather
from jobs.stages.rendering import classify, setup_device
from jobs.storage import PartSpec, Store
from jobs.storage.image_inputs import (ImageInputOptions, ImageInputs, conform, inputs_resolution,
                                       part_tables, plan_image_inputs, write_bad_file)
from jobs.storage.image_reading import decode_rows

log = logging.getLogger("gankit")


@dataclass
class LabelConfig(BatchOptions, ActorOptions, ClassifierOptions, StorageOptions,
                  ImageInputOptions):
    images: str = option("", "input URL: a directory of Parquet files with an image column, "
                             "a folder of images, a glob or a .txt list of image URLs",
                         required=True, identity=True)
    out: str = option("", "output URL: a local path or s3://bucket/prefix", required=True)
    classifier: str = option("toy", "'toy', a .pt / .pt2 / .safetensors file or "
                                    "package.module:factory", identity=True)
    resolution: Optional[int] = option(None, "required image size (default: the first good "
                                             "image's)", identity=True)
    keep_columns: Optional[list] = option(None, "input columns copied to the output (default: "
                                                "all but the image column)", identity=True)

    def validate(self) -> None:
        require(bool(self.images), "images", "must be the URL of an image dataset")
        require(bool(self.out), "out", "must be an output URL (a local path or s3://...)")
        require(bool(self.classifier), "classifier", "must name a classifier")
        require(self.resolution is None or self.resolution >= 1, "resolution",
                f"must be >= 1 or null (got {self.resolution})")
        options.validate(self)

    def identity(self, precision: str) -> dict:
        return dict(config.identity_of(self), **options.identity(self, precision))


# ----------------------------------------------------------------------------------------
# Per-batch computation (actor)


class Labeler(PartWorker):
    """Ray Data callable: loads the classifier once, then labels whole parts."""

    job = "label"

    def __init__(self, cfg: dict, inputs: ImageInputs, resolution: int, device: str,
                 precision: str, cpus: float, out):
        super().__init__(out)
        from gankit.loading import zoo
        self.cfg = LabelConfig(**cfg)
        self.inputs, self.resolution = inputs, resolution
        self.id_column = inputs.id_column
        self.src = Store(self.cfg.images, self.cfg.storage, probe=False)
        self.device, self.precision = setup_device(device, precision, cpus)
        self.C = zoo.load_classifier(self.cfg.classifier, device=self.device,
                                     input_spec=self.cfg.classifier_input).eval()
        self.pool = CpuPool(cpus)

    def out_schema(self) -> pa.Schema:
        """The kept columns of the reference file, then one logit per attribute."""
        names, ref = list(self.C.attribute_names), self.inputs.schema
        fresh = {f"logit_{a}" for a in names}          # relabeling replaces these columns
        fields = [ref.field(n) for n in kept_columns(self.cfg, ref, self.id_column)
                  if n not in fresh]
        fields += [pa.field(f"logit_{a}", pa.float32()) for a in names]
        meta = dict(storage.strip_part_metadata(ref).metadata or {})
        meta.update({b"gankit.job": b"label", b"gankit.attributes": json.dumps(names).encode()})
        return pa.schema(fields, metadata=meta)

    def write_part(self, spec: PartSpec, part: runtime.PartContext) -> None:
        m = self.cfg.micro_batch
        step = max(1, -(-self.cfg.batch_size // m)) * m
        path, schema = self.inputs.parts.get(spec.index), self.out_schema()
        if spec.index in self.inputs.bad:
            write_bad_file(part, self.src, path, schema, self.id_column,
                           "label", self.inputs.bad[spec.index])
            return
        read = pa.schema([self.inputs.schema.field(f.name) for f in schema
                          if f.name in self.inputs.schema.names]
                         + [self.inputs.schema.field(self.cfg.image_column)])
        errors = []
        tables = part_tables(self.src, self.inputs, spec, self.cfg.image_column, read.names,
                             step)
        decoding = (self.decode(conform(table, read)) for table in tables)   # part-aligned
        with part.writer(schema) as w, StepWriter(w) as steps:
            for table, chunks in one_ahead(decoding):
                steps.put(self.label(table, chunks, schema, errors))
            steps.finish()
            runtime.commit_errors(self.out, spec, errors)
            w.commit({"index": spec.index, "start": spec.start, "stop": spec.stop,
                      "errors": len(errors)})

    def decode(self, table: pa.Table) -> tuple:
        """Start decoding one step's images on the pool: (table, futures of chunks)."""
        items = table.column(self.cfg.image_column).to_pylist()
        return table, self.pool.map_chunks(lambda chunk: [decode_rows(chunk, self.resolution)],
                                           items)

    def label(self, table: pa.Table, chunks: list, schema: pa.Schema, errors: list):
        """Classify one decoded step; appends its error records to `errors` and returns a
        function building its table of good rows with logits (for the writer thread)."""
        u8, bad, offset = [], {}, 0
        for img, b in gather(chunks):                                 # in row order
            u8.append(img)
            bad.update({offset + j: r for j, r in b.items()})
            offset += len(img)
        u8 = np.concatenate(u8) if u8 else np.zeros((0, self.resolution, self.resolution, 3),
                                                    np.uint8)         # [n, R, R, 3]
        logits = self.logits(u8)
        ids = table.column(self.id_column).to_pylist()
        errors += [{"id": ids[j], "stage": "label", "reason": r} for j, r in sorted(bad.items())]
        keep = np.array([j not in bad for j in range(len(u8))], dtype=bool)
        return lambda: self.rows_table(table, schema, logits[keep], keep)

    def fits(self, m: int) -> bool:
        """One classifier call on m images runs on the device."""
        self.logits(np.zeros([m, self.resolution, self.resolution, 3], np.uint8))
        return True

    def logits(self, u8: np.ndarray) -> np.ndarray:
        """uint8 [n, R, R, 3] -> logits [n, A], in micro-batches of exactly micro_batch."""
        from gankit.images import from_uint8
        m, out = self.cfg.micro_batch, []
        for s in range(0, len(u8), m):
            x = from_uint8(runtime.pad_rows(u8[s:s + m], m))          # [m, 3, R, R]
            out.append(classify(self.C, x.to(self.device), self.precision)[:len(u8[s:s + m])])
        return np.concatenate(out) if out else np.zeros((0, len(self.C.attribute_names)))

    def rows_table(self, table: pa.Table, schema: pa.Schema, logits: np.ndarray,
                   keep: np.ndarray) -> pa.Table:
        cols, names = [], list(self.C.attribute_names)
        for f in schema:
            if f.name.startswith("logit_") and f.name[len("logit_"):] in names:
                j = names.index(f.name[len("logit_"):])
                cols.append(pa.array(logits[:, j].astype(np.float32)))
            else:
                cols.append(table.column(f.name).filter(pa.array(keep)))
        return pa.Table.from_arrays(cols, schema=schema)


def one_ahead(items):
    """Yield each item of `items` once the next one has been started (drawn from the
    iterator), so the pool decodes step k + 1 while the classifier runs step k."""
    previous = None
    for item in items:
        if previous is not None:
            yield previous
        previous = item
    if previous is not None:
        yield previous


# ----------------------------------------------------------------------------------------
# Driver


def kept_columns(cfg: LabelConfig, reference: pa.Schema, id_column: str) -> list:
    """The id column, then the input columns copied to the output."""
    keep = cfg.keep_columns
    if keep is None:
        keep = [n for n in reference.names if n != cfg.image_column]
    return [id_column] + [n for n in keep if n != id_column]


def run_label(cfg: LabelConfig) -> dict:
    """Label every image of `cfg.images` into `cfg.out`; returns the manifest."""
    cfg.validate()
    runtime.check_model("classifier", cfg.classifier, "classifier")
    src = storage.open_store(cfg.images, cfg.storage)
    out = storage.open_store(cfg.out, cfg.storage, create=True)
    inputs = plan_image_inputs(src, cfg.image_column, cfg.id_column, cfg.images,
                               cfg.keep_columns, out, cfg.images_per_part, cfg.follow_links)
    missing = [n for n in cfg.keep_columns or [] if n not in inputs.schema.names]
    config.require(not missing, "keep_columns",
                    f"{missing} are not columns of {cfg.images}")
    resolution = cfg.resolution or inputs_resolution(src, inputs, cfg.image_column)
    for k, why in inputs.bad.items():
        log.info(f"[label] {why}: its rows become error records")
    actors = runtime.actors_for(cfg, len(inputs.plan))
    precision = runtime.job_precision(cfg.precision, actors)
    kwargs = {"cfg": config.config_dict(cfg), "inputs": inputs.for_workers(),
              "resolution": resolution, "device": actors.device, "precision": precision,
              "cpus": actors.num_cpus}
    identity = dict(cfg.identity(precision), resolution=resolution, input_rows=inputs.rows,
                    input_parts=len(inputs.plan), **inputs.identity())
    return runtime.run_parts("label", out, inputs.plan, Labeler, kwargs, identity,
                             public_config(cfg), actors)
