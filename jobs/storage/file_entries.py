"""The files an input of image files names, as a stream of entry tables (jobs.storage.listing.ENTRY:
key, URL, size) for the listing to sort: a folder or a glob walked a batch at a time
(jobs.storage.walk), a .txt list read a few MB of lines at a time. Keys become ids once every entry
has been seen (`to_id`): paths relative to the folder, the glob's fixed prefix, or the list
entries' common folder. Also the folder no file of the input may leave (jobs.storage.
image_reading reads under it).
"""
from __future__ import annotations

import io
import posixpath
import re
from typing import Iterator, Optional

import pyarrow as pa
import pyarrow.compute as pc
from fsspec.utils import glob_translate

from jobs.storage import Store, listing, walk
from jobs.storage.image_reading import UNDECODABLE

GLOB_CHARS = "*?["


def files_kind(root: str) -> str:
    """'list', 'glob' or 'folder': how an input of image files names them."""
    if root.endswith(".txt"):
        return "list"
    return "glob" if any(c in root for c in GLOB_CHARS) else "folder"


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


def base_folder(root: str, kind: str) -> str:
    """The folder an image-file input's files lie in (as its filesystem names it): the
    folder, a glob's fixed prefix, a list's folder."""
    if kind == "list":
        return posixpath.dirname(root)
    if kind == "glob":
        cut = min(root.find(c) for c in GLOB_CHARS if c in root)
        return root[:cut].rsplit("/", 1)[0]
    return root


def input_folder(src: Store, follow_links: bool) -> Optional[str]:
    """The URL of the folder no file of an image-file input may leave; None: anywhere."""
    return None if follow_links else \
        src.fs.unstrip_protocol(base_folder(src.root, files_kind(src.root)))


class FolderEntries:
    """The files of a folder or a glob as entry tables (jobs.storage.listing.ENTRY), streamed;
    the key is the id: the path relative to the folder or the glob's fixed prefix. A link
    that leaves the folder is listed, not followed (its read refuses it), unless
    `follow_links`."""

    def __init__(self, src: Store, kind: str, follow_links: bool = False):
        self.src, self.follow_links = src, follow_links
        self.base = base_folder(src.root, kind)
        self.pattern = re.compile(glob_translate(src.root)) if kind == "glob" else None

    def __iter__(self) -> Iterator[pa.Table]:
        fs, prefix = self.src.fs, url_prefix(self.src.fs, self.base)
        for paths, sizes in walk.walk_files(fs, self.base, follow_links=self.follow_links):
            if self.pattern is not None:
                kept = [(p, n) for p, n in zip(paths, sizes) if self.pattern.match(p)]
                paths, sizes = [p for p, _ in kept], [n for _, n in kept]
            paths, undecodable = readable_paths(paths)
            rel = pc.utf8_ltrim(pc.utf8_slice_codeunits(paths, len(self.base)), characters="/")
            keep = pc.and_(pc.not_equal(rel, ""),
                           pc.invert(pc.match_substring_regex(rel, HIDDEN_RE)))
            urls = to_urls(fs, paths, prefix)
            if undecodable:                  # never read: their records ask for a rename
                urls = pa.array([UNDECODABLE + p if p in undecodable else u for p, u in
                                 zip(paths.to_pylist(), urls.to_pylist())], pa.string())
            table = pa.Table.from_arrays([rel, urls, pa.array(sizes, pa.int64())],
                                         schema=listing.ENTRY)
            yield table.filter(keep)

    @staticmethod
    def to_id(keys: pa.Array) -> pa.Array:
        return keys


def readable_paths(paths: list) -> tuple:
    """(paths as an Arrow string array, {those whose name is not UTF-8}): a local name of
    other bytes (surrogate-escaped by Python) is written with its bytes as '\\xNN'."""
    try:
        return pa.array(paths, pa.string()), set()
    except UnicodeEncodeError:
        pass
    undecodable = set()
    for j, p in enumerate(paths):
        try:
            p.encode("utf-8")
        except UnicodeEncodeError:
            paths[j] = p.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            undecodable.add(paths[j])
    return pa.array(paths, pa.string()), undecodable


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
                text = io.TextIOWrapper(f, encoding="utf-8-sig")   # a BOM is no name
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


def file_entries(src: Store, kind: str, follow_links: bool = False):
    """The input's files as a stream of entry tables with its `to_id`."""
    return ListEntries(src) if kind == "list" else FolderEntries(src, kind, follow_links)
