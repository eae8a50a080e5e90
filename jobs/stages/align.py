"""The align stage: FFHQ-align the faces of real photos (gankit.faces.alignment) on CPU actors.

Input: a dataset of Parquet files with an image column (struct {bytes, path}) and an id
column (`sample_id`, else `image_id`), or image files (a folder, a glob, a .txt list of
URLs; ids from their relative paths), checked and read as the label stage does
(jobs.storage.image_inputs; file j = part j, an unusable file's rows become error records).
Output part k <- input part k, one row per aligned face:

    image_id      string: the photo's id, or '<id>#<k>' for face k with faces='all'
    source_id     string: the photo's id
    face          int32: 0 for 'largest'; the face's rank by size for 'all'
    image         struct {bytes, path}: the aligned face, PNG, resolution x resolution
    landmarks     fixed_size_list<float32>[136]: the 68 (x, y) points in the photo (shape
                  [68, 2] in the field metadata)
    quad          fixed_size_list<float32>[8]: the aligned square's corners in the photo
                  (top-left, bottom-left, bottom-right, top-right; shape [4, 2]): the
                  whole transform, what gankit.faces.alignment.paste_back needs
    source_width, source_height   int32: the photo's upright size
    face_score    float32: the detector's confidence

A photo that cannot be decoded or has no face becomes an error record (id, stage='align',
reason) in `_errors/part-k.parquet`; every other photo is written. dlib runs on CPUs: each
actor takes `cpus_per_worker` CPUs (default one) and aligns its part's photos one by one;
actors run in parallel, one part each. `align_photo` is the per-photo step, so any other
source of (id, bytes) pairs (an image folder, a URL list) can feed the same rows.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from jobs import config, options, runtime, storage
from jobs.config import option, override, require
from jobs.options import ActorOptions, StepOptions, StorageOptions
from jobs.runtime import PartWorker
from jobs.storage import PartSpec, Store
from jobs.config import public_config
from jobs.storage.image_inputs import (ImageInputOptions, part_tables, plan_image_inputs,
                                       write_bad_file)
from jobs.storage.image_reading import no_bytes_reason

log = logging.getLogger("gankit")

FACES = ("largest", "all")


@dataclass
class AlignConfig(StepOptions, ActorOptions, StorageOptions, ImageInputOptions):
    images: str = option("", "input URL: a directory of Parquet files with an image and an "
                             "id column, a folder of photos, a glob or a .txt list of photo "
                             "URLs", required=True, identity=True)
    out: str = option("", "output URL: a local path or s3://bucket/prefix", required=True)
    resolution: int = option(1024, "aligned size: the generator's (FFHQ: 1024)", identity=True)
    faces: str = option("largest", "largest: one face per photo; all: one row per face",
                        choices=FACES, identity=True)
    upsample: int = option(1, "detector upsamplings (1 finds faces down to about 40 px)",
                           identity=True)
    detector: str = option("hog", "hog (fast) or mmod (dlib's CNN, much slower)",
                           choices=("hog", "mmod"), identity=True)
    batch_size: int = override(StepOptions, "batch_size", 64)

    def validate(self) -> None:
        require(bool(self.images), "images", "must be the URL of an image dataset")
        require(bool(self.out), "out", "must be an output URL (a local path or s3://...)")
        require(self.resolution >= 8, "resolution", f"must be >= 8 (got {self.resolution})")
        require(self.upsample >= 0, "upsample", f"must be >= 0 (got {self.upsample})")
        options.validate(self)

    def identity(self) -> dict:
        return config.identity_of(self)


def shaped_field(name: str, shape: tuple) -> pa.Field:
    """fixed_size_list<float32> of prod(shape) values, the shape in the field metadata."""
    from gankit.data import SHAPE_KEY
    return pa.field(name, pa.list_(pa.float32(), int(np.prod(shape))),
                    metadata={SHAPE_KEY: json.dumps(list(shape)).encode()})


def out_schema() -> pa.Schema:
    from gankit.data import IMAGE_TYPE
    return pa.schema([
        pa.field("image_id", pa.string()), pa.field("source_id", pa.string()),
        pa.field("face", pa.int32()), pa.field("image", IMAGE_TYPE),
        shaped_field("landmarks", (68, 2)), shaped_field("quad", (4, 2)),
        pa.field("source_width", pa.int32()), pa.field("source_height", pa.int32()),
        pa.field("face_score", pa.float32())], metadata={b"gankit.job": b"align"})


def align_photo(photo_id: str, data, cfg: AlignConfig) -> tuple:
    """One photo's bytes -> (rows: a list of dicts in out_schema's columns, error reason or
    None). Bad bytes and photos without a face give no rows and a reason."""
    from gankit.faces import alignment as faces
    from gankit.images import decode_image, encode_png
    if not data:
        return [], "no image bytes"
    try:
        photo = decode_image(data)                                      # [H, W, 3] upright
        aligned = faces.align_faces(photo, cfg.resolution, cfg.faces, cfg.upsample,
                                    cfg.detector)
    except ValueError as e:                     # undecodable, or faces.NoFaceError
        return [], str(e)
    rows = []
    for k, a in enumerate(aligned):
        image_id = photo_id if cfg.faces == "largest" else f"{photo_id}#{k}"
        rows.append({"image_id": image_id, "source_id": photo_id, "face": k,
                     "image": {"bytes": encode_png(a.image), "path": f"{image_id}.png"},
                     "landmarks": a.face.landmarks.reshape(-1).tolist(),
                     "quad": a.quad.reshape(-1).tolist(), "source_width": photo.shape[1],
                     "source_height": photo.shape[0], "face_score": a.face.score})
    return rows, None


class Aligner(PartWorker):
    """Ray Data callable: loads dlib's models once, then aligns whole parts."""

    job = "align"
    batch_field = "batch_size"

    def __init__(self, cfg: dict, inputs, out):
        super().__init__(out)
        from gankit.faces import alignment as faces
        self.cfg = AlignConfig(**cfg)
        self.inputs = inputs                            # jobs.storage.image_inputs.ImageInputs
        self.src = Store(self.cfg.images, self.cfg.storage, probe=False)
        faces.dlib_model(self.cfg.detector)             # read the model files once, here
        faces.dlib_model("landmarks")

    def write_part(self, spec: PartSpec, part: runtime.PartContext) -> None:
        path, schema, errors = self.inputs.parts.get(spec.index), out_schema(), []
        if spec.index in self.inputs.bad:               # an unusable file: records, no rows
            write_bad_file(part, self.src, path, schema,
                           self.inputs.id_column, "align", self.inputs.bad[spec.index])
            return
        columns = [self.inputs.id_column, self.cfg.image_column]
        tables = part_tables(self.src, self.inputs, spec, self.cfg.image_column, columns,
                             self.cfg.batch_size)
        with part.writer(schema) as w:
            for table in tables:
                w.write(self.align_batch(table.select(columns), schema, errors))
            runtime.commit_errors(self.out, spec, errors)
            w.commit({"index": spec.index, "start": spec.start, "stop": spec.stop,
                      "errors": len(errors)})

    def align_batch(self, batch: pa.Table, schema: pa.Schema, errors: list) -> pa.Table:
        ids = [str(i) for i in batch.column(0).to_pylist()]
        rows = []
        for photo_id, item in zip(ids, batch.column(1).to_pylist()):
            found, reason = align_photo(photo_id, (item or {}).get("bytes"), self.cfg)
            if reason is not None and not (item or {}).get("bytes"):
                reason = no_bytes_reason(item)
            rows += found
            if reason is not None:
                errors.append({"id": photo_id, "stage": "align", "reason": reason})
        return pa.Table.from_pylist(rows, schema=schema)


# ----------------------------------------------------------------------------------------
# Driver


def run_align(cfg: AlignConfig) -> dict:
    """Align every photo of `cfg.images` into `cfg.out`; returns the manifest."""
    from gankit.faces.alignment import check_installed
    cfg.validate()
    check_installed()
    src = storage.open_store(cfg.images, cfg.storage)
    out = storage.open_store(cfg.out, cfg.storage, create=True)
    inputs = plan_image_inputs(src, cfg.image_column, cfg.id_column, cfg.images, keep=[],
                               out=out, images_per_part=cfg.images_per_part,
                               follow_links=cfg.follow_links)
    for why in inputs.bad.values():
        log.info(f"[align] {why}: its rows become error records")
    actors = runtime.actors_for(dataclasses.replace(cfg, device="cpu"), len(inputs.plan))
    kwargs = {"cfg": config.config_dict(cfg), "inputs": inputs.for_workers()}
    identity = dict(cfg.identity(), input_rows=inputs.rows, input_parts=len(inputs.plan),
                    **inputs.identity())
    return runtime.run_parts("align", out, inputs.plan, Aligner, kwargs, identity,
                             public_config(cfg), actors)
