"""Parquet schema helpers: pure functions from arrays to Arrow columns and back (pyarrow only).

The layouts are the contract of DESIGN.md:
- images: a struct column {bytes: binary, path: string}, the layout of the Hugging Face
  `datasets` Image feature, so our outputs load there directly;
- latents z / w: `fixed_size_list<float32>[D]`, read back zero-copy as [N, D] float32;
- W+: flattened to `fixed_size_list<float32>[num_ws * w_dim]`, its shape recorded in the
  field metadata as {"shape": "[num_ws, w_dim]"};
- ids: `sample_id` int64 for sampled rows, `image_id` string for real images;
- errors: a table (id, stage, reason) with one row per input that could not be processed.
"""
from __future__ import annotations

import json
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np
import pyarrow as pa

IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
ID_COLUMNS = {"sample_id": pa.int64(), "image_id": pa.string()}
ERRORS_SCHEMA = pa.schema([("id", pa.string()), ("stage", pa.string()), ("reason", pa.string())])
SHAPE_KEY = b"shape"


def image_column(images: Sequence[Optional[bytes]], paths: Optional[Sequence[str]] = None
                 ) -> pa.StructArray:
    """Encoded image bytes (None for a missing image) -> struct {bytes, path} column."""
    paths = [None] * len(images) if paths is None else list(paths)
    if len(paths) != len(images):
        raise ValueError(f"paths: {len(paths)} entries for {len(images)} images")
    return pa.StructArray.from_arrays(
        [pa.array(images, type=pa.binary()), pa.array(paths, type=pa.string())],
        fields=list(IMAGE_TYPE))


def image_bytes(col) -> list:
    """Struct {bytes, path} column (Array or ChunkedArray) -> list of bytes (None if missing)."""
    if not pa.types.is_struct(col.type) or col.type.get_field_index("bytes") < 0:
        raise ValueError(f"image column: expected struct<bytes: binary, path: string>, "
                         f"got {col.type}")
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    out = []
    for chunk in chunks:
        out.extend(chunk.field("bytes").to_pylist())
    return out


def latent_column(latents: np.ndarray) -> pa.FixedSizeListArray:
    """[N, D] float32 -> fixed_size_list<float32>[D] (no copy when already float32 C-order)."""
    latents = np.asarray(latents)
    if latents.ndim != 2:
        raise ValueError(f"latents: expected [N, D], got shape {list(latents.shape)}")
    flat = np.ascontiguousarray(latents, dtype=np.float32).reshape(-1)   # [N * D]
    return pa.FixedSizeListArray.from_arrays(pa.array(flat), latents.shape[1])


def latents_from_column(col) -> np.ndarray:
    """fixed_size_list<float32>[D] column (Array or ChunkedArray) -> [N, D] float32.

    Zero-copy for a single chunk; several chunks are concatenated (one copy).
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    if not is_latent_type(col.type):
        raise ValueError(f"latent column: expected fixed_size_list<float32>, got {col.type}")
    if col.type.value_type != pa.float32():                      # float64 or float16 values
        col = col.cast(pa.list_(pa.float32(), col.type.list_size))
    if col.null_count:
        raise ValueError(f"latent column: {col.null_count} null rows; latents must be present")
    d = col.type.list_size
    values = col.flatten()                    # respects the slice offset of `col`
    return values.to_numpy(zero_copy_only=True).reshape(len(col), d)      # [N, D]


def is_latent_type(t: pa.DataType) -> bool:
    return pa.types.is_fixed_size_list(t) and pa.types.is_floating(t.value_type)


def latent_dim(schema: pa.Schema, name: str, url: str) -> int:
    """Width D of the stored latent column `name`: a fixed-size list of D floats."""
    t = schema.field(name).type
    if not is_latent_type(t):
        raise ValueError(f"{url}: column {name!r} is {t}, but latents are read from fixed-size "
                         f"lists of floats, as gankit writes them (fixed_size_list<float>[D]): "
                         f"convert it, e.g. with pa.FixedSizeListArray.from_arrays(values, D)")
    return t.list_size


def id_column_of(names: Sequence[str], configured: Optional[str] = None) -> Optional[str]:
    """A dataset's id column: `configured` if it has it, else the first of ID_COLUMNS it has
    (sample_id, then image_id); None when there is none."""
    if configured:
        return configured if configured in names else None
    return next((n for n in ID_COLUMNS if n in names), None)


def attribute_names(schema: pa.Schema) -> list:
    """The attributes of a labeled dataset: its logit_<attr> columns, in order."""
    return [n[len("logit_"):] for n in schema.names if n.startswith("logit_")]


def noise_from_column(flat: np.ndarray, field: pa.Field) -> list:
    """[n, sum r^2] stored noise maps -> per layer [n, 1, r, r] (the field's metadata lists
    the layers' resolutions r)."""
    maps, s = [], 0
    for r in json.loads(field.metadata[b"resolutions"]):
        maps.append(flat[:, s:s + r * r].reshape(-1, 1, r, r))
        s += r * r
    return maps


def wplus_field(name: str, num_ws: int, w_dim: int) -> pa.Field:
    """Field for W+ latents [N, num_ws, w_dim] stored flattened, shape in the metadata."""
    if num_ws < 1 or w_dim < 1:
        raise ValueError(f"{name}: num_ws and w_dim must be >= 1, got {num_ws}, {w_dim}")
    return pa.field(name, pa.list_(pa.float32(), num_ws * w_dim),
                    metadata={SHAPE_KEY: json.dumps([num_ws, w_dim]).encode()})


def field_shape(field: pa.Field) -> tuple:
    """The per-row shape recorded in a field's metadata, e.g. (18, 512)."""
    meta = field.metadata or {}
    if SHAPE_KEY not in meta:
        raise ValueError(f"field {field.name!r} has no 'shape' metadata")
    return tuple(json.loads(meta[SHAPE_KEY]))


def wplus_column(wplus: np.ndarray, name: str = "wplus") -> tuple:
    """[N, num_ws, w_dim] -> (field with shape metadata, flattened fixed-size-list column)."""
    wplus = np.asarray(wplus)
    if wplus.ndim != 3:
        raise ValueError(f"{name}: expected W+ [N, num_ws, w_dim], got shape {list(wplus.shape)}")
    n, num_ws, w_dim = wplus.shape
    return wplus_field(name, num_ws, w_dim), latent_column(wplus.reshape(n, num_ws * w_dim))


def wplus_from_column(col, field: pa.Field) -> np.ndarray:
    """Flattened W+ column + its field (for the shape) -> [N, num_ws, w_dim] float32."""
    num_ws, w_dim = field_shape(field)
    flat = latents_from_column(col)                                     # [N, num_ws * w_dim]
    if flat.shape[1] != num_ws * w_dim:
        raise ValueError(f"field {field.name!r}: rows hold {flat.shape[1]} values, metadata "
                         f"shape [{num_ws}, {w_dim}] needs {num_ws * w_dim}")
    return flat.reshape(len(flat), num_ws, w_dim)


def to_arrow(name: str, values) -> tuple:
    """One column -> (field, array): numpy 1-D -> primitive, 2-D -> latents, 3-D -> W+."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return pa.field(name, values.type), values
    arr = np.asarray(values) if isinstance(values, np.ndarray) else None
    if arr is None or arr.dtype == object:
        col = pa.array(list(values))
        return pa.field(name, col.type), col
    if arr.ndim == 1:
        col = pa.array(arr)
        return pa.field(name, col.type), col
    if arr.ndim == 2:
        col = latent_column(arr)
        return pa.field(name, col.type), col
    if arr.ndim == 3:
        return wplus_column(arr, name)
    raise ValueError(f"column {name!r}: arrays of {arr.ndim} dims are not supported")


def make_table(columns: Mapping[str, object], id_column: str = "sample_id",
               metadata: Optional[Mapping[str, str]] = None) -> pa.Table:
    """Dict of columns -> pa.Table with the stable id column first.

    `id_column` must be 'sample_id' (int64) or 'image_id' (string) and be present; numpy
    1-D arrays become primitive columns, [N, D] latents, [N, num_ws, w_dim] W+.
    """
    if id_column not in ID_COLUMNS:
        raise ValueError(f"id_column must be one of {sorted(ID_COLUMNS)}, got {id_column!r}")
    if id_column not in columns:
        raise ValueError(f"columns: the id column {id_column!r} is missing")
    names = [id_column] + [k for k in columns if k != id_column]
    fields, arrays = [], []
    for name in names:
        field, col = to_arrow(name, columns[name])
        if name == id_column:
            col = col.cast(ID_COLUMNS[id_column])
            field = pa.field(name, ID_COLUMNS[id_column])
        if arrays and len(col) != len(arrays[0]):
            raise ValueError(f"column {name!r} has {len(col)} rows, "
                             f"{names[0]!r} has {len(arrays[0])}")
        fields.append(field)
        arrays.append(col)
    meta = {k.encode(): v.encode() for k, v in (metadata or {}).items()}
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=meta or None))


def sample_ids(start: int, count: int) -> pa.Array:
    """The ids start, start+1, ... of a sampling job's rows, as int64."""
    return pa.array(np.arange(start, start + count, dtype=np.int64))


def error_table(records: Iterable) -> pa.Table:
    """Error records -> ERRORS_SCHEMA table. A record is a dict with id/stage/reason or a
    3-tuple (id, stage, reason); ids are stored as strings."""
    rows = {"id": [], "stage": [], "reason": []}
    for rec in records:
        if isinstance(rec, Mapping):
            missing = [k for k in rows if k not in rec]
            if missing:
                raise ValueError(f"error record {rec!r} lacks {missing}")
            rec = (rec["id"], rec["stage"], rec["reason"])
        if len(rec) != 3:
            raise ValueError(f"error record {rec!r}: expected (id, stage, reason)")
        for k, v in zip(rows, rec):
            rows[k].append(str(v))
    return pa.Table.from_pydict(rows, schema=ERRORS_SCHEMA)
