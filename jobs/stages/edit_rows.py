"""The edit stage's rows: the output schema, and the identity columns that compare each edit
with its row's reconstruction (jobs.stages.edit's actor writes them)."""
from __future__ import annotations

import json
from typing import Optional

import numpy as np
import pyarrow as pa

from gankit.data import ID_COLUMNS, IMAGE_TYPE, wplus_field
from gankit.faces.identity import IDENTITY_COLUMNS, identity_scores
from gankit.images import decode_image


def edit_schema(names: list, keep_original: bool, id_name: str = "sample_id",
                keep_input: bool = False, identity: bool = False,
                latent: Optional[tuple] = None) -> pa.Schema:
    """latent: (column 'w' or 'wp', num_ws, w_dim) with keep_latent."""
    fields = [pa.field(id_name, ID_COLUMNS[id_name]), pa.field("boundary", pa.string()),
              pa.field("strength", pa.float32()), pa.field("image", IMAGE_TYPE)]
    fields += [pa.field(f"logit_{a}", pa.float32()) for a in names]
    if keep_original:
        fields.append(pa.field("original", IMAGE_TYPE))
    if keep_input:
        fields.append(pa.field("input", IMAGE_TYPE))
    if identity:
        fields += [pa.field(m, pa.float32()) for m in IDENTITY_COLUMNS]
    if latent is not None:
        column, num_ws, w_dim = latent
        fields.append(pa.field("w", pa.list_(pa.float32(), w_dim)) if column == "w"
                      else wplus_field("wp", num_ws, w_dim))
    return pa.schema(fields, metadata={"gankit.job": "edit",
                                       "gankit.attributes": json.dumps(names)})


def decoded(column: pa.Array) -> list:
    return [decode_image(item["bytes"]) for item in column.to_pylist()]


def reference_faces(measure, extras: dict) -> tuple:
    """(descriptors [n, D], where, side) of each row's reconstruction, at the geometry
    (dlib: landmarks) found on its input (`target`) when it is there, else on the
    reconstruction."""
    recon = decoded(extras["reconstruction"])                          # n x [S, S, 3]
    source = decoded(extras["target"]) if "target" in extras else recon
    where = measure.locate(np.stack(source)) if source else []
    side = source[0].shape[0] if source else 1
    return measure.describe(recon, where, side), where, side


def edit_identity(measure, faces: tuple, rows: np.ndarray, images: pa.Array) -> dict:
    """{identity_similarity, identity_distance}: each edit against its row's reference."""
    reference, where, side = faces
    scores = identity_scores(measure, reference[rows], [where[r] for r in rows],
                             decoded(images), side)
    return {m: pa.array(v, pa.float32()) for m, v in zip(IDENTITY_COLUMNS, scores)}
