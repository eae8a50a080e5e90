"""Reading datasets: part footers, row groups streamed in part order, checksums verified."""
from __future__ import annotations

import bisect
import hashlib
import io
import itertools
import json
import struct
from dataclasses import dataclass
from typing import Iterator, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.storage.store import PART_META_KEY, Store, open_store


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
        return raw_footer(store, path)
    except FOOTER_ERRORS as e:
        raise unreadable_parquet(path, e) from None


def footer_bytes(store: Store, path: str, guess: int = 1 << 16) -> tuple:
    """(footer bytes: metadata, its length, the magic; the file's size), from a ranged read of
    the last `guess` bytes (a second read when the footer is longer). ValueError: no footer."""
    size = store.fs.size(path)
    tail = store.fs.cat_file(path, start=max(0, size - max(guess, 8)), end=size)
    if size < 12 or tail[-4:] != b"PAR1":
        raise ValueError(f"no Parquet footer in its last bytes ({size} bytes in all)")
    n = struct.unpack("<I", tail[-8:-4])[0] + 8      # metadata, its length, the magic
    if n > size - 4:
        raise ValueError(f"its footer claims {n} bytes of a {size}-byte file")
    if n > len(tail):
        tail = store.fs.cat_file(path, start=size - n, end=size)
    return tail[-n:], size


def raw_footer(store: Store, path: str) -> Footer:
    """A part's footer in one ranged read (two when the footer is over 64 KiB)."""
    footer, size = footer_bytes(store, path)
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
    f = store.open_for_arrow(path)
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


class RowReader:
    """Rows of one Parquet file by position, reading a row group only when a row of it is
    asked for and keeping the last one: rows asked in file order read each group once.

        with RowReader(store, path, ["image"]) as rows:
            rows.row(17)          # {'image': {...}}
    """

    def __init__(self, store: Store, path: str, columns: list):
        self.path, self.columns = path, columns
        self.pf = open_parquet(store, path)
        md = self.pf.metadata
        sizes = [md.row_group(g).num_rows for g in range(md.num_row_groups)]
        self.starts = [0, *itertools.accumulate(sizes)]                   # [G + 1]
        self.group, self.table = None, None

    def column(self, name: str) -> list:
        """One whole column of the file, from the file already open."""
        try:
            return self.pf.read(columns=[name]).column(0).to_pylist()
        except (pa.ArrowException, OSError) as e:
            raise damaged_part(self.path, 0, e) from None

    def row(self, i: int) -> dict:
        g = bisect.bisect_right(self.starts, i) - 1
        if not 0 <= g < len(self.starts) - 1:
            raise IndexError(f"{self.path} has no row {i}")
        if g != self.group:
            try:
                self.table = self.pf.read_row_group(g, columns=self.columns)
            except (pa.ArrowException, OSError) as e:
                raise damaged_part(self.path, g, e) from None
            self.group = g
        return self.table.slice(i - self.starts[g], 1).to_pylist()[0]

    def close(self) -> None:
        self.pf.close()

    def __enter__(self) -> "RowReader":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False
