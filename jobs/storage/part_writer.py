"""Writing one part: a Parquet file that appears under its final name only when complete."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from typing import Callable, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.storage.reading import Footer
from jobs.storage.store import PART_META_KEY, Store, temporary_beside


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
    buf = io.BytesIO()
    pq.write_table(schema.empty_table(), buf)
    buf.seek(0)
    parquet_schema = pq.ParquetFile(buf).schema
    return [parquet_schema.column(i).path for i in range(len(parquet_schema))]


class PartWriter:
    """Streams one part in row groups, then commits it atomically.

        with PartWriter(store, part_name(k), schema) as w:
            w.write(table)           # one or more times; each call is one row group
            footer = w.commit(meta)  # without commit() (an exception), nothing is visible

    `on_row_group(rows)`, if given, is called after each row group is written (the part
    job's progress and its test-only fault hook: jobs.runtime.PartContext). `commit` returns
    the footer it wrote (rows, part metadata, size, hash), so nobody reads it back.

    Local stores: a temporary file beside the final name, renamed at commit. S3: a multipart
    upload of the final key whose parts go up while the row groups are written (on the
    writer thread, beside the model), completed at commit; S3 shows the key only then, and
    an abort cancels the upload. (A killed process leaves its upload open but invisible: a
    bucket lifecycle rule AbortIncompleteMultipartUpload reclaims it.) Other remote stores:
    a local scratch file uploaded in one request at commit.
    """

    def __init__(self, store: Store, name: str, schema: pa.Schema,
                 on_row_group: Optional[Callable[[int], None]] = None):
        self.store, self.name, self.schema = store, name, schema
        self.on_row_group = on_row_group
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
        self.footer: Optional[Footer] = None     # what commit wrote
        self.done = False

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            self.writer = parquet_writer(self.upload or self.tmp, self.schema)
        self.writer.write_table(table.cast(self.schema) if table.schema != self.schema else table)
        self.rows += table.num_rows
        if self.on_row_group is not None:
            self.on_row_group(table.num_rows)

    def commit(self, meta: dict) -> Footer:
        """Close with `meta` ({index, start, stop, errors, ...}) in the footer and publish;
        returns that footer."""
        meta = dict(meta, rows=self.rows)
        if self.writer is None:  # an empty part still commits (all rows may be errors)
            self.writer = parquet_writer(self.upload or self.tmp, self.schema)
        self.writer.add_key_value_metadata({PART_META_KEY.decode(): json.dumps(meta)})
        self.writer.close()
        footer = written_footer(self.writer, meta, self.upload.tell() if self.upload
                                else os.path.getsize(self.tmp))
        if self.upload is not None:
            self.upload.close()          # uploads the last part; the key is not visible yet
            self.upload.commit()         # completes the multipart upload: now it is
        elif self.store.local:
            os.replace(self.tmp, self.store.path(self.name))
        else:
            self.store.put_file(self.tmp, self.name)
            os.remove(self.tmp)
        self.done, self.footer = True, footer
        return footer

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


def written_footer(writer: pq.ParquetWriter, meta: dict, size: int) -> Footer:
    """The footer a closed writer wrote, as storage.read_footer would read it back: the
    file metadata serialises to the same bytes (after _metadata's leading magic)."""
    md = writer.writer.metadata
    buf = io.BytesIO()
    md.write_metadata_file(buf)                      # 'PAR1' + footer + length + 'PAR1'
    meta = json.loads(json.dumps(meta))              # as read back
    return Footer(md.schema.to_arrow_schema(), md.num_rows, meta, size,
                  hashlib.sha256(buf.getvalue()[4:]).hexdigest())


def write_table_part(store: Store, name: str, table: pa.Table, meta: dict) -> Footer:
    """Commit a whole table as one part (used for small tables such as error records)."""
    with PartWriter(store, name, table.schema) as w:
        w.write(table)
        return w.commit(meta)
