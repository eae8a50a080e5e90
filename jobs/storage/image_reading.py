"""Reading the bytes of the image files a job reads (a listing's URLs, a Parquet row's path),
why one cannot be read, and decoding them into rows.

An input folder is a boundary: a file is read only where it really lies inside the folder
it was listed from (a folder, a glob's fixed prefix, a .txt list's folder for the entries
under it), so a symbolic link planted in a photo folder (to /etc/passwd, to a sibling
folder, through a chain of links) becomes an error record saying it leaves the folder, and
nothing of its target is read. The check is made where the bytes are opened, not only when
the folder was listed: the path is resolved before opening it (the record's sentence), and
the file actually opened is resolved again after (a link swapped in between is refused).
A path with a '..' segment under the folder is refused on every filesystem. `follow_links`
lifts the boundary. A list's absolute entries outside its folder are the user's explicit
choice and are read as given.

A file that cannot be read keeps no bytes and its URL as path; the cause (not found,
permission denied, connection refused, timed out, an HTTP status, ...) is kept in this
process for the error record (`no_bytes_reason`), which is written by the same worker.
"""
from __future__ import annotations

import asyncio
import errno
import os
import socket
import stat
from collections import OrderedDict
from typing import Optional

import fsspec
import numpy as np
import pyarrow as pa

from gankit.data import image_column as image_structs
from gankit.images import decode_image
from jobs import storage
from jobs.storage import Store
from jobs.storage.walk import inside

MAX_FILE_BYTES = 1 << 30           # no photo is this large; a bigger file is refused unread
CAUSES_KEPT = 4096                 # the causes of the last unreadable files, per process
LOCAL = "file://"
UNDECODABLE = "undecodable-name://"      # a listed local file whose name is not UTF-8

_causes: OrderedDict = OrderedDict()     # {path as its image struct keeps it: why unread}


OS_CAUSES = {errno.ENAMETOOLONG: "its path is longer than the system allows",
             errno.ELOOP: "a loop of symbolic links", errno.ENXIO: "a socket or device"}


class Unreadable(Exception):
    """A file is not read: the cause, in words."""


def remember(path: str, cause: str) -> None:
    _causes[path] = cause
    _causes.move_to_end(path)
    while len(_causes) > CAUSES_KEPT:
        _causes.popitem(last=False)


def http_errors() -> tuple:
    """(response errors, connection errors, any client error) of aiohttp, which fsspec's
    HTTP filesystem raises; empty where it is not installed."""
    try:
        import aiohttp
    except ImportError:
        return (), (), ()
    return (aiohttp.ClientResponseError,), (aiohttp.ClientConnectorError,), \
        (aiohttp.ClientError,)


def failure(e: BaseException) -> str:
    """An exception from opening or reading a file -> its cause in a few words."""
    response, connect, _ = http_errors()
    if isinstance(e, Unreadable):
        return str(e)
    if isinstance(e, FileNotFoundError) and e.__cause__ is not None:
        return failure(e.__cause__)              # fsspec's HTTP: the status, the timeout
    if isinstance(e, response):
        return f"HTTP {e.status}" + (f" {e.message}" if e.message else "")
    if isinstance(e, FileNotFoundError):
        return "not found"
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, connect):
        e = getattr(e, "os_error", None) or e    # what the connection met
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, socket.gaierror):
        return f"host not found ({e.strerror})"
    if isinstance(e, (TimeoutError, asyncio.TimeoutError, fsspec.exceptions.FSTimeoutError)):
        return "timed out"
    if isinstance(e, IsADirectoryError):
        return "is a folder"
    if isinstance(e, OSError) and e.errno in OS_CAUSES:
        return OS_CAUSES[e.errno]
    if isinstance(e, OSError) and e.strerror:
        return e.strerror                        # not str(e): that repeats the path
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")


def read_errors() -> tuple:
    """What reading a file may raise for a cause in the file, its name or its host."""
    return (OSError, ValueError, ImportError, Unreadable, asyncio.TimeoutError,
            fsspec.exceptions.FSTimeoutError) + http_errors()[2]


# ----------------------------------------------------------------------------------------
# The boundary of an input folder


def under(url: str, folder: Optional[str]) -> bool:
    """Whether `url` is named under `folder` (a URL), hence confined to it."""
    return folder is not None and url.startswith(folder.rstrip("/") + "/")


def check_lexical(url: str, folder: str) -> None:
    rest = url[len(folder.rstrip("/")) + 1:]
    if ".." in rest.split("/"):
        raise Unreadable(f"leaves the input folder {folder} (a '..' in its path)")


def opened_path(fd: int) -> Optional[str]:
    """The real path of an open file (Linux: /proc), or None where it cannot be told."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def check_opened(fd: int, now: os.stat_result, path: str, folder: str,
                 real_folder: str) -> None:
    """The file open at `fd` lies in the folder (a link swapped in after the name was
    checked is refused). Linux tells the opened file's path; elsewhere the name is resolved
    again and must be the same file."""
    real = opened_path(fd)
    if real is None:
        real = os.path.realpath(path)
        again = os.stat(real)
        if (again.st_dev, again.st_ino) != (now.st_dev, now.st_ino):
            real = None
    if real is None or not inside(real, real_folder):
        raise Unreadable(f"leaves the input folder {folder} (a link swapped in while it "
                         f"was opened)")


def read_local(path: str, folder: Optional[str]) -> bytes:
    """A local file's bytes; `folder` (a local path, or None: anywhere) is the folder it
    must really lie in. Refused unopened: a path leaving it, a folder, a FIFO, socket or
    device, a file over MAX_FILE_BYTES."""
    real_folder = os.path.realpath(folder) if folder is not None else None
    if real_folder is not None and not inside(os.path.realpath(path), real_folder):
        raise Unreadable(f"leaves the input folder {folder} (a symbolic link to outside it; "
                         f"--follow-links reads such links)")
    st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        raise Unreadable("is a folder, not a file (one the listing could not open, or one "
                         "made since)")
    if not stat.S_ISREG(st.st_mode):
        raise Unreadable("is not a regular file (a FIFO, socket or device)")
    if st.st_size > MAX_FILE_BYTES:
        raise Unreadable(f"is {st.st_size:,} bytes, more than any image gankit reads "
                         f"({MAX_FILE_BYTES:,})")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        now = os.fstat(fd)
        if real_folder is not None:                 # the file opened, not the name asked
            check_opened(fd, now, path, folder, real_folder)
        if not stat.S_ISREG(now.st_mode):
            raise Unreadable("is not a regular file (a FIFO, socket or device)")
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise Unreadable(f"grew past {MAX_FILE_BYTES:,} bytes while it was read")
    return data


def read_url(url: str, options: dict, folder: Optional[str] = None) -> tuple:
    """(a file's bytes, None), or (None, why it cannot be read). `folder`: the input folder
    (a URL) a file named under it must not leave; None: no boundary."""
    confined = under(url, folder)
    if url.startswith(UNDECODABLE):
        return None, "its name is not UTF-8 text: rename the file to read it"
    try:
        if confined:
            check_lexical(url, folder)
        if url.startswith(LOCAL) or "://" not in url:
            path = url[len(LOCAL):] if url.startswith(LOCAL) else url
            return read_local(path, folder[len(LOCAL):] if confined else None), None
        with fsspec.open(url, "rb", **storage.storage_options(url, options)) as f:
            size = getattr(f, "size", None)
            if size is not None and size > MAX_FILE_BYTES:
                raise Unreadable(f"is {size:,} bytes, more than any image gankit reads "
                                 f"({MAX_FILE_BYTES:,})")
            data = f.read(MAX_FILE_BYTES + 1)      # a server may not say the size
        if len(data) > MAX_FILE_BYTES:
            raise Unreadable(f"is more than {MAX_FILE_BYTES:,} bytes, more than any image "
                             f"gankit reads")
        return data, None
    except read_errors() as e:
        return None, failure(e)


def url_options(url: str, src: Store) -> dict:
    """The job's fsspec options for a URL on the input's filesystem, none for another."""
    same = url.split("://", 1)[0] == src.fs.unstrip_protocol(src.root).split("://", 1)[0]
    return src.options if same else {}


def read_relative(src: Store, path: str, follow_links: bool = False) -> tuple:
    """(bytes, None) or (None, why) of a path relative to the dataset at `src` (a Parquet
    row's image path): one that is absolute or climbs out ('..', a link) is refused."""
    try:
        full = src.path(path)
    except ValueError:
        return None, "absolute or climbs out of the dataset's folder ('..')"
    folder = None if follow_links else src.fs.unstrip_protocol(src.root)
    return read_url(src.fs.unstrip_protocol(full), src.options, folder)


# ----------------------------------------------------------------------------------------
# Into rows


def files_table(entries: pa.Table, schema: pa.Schema, src: Store,
                folder: Optional[str] = None) -> pa.Table:
    """Listing rows (image_id, url) -> a table of the ids and image structs read from the
    files (`folder`: the boundary, see read_url). A file that cannot be read keeps no
    bytes and its URL as path (its error record names it and the cause)."""
    ids, urls = entries.column("image_id").to_pylist(), entries.column("url").to_pylist()
    data = []
    for url in urls:
        got, why = read_url(url, url_options(url, src), folder)
        if why is not None:
            remember(url, why)
        data.append(got)
    paths = [url if d is None else i for i, url, d in zip(ids, urls, data)]
    return pa.Table.from_arrays([pa.array(ids, pa.string()), image_structs(data, paths)],
                                schema=schema)


def fill_from_paths(src: Store, table: pa.Table, image_column: str,
                    follow_links: bool = False) -> pa.Table:
    """Rows whose image struct has a path but no bytes get the bytes of that path, relative
    to the dataset's folder; a path that leaves it or cannot be read keeps no bytes."""
    if image_column not in table.column_names:
        return table
    items = table.column(image_column).to_pylist()
    if all((it or {}).get("bytes") or not (it or {}).get("path") for it in items):
        return table
    for it in items:
        if it and not it.get("bytes") and it.get("path"):
            it["bytes"], why = read_relative(src, it["path"], follow_links)
            if why is not None:
                remember(it["path"], why)
    k = table.schema.get_field_index(image_column)
    column = pa.array(items, type=table.schema.field(k).type)
    return table.set_column(k, table.schema.field(k), column)


def no_bytes_reason(item: Optional[dict]) -> str:
    """Why an image struct holds no bytes: the file it names and why that was not read
    (relative paths are relative to the dataset: said where the path is one)."""
    path = (item or {}).get("path")
    if not path or (item or {}).get("bytes") is not None:
        return "no image bytes"
    cause = _causes.get(path, "")
    if "://" not in path and not path.startswith("/"):
        cause += ("; " if cause else "") + "paths are relative to the dataset"
    return f"no image bytes: {path} cannot be read" + (f" ({cause})" if cause else "")


def decode_item(item, prepare=None) -> tuple:
    """An image struct -> (uint8 [H, W, 3] passed through `prepare`, None), or (None, why
    the row cannot be used): no bytes, undecodable, or refused by `prepare` (ValueError)."""
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
