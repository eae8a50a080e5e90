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

The package holds one concept per module; this module gathers their names, so callers write
`storage.open_store(...)`, `storage.PartWriter(...)`:
    store        the root of a dataset on any fsspec URL, file names, parts' row ranges
    part_writer  writing one part (the commit protocol above)
    reading      footers, streamed row groups, page checksums verified
    manifest     the driver's record of a job and the checks a rerun makes against it
    lease        one writer per output location
"""
from jobs.storage.lease import LEASE, LEASE_RENEW_S, LEASE_TTL_S, JobLease, LeaseHeld
from jobs.storage.manifest import (DAMAGED_DIR, RunRecord, check_identity, footer_metas, now,
                                   part_problem, read_manifest, schema_json, set_aside_damaged,
                                   write_manifest)
from jobs.storage.part_writer import (PartWriter, parquet_writer, with_part_metadata,
                                      write_table_part)
from jobs.storage.reading import (FOOTER_ERRORS, Footer, RowReader, damaged_part, dataset_rows,
                                  first_line, iter_tables, open_parquet, part_footer, raw_footer,
                                  read_column, read_footer, read_table, strip_part_metadata,
                                  unreadable_parquet)
from jobs.storage.store import (ERRORS_DIR, MANIFEST, PART_META_KEY, PART_RE, TMP_TAG, PartSpec,
                                Store, StoreError, open_store, part_name, part_ranges,
                                storage_options, temporary_beside)

__all__ = [
    "ERRORS_DIR", "MANIFEST", "PART_META_KEY", "PART_RE", "PartSpec", "Store", "StoreError",
    "TMP_TAG", "open_store", "part_name", "part_ranges", "storage_options", "temporary_beside",
    "PartWriter", "parquet_writer", "with_part_metadata", "write_table_part", "FOOTER_ERRORS",
    "Footer", "RowReader", "damaged_part", "dataset_rows", "first_line", "iter_tables",
    "open_parquet", "part_footer", "raw_footer", "read_column", "read_footer", "read_table",
    "strip_part_metadata", "unreadable_parquet", "DAMAGED_DIR", "RunRecord", "check_identity",
    "footer_metas", "now", "part_problem", "read_manifest", "schema_json", "set_aside_damaged",
    "write_manifest", "JobLease", "LEASE", "LEASE_RENEW_S", "LEASE_TTL_S", "LeaseHeld",
]
