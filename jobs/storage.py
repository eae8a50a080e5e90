"""Datasets of numbered Parquet part files on any fsspec URL (local paths, s3://, ...).

Layout of one dataset (one job's output):

    <url>/part-00000.parquet        rows of part 0: a FIXED row range chosen by the job
    <url>/part-00001.parquet        (never by the worker count or the batch size)
    ...
    <url>/_errors/part-00003.parquet  error records (id, part, reason) of part 3, if it had any
    <url>/_manifest.json            written by the driver: job, config, schema, rows, parts, runs

Commit protocol. A part is *committed* when its final name `part-XXXXX.parquet` exists, and a
final name only ever appears complete:
  - local disk: the part is written under a hidden temporary name in the same directory and
    renamed (atomic on POSIX);
  - S3: the part streams to its final key as a multipart upload while it is written, and S3
    makes the key visible only when the upload completes at commit (other object stores: a
    local scratch file uploaded in one request), so no partial object is ever visible under
    a final key.
Error records of a part are committed before the part itself, so a committed part always has
its error records. A rerun lists the committed parts and computes only the others.

Readers stream part by part (`iter_tables`), so a driver never holds a whole dataset.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Iterator, Optional

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

PART_RE = re.compile(r"^part-(\d{5})\.parquet$")
MANIFEST = "_manifest.json"
ERRORS_DIR = "_errors"
TMP_TAG = ".tmp-"          # hidden temporary files: ".part-00000.parquet.tmp-<uuid>"
PART_META_KEY = b"gankit.part"  # JSON {index, start, stop, rows, errors} in each part's footer


class StoreError(ValueError):
    """A storage URL that is malformed or cannot be reached (one clear sentence)."""


def temporary_beside(final: str) -> str:
    """A hidden temporary name in `final`'s directory (made if missing), so that renaming
    it to `final` is atomic; `remove_temporaries` recognises it."""
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    return os.path.join(parent, f".{os.path.basename(final)}{TMP_TAG}{uuid.uuid4().hex}")


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


@dataclass(frozen=True)
class PartSpec:
    """One unit of work: part `index` holds rows [start, stop) of the job's row space."""
    index: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


def part_ranges(count: int, rows_per_part: int) -> list:
    """Fixed partition of rows [0, count) into parts of `rows_per_part` rows (last one shorter)."""
    if count < 0 or rows_per_part < 1:
        raise ValueError(f"bad partition: count={count}, rows_per_part={rows_per_part}")
    return [PartSpec(k, s, min(s + rows_per_part, count))
            for k, s in enumerate(range(0, count, rows_per_part))]


# ----------------------------------------------------------------------------------------
# Opening a store


def storage_options(url: str, options: Optional[dict] = None) -> dict:
    """fsspec options for `url`: the caller's, plus S3 settings from the AWS_* variables.

    s3fs (through botocore) already reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
    AWS_SESSION_TOKEN / AWS_PROFILE / AWS_DEFAULT_REGION and AWS_ENDPOINT_URL; the endpoint is
    also passed explicitly so an older botocore behaves the same. Listings are never cached:
    other processes (Ray workers) add parts while a driver watches.
    """
    opts = dict(options or {})
    if url.startswith(("s3://", "s3a://")):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint and "endpoint_url" not in opts and "client_kwargs" not in opts:
            opts["endpoint_url"] = endpoint
        opts.setdefault("use_listings_cache", False)
    return opts


def _probe(url: str, fs, root: str, options: dict) -> None:
    """Fail fast, with one sentence, when the store behind `url` cannot be reached."""
    if fs.protocol in ("file", "local") or "file" in fs.protocol:
        return
    if "s3" in fs.protocol or "s3a" in fs.protocol:
        import s3fs  # a quick-failing twin: one attempt, short timeouts
        quick = dict(options, skip_instance_cache=True,
                     config_kwargs={"connect_timeout": 5, "read_timeout": 20,
                                    "retries": {"max_attempts": 2}})
        quick.pop("use_listings_cache", None)
        probe_fs, bucket = s3fs.S3FileSystem(**quick), root.split("/", 1)[0]
        try:
            probe_fs.info(bucket)
        except FileNotFoundError:
            raise StoreError(f"the bucket of {url} does not exist") from None
        except Exception as e:  # connection refused, DNS, credentials, timeouts
            raise StoreError(f"cannot reach the store at {url}: {type(e).__name__}: {e}") from None
        return
    try:
        fs.exists(root)
    except Exception as e:
        raise StoreError(f"cannot reach the store at {url}: {type(e).__name__}: {e}") from None


class Store:
    """One dataset location: an fsspec filesystem and a root path inside it."""

    def __init__(self, url: str, options: Optional[dict] = None, probe: bool = True):
        if isinstance(url, os.PathLike):
            url = os.fspath(url)
        if not isinstance(url, str) or not url.strip():
            raise StoreError(f"a storage URL must be a non-empty string, got {url!r}")
        self.url = url.rstrip("/") if len(url) > 1 else url
        self.options = storage_options(url, options)
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url, **self.options)
        except (ValueError, ImportError, TypeError) as e:
            raise StoreError(f"{url} is not a usable storage URL: {e}") from None
        self.root = self.root.rstrip("/")
        self.local = "file" in self.fs.protocol or "local" in self.fs.protocol
        # S3 takes a file in parts and shows it only once the upload completes
        self.multipart = bool({"s3", "s3a"} & set(self.fs.protocol)) and \
            hasattr(self.fs, "abort_mpu")
        if probe:
            _probe(url, self.fs, self.root, self.options)

    def __reduce__(self):  # Ray ships stores to workers: reopen there, do not pickle sockets
        return (Store, (self.url, self.options, False))

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def path(self, *names: str) -> str:
        """The full path of `names` under the root. Names come from job code, but parts of
        them come from data (attribute names, index entries): a name that would climb out
        of the root ('..', an absolute path, an empty segment) is refused."""
        for name in names:
            segments = str(name).replace("\\", "/").split("/")
            if str(name).startswith("/") or any(s in ("", ".", "..") for s in segments):
                raise StoreError(f"refusing the name {name!r} under {self.url}: it would leave "
                                 f"the output location")
        return "/".join([self.root, *names])

    def check_inside(self, final: str) -> None:
        """Local stores: refuse to write `final` when a symbolic link (a linked `_errors` or
        `boundaries` directory) makes it resolve outside the root. Checked before any
        directory is created, so nothing is made outside either."""
        if not self.local:
            return
        parent = os.path.realpath(os.path.dirname(final))
        root = os.path.realpath(self.root)
        if parent != root and not parent.startswith(root + os.sep):
            raise StoreError(f"refusing to write {final}: it resolves to {parent}, outside "
                             f"{self.url} (a symbolic link?)")

    def child(self, *names: str) -> "Store":
        return Store("/".join([self.url, *names]), self.options, probe=False)

    def exists(self, *names: str) -> bool:
        return self.fs.exists(self.path(*names))

    def makedirs(self, *names: str) -> None:
        if self.local:
            os.makedirs(self.path(*names), exist_ok=True)

    def invalidate(self) -> None:
        self.fs.invalidate_cache()

    # -- small files ------------------------------------------------------------------

    def write_bytes(self, name: str, data: bytes) -> None:
        """Atomically write a small file (`name` relative to the root, '/'-separated)."""
        final = self.path(name)
        if self.local:
            self._replace_locally(final, lambda f: f.write(data))
        else:
            self.fs.pipe_file(final, data)  # one PUT: atomic on object stores

    def read_bytes(self, name: str) -> bytes:
        return self.fs.cat_file(self.path(name))

    def write_json(self, name: str, obj) -> None:
        self.write_bytes(name, json.dumps(obj, indent=2, default=str).encode())

    def read_json(self, name: str):
        """A small JSON file; a damaged one fails with one sentence naming it."""
        data = self.read_bytes(name)
        try:
            return json.loads(data)
        except ValueError as e:
            raise ValueError(f"{self.url}/{name} is damaged ({len(data)} bytes, not valid JSON: "
                             f"{e}): restore it, or rerun the job that writes it into a new "
                             f"location") from None

    def put_file(self, local_path: str, name: str) -> None:
        """Atomically publish a finished local file under `name`."""
        final = self.path(name)
        if self.local:
            def copy(dst) -> None:
                with open(local_path, "rb") as src:
                    while chunk := src.read(1 << 22):
                        dst.write(chunk)
            self._replace_locally(final, copy)
        else:
            self.fs.put_file(local_path, final)  # PUT or multipart: visible only when complete

    def _replace_locally(self, final: str, write) -> None:
        """Local stores: `write(file)` into a temporary beside `final`, then rename it into
        place (atomic on POSIX). A failure (a full disk) leaves no temporary behind."""
        self.check_inside(final)
        tmp = temporary_beside(final)
        try:
            with open(tmp, "wb") as f:
                write(f)
            os.replace(tmp, final)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    # -- parts ------------------------------------------------------------------------

    def list_parts(self, subdir: str = "") -> dict:
        """{index: path} of the committed parts (temporary files are ignored)."""
        base = self.path(subdir) if subdir else self.root
        self.invalidate()
        try:
            names = self.fs.ls(base, detail=False)
        except FileNotFoundError:
            return {}
        parts = {}
        for path in names:
            m = PART_RE.match(path.rstrip("/").rsplit("/", 1)[-1])
            if m:
                if self.local and os.path.islink(path):   # its rows would come from elsewhere
                    raise StoreError(f"{path} is a symbolic link, not a committed part: "
                                     f"refusing to read or resume {self.url}")
                parts[int(m.group(1))] = path
        return dict(sorted(parts.items()))

    def move(self, path: str, name: str) -> None:
        """Move the file at `path` (under the root) to `name`: set aside, not deleted."""
        final = self.path(name)
        if self.local:
            self.check_inside(final)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.replace(path, final)
        else:
            self.fs.mv(path, final)
        self.invalidate()

    def remove_temporaries(self) -> int:
        """Delete temporary files a killed writer left behind (local stores only)."""
        if not self.local or not os.path.isdir(self.root):
            return 0
        removed = 0
        for d in (self.root, self.path(ERRORS_DIR)):
            if os.path.isdir(d) and not (d != self.root and os.path.islink(d)):
                for name in os.listdir(d):
                    if TMP_TAG in name:
                        os.remove(os.path.join(d, name))
                        removed += 1
        return removed


def open_store(url: str, options: Optional[dict] = None, create: bool = False,
               must_exist: bool = False) -> Store:
    """Open `url` (fail fast if unreachable); `create` makes a local directory,
    `must_exist` requires a dataset (a manifest or at least one part) to be there."""
    store = Store(url, options)
    if create:
        try:
            store.makedirs()
        except OSError as e:
            raise StoreError(f"cannot create the output directory {url}: {e.strerror}") from None
    if must_exist and not store.exists(MANIFEST) and not store.list_parts():
        raise FileNotFoundError(f"no dataset at {url} (no {MANIFEST} and no part files)")
    return store


# ----------------------------------------------------------------------------------------
# Writing one part


def with_part_metadata(schema: pa.Schema, meta: dict) -> pa.Schema:
    md = dict(schema.metadata or {})
    md[PART_META_KEY] = json.dumps(meta).encode()
    return schema.with_metadata(md)


def parquet_writer(path: str, schema: pa.Schema) -> pq.ParquetWriter:
    """A ParquetWriter with a CRC checksum on every page (readers verify them: a flipped bit
    fails loudly instead of reading back as a wrong latent) that stores encoded image bytes
    as they are: no dictionary, no compression and no min/max statistics on `<image>.bytes`
    columns (PNG/JPEG/WebP bytes do not compress, and hashing and comparing megabytes per
    row cost the writer ~5 ms a 1024 px row). Every other column keeps pyarrow's defaults."""
    images = [f"{f.name}.bytes" for f in schema
              if pa.types.is_struct(f.type) and f.type.get_field_index("bytes") >= 0]
    if not images:
        return pq.ParquetWriter(path, schema, write_page_checksum=True)
    columns = _leaf_paths(schema)
    others = [c for c in columns if c not in images]
    return pq.ParquetWriter(path, schema, use_dictionary=others, write_statistics=others,
                            compression={c: "none" if c in images else "snappy"
                                         for c in columns},
                            write_page_checksum=True)


def _leaf_paths(schema: pa.Schema) -> list:
    """Dotted Parquet paths of the schema's leaf columns ('image.bytes', 'z.list.element'),
    as pyarrow names them: read back from an empty file written in memory."""
    import io
    buf = io.BytesIO()
    pq.write_table(schema.empty_table(), buf)
    buf.seek(0)
    parquet_schema = pq.ParquetFile(buf).schema
    return [parquet_schema.column(i).path for i in range(len(parquet_schema))]


class PartWriter:
    """Streams one part in row groups, then commits it atomically.

        with PartWriter(store, part_name(k), schema) as w:
            w.write(table)   # one or more times; each call is one row group
            w.commit(meta)   # without commit() (an exception), nothing becomes visible

    Local stores: a temporary file beside the final name, renamed at commit. S3: a multipart
    upload of the final key whose parts go up while the row groups are written (on the
    writer thread, beside the model), completed at commit; S3 shows the key only then, and
    an abort cancels the upload. (A killed process leaves its upload open but invisible: a
    bucket lifecycle rule AbortIncompleteMultipartUpload reclaims it.) Other remote stores:
    a local scratch file uploaded in one request at commit.
    """

    def __init__(self, store: Store, name: str, schema: pa.Schema):
        self.store, self.name, self.schema = store, name, schema
        final = store.path(name)
        self.tmp = self.upload = None
        if store.local:  # temporary next to the final name, so the rename stays atomic
            store.check_inside(final)
            self.tmp = temporary_beside(final)
        elif store.multipart:
            self.upload = store.fs.open(final, "wb", autocommit=False)
        else:
            fd, self.tmp = tempfile.mkstemp(suffix=".parquet", prefix="gankit-part-")
            os.close(fd)
        self.rows = 0
        self.writer = None
        self.done = False

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            self.writer = parquet_writer(self.upload or self.tmp, self.schema)
        self.writer.write_table(table.cast(self.schema) if table.schema != self.schema else table)
        self.rows += table.num_rows

    def commit(self, meta: dict) -> None:
        """Close with `meta` ({index, start, stop, errors, ...}) in the footer and publish."""
        meta = dict(meta, rows=self.rows)
        if self.writer is None:  # an empty part still commits (all rows may be errors)
            self.writer = parquet_writer(self.upload or self.tmp, self.schema)
        self.writer.add_key_value_metadata({PART_META_KEY.decode(): json.dumps(meta)})
        self.writer.close()
        if self.upload is not None:
            self.upload.close()          # uploads the last part; the key is not visible yet
            self.upload.commit()         # completes the multipart upload: now it is
        elif self.store.local:
            os.replace(self.tmp, self.store.path(self.name))
        else:
            self.store.put_file(self.tmp, self.name)
            os.remove(self.tmp)
        self.done = True

    def abort(self) -> None:
        if self.done:
            return
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:
                pass
        if self.upload is not None:
            try:
                self.upload.discard()    # cancels the multipart upload
            except Exception:
                pass
        elif os.path.exists(self.tmp):
            os.remove(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.abort()
        return False


def write_table_part(store: Store, name: str, table: pa.Table, meta: dict) -> None:
    """Commit a whole table as one part (used for small tables such as error records)."""
    with PartWriter(store, name, table.schema) as w:
        w.write(table)
        w.commit(meta)


# ----------------------------------------------------------------------------------------
# Reading


def unreadable_parquet(path: str, e: Exception) -> ValueError:
    """One sentence for a file that is no readable Parquet (junk, 0 bytes, truncated)."""
    return ValueError(f"{path} is not a readable Parquet file ({type(e).__name__}: "
                      f"{first_line(e)}): remove or replace it")


def first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0]


def damaged_part(path: str, group: int, e: Exception) -> ValueError:
    """One sentence for a row group that fails its page checksums (or cannot be decoded)."""
    return ValueError(f"{path} is damaged: row group {group} fails its check ({first_line(e)}); "
                      f"delete the file and rerun the job that wrote it (a rerun computes "
                      f"only the missing parts)")


@dataclass
class Footer:
    """What a part's Parquet footer says, and the fingerprint the manifest keeps of it."""
    schema: pa.Schema
    rows: int
    meta: dict            # the part metadata the worker committed ({index, errors, ...})
    bytes: int            # the file's size
    sha256: str           # of the footer: it holds every page's offset, size and statistics

    def record(self) -> dict:
        return {"rows": self.rows, "errors": int(self.meta.get("errors", 0)),
                "bytes": self.bytes, "footer_sha256": self.sha256}


FOOTER_ERRORS = (pa.ArrowException, OSError, ValueError)


def read_footer(store: Store, path: str) -> Footer:
    """A part's footer; one that is not a readable Parquet footer fails in one sentence."""
    try:
        return _read_footer(store, path)
    except FOOTER_ERRORS as e:
        raise unreadable_parquet(path, e) from None


def _read_footer(store: Store, path: str) -> Footer:
    """A part's footer in one ranged read (two when the footer is over 64 KiB)."""
    size = store.fs.size(path)
    tail = store.fs.cat_file(path, start=max(0, size - (1 << 16)), end=size)
    if size < 12 or tail[-4:] != b"PAR1":
        raise ValueError(f"no Parquet footer in its last bytes ({size} bytes in all)")
    n = struct.unpack("<I", tail[-8:-4])[0] + 8      # metadata, its length, the magic
    if n > size - 4:
        raise ValueError(f"its footer claims {n} bytes of a {size}-byte file")
    if n > len(tail):
        tail = store.fs.cat_file(path, start=size - n, end=size)
    footer = tail[-n:]
    md = pq.ParquetFile(io.BytesIO(b"PAR1" + footer)).metadata
    kv = md.metadata or {}
    meta = json.loads(kv[PART_META_KEY]) if PART_META_KEY in kv else {}
    return Footer(md.schema.to_arrow_schema(), md.num_rows, meta, size,
                  hashlib.sha256(footer).hexdigest())


def part_footer(store: Store, path: str) -> tuple:
    """(schema, num_rows, part metadata dict) of one part, from its footer only."""
    footer = read_footer(store, path)
    return footer.schema, footer.rows, footer.meta


def open_parquet(store: Store, path: str) -> pq.ParquetFile:
    """A ParquetFile that reads row groups on demand (parts can be large with images)."""
    f = store.fs.open(path, "rb")
    try:                      # pages carry CRC checksums (parquet_writer): verify them
        return pq.ParquetFile(f, page_checksum_verification=True)
    except (pa.ArrowException, OSError) as e:
        f.close()
        raise unreadable_parquet(path, e) from None


def iter_tables(url_or_store, columns: Optional[list] = None,
                parts: Optional[list] = None) -> Iterator[pa.Table]:
    """Stream a dataset one row group at a time, in part order: memory stays flat."""
    store = url_or_store if isinstance(url_or_store, Store) else open_store(url_or_store,
                                                                            must_exist=True)
    for index, path in store.list_parts().items():
        if parts is not None and index not in parts:
            continue
        pf = open_parquet(store, path)
        try:
            for g in range(pf.num_row_groups):
                try:
                    table = pf.read_row_group(g, columns=columns)
                except (pa.ArrowException, OSError) as e:
                    raise damaged_part(path, g, e) from None
                yield table.replace_schema_metadata(
                    strip_part_metadata(table.schema).metadata)
        finally:
            pf.close()


def read_column(store: Store, path: str, column: str) -> list:
    """One column of one file as a Python list (ids of a file that cannot be used)."""
    pf = open_parquet(store, path)
    try:
        return pf.read(columns=[column]).column(0).to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise damaged_part(path, 0, e) from None
    finally:
        pf.close()


def read_table(url_or_store, columns: Optional[list] = None) -> pa.Table:
    """The whole dataset in memory: for small datasets, tests and notebooks only."""
    tables = list(iter_tables(url_or_store, columns))
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables)


def dataset_rows(store: Store) -> tuple:
    """(total rows, schema of the first part, {index: rows}) from the part footers."""
    rows, schema, per_part = 0, None, {}
    for index, path in store.list_parts().items():
        s, n, _ = part_footer(store, path)
        schema = schema or s
        per_part[index] = n
        rows += n
    return rows, schema, per_part


def strip_part_metadata(schema: pa.Schema) -> pa.Schema:
    md = {k: v for k, v in (schema.metadata or {}).items() if k != PART_META_KEY}
    return schema.with_metadata(md or None)


# ----------------------------------------------------------------------------------------
# Manifest


def schema_json(schema: Optional[pa.Schema]) -> Optional[dict]:
    if schema is None:
        return None
    schema = strip_part_metadata(schema)
    meta = {k.decode(): v.decode(errors="replace") for k, v in (schema.metadata or {}).items()}
    return {"fields": [{"name": f.name, "type": str(f.type)} for f in schema],
            "metadata": meta}


def read_manifest(store: Store) -> Optional[dict]:
    try:
        return store.read_json(MANIFEST)
    except FileNotFoundError:
        return None


def check_identity(store: Store, job: str, identity: dict) -> Optional[dict]:
    """Refuse to mix two different jobs' rows in one output; returns the old manifest."""
    old = read_manifest(store)
    if old is None:
        if store.list_parts():
            raise ValueError(f"{store.url} holds part files but no {MANIFEST}: "
                             f"choose an empty output location")
        return None
    if not store.list_parts() and not old.get("parts"):
        return None        # nothing was committed: a changed job (a smaller micro_batch
                           # after an out-of-memory error) may start over here
    if old.get("job") != job:
        raise ValueError(f"{store.url} holds the output of a '{old.get('job')}' job, "
                         f"not '{job}': choose another output location")
    recorded = old.get("identity", {})
    for key in {**recorded, **identity}:     # a key on one side only counts as None there
        before, value = recorded.get(key), identity.get(key)
        if json.loads(json.dumps(before, default=str)) != json.loads(json.dumps(value, default=str)):
            raise ValueError(f"{store.url} was written with {key}={before!r}, this job has "
                             f"{key}={value!r}: rows would not match; use another output location")
    return old


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass
class RunRecord:
    """What one run of a job did: which parts it computed, which it found committed."""
    started: str = field(default_factory=now)
    finished: Optional[str] = None
    computed: list = field(default_factory=list)   # part indices computed by this run
    reused: list = field(default_factory=list)     # part indices already committed


def footer_metas(store: Store, committed: dict) -> dict:
    """{index: {rows, errors, bytes, footer_sha256}} of committed parts, from their footers."""
    return {index: read_footer(store, path).record() for index, path in committed.items()}


DAMAGED_DIR = "_damaged"


def set_aside_damaged(store: Store, committed: dict, old: Optional[dict]) -> tuple:
    """Check the committed parts a rerun would reuse against the manifest's record of them
    (size and footer hash; page checksums are verified whenever rows are read). A part
    that cannot be read or differs is moved to _damaged/ so it is recomputed, never reused.
    Returns ({index: path} of the good parts, one sentence per part set aside)."""
    recorded = {p["index"]: p for p in (old or {}).get("parts", [])}
    good, said = {}, []
    for index, path in committed.items():
        problem = part_problem(store, path, recorded.get(index))
        if problem is None:
            good[index] = path
            continue
        moved = f"{DAMAGED_DIR}/{part_name(index)}.{time.strftime('%Y%m%dT%H%M%S')}"
        store.move(path, moved)
        said.append(f"{path} {problem}: moved to {moved}, and it is computed again")
    return good, said


def part_problem(store: Store, path: str, entry: Optional[dict]) -> Optional[str]:
    """Why a committed part cannot be reused, or None."""
    try:
        footer = _read_footer(store, path)
    except FOOTER_ERRORS as e:
        return f"cannot be read ({type(e).__name__}: {first_line(e)})"
    if entry is None or "bytes" not in entry:  # committed after the last manifest, or by
        return None                            # a version that kept no fingerprint
    if footer.bytes != entry["bytes"]:
        return f"is {footer.bytes} bytes where the manifest recorded {entry['bytes']}"
    if footer.sha256 != entry["footer_sha256"]:
        return "differs from the part the manifest recorded (its footer hash)"
    return None


def write_manifest(store: Store, job: str, identity: dict, config: dict, plan: list,
                   metas: dict, schema: Optional[pa.Schema], runs: list,
                   complete: bool) -> dict:
    """The driver's record of a job. `metas` {index: {rows, errors}} holds the committed
    parts (from the workers' replies and the footers of parts found committed): the
    manifest is built from part metadata, never from the rows."""
    parts = [{"index": p.index, "file": part_name(p.index), "start": p.start, "stop": p.stop,
              **metas[p.index]} for p in plan if p.index in metas]
    manifest = {
        "format": "gankit.dataset", "version": 1, "job": job,
        "status": "complete" if complete and len(parts) == len(plan) else "incomplete",
        "identity": identity, "config": config, "schema": schema_json(schema),
        "rows": sum(p["rows"] for p in parts), "errors": sum(p["errors"] for p in parts),
        "num_parts": len(plan), "parts": parts,
        "runs": [r.__dict__ if isinstance(r, RunRecord) else r for r in runs],
    }
    store.write_json(MANIFEST, manifest)
    return manifest


# ----------------------------------------------------------------------------------------
# One writer per output location


LEASE = "_lease.json"
LEASE_TTL_S = 120.0        # a lease not renewed for this long is stale (its driver is gone)
LEASE_RENEW_S = 15.0       # the holder renews it this often (a background thread)


class LeaseHeld(StoreError):
    """Another live job is writing to this output location (a StoreError, so the command
    line prints it as one sentence)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobLease:
    """An exclusive lease on an output location, held by one driver for one run.

    `_lease.json` is created whole and only if absent: written aside and hard-linked into
    place on local disk (the link fails if a lease is there), a conditional PUT
    (If-None-Match: *) on S3. A second job finds it and fails fast naming the holder; a job
    that finds its own run token there (a retried create whose reply was lost) goes on; a
    lease that cannot be parsed is debris and is taken over. The holder renews it every
    LEASE_RENEW_S; a lease is stale, and is taken over, when its holder's process is gone
    (same host) or it was not renewed for LEASE_TTL_S (a driver on another machine that
    died). A killed driver therefore never
    blocks its own rerun. Taking over a stale lease deletes it and creates a new one
    exclusively; two jobs racing for the same stale lease in the same instant could both
    delete it, so at most one of them then wins the exclusive create.
    """

    def __init__(self, store: Store, job: str):
        self.store, self.job = store, job
        self.token = uuid.uuid4().hex
        self._stop = None
        self._thread = None

    def _record(self) -> bytes:
        import socket
        return json.dumps({"job": self.job, "token": self.token, "host": socket.gethostname(),
                           "pid": os.getpid(), "renewed": time.time()}).encode()

    def _create(self) -> bool:
        """Exclusive create; False when a lease is already there."""
        path = self.store.path(LEASE)
        if self.store.local:    # written aside, then linked: the lease appears complete
            tmp = temporary_beside(path)
            with open(tmp, "wb") as f:
                f.write(self._record())
            try:
                os.link(tmp, path)  # fails if a lease is there: an exclusive create
            except (FileExistsError, FileNotFoundError):   # (the latter: tmp swept away)
                return False
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
            return True
        try:
            self.store.fs.pipe_file(path, self._record(), mode="create")
        except FileExistsError:
            return False
        return True

    def _read(self) -> Optional[dict]:
        """The lease there, None when there is none; {'unreadable': raw bytes} when it
        cannot be parsed (leases are created whole, so such a one is debris: a kill or a
        full disk in an older version's create-then-write)."""
        path = self.store.path(LEASE)
        if self.store.local and os.path.islink(path):    # never followed, never replaced
            raise LeaseHeld(f"{path} is a symbolic link, not a lease: refusing to write "
                            f"{self.store.url}")
        try:
            raw = self.store.read_bytes(LEASE)
        except FileNotFoundError:
            return None
        try:
            lease = json.loads(raw)
        except ValueError:
            return {"unreadable": raw}
        return lease if isinstance(lease, dict) else {"unreadable": raw}

    @staticmethod
    def stale(lease: dict) -> bool:
        import socket
        if "unreadable" in lease:
            return True
        if lease.get("host") == socket.gethostname() and isinstance(lease.get("pid"), int) \
                and lease["pid"] > 0 and not _pid_alive(lease["pid"]):
            return True
        return time.time() - float(lease.get("renewed", 0)) > LEASE_TTL_S

    def acquire(self) -> "JobLease":
        for _ in range(3):
            if self._create():
                self._start_renewing()
                return self
            held = self._read()
            if held is None:
                continue                                   # released meanwhile: try again
            if held.get("token") == self.token:            # ours: a retried create whose
                self._start_renewing()                     # first reply was lost (S3)
                return self
            if not self.stale(held):
                age = time.time() - float(held.get("renewed", 0))
                raise LeaseHeld(
                    f"{self.store.url} is being written by another '{held.get('job')}' job "
                    f"(pid {held.get('pid')} on {held.get('host')}, lease renewed {age:.0f} s "
                    f"ago): wait for it to finish or choose another output location")
            self._remove_if(lambda current: current == held)
        raise LeaseHeld(f"{self.store.url}: could not take the output lease; another job is "
                        f"starting there")

    def _remove_if(self, same) -> None:
        """Delete the lease if `same(lease there)`: still the stale one read, or still ours."""
        current = self._read()
        if current is not None and same(current):
            try:
                self.store.fs.rm_file(self.store.path(LEASE))
            except FileNotFoundError:
                pass

    def _start_renewing(self) -> None:
        import threading
        self._stop = threading.Event()

        def renew():
            while not self._stop.wait(LEASE_RENEW_S):
                try:
                    self.store.write_bytes(LEASE, self._record())
                except Exception:       # a store hiccup: the next renewal tries again
                    pass
        self._thread = threading.Thread(target=renew, name="gankit-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._thread.join()
            self._stop = None
            try:
                self._remove_if(lambda current: current.get("token") == self.token)
            except Exception as e:   # an unreachable store must not hide the job's own error
                print(f"[lease] could not remove {self.store.path(LEASE)} ({type(e).__name__}); "
                      f"it goes stale in {LEASE_TTL_S:.0f} s", file=sys.stderr, flush=True)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
