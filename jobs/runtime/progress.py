"""Live progress of a part job, across all its actors and within parts.

Workers count the rows they write (a `PartProgress` per part, told of every row group its
storage.PartWriter writes) and send the counts to a small named actor of the run, without
waiting for a reply (the local runner's worker: to a plain Counter the driver hands it).
The driver polls that counter once a second and shows rows done out of rows planned, rows
per second and the time left: a redrawn bar on a terminal, and a log line every
`LINE_EVERY_S` seconds elsewhere (a log file, a submitted Ray job).

Everything here is best effort: progress never fails or slows a job.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Optional

from tqdm import tqdm

log = logging.getLogger("gankit")

LINE_EVERY_S = 30.0           # a non-terminal gets one progress line this often
POLL_S = 1.0


# ----------------------------------------------------------------------------------------
# Worker side


class PartProgress:
    """What one part reports while it is computed: rows written (`rows`, called for each
    row group of the part: jobs.runtime.PartContext) and a short status (`note`, e.g. an
    inversion's step and loss, shown beside the progress). `counter` is the run's Counter:
    the object itself under the local runner, a `RemoteCounter` on an actor; None, or one
    that fails (its driver gone), and reports go nowhere."""

    def __init__(self, counter, index: int):
        self.counter, self.index = counter, index

    def rows(self, n: int) -> None:
        self._send("add", n)

    def note(self, text: str) -> None:
        self._send("note", text)

    def _send(self, method: str, value) -> None:
        if self.counter is None:
            return
        try:
            getattr(self.counter, method)(self.index, value)
        except Exception:          # progress is best effort: never fail a part for it
            self.counter = None


class RemoteCounter:
    """The run's Counter actor, called without waiting for a reply."""

    def __init__(self, actor):
        self.actor = actor

    def add(self, index: int, rows: int) -> None:
        self.actor.add.remote(index, rows)

    def note(self, index: int, text: str) -> None:
        self.actor.note.remote(index, text)


def find_counter(run: str) -> Optional[RemoteCounter]:
    """The counter of run `run` on the Ray cluster, found by its name (None without one, or
    outside Ray: the local runner hands its workers their counter and never imports ray)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    try:
        return RemoteCounter(ray.get_actor(actor_name(run)))
    except Exception:        # no counter (a job run without one): progress is best effort
        return None


def actor_name(run: str) -> str:
    return f"gankit-progress-{run}"


# ----------------------------------------------------------------------------------------
# The counter


class Counter:
    """Rows written per part, for parts not yet committed (a Ray actor; a plain object in
    the driver's process under the local runner)."""

    def __init__(self):
        self.rows, self.last_note = {}, ""

    def add(self, index: int, rows: int) -> None:
        self.rows[index] = self.rows.get(index, 0) + rows

    def note(self, index: int, text: str) -> None:
        self.last_note = f"part {index:05d}: {text}"

    def snapshot(self) -> tuple:
        return dict(self.rows), self.last_note


# ----------------------------------------------------------------------------------------
# Driver side


class Progress:
    """Rows done of a part job: committed parts count in full, parts in flight as their
    actors report. Use as a context manager around the job's loop; call `committed(k)`."""

    def __init__(self, job: str, run: str, rows_by_part: dict, done_rows: int = 0,
                 local: bool = False):
        self.job, self.run, self.rows_by_part = job, run, dict(rows_by_part)
        self.local = local            # the workers run in this process: a plain Counter
        self.total = done_rows + sum(self.rows_by_part.values())
        self.done, self.start_done = done_rows, done_rows
        self.finished: set = set()
        self.counter = self.thread = self.bar = None
        self.status = ""
        self.stop = threading.Event()

    def __enter__(self) -> "Progress":
        try:
            self.counter = Counter() if self.local else start_counter(self.run)
        except Exception:
            return self
        self.t0 = self.last_line = time.time()
        if sys.stderr.isatty() and log.isEnabledFor(logging.INFO):
            self.bar = tqdm(total=self.total, initial=self.done, unit="row", desc=self.job,
                            dynamic_ncols=True, smoothing=0.1, leave=False)
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def committed(self, index: int) -> None:
        self.finished.add(index)

    def _poll(self) -> None:
        while not self.stop.wait(POLL_S):
            try:
                live, self.status = self.snapshot()
            except Exception:
                continue
            self.show(live)

    def snapshot(self) -> tuple:
        if self.local:
            return self.counter.snapshot()
        import ray
        return ray.get(self.counter.snapshot.remote(), timeout=5)

    def show(self, live: dict) -> None:
        done = self.start_done + sum(self.rows_by_part[k] for k in self.finished) + sum(
            min(n, self.rows_by_part.get(k, 0)) for k, n in live.items()
            if k not in self.finished)
        self.done = min(done, self.total)
        if self.bar is not None:
            self.bar.update(self.done - self.bar.n)
            if self.status:
                self.bar.set_postfix_str(self.status, refresh=False)
        elif time.time() - self.last_line >= LINE_EVERY_S:
            self.last_line = time.time()
            log.info(self.line())

    def line(self) -> str:
        elapsed = max(time.time() - self.t0, 1e-9)
        rate = (self.done - self.start_done) / elapsed
        left = (self.total - self.done) / rate if rate > 0 else None
        eta = f", about {format_seconds(left)} left" if left is not None else ""
        status = f"; {self.status}" if self.status else ""
        if self.done == self.start_done:      # an inversion's batch: hundreds of steps, 0 rows
            return (f"[{self.job}] {self.done:,}/{self.total:,} rows: none written yet in "
                    f"this run (a row counts once its batch is done){status}")
        return (f"[{self.job}] {self.done:,}/{self.total:,} rows "
                f"({100 * self.done / max(self.total, 1):.0f}%), {rate:,.1f} rows/s{eta}"
                f"{status}")

    def __exit__(self, *exc) -> bool:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=10)
        if self.bar is not None:
            self.bar.close()
        if self.counter is not None and not self.local:
            try:
                import ray
                ray.kill(self.counter)
            except Exception:
                pass
        return False


def start_counter(run: str):
    """The run's named counter actor, on the Ray cluster."""
    import ray
    return ray.remote(num_cpus=0)(Counter).options(name=actor_name(run)).remote()


def format_seconds(s: Optional[float]) -> str:
    s = int(round(s or 0))
    if s < 90:
        return f"{s} s"
    if s < 5400:
        return f"{s // 60} min"
    return f"{s / 3600:.1f} h"
