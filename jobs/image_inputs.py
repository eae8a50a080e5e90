"""The image datasets that label and invert read: their files, id column and schema checks.

An image dataset is a directory of Parquet files (a gankit dataset's `part-XXXXX.parquet`, or
any `*.parquet` in name order) with an id column and an image column (a struct {bytes, path}
of PNG, JPEG or WebP bytes). Output part k covers input file k.

The first usable file is the reference: its schema sets the id type and the columns a job
keeps. A file that cannot be used (unreadable, no image struct, no id column, a kept column
missing or of a type that cannot be cast) becomes error records, one per row, and an empty
output part: the good rows of every other file are still written. A dataset with no usable
file fails before any work, in one sentence naming the first file's problem.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pyarrow as pa

from jobs import config, runtime, storage
from jobs.storage import PartSpec, Store

@dataclass
class ImageInputs:
    """What the driver found: the files, the reference schema and the unusable files."""
    parts: dict                  # {index: path}
    schema: pa.Schema            # of the first usable file
    plan: list                   # [PartSpec]: row ranges from the footers
    rows: int
    id_column: str
    bad: dict = field(default_factory=dict)    # {index: why the file cannot be used}


def input_parts(store: Store) -> dict:
    """{index: path}: gankit part files, else every *.parquet file in name order."""
    parts = store.list_parts()
    if parts:
        return parts
    try:
        names = sorted(p for p in store.fs.ls(store.root, detail=False)
                       if p.endswith(".parquet")
                       and not p.rsplit("/", 1)[-1].startswith((".", "_")))
    except FileNotFoundError:
        names = []
    if not names:
        raise FileNotFoundError(f"no Parquet files at {store.url}")
    return dict(enumerate(names))


def pick_id_column(schema: pa.Schema, configured: Optional[str], url: str) -> str:
    """The configured id column, else sample_id, else image_id (gankit.data.id_column_of)."""
    from gankit.data import id_column_of
    name = id_column_of(schema.names, configured)
    if name is None and configured:
        raise config.ConfigError("id_column", f"{configured!r} is not a column of {url} "
                                 f"(columns: {', '.join(schema.names)})")
    if name is None:
        raise config.ConfigError("id_column", f"is needed: {url} has neither 'sample_id' nor "
                                 f"'image_id' (columns: {', '.join(schema.names)})")
    return name


def is_image_struct(t: pa.DataType) -> bool:
    if not pa.types.is_struct(t) or t.get_field_index("bytes") < 0:
        return False
    b = t.field("bytes").type
    return pa.types.is_binary(b) or pa.types.is_large_binary(b)


def castable(source: pa.DataType, target: pa.DataType) -> bool:
    if source == target:
        return True
    try:
        pa.array([], type=source).cast(target)
        return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False


def file_problem(schema: pa.Schema, image_column: str, columns: list,
                 reference: Optional[pa.Schema]) -> Optional[str]:
    """Why a file with `schema` cannot feed the job, or None. `columns` are the ones it must
    have (the id first); `reference` gives their types (None: this file is the first)."""
    if image_column not in schema.names:
        return f"has no column {image_column!r} (columns: {', '.join(schema.names)})"
    if not is_image_struct(schema.field(image_column).type):
        return (f"column {image_column!r} is {schema.field(image_column).type}, not an image "
                f"struct {{bytes, path}}")
    for name in columns:
        if name not in schema.names:
            return f"has no column {name!r}"
        if reference is not None and not castable(schema.field(name).type,
                                                  reference.field(name).type):
            return (f"column {name!r} is {schema.field(name).type} where the first file has "
                    f"{reference.field(name).type}")
    return None


def plan_image_inputs(src: Store, image_column: str, id_column: Optional[str], url: str,
                      keep: Optional[list] = None) -> ImageInputs:
    """Check every file of the dataset at `src` from its footer. `keep`: columns the job
    copies from each file (None: every column of the reference but the image)."""
    parts, footers = input_parts(src), {}
    for k, path in parts.items():
        try:
            footers[k] = storage.read_footer(src, path)
        except ValueError as e:
            footers[k] = str(e)
    usable = [f for f in footers.values() if not isinstance(f, str)
              and image_column in f.schema.names]
    if not usable:
        first = next(iter(footers.values()))
        if isinstance(first, str):
            raise ValueError(first)
        raise config.ConfigError("image_column", f"{image_column!r} is not a column of {url} "
                                  f"(columns: {', '.join(first.schema.names)})")
    reference = usable[0].schema
    id_name = pick_id_column(reference, id_column, url)
    keep = [n for n in reference.names if n != image_column] if keep is None else keep
    columns = [id_name] + [n for n in keep if n != id_name]
    inputs = ImageInputs(parts, reference, [], 0, id_name)
    for k, footer in footers.items():
        problem = footer if isinstance(footer, str) else file_problem(
            footer.schema, image_column, columns, reference)
        rows = 0 if isinstance(footer, str) else footer.rows
        if problem:
            inputs.bad[k] = problem if isinstance(footer, str) else f"{parts[k]} {problem}"
        inputs.plan.append(PartSpec(k, inputs.rows, inputs.rows + rows))
        inputs.rows += rows
    if len(inputs.bad) == len(parts):
        raise ValueError(f"no file of {url} can be used: {next(iter(inputs.bad.values()))}")
    return inputs


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table`'s columns named in `schema`, cast to its types (files may differ in types a
    cast bridges, such as int32 and int64 ids, and in extra columns)."""
    return pa.Table.from_arrays([table.column(f.name).cast(f.type) for f in schema],
                                schema=schema)


def bad_file_records(src: Store, path: str, spec: PartSpec, id_column: str, stage: str,
                     reason: str) -> list:
    """One error record per row of an unusable input file (ids from the file when it has
    them, else 'file#row'); one record naming the file when not even its rows can be read."""
    name = path.rsplit("/", 1)[-1]
    try:
        ids = storage.read_column(src, path, id_column)
    except (ValueError, KeyError):
        ids = [f"{name}#{j}" for j in range(spec.rows)]
    if not ids:
        ids = [name]
    return [{"id": i, "stage": stage, "reason": reason} for i in ids]


def write_bad_file(out: Store, src: Store, path: str, spec: PartSpec, schema: pa.Schema,
                   id_column: str, stage: str, reason: str) -> dict:
    """Commit an unusable input file's part: its error records and no rows."""
    records = bad_file_records(src, path, spec, id_column, stage, reason)
    runtime.commit_errors(out, spec, records)
    storage.write_table_part(out, storage.part_name(spec.index), schema.empty_table(),
                             {"index": spec.index, "start": spec.start, "stop": spec.stop,
                              "errors": len(records)})
    return {"rows": 0, "errors": len(records)}


def first_resolution(store: Store, parts: dict, column: str) -> int:
    """Size of the first decodable square image of the dataset, in part order."""
    from gankit.images import decode_image
    for path in parts.values():
        try:
            pf = storage.open_parquet(store, path)
            batches = pf.iter_batches(batch_size=64, columns=[column])
            for batch in batches:
                for item in batch.column(0).to_pylist():
                    try:
                        img = decode_image((item or {}).get("bytes"))
                    except (ValueError, AttributeError):
                        continue
                    if img.shape[0] == img.shape[1]:
                        return int(img.shape[0])
        except (ValueError, KeyError, pa.ArrowException):
            continue                       # an unusable file: its rows become error records
    raise ValueError(f"{store.url}: no decodable square image in column {column!r}")


def decode_rows(items: list, resolution: int) -> tuple:
    """Image structs -> (uint8 [n, R, R, 3] with zeros for bad rows, {row: reason})."""
    from gankit.images import decode_image
    out = np.zeros((len(items), resolution, resolution, 3), dtype=np.uint8)
    bad = {}
    for j, item in enumerate(items):
        data = (item or {}).get("bytes")
        if not data:
            bad[j] = "no image bytes"
            continue
        try:
            img = decode_image(data)                                   # [H, W, 3] uint8
        except ValueError as e:
            bad[j] = str(e)
            continue
        if img.shape != (resolution, resolution, 3):
            bad[j] = f"image is {img.shape[0]}x{img.shape[1]}, expected {resolution}x{resolution}"
            continue
        out[j] = img
    return out, bad
