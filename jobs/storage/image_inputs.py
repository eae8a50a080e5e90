"""The image datasets that label, invert and align read: their files, id column and schema
checks, and folders or lists of image files.

An image dataset is either image files or Parquet. Image files: a folder (every file under
it, recursively, but hidden and `_` names), a glob (`s3://bucket/faces/*.jpg`), or a text
file of URLs or paths (`.txt`, one a line, `#` comments; a relative path is relative to the
list's folder). Their listing is sorted and split into parts of `images_per_part` images;
ids are relative paths (to the folder, to the glob's fixed prefix, to the list entries'
common folder). The listing is written as Parquet into the output location on the first run,
streamed while the input is listed (jobs.storage.listing, jobs.storage.walk), and read back by
every rerun, so files added later never shift the parts. A part's spec is its row range: each
worker reads its rows of the listing, then the files' bytes (fsspec), into the same table a Parquet
input gives: the id (`image_id`) and the image struct. A file that is no image becomes an
error record when it is decoded.

Parquet: a directory of Parquet files (a gankit dataset's `part-XXXXX.parquet`, or
any `*.parquet` in name order) with an id column and an image column (a struct {bytes, path}
of PNG, JPEG or WebP bytes). Output part k covers input file k.

The first usable file is the reference: its schema sets the id type and the columns a job
keeps. A file that cannot be used (unreadable, no image struct, no id column, a kept column
missing or of a type that cannot be cast) becomes error records, one per row, and an empty
output part: the good rows of every other file are still written. A dataset with no usable
file fails before any work, in one sentence naming the first file's problem.

Beside this module: the entries a folder, glob or list names (jobs.storage.file_entries),
reading their bytes under the input folder's boundary and why one cannot be read
(jobs.storage.image_reading), the photos behind an output for paste-back
(jobs.storage.source_photos).
"""
from __future__ import annotations

import atexit
import dataclasses
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from typing import Iterator, Optional

import pyarrow as pa

from gankit.data import IMAGE_TYPE, id_column_of
from jobs import config, runtime, storage
from jobs.config import option, require
from jobs.storage import PartSpec, Store, listing, walk
from jobs.storage.file_entries import file_entries, files_kind, input_folder

from jobs.storage.image_reading import decode_item, files_table, fill_from_paths


@dataclass
class ImageInputOptions:
    """Where a job finds its images in a dataset, and how it splits an input of image files
    (a folder, a glob, a list) into parts."""
    image_column: str = option("image", "struct {bytes, path} column of PNG, JPEG or WebP bytes",
                               identity=True)
    id_column: Optional[str] = option(None, "id column (default: sample_id if present, else "
                                            "image_id)", identity=True)
    images_per_part: int = option(256, "images per part when the input is image files (a "
                                       "folder, a glob or a .txt list)")
    follow_links: bool = option(False, "read files through symbolic links that leave the "
                                       "input folder (by default such a link, or a path "
                                       "with '..', becomes an error record, its target "
                                       "unread)")


@dataclass
class ImageInputs:
    """What the driver found: the files, the reference schema and the unusable files."""
    parts: dict                  # {index: path} of Parquet files ({} for image files)
    schema: pa.Schema            # of the first usable file (image files: id + image)
    plan: list                   # [PartSpec]: row ranges from the footers or the listing
    rows: int
    id_column: str
    bad: dict = field(default_factory=dict)    # {index: why the file cannot be used}
    listing: Optional[listing.Listing] = None  # image files: where their listing lies
    images_per_part: Optional[int] = None      # image files: the parts' size
    folder: Optional[str] = None               # the URL no file may leave (None: anywhere)
    follow_links: bool = False

    def identity(self) -> dict:
        """What the input adds to a job's identity (the listing: image files only, and
        follow_links only when set, so outputs written before either existed resume)."""
        ident = {"follow_links": True} if self.follow_links else {}
        if self.listing is not None:
            ident.update(input_listing=self.listing.sha256,
                         images_per_part=self.images_per_part)
        return ident

    def for_workers(self) -> "ImageInputs":
        """What every worker gets: all but the plan (each gets its own part's spec), so a
        worker receives a few numbers of an image-file input, not its listing or parts."""
        return dataclasses.replace(self, plan=[])


def input_parts(store: Store) -> dict:
    """{index: path}: gankit part files, else every *.parquet file in name order."""
    parts = store.list_parts() or dict(enumerate(parquet_names(store)))
    if not parts:
        raise FileNotFoundError(f"no Parquet files at {store.url}")
    return parts


def parquet_names(store: Store) -> list:
    try:
        return sorted(p for p in store.fs.ls(store.root, detail=False)
                      if p.endswith(".parquet")
                      and not p.rsplit("/", 1)[-1].startswith((".", "_")))
    except (FileNotFoundError, NotADirectoryError):
        return []


# ----------------------------------------------------------------------------------------
# Inputs of image files: a folder, a glob, a list


def listing_kind(src: Store) -> Optional[str]:
    """'list', 'glob' or 'folder' for an input of image files; None for Parquet."""
    kind = files_kind(src.root)
    return None if kind == "folder" and holds_parquet(src) else kind


def holds_parquet(src: Store) -> bool:
    """Whether a Parquet file (not hidden) lies directly in the folder, found a page of
    names at a time (a folder of millions of photos is never listed whole here)."""
    return any(name.endswith(".parquet") and not name.startswith((".", "_"))
               for name in walk.child_names(src.fs, src.root))


_scratch = {}


def scratch_store() -> Store:
    """A local folder for listings planned without an output location (removed at exit)."""
    if "store" not in _scratch:
        folder = tempfile.mkdtemp(prefix="gankit-inputs-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _scratch["store"] = Store(folder, probe=False)
    return _scratch["store"]


def fixed_listing(src: Store, out: Optional[Store], kind: str, url: str,
                  images_per_part: int = 256, follow_links: bool = False) -> listing.Listing:
    """The listing of the first run at `out` (converted once from `_inputs.json` where an
    older version wrote that), else a fresh one written there while the input is listed."""
    if out is None:                   # a fresh listing each time: nothing to resume
        out = scratch_store().child(uuid.uuid4().hex)
    index = listing.read_index(out)
    saved = out.read_json(listing.LEGACY) if index is None and out.exists(listing.LEGACY) \
        else index
    if saved is not None:
        if saved.get("images") != url:
            raise ValueError(f"{out.url} holds the listing of {saved.get('images')}, this "
                             f"job reads {url}: use another output location")
        if index is None:
            return listing.convert_legacy(out, saved, images_per_part)
        listing.check_shards(out, index)
        return listing.listing_of(out, index)
    entries = file_entries(src, kind, follow_links)
    found = listing.write_listing(out, entries, entries.to_id, url, kind, images_per_part)
    if found is None and kind == "folder" and src.fs.isfile(src.root):
        raise ValueError(f"{url} is one file: give its folder, a glob or a .txt list of images")
    if found is None:
        raise FileNotFoundError(f"no Parquet files and no image files at {url}")
    return found


def plan_file_inputs(found: listing.Listing, image_column: str, id_column: Optional[str],
                     images_per_part: int, folder: Optional[str] = None) -> ImageInputs:
    """Parts of `images_per_part` files of a fixed listing; the table has id + image.
    `folder`: the URL no file may leave (None: links are followed anywhere)."""
    id_name = id_column or "image_id"
    schema = pa.schema([pa.field(id_name, pa.string()), pa.field(image_column, IMAGE_TYPE)])
    plan = storage.part_ranges(found.rows, images_per_part)
    return ImageInputs({}, schema, plan, found.rows, id_name, listing=found,
                       images_per_part=images_per_part, folder=folder,
                       follow_links=folder is None)


def part_tables(src: Store, inputs: ImageInputs, spec: PartSpec, image_column: str,
                columns: list, batch_size: int) -> Iterator[pa.Table]:
    """Input part `spec` as tables of `batch_size` rows (`columns` of a Parquet file, or
    the id and image of image files), bytes filled in from paths where missing."""
    if inputs.listing is not None:
        rows = inputs.listing.read(spec.start, spec.stop)        # this part's rows only
        for s in range(0, rows.num_rows, batch_size):
            yield files_table(rows.slice(s, batch_size), inputs.schema, src, inputs.folder)
        return
    pf = storage.open_parquet(src, inputs.parts[spec.index])
    try:
        for batch in pf.iter_batches(batch_size=batch_size, columns=columns):
            yield fill_from_paths(src, pa.Table.from_batches([batch]), image_column,
                                  inputs.follow_links)
    finally:
        pf.close()


def pick_id_column(schema: pa.Schema, configured: Optional[str], url: str) -> str:
    """The configured id column, else sample_id, else image_id (gankit.data.id_column_of)."""
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
                      keep: Optional[list] = None, out: Optional[Store] = None,
                      images_per_part: int = 256, follow_links: bool = False) -> ImageInputs:
    """Image files: a fixed listing (kept in `out`) split into parts. Parquet: check every
    file of the dataset at `src` from its footer. `keep`: columns the job copies from each
    file (None: every column of the reference but the image). `follow_links`: read files
    through links that leave the input folder (jobs.storage.image_reading)."""
    kind = listing_kind(src)
    if kind is not None:
        require(images_per_part >= 1, "images_per_part", f"must be >= 1 (got {images_per_part})")
        found = fixed_listing(src, out, kind, url, images_per_part, follow_links)
        return plan_file_inputs(found, image_column, id_column, images_per_part,
                                input_folder(src, follow_links))
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
    inputs = ImageInputs(parts, reference, [], 0, id_name, follow_links=follow_links)
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


def write_bad_file(part: runtime.PartContext, src: Store, path: str, schema: pa.Schema,
                   id_column: str, stage: str, reason: str) -> None:
    """Commit an unusable input file's part: its error records and no rows."""
    records = bad_file_records(src, path, part.spec, id_column, stage, reason)
    runtime.commit_errors(part.out, part.spec, records)
    part.commit_empty(schema, len(records))


def first_resolution(store: Store, parts: dict, column: str) -> int:
    """Size of the first decodable square image of the dataset, in part order."""
    for path in parts.values():
        try:
            pf = storage.open_parquet(store, path)
            batches = pf.iter_batches(batch_size=64, columns=[column])
            for batch in batches:
                size = first_square(batch.column(0).to_pylist())
                if size:
                    return size
        except (ValueError, KeyError, pa.ArrowException):
            continue                       # an unusable file: its rows become error records
    raise ValueError(f"{store.url}: no decodable square image in column {column!r}")


def first_square(items: list) -> Optional[int]:
    """The size of the first decodable square image among image structs, or None."""
    for item in items:
        img, _ = decode_item(item)
        if img is not None and img.shape[0] == img.shape[1]:
            return int(img.shape[0])
    return None


def inputs_resolution(src: Store, inputs: ImageInputs, column: str) -> int:
    """Size of the first decodable square image of the inputs, in part order."""
    if inputs.listing is None:
        good = {k: p for k, p in inputs.parts.items() if k not in inputs.bad}
        return first_resolution(src, good, column)
    for spec in inputs.plan:
        for table in part_tables(src, inputs, spec, column, [column], 16):
            size = first_square(table.column(column).to_pylist())
            if size:
                return size
    raise ValueError(f"{src.url}: no decodable square image among its files")
