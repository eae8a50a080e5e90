"""Walking a folder on any fsspec filesystem a batch of files at a time, so that a folder of
ten million files never sits in memory as one list: local folders through os.scandir, S3
prefixes through ListObjectsV2 pages (s3fs's `find` gathers the whole listing before it
returns), any other filesystem one directory at a time (fsspec's `walk`).

Batches come in no particular order (S3's pages happen to be in key order, local folders
are not); the caller sorts (jobs.storage.listing).
"""
from __future__ import annotations

import os
from typing import Iterator, Optional

from fsspec.asyn import sync

S3_PAGE_KEYS = 1000          # keys per ListObjectsV2 request (S3's largest page)
BATCH_FILES = 8192           # files per batch handed to the caller


def is_local(fs) -> bool:
    protocol = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return "file" in protocol or "local" in protocol


def is_s3(fs) -> bool:
    protocol = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return bool({"s3", "s3a"} & set(protocol)) and hasattr(fs, "_call_s3")


def hidden_name(name: str) -> bool:
    return name.startswith((".", "_"))


def walk_files(fs, root: str, batch: Optional[int] = None,
               follow_links: bool = False) -> Iterator[tuple]:
    """Every file under `root` (a path as `fs` names it), recursively, in batches of
    (paths, sizes): paths as `fs` names them, sizes in bytes (None where unknown). Local
    walks skip hidden and `_` names below `root` (the caller drops them anyway), and list
    a symbolic link that leaves `root` as a file of unknown size, unfollowed, unless
    `follow_links` (see local_files). `batch`: files per batch (default BATCH_FILES)."""
    batch = batch or BATCH_FILES
    if is_local(fs):
        files = local_files(root, follow_links)
    elif is_s3(fs):
        files = (f for page, _ in s3_pages(fs, root.rstrip("/") + "/") for f in page)
    else:
        files = ((info["name"], info.get("size")) for _, _, found in
                 fs.walk(root, detail=True) for info in found.values())
    paths, sizes = [], []
    for path, size in files:
        paths.append(path)
        sizes.append(size)
        if len(paths) == batch:
            yield paths, sizes
            paths, sizes = [], []
    if paths:
        yield paths, sizes


def local_files(root: str, follow_links: bool = False) -> Iterator[tuple]:
    """(path, size) of every file under a local folder, one directory open at a time.
    Real folders are walked first, then linked folders in name order, each real folder
    once (a link back up the tree is not a loop): a file is listed under its real path
    where it has one in the tree, whatever order the directories come in. Listed as they
    are (size None), for their reads to say why they are no photos: a link that leaves
    `root` (unless `follow_links`: then followed anywhere), a dangling link, a FIFO,
    socket or device, a folder that cannot be opened."""
    real_root, seen, linked = os.path.realpath(root), set(), []
    yield from walk_tree(root, root, real_root, follow_links, seen, linked)
    while linked:
        batch = sorted(linked)
        linked.clear()
        for folder in batch:
            yield from walk_tree(folder, root, real_root, follow_links, seen, linked)


def walk_tree(top: str, root: str, real_root: str, follow_links: bool, seen: set,
              linked: list) -> Iterator[tuple]:
    """The files under `top` through real folders; linked folders found go to `linked`."""
    stack = [top]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in seen:
            continue
        seen.add(real)
        try:
            entries = os.scandir(folder)
        except (FileNotFoundError, NotADirectoryError):
            continue                         # vanished meanwhile (or `root` is no folder)
        except OSError as e:                 # permission denied, a path too long, ...
            if folder == root:
                raise ValueError(f"{root}: cannot list the folder ({e.strerror})") from None
            yield folder, None               # its record says why (its read fails alike)
            continue
        with entries:
            for e in entries:
                if not hidden_name(e.name):
                    found = local_entry(e, real_root, follow_links, stack, linked)
                    if found is not None:
                        yield found


def local_entry(e: os.DirEntry, real_root: str, follow_links: bool, stack: list,
                linked: list) -> Optional[tuple]:
    """One directory entry: a folder goes on `stack` (a linked one on `linked`), a file is
    (path, size), a link leaving `real_root` (unless `follow_links`) and anything else
    (path, None)."""
    try:
        if e.is_symlink():
            if not follow_links and not inside(os.path.realpath(e.path), real_root):
                return e.path, None
            if e.is_dir():
                linked.append(e.path)
                return None
        if e.is_dir():
            stack.append(e.path)
            return None
        if e.is_file():
            return e.path, e.stat().st_size
        return (e.path, None) if os.path.lexists(e.path) else None
    except OSError:                          # vanished meanwhile
        return None


def inside(real: str, real_root: str) -> bool:
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def s3_pages(fs, prefix: str, delimiter: str = "",
             page_keys: Optional[int] = None) -> Iterator[tuple]:
    """ListObjectsV2 under `prefix` ('bucket/key-prefix'), one request at a time: per page
    ([(path, size)] of its objects, ['bucket/sub-prefix'] of its common prefixes), of
    `page_keys` keys at most (default S3_PAGE_KEYS). Keys that end in '/' (folder markers)
    are no files."""
    bucket, _, key_prefix = prefix.partition("/")
    kwargs = dict(Bucket=bucket, Prefix=key_prefix, MaxKeys=page_keys or S3_PAGE_KEYS,
                  **getattr(fs, "req_kw", {}))
    if delimiter:
        kwargs["Delimiter"] = delimiter
    while True:
        page = sync(fs.loop, fs._call_s3, "list_objects_v2", **kwargs)
        files = [(f"{bucket}/{c['Key']}", c.get("Size")) for c in page.get("Contents", [])
                 if not c["Key"].endswith("/")]
        folders = [f"{bucket}/{p['Prefix'].rstrip('/')}" for p in page.get("CommonPrefixes", [])]
        yield files, folders
        if not page.get("IsTruncated"):
            return
        kwargs["ContinuationToken"] = page["NextContinuationToken"]


def child_names(fs, root: str) -> Iterator[str]:
    """The names (last path segment) of the files and folders directly under `root`, a
    page at a time where the filesystem pages."""
    if is_local(fs):
        try:
            with os.scandir(root) as entries:
                for e in entries:
                    yield e.name
        except (FileNotFoundError, NotADirectoryError):
            return
    elif is_s3(fs):
        for files, folders in s3_pages(fs, root.rstrip("/") + "/", delimiter="/"):
            for path in [p for p, _ in files] + folders:
                yield path.rsplit("/", 1)[-1]
    else:
        try:
            for path in fs.ls(root, detail=False):
                yield path.rstrip("/").rsplit("/", 1)[-1]
        except (FileNotFoundError, NotADirectoryError):
            return
