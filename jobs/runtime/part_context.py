"""What a worker's loop is handed for one part: `PartContext`.

A part job's worker computes a part step by step and writes it in row groups. Everything
the loop reports on the way goes through the part's context, named in the call, not through
module state: each row group written counts as live progress (jobs.runtime.progress) and
passes the test-only fault hook (jobs.runtime.faults); a status line (`note`) joins the progress; and
the commit leaves the footer it wrote, which the driver's manifest records.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pyarrow as pa

from jobs.runtime.faults import fault_point
from jobs.runtime.progress import PartProgress
from jobs.storage import Footer, PartSpec, PartWriter, Store, part_name


@dataclass
class PartContext:
    """Part `spec` of a job writing to `out`, as its worker's loop sees it."""

    out: Store                      # the job's output
    spec: PartSpec                  # the part: its index and rows [start, stop)
    progress: Optional[PartProgress] = None     # where its rows and status go (None: nowhere)
    writers: list = field(default_factory=list)     # PartWriters opened by `writer`

    def __post_init__(self):
        self.progress = self.progress or PartProgress(None, self.spec.index)

    def writer(self, schema: pa.Schema) -> PartWriter:
        """The part's writer: part_name(index) in `out`, committed atomically."""
        w = PartWriter(self.out, part_name(self.spec.index), schema, self.row_group_written)
        self.writers.append(w)
        return w

    def commit_empty(self, schema: pa.Schema, errors: int = 0) -> Footer:
        """Commit the part with no rows (all its rows were error records, or it had none):
        written as storage.write_table_part writes an empty table."""
        spec = self.spec
        with self.writer(schema) as w:
            w.write(schema.empty_table())
            return w.commit({"index": spec.index, "start": spec.start, "stop": spec.stop,
                             "errors": errors})

    def row_group_written(self, rows: int) -> None:
        """Called by the part's writer after each row group (before the part commits)."""
        self.progress.rows(rows)
        fault_point()

    def note(self, text: str) -> None:
        """A short status of the part in flight, shown beside the progress."""
        self.progress.note(text)

    def footer(self) -> Footer:
        """The footer the part's commit wrote."""
        found = next((w.footer for w in reversed(self.writers) if w.footer), None)
        if found is None:
            raise RuntimeError(f"part {self.spec.index:05d} was not committed through its "
                               f"context's writer (PartContext.writer)")
        return found
