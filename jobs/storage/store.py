"""A store: the root of one dataset on any fsspec URL, its file names and parts' row ranges."""
from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass
from typing import Optional

import fsspec

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

    def open_for_arrow(self, path: str, **kw):
        """A file pyarrow reads ranges of: a local path as pyarrow's own file, whose buffers
        are Arrow's (a Python file's reads come back as buffers that hold Python objects;
        one that an Arrow worker thread releases while the interpreter exits takes the GIL
        there and aborts the process: `terminate called without an active exception`);
        else fsspec's file (`kw`: its options)."""
        if self.local:
            import pyarrow as pa
            return pa.OSFile(path, "r")
        return self.fs.open(path, "rb", **kw)

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
