"""The image datasets that label, invert and align read: their files, id column and schema
checks, and folders or lists of image files.

An image dataset is either image files or Parquet. Image files: a folder (every file under
it, recursively, but hidden and `_` names), a glob (`s3://bucket/faces/*.jpg`), or a text
file of URLs or paths (`.txt`, one a line, `#` comments; a relative path is relative to the
list's folder). Their listing is sorted and split into parts of `images_per_part` images;
ids are relative paths (to the folder, to the glob's fixed prefix, to the list entries'
common folder). The listing is written as Parquet into the output location on the first run,
streamed while the input is listed (jobs.listing, jobs.walk), and read back by every rerun,
so files added later never shift the parts. A part's spec is its row range: each worker
reads its rows of the listing, then the files' bytes (fsspec), into the same table a Parquet
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
"""
from __future__ import annotations

import dataclasses
import io
import posixpath
import re
import uuid
from dataclasses import dataclass, field
from typing import Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from fsspec.utils import glob_translate

from jobs import config, listing, runtime, storage, walk
from jobs.config import option, require
from jobs.storage import PartSpec, Store

GLOB_CHARS = "*?["


@dataclass
class ImageInputOptions:
    """How a job splits an input of image files (a folder, a glob, a list) into parts."""
    images_per_part: int = option(256, "images per part when the input is image files (a "
                                       "folder, a glob or a .txt list)")


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

    def identity(self) -> dict:
        """What the input adds to a job's identity (image files only: Parquet outputs
        written before image-file inputs existed still resume)."""
        if self.listing is None:
            return {}
        return {"input_listing": self.listing.sha256, "images_per_part": self.images_per_part}

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
    if src.root.endswith(".txt"):
        return "list"
    if any(c in src.root for c in GLOB_CHARS):
        return "glob"
    if holds_parquet(src):
        return None
    return "folder"


def holds_parquet(src: Store) -> bool:
    """Whether a Parquet file (not hidden) lies directly in the folder, found a page of
    names at a time (a folder of millions of photos is never listed whole here)."""
    return any(name.endswith(".parquet") and not name.startswith((".", "_"))
               for name in walk.child_names(src.fs, src.root))


def hidden(relative: str) -> bool:
    return any(s.startswith((".", "_")) for s in relative.split("/"))


HIDDEN_RE = r"(^|/)[._]"            # a hidden or `_` segment in a relative path


def url_prefix(fs, path: str) -> Optional[str]:
    """What `fs.unstrip_protocol` puts before a path ('file://', 's3://'), or None when it
    does more than prefix it."""
    url = fs.unstrip_protocol(path)
    return url[:-len(path)] if path and url.endswith(path) else None


def to_urls(fs, paths: pa.Array, prefix: Optional[str]) -> pa.Array:
    if prefix is None:
        return pa.array([fs.unstrip_protocol(p) for p in paths.to_pylist()], pa.string())
    return pc.binary_join_element_wise(prefix, paths, "")


class FolderEntries:
    """The files of a folder or a glob as entry tables (jobs.listing.ENTRY), streamed;
    the key is the id: the path relative to the folder or the glob's fixed prefix."""

    def __init__(self, src: Store, kind: str):
        self.src = src
        self.pattern = None
        if kind == "glob":
            cut = min(src.root.find(c) for c in GLOB_CHARS if c in src.root)
            self.base = src.root[:cut].rsplit("/", 1)[0]
            self.pattern = re.compile(glob_translate(src.root))
        else:
            self.base = src.root

    def __iter__(self) -> Iterator[pa.Table]:
        fs, prefix = self.src.fs, url_prefix(self.src.fs, self.base)
        for paths, sizes in walk.walk_files(fs, self.base):
            if self.pattern is not None:
                kept = [(p, n) for p, n in zip(paths, sizes) if self.pattern.match(p)]
                paths, sizes = [p for p, _ in kept], [n for _, n in kept]
            paths = pa.array(paths, pa.string())
            rel = pc.utf8_ltrim(pc.utf8_slice_codeunits(paths, len(self.base)), characters="/")
            keep = pc.and_(pc.not_equal(rel, ""),
                           pc.invert(pc.match_substring_regex(rel, HIDDEN_RE)))
            table = pa.Table.from_arrays([rel, to_urls(fs, paths, prefix),
                                          pa.array(sizes, pa.int64())], schema=listing.ENTRY)
            yield table.filter(keep)

    @staticmethod
    def to_id(keys: pa.Array) -> pa.Array:
        return keys


class ListEntries:
    """A .txt list's entries as entry tables, streamed a few MB of lines at a time. Ids are
    relative to the entries' common folder, known only at the end: the key is the path
    (the URL without its scheme, leading '/' dropped), and `to_id` cuts the common folder,
    which keeps the keys' order."""

    LINES_BYTES = 1 << 22

    def __init__(self, src: Store):
        self.src = src
        folder = posixpath.dirname(src.root)
        self.folder = folder if not folder or folder.endswith("/") else folder + "/"
        self.low = self.high = None          # the smallest and largest key so far
        self.absolute = self.relative = False

    def __iter__(self) -> Iterator[pa.Table]:
        try:
            with self.src.fs.open(self.src.root, "rb") as f:
                text = io.TextIOWrapper(f, encoding="utf-8")
                while lines := text.readlines(self.LINES_BYTES):
                    table = self.entries(lines)
                    if table.num_rows:
                        yield table
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{self.src.url}: cannot read the list of images ({e})") from None

    def entries(self, lines: list) -> pa.Table:
        """Lines -> (key, URL): a relative entry joins the list's folder, one with no
        scheme gets the list's filesystem's."""
        fs = self.src.fs
        a = pc.utf8_trim_whitespace(pa.array(lines, pa.string()))
        a = a.filter(pc.and_(pc.not_equal(a, ""), pc.invert(pc.starts_with(a, "#"))))
        remote = pc.match_substring(a, "://")
        path = pc.if_else(pc.or_(remote, pc.starts_with(a, "/")), a,
                          pc.binary_join_element_wise(self.folder, a, ""))
        prefix = url_prefix(fs, self.src.root)
        urls = pc.if_else(remote, path, pc.binary_join_element_wise(prefix, path, "")) \
            if prefix is not None else pa.array(
                [p if r else fs.unstrip_protocol(p) for p, r in
                 zip(path.to_pylist(), remote.to_pylist())], pa.string())
        keys = pc.replace_substring_regex(urls, r"^.*?://", "", max_replacements=1)
        self.absolute |= bool(pc.any(pc.starts_with(keys, "/")).as_py())
        self.relative |= not pc.all(pc.starts_with(keys, "/")).as_py()
        keys = pc.utf8_ltrim(keys, characters="/")
        if len(keys):
            low, high = (v.as_py() for v in pc.min_max(keys).values())
            self.low = low if self.low is None else min(self.low, low)
            self.high = high if self.high is None else max(self.high, high)
        return pa.Table.from_arrays([keys, urls, pa.nulls(len(keys), pa.int64())],
                                    schema=listing.ENTRY)

    def common(self) -> str:
        """The entries' common folder (as a key, no leading '/'); '' when local and remote
        entries are mixed. Every key lies between the smallest and the largest, so their
        common prefix, cut back to a '/', is everyone's."""
        if self.low is None or (self.absolute and self.relative):
            return ""
        prefix = posixpath.commonprefix([self.low, self.high])
        return prefix[:prefix.rfind("/")] if "/" in prefix else ""

    def to_id(self, keys: pa.Array) -> pa.Array:
        common = self.common()
        if not common:
            return keys
        return pc.utf8_ltrim(pc.utf8_slice_codeunits(keys, len(common)), characters="/")


def file_entries(src: Store, kind: str):
    """The input's files as a stream of entry tables with its `to_id`."""
    return ListEntries(src) if kind == "list" else FolderEntries(src, kind)


_scratch = {}


def scratch_store() -> Store:
    """A local folder for listings planned without an output location (removed at exit)."""
    if "store" not in _scratch:
        import atexit
        import shutil
        import tempfile
        folder = tempfile.mkdtemp(prefix="gankit-inputs-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _scratch["store"] = Store(folder, probe=False)
    return _scratch["store"]


def fixed_listing(src: Store, out: Optional[Store], kind: str, url: str,
                  images_per_part: int = 256) -> listing.Listing:
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
        return listing.listing_of(out, index)
    entries = file_entries(src, kind)
    found = listing.write_listing(out, entries, entries.to_id, url, kind, images_per_part)
    if found is None:
        raise FileNotFoundError(f"no Parquet files and no image files at {url}")
    return found


def plan_file_inputs(found: listing.Listing, image_column: str, id_column: Optional[str],
                     images_per_part: int) -> ImageInputs:
    """Parts of `images_per_part` files of a fixed listing; the table has id + image."""
    from gankit.data import IMAGE_TYPE
    id_name = id_column or "image_id"
    schema = pa.schema([pa.field(id_name, pa.string()), pa.field(image_column, IMAGE_TYPE)])
    plan = storage.part_ranges(found.rows, images_per_part)
    return ImageInputs({}, schema, plan, found.rows, id_name, listing=found,
                       images_per_part=images_per_part)


def read_url(url: str, options: dict) -> Optional[bytes]:
    """A file's bytes, or None when it cannot be read."""
    import fsspec
    try:
        with fsspec.open(url, "rb", **storage.storage_options(url, options)) as f:
            return f.read()
    except (OSError, ValueError):
        return None


def url_options(url: str, src: Store) -> dict:
    """The job's fsspec options for a URL on the input's filesystem, none for another."""
    same = url.split("://", 1)[0] == src.fs.unstrip_protocol(src.root).split("://", 1)[0]
    return src.options if same else {}


def files_table(entries: pa.Table, schema: pa.Schema, src: Store) -> pa.Table:
    """Listing rows (image_id, url) -> a table of the ids and image structs read from the
    files. A file that cannot be read keeps no bytes and its URL as path (its error record
    names it)."""
    from gankit.data import image_column
    ids, urls = entries.column("image_id").to_pylist(), entries.column("url").to_pylist()
    data = [read_url(url, url_options(url, src)) for url in urls]
    paths = [url if d is None else i for i, url, d in zip(ids, urls, data)]
    return pa.Table.from_arrays([pa.array(ids, pa.string()), image_column(data, paths)],
                                schema=schema)


def fill_from_paths(src: Store, table: pa.Table, image_column: str) -> pa.Table:
    """Rows whose image struct has a path but no bytes get the bytes of that path, relative
    to the dataset's folder; a path that leaves it or cannot be read keeps no bytes."""
    if image_column not in table.column_names:
        return table
    items = table.column(image_column).to_pylist()
    if all((it or {}).get("bytes") or not (it or {}).get("path") for it in items):
        return table
    for it in items:
        if it and not it.get("bytes") and it.get("path"):
            try:
                it["bytes"] = src.fs.cat_file(src.path(it["path"]))
            except (OSError, ValueError):
                pass
    k = table.schema.get_field_index(image_column)
    column = pa.array(items, type=table.schema.field(k).type)
    return table.set_column(k, table.schema.field(k), column)


def no_bytes_reason(item: Optional[dict]) -> str:
    """Why an image struct holds no bytes."""
    path = (item or {}).get("path")
    if path and (item or {}).get("bytes") is None:
        return f"no image bytes, and {path} cannot be read (paths are relative to the dataset)"
    return "no image bytes"


def part_tables(src: Store, inputs: ImageInputs, spec: PartSpec, image_column: str,
                columns: list, batch_size: int) -> Iterator[pa.Table]:
    """Input part `spec` as tables of `batch_size` rows (`columns` of a Parquet file, or
    the id and image of image files), bytes filled in from paths where missing."""
    if inputs.listing is not None:
        rows = inputs.listing.read(spec.start, spec.stop)        # this part's rows only
        for s in range(0, rows.num_rows, batch_size):
            yield files_table(rows.slice(s, batch_size), inputs.schema, src)
        return
    pf = storage.open_parquet(src, inputs.parts[spec.index])
    try:
        for batch in pf.iter_batches(batch_size=batch_size, columns=columns):
            yield fill_from_paths(src, pa.Table.from_batches([batch]), image_column)
    finally:
        pf.close()


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
                      keep: Optional[list] = None, out: Optional[Store] = None,
                      images_per_part: int = 256) -> ImageInputs:
    """Image files: a fixed listing (kept in `out`) split into parts. Parquet: check every
    file of the dataset at `src` from its footer. `keep`: columns the job copies from each
    file (None: every column of the reference but the image)."""
    kind = listing_kind(src)
    if kind is not None:
        require(images_per_part >= 1, "images_per_part", f"must be >= 1 (got {images_per_part})")
        found = fixed_listing(src, out, kind, url, images_per_part)
        return plan_file_inputs(found, image_column, id_column, images_per_part)
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


def write_bad_file(part: runtime.PartContext, src: Store, path: str, schema: pa.Schema,
                   id_column: str, stage: str, reason: str) -> None:
    """Commit an unusable input file's part: its error records and no rows."""
    records = bad_file_records(src, path, part.spec, id_column, stage, reason)
    runtime.commit_errors(part.out, part.spec, records)
    part.commit_empty(schema, len(records))


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


def inputs_resolution(src: Store, inputs: ImageInputs, column: str) -> int:
    """Size of the first decodable square image of the inputs, in part order."""
    from gankit.images import decode_image
    if inputs.listing is None:
        good = {k: p for k, p in inputs.parts.items() if k not in inputs.bad}
        return first_resolution(src, good, column)
    for spec in inputs.plan:
        for table in part_tables(src, inputs, spec, column, [column], 16):
            for item in table.column(column).to_pylist():
                try:
                    img = decode_image(item.get("bytes"))
                except (ValueError, AttributeError):
                    continue
                if img.shape[0] == img.shape[1]:
                    return int(img.shape[0])
    raise ValueError(f"{src.url}: no decodable square image among its files")


def decode_item(item, prepare=None) -> tuple:
    """An image struct -> (uint8 [H, W, 3] passed through `prepare`, None), or (None, why
    the row cannot be used): no bytes, undecodable, or refused by `prepare` (ValueError)."""
    from gankit.images import decode_image
    data = (item or {}).get("bytes")
    if not data:
        return None, no_bytes_reason(item)
    try:
        img = decode_image(data)                                       # [H, W, 3] uint8
        return (prepare(img) if prepare else img), None
    except ValueError as e:
        return None, str(e)


def decode_rows(items: list, resolution: int) -> tuple:
    """Image structs -> (uint8 [n, R, R, 3] with zeros for bad rows, {row: reason})."""
    def exact(img):
        if img.shape != (resolution, resolution, 3):
            raise ValueError(f"image is {img.shape[0]}x{img.shape[1]}, expected "
                             f"{resolution}x{resolution}")
        return img
    out = np.zeros((len(items), resolution, resolution, 3), dtype=np.uint8)
    bad = {}
    for j, item in enumerate(items):
        img, why = decode_item(item, exact)
        if why:
            bad[j] = why
        else:
            out[j] = img
    return out, bad


# ----------------------------------------------------------------------------------------
# The photos behind an output: what paste-back reads to put edited faces back


_LEGACY: dict = {}      # per process: {(output URL, size): an older output's _inputs.json}


def part_source_urls(out: Store, spec: PartSpec) -> Optional[dict]:
    """{photo id: URL} of the image files behind part `spec` of an output made from image
    files (align's): rows [spec.start, spec.stop) of the listing it keeps, read from the
    shards that hold them (an older output's `_inputs.json` whole, once per process). None
    when that job read a Parquet dataset."""
    index = listing.read_index(out)
    if index is not None:
        rows = listing.listing_of(out, index).read(spec.start, spec.stop)
        return dict(zip(rows.column("image_id").to_pylist(), rows.column("url").to_pylist()))
    if not out.exists(listing.LEGACY):
        return None
    key = (out.url, out.fs.size(out.path(listing.LEGACY)))
    if key not in _LEGACY:
        _LEGACY[key] = out.read_json(listing.LEGACY)["files"]
    return {str(i): url for i, url in _LEGACY[key][spec.start:spec.stop]}


def source_photo_reader(out: Store, spec: PartSpec, source: dict, options: dict):
    """photo id -> (bytes, None) or (None, why), for the photos behind part `spec` of an
    output made from image inputs. `source`: that job's `images`, `image_column` and
    `id_column` (its manifest's config). Image files come from their URLs; a Parquet input's
    photos from its file `spec.index`, each row group read when one of its photos is asked."""
    src = Store(source["images"], options, probe=False)
    urls = part_source_urls(out, spec)
    if urls is not None:
        def read_file(photo_id: str) -> tuple:
            url = urls.get(photo_id)
            if url is None:
                return None, f"{photo_id} is not among the files of part {spec.index} of " \
                             f"{source['images']}"
            data = read_url(url, url_options(url, src))
            return (data, None) if data else (None, f"its photo {url} cannot be read")
        return read_file
    return ParquetPhotos(src, spec.index, source.get("image_column") or "image",
                         source.get("id_column"))


class ParquetPhotos:
    """photo id -> (bytes, None) or (None, why) from one file of a Parquet image dataset."""

    def __init__(self, src: Store, index: int, image_column: str, id_column: Optional[str]):
        self.src, self.image_column = src, image_column
        self.path = input_parts(src).get(index)
        self.rows, self.reader = {}, None
        if self.path is None:
            return
        footer = storage.read_footer(src, self.path)
        id_name = pick_id_column(footer.schema, id_column, src.url)
        ids = storage.read_column(src, self.path, id_name)
        self.rows = {str(i): r for r, i in enumerate(ids)}
        self.reader = storage.RowReader(src, self.path, [image_column])

    def __call__(self, photo_id: str) -> tuple:
        if photo_id not in self.rows:
            return None, f"{photo_id} is not a row of {self.path or self.src.url}"
        item = self.reader.row(self.rows[photo_id])[self.image_column] or {}
        data = item.get("bytes")
        if not data and item.get("path"):           # read from its path, as align did
            try:
                data = self.src.fs.cat_file(self.src.path(item["path"]))
            except (OSError, ValueError):
                data = None
        return (data, None) if data else (None, no_bytes_reason(item))

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
