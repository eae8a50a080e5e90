"""The fixed listing of an input of image files (a folder, a glob, a .txt list): Parquet
shards in the job's output, written once while the input is listed, read by row range.

    <out>/_inputs/listing-00000.parquet   rows [0, S): image_id, url, size (null: unknown)
    <out>/_inputs/listing-00001.parquet   rows [S, 2S) ...
    <out>/_inputs/listing.json            written last, so the listing is whole when it
                                          exists: the input URL, rows, shard and row group
                                          sizes, each shard's bytes, the fingerprint

Rows are sorted by id (then URL), so part k of a job is always the same files, and files
added to the input later never shift the parts: a rerun reads this listing, not the input.
A row group holds whole parts (and at least MIN_GROUP_ROWS rows), a shard GROUPS_PER_SHARD
row groups: a worker reads one shard's footer and the row group of its part, never the
whole listing (one file of ten million rows would have a footer of megabytes).

The driver never holds the listing either. Entries arrive in tables while the input is
listed; every `chunk_rows` of them are sorted in memory and spilled to a run on local disk
(a run grows while chunks arrive in order: an S3 listing, which ListObjectsV2 returns in key
order, makes one run); the runs are then merged, FAN_IN at a time and one row group of each
(longer runs first when there are more), and written out row group by row group. It holds
about `chunk_rows` entries, whatever the listing's length.

Outputs written before this layout hold the whole listing in `_inputs.json` ({images,
kind, files: [[id, url], ...]}); a rerun converts it once into this layout with the same
rows and fingerprint, so its committed parts are reused.
"""
from __future__ import annotations

import bisect
import hashlib
import io
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jobs import storage
from jobs.storage import Store
from jobs.storage.reading import footer_bytes

LISTING_DIR = "_inputs"
INDEX = f"{LISTING_DIR}/listing.json"
LEGACY = "_inputs.json"            # the whole listing as JSON, in outputs written before
SCHEMA = pa.schema([pa.field("image_id", pa.string()), pa.field("url", pa.string()),
                    pa.field("size", pa.int64())])
ENTRY = pa.schema([pa.field("key", pa.string()), pa.field("url", pa.string()),
                   pa.field("size", pa.int64())])     # a listed file, before its id is known
CHUNK_ROWS = 1 << 17               # entries sorted at once in memory (~20 MB of strings)
RUN_GROUP_ROWS = 4096              # row group of a spilled run: what the merge holds of it
FAN_IN = 32                        # runs merged at once (the merge holds a group of each)
MIN_GROUP_ROWS = 256
GROUPS_PER_SHARD = 64


def shard_name(k: int) -> str:
    return f"{LISTING_DIR}/listing-{k:05d}.parquet"


def base(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def damaged(out: Store, what: str) -> ValueError:
    """One sentence for a listing that cannot be read (a shard missing, truncated, flipped
    bits, an index edited): never advice to delete one shard, which the index still names."""
    return ValueError(f"the listing kept in {out.url}/{LISTING_DIR} is damaged ({what}): "
                      f"delete {out.url}/{LISTING_DIR} and rerun to list the input again (the "
                      f"committed parts are reused if its files are the ones first listed; "
                      f"else use a new output location)")


# ----------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class Listing:
    """A written listing: where it is and its shape (a few numbers: every worker gets it)."""
    url: str                       # the output location that holds _inputs/
    options: dict
    rows: int
    shard_rows: int                # rows of every shard but the last
    sha256: str                    # of the listing as JSON [[id, url], ...] (see JsonDigest)
    written: str                   # a token of this writing (keys the workers' footer cache)

    def store(self) -> Store:
        return Store(self.url, self.options, probe=False)

    def read(self, start: int, stop: int) -> pa.Table:
        """Rows [start, stop) as a table (image_id, url), from the row groups holding them."""
        store, tables = self.store(), []
        for k in range(start // self.shard_rows, -(-stop // self.shard_rows)):
            first = k * self.shard_rows                   # the shard's first row
            lo, hi = max(start, first) - first, min(stop, first + self.shard_rows) - first
            if hi > lo:
                tables.append(read_shard_rows(store, shard_name(k), lo, hi, self.written))
        if not tables:
            return SCHEMA.empty_table().select(["image_id", "url"])
        return pa.concat_tables(tables)


def read_shard_rows(store: Store, name: str, lo: int, hi: int, written: str) -> pa.Table:
    """Rows [lo, hi) of one shard: its footer, then only the row groups that hold them."""
    path = store.path(name)
    metadata = shard_footer(store, name, written)
    groups, first, row = [], None, 0
    for g in range(metadata.num_row_groups):
        n = metadata.row_group(g).num_rows
        if row < hi and row + n > lo:
            first = row if first is None else first
            groups.append(g)
        row += n
    if hi > row:
        raise damaged(store, f"{base(name)} holds {row} rows, the index says at least {hi}")
    f = store.open_for_arrow(path, cache_type="none")  # only the byte ranges pyarrow asks
    pf, failed = None, None
    try:
        pf = pq.ParquetFile(f, metadata=metadata, page_checksum_verification=True)
        table = pf.read_row_groups(groups, columns=["image_id", "url"])
    except (pa.ArrowException, OSError) as e:
        failed = storage.first_line(e)
    finally:
        if pf is not None:
            pf.close()
        f.close()
    if failed is not None:
        raise damaged(store, f"{base(name)}: row group {groups[0]} fails its check: {failed}")
    return table.slice(lo - first, hi - lo)


_footers = {}          # {(url, name, written): FileMetaData}: the shards a worker read last
FOOTERS_KEPT = 4


def shard_footer(store: Store, name: str, written: str) -> pq.FileMetaData:
    """A shard's footer in two small ranged reads (pyarrow would read its last 64 KiB), kept
    for the next parts of the same shard: a listing's shards never change once its index
    names them, and a listing written anew there has another `written` token."""
    key = (store.url, name, written)
    if key not in _footers:
        try:
            footer, _ = footer_bytes(store, store.path(name), guess=8)
            metadata = pq.ParquetFile(io.BytesIO(b"PAR1" + footer)).metadata
        except FileNotFoundError:
            raise damaged(store, f"{base(name)} is missing") from None
        except (pa.ArrowException, OSError, ValueError) as e:
            raise damaged(store, f"{base(name)} is no readable Parquet file: "
                                 f"{storage.first_line(e)}") from None
        if len(_footers) >= FOOTERS_KEPT:
            _footers.pop(next(iter(_footers)))
        _footers[key] = metadata
    return _footers[key]


def read_index(out: Store) -> Optional[dict]:
    """The index of the listing at `out`, or None when none was finished there."""
    try:
        index = out.read_json(INDEX)
    except FileNotFoundError:
        return None
    except ValueError:
        raise damaged(out, "listing.json is not valid JSON") from None
    fields = {"rows": int, "shards": int, "shard_rows": int, "sha256": str, "written": str}
    wrong = [k for k, t in fields.items() if not isinstance(index, dict) or
             not isinstance(index.get(k), t) or (t is int and index[k] < 1)]
    if wrong:
        raise damaged(out, f"listing.json lacks or has a wrong {', '.join(wrong)}")
    return index


def listing_of(out: Store, index: dict) -> Listing:
    return Listing(out.url, out.options, index["rows"], index["shard_rows"], index["sha256"],
                   index["written"])


def check_shards(out: Store, index: dict) -> None:
    """Every shard the index names is there, of the size it was written (listings written
    before sizes were kept: there); one sentence naming the first that is not. One listing
    of `_inputs/`, before any work."""
    try:
        found = {base(p.rstrip("/")): size for p, size in
                 ((i["name"], i.get("size")) for i in
                  out.fs.ls(out.path(LISTING_DIR), detail=True))}
    except FileNotFoundError:
        found = {}
    sizes = index.get("shard_bytes") or [None] * index["shards"]
    for k in range(index["shards"]):
        name = base(shard_name(k))
        if name not in found:
            raise damaged(out, f"{name} is missing")
        if sizes[k] is not None and found[name] != sizes[k]:
            raise damaged(out, f"{name} is {found[name]:,} bytes, written as {sizes[k]:,}")


# ----------------------------------------------------------------------------------------
# Sorting a stream of entries with bounded memory


def sort_entries(table: pa.Table) -> pa.Table:
    return table.take(pc.sort_indices(table, [("key", "ascending"), ("url", "ascending")]))


def row_key(table: pa.Table, i: int) -> tuple:
    """(key, url) of row i: the sort order of entries (Python compares str by code point,
    Arrow compares UTF-8 bytes: the same order)."""
    return table.column("key")[i].as_py(), table.column("url")[i].as_py()


class _RowKeys:
    """A sorted table's rows as a sequence of (key, url), for bisect (log n lookups)."""

    def __init__(self, table: pa.Table):
        self.table = table

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, i: int) -> tuple:
        return row_key(self.table, i)


class ExternalSort:
    """Sorts entry tables (ENTRY: key, url, size) by (key, url), dropping repeated rows,
    while holding about `chunk_rows` of them: sorted chunks spill to runs in a local
    scratch folder, `merged()` streams them back in order, one row group of each of at
    most FAN_IN runs at a time. `peak_rows`: the most rows held at once; `runs`: the runs
    spilled."""

    def __init__(self, chunk_rows: Optional[int] = None):
        self.chunk_rows = chunk_rows or CHUNK_ROWS
        self.scratch = tempfile.mkdtemp(prefix="gankit-listing-")
        self.buffer, self.buffered = [], 0
        self.runs, self.writer, self.last = [], None, None
        self.peak_rows = 0

    def add(self, table: pa.Table) -> None:
        self.buffer.append(table)
        self.buffered += table.num_rows
        self.peak_rows = max(self.peak_rows, self.buffered)
        if self.buffered >= self.chunk_rows:
            self.spill()

    def spill(self) -> None:
        """Sort the buffered entries; append them to the current run when they all come
        after it, else start a new run."""
        if not self.buffered:
            return
        chunk = sort_entries(pa.concat_tables(self.buffer).combine_chunks())
        self.buffer, self.buffered = [], 0
        if self.writer is None or row_key(chunk, 0) < self.last:
            self.close_run()
            self.runs.append(os.path.join(self.scratch, f"run-{len(self.runs):05d}.parquet"))
            self.writer = pq.ParquetWriter(self.runs[-1], ENTRY, compression="zstd")
        self.writer.write_table(chunk, row_group_size=RUN_GROUP_ROWS)
        self.last = row_key(chunk, chunk.num_rows - 1)

    def close_run(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def merged(self) -> Iterator[pa.Table]:
        """The entries in order, repeated rows dropped, in tables of bounded size. Runs are
        merged FAN_IN at a time into longer runs until FAN_IN or fewer are left, so the
        merge holds FAN_IN row groups whatever the number of runs."""
        self.spill()
        self.close_run()
        runs = self.runs
        while len(runs) > FAN_IN:
            runs = [self.merge_to_run(runs[s:s + FAN_IN]) for s in range(0, len(runs), FAN_IN)]
        last = None
        for table in self.merge(runs):
            table, last = drop_repeats(table, last)
            if table.num_rows:
                yield table

    def merge_to_run(self, paths: list) -> str:
        """Merge runs into one new run (they are deleted); returns its path."""
        path = os.path.join(self.scratch, f"run-{uuid.uuid4().hex}.parquet")
        with pq.ParquetWriter(path, ENTRY, compression="zstd") as writer:
            for table in self.merge(paths):
                writer.write_table(table, row_group_size=RUN_GROUP_ROWS)
        for p in paths:
            os.remove(p)
        return path

    def merge(self, paths: list) -> Iterator[pa.Table]:
        """Each step takes, from every run's pending row group, the rows up to the smallest
        of the groups' last rows (all of one group at least), and sorts them together."""
        runs = [pq.ParquetFile(p) for p in paths]
        groups = [iter(range(r.num_row_groups)) for r in runs]
        pending = [_next_group(r, g) for r, g in zip(runs, groups)]
        while True:
            live = [i for i, t in enumerate(pending) if t is not None]
            if not live:
                break
            self.peak_rows = max(self.peak_rows, sum(pending[i].num_rows for i in live))
            bound = min(row_key(pending[i], pending[i].num_rows - 1) for i in live)
            taken = []
            for i in live:
                n = bisect.bisect_right(_RowKeys(pending[i]), bound)
                if n:
                    taken.append(pending[i].slice(0, n))
                    pending[i] = pending[i].slice(n)
                if pending[i].num_rows == 0:
                    pending[i] = _next_group(runs[i], groups[i])
            yield taken[0] if len(taken) == 1 else sort_entries(pa.concat_tables(taken))
        for r in runs:
            r.close()

    def cleanup(self) -> None:
        self.close_run()
        shutil.rmtree(self.scratch, ignore_errors=True)


def _next_group(run: pq.ParquetFile, groups: Iterator[int]) -> Optional[pa.Table]:
    """A run's next row group (one at a time, no read-ahead: the merge holds one per run)."""
    for g in groups:
        table = run.read_row_group(g, use_threads=False)
        if table.num_rows:
            return table
    return None


def drop_repeats(table: pa.Table, last: Optional[tuple]) -> tuple:
    """(`table` without rows equal to the row before them, its last row). Sorted input."""
    n = table.num_rows
    if n == 0:
        return table, last
    key, url = table.column("key").combine_chunks(), table.column("url").combine_chunks()
    same = pc.and_(pc.equal(key.slice(1), key.slice(0, n - 1)),
                   pc.equal(url.slice(1), url.slice(0, n - 1)))
    keep = pa.concat_arrays([pa.array([row_key(table, 0) != last]), pc.invert(same)])
    return table.filter(keep), row_key(table, n - 1)


# ----------------------------------------------------------------------------------------
# Writing


class JsonDigest:
    """SHA-256 of `json.dumps([[id, url], ...])` over rows as they stream by, without the
    list: the fingerprint outputs written before this layout recorded (their manifests'
    `input_listing`), so they resume. Rows of plain ASCII are joined by Arrow; a batch with
    a quote, backslash, control or non-ASCII character goes through json.dumps."""

    ESCAPED = r'[\x00-\x1f"\\]'

    def __init__(self):
        self.hash = hashlib.sha256(b"[")
        self.rows = 0

    def update(self, ids: pa.Array, urls: pa.Array) -> None:
        if not len(ids):
            return
        if self.plain(ids) and self.plain(urls):
            rows = pc.binary_join_element_wise('["', ids, '", "', urls, '"]', "")
            offsets = pa.array([0, len(rows)], pa.int32())
            text = pc.binary_join(pa.ListArray.from_arrays(offsets, rows), ", ")[0]
            data = text.as_buffer()
        else:
            data = ", ".join(json.dumps([i, u]) for i, u in
                             zip(ids.to_pylist(), urls.to_pylist())).encode()
        if self.rows:
            self.hash.update(b", ")
        self.hash.update(data)
        self.rows += len(ids)

    @classmethod
    def plain(cls, strings: pa.Array) -> bool:
        return (pc.all(pc.string_is_ascii(strings)).as_py() and
                not pc.any(pc.match_substring_regex(strings, cls.ESCAPED)).as_py())

    def hexdigest(self) -> str:
        final = self.hash.copy()
        final.update(b"]")
        return final.hexdigest()


class ListingWriter:
    """Writes rows (SCHEMA, sorted) as the shards of a listing at `out`, a row group at a
    time, and its index last (`close`)."""

    def __init__(self, out: Store, images: str, kind: str, images_per_part: int):
        self.out, self.images, self.kind = out, images, kind
        self.group_rows = images_per_part * -(-MIN_GROUP_ROWS // images_per_part)
        self.shard_rows = self.group_rows * GROUPS_PER_SHARD
        self.pending, self.pending_rows = [], 0
        self.rows, self.in_shard, self.shards = 0, 0, 0
        self.writer, self.tmp, self.shard_bytes = None, None, []
        self.digest = JsonDigest()

    def write(self, table: pa.Table) -> None:
        self.digest.update(table.column("image_id").combine_chunks(),
                           table.column("url").combine_chunks())
        self.pending.append(table)
        self.pending_rows += table.num_rows
        while self.pending_rows >= self.group_rows:
            self.write_group(self.group_rows)

    def write_group(self, n: int) -> None:
        rows = pa.concat_tables(self.pending)
        group, rest = rows.slice(0, n), rows.slice(n)
        self.pending, self.pending_rows = [rest], rest.num_rows
        if self.writer is None:
            fd, self.tmp = tempfile.mkstemp(prefix="gankit-listing-", suffix=".parquet")
            os.close(fd)
            self.writer = pq.ParquetWriter(self.tmp, SCHEMA, compression="zstd",
                                           use_dictionary=False, write_statistics=False,
                                           write_page_checksum=True)
            self.shards += 1
        self.writer.write_table(group, row_group_size=n)
        self.rows += n
        self.in_shard += n
        if self.in_shard == self.shard_rows:
            self.close_shard()

    def close_shard(self) -> None:
        if self.writer is None:
            return
        writer, tmp = self.writer, self.tmp
        self.writer, self.tmp, self.in_shard = None, None, 0
        try:
            writer.close()
            self.shard_bytes.append(os.path.getsize(tmp))
            self.out.put_file(tmp, shard_name(self.shards - 1))
        finally:
            os.remove(tmp)

    def close(self, sorted_in: Optional[dict] = None) -> Optional[Listing]:
        """Finish the last shard and write the index; None when there were no rows (and
        nothing is written)."""
        if self.pending_rows:
            self.write_group(self.pending_rows)
        self.close_shard()
        if not self.rows:
            return None
        index = {"format": "gankit.listing", "version": 1, "images": self.images,
                 "kind": self.kind, "rows": self.rows, "shards": self.shards,
                 "shard_rows": self.shard_rows, "group_rows": self.group_rows,
                 "shard_bytes": self.shard_bytes,
                 "sha256": self.digest.hexdigest(), "written": uuid.uuid4().hex,
                 "sorted_in": sorted_in or {}}
        self.out.write_json(INDEX, index)
        return listing_of(self.out, index)

    def abort(self) -> None:
        """Drop an unfinished shard (a failed listing leaves no index: a rerun lists again)."""
        if self.writer is not None:
            self.writer.close()
            os.remove(self.tmp)
            self.writer, self.tmp = None, None


def write_listing(out: Store, entries: Iterable, to_id: Callable[[pa.Array], pa.Array],
                  images: str, kind: str, images_per_part: int,
                  chunk_rows: Optional[int] = None) -> Optional[Listing]:
    """Sort `entries` (tables of ENTRY) and write them as the listing of `images` at `out`;
    `to_id` turns the sort keys into ids once every entry has been seen (it must keep
    their order). None when there are no entries. `chunk_rows`: entries sorted in memory
    at once (default CHUNK_ROWS)."""
    sorter = ExternalSort(chunk_rows)
    writer = ListingWriter(out, images, kind, images_per_part)
    last = None
    try:
        for table in entries:
            sorter.add(table)
        for table in sorter.merged():
            ids, last = unique_ids(to_id(table.column("key").combine_chunks()), last)
            writer.write(pa.Table.from_arrays([ids, table.column("url"), table.column("size")],
                                              schema=SCHEMA))
        return writer.close({"runs": len(sorter.runs), "peak_rows": sorter.peak_rows})
    finally:
        writer.abort()
        sorter.cleanup()


def unique_ids(ids: pa.Array, last: Optional[tuple]) -> tuple:
    """(ids with each repeat of the id before it renamed 'ID#2', 'ID#3', ..., (last id, its
    count)). Rows come sorted, so repeats are adjacent: two files of one id (a list naming
    /data/x.png and http://data/x.png) keep distinct ids, and error records stay apart."""
    n = len(ids)
    if n == 0:
        return ids, last
    repeats = pc.equal(ids.slice(1), ids.slice(0, n - 1))
    if not pc.any(repeats).as_py() and (last is None or ids[0].as_py() != last[0]):
        return ids, (ids[n - 1].as_py(), 1)
    out, (prev, count) = [], last or (None, 0)
    for i in ids.to_pylist():
        count = count + 1 if i == prev else 1
        prev = i
        out.append(i if count == 1 else f"{i}#{count}")
    return pa.array(out, pa.string()), (prev, count)


def convert_legacy(out: Store, saved: dict, images_per_part: int) -> Listing:
    """An `_inputs.json` listing rewritten in this layout: the same rows in the same order
    (it was sorted and free of repeats when written), hence the same fingerprint."""
    files = saved["files"]
    writer = ListingWriter(out, saved.get("images"), saved.get("kind"), images_per_part)
    try:
        for s in range(0, len(files), CHUNK_ROWS):
            chunk = files[s:s + CHUNK_ROWS]
            writer.write(pa.table({"image_id": [i for i, _ in chunk],
                                   "url": [u for _, u in chunk],
                                   "size": pa.nulls(len(chunk), pa.int64())}, schema=SCHEMA))
        return writer.close({"converted_from": LEGACY})
    finally:
        writer.abort()
