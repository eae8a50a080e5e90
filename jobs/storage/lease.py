"""One writer per output location: the job lease."""
from __future__ import annotations

import json
import logging
import os
import time
import uuid
from typing import Optional

from jobs.storage.store import Store, StoreError, temporary_beside

log = logging.getLogger("gankit")


LEASE = "_lease.json"
LEASE_TTL_S = 120.0        # a lease not renewed for this long is stale (its driver is gone)
LEASE_RENEW_S = 15.0       # the holder renews it this often (a background thread)


class LeaseHeld(StoreError):
    """Another live job is writing to this output location (a StoreError, so the command
    line prints it as one sentence)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobLease:
    """An exclusive lease on an output location, held by one driver for one run.

    `_lease.json` is created whole and only if absent: written aside and hard-linked into
    place on local disk (the link fails if a lease is there), a conditional PUT
    (If-None-Match: *) on S3. A second job finds it and fails fast naming the holder; a job
    that finds its own run token there (a retried create whose reply was lost) goes on; a
    lease that cannot be parsed is debris and is taken over. The holder renews it every
    LEASE_RENEW_S; a lease is stale, and is taken over, when its holder's process is gone
    (same host) or it was not renewed for LEASE_TTL_S (a driver on another machine that
    died). A killed driver therefore never
    blocks its own rerun. Taking over a stale lease deletes it and creates a new one
    exclusively; two jobs racing for the same stale lease in the same instant could both
    delete it, so at most one of them then wins the exclusive create.
    """

    def __init__(self, store: Store, job: str):
        self.store, self.job = store, job
        self.token = uuid.uuid4().hex
        self._stop = None
        self._thread = None

    def _record(self) -> bytes:
        import socket
        return json.dumps({"job": self.job, "token": self.token, "host": socket.gethostname(),
                           "pid": os.getpid(), "renewed": time.time()}).encode()

    def _create(self) -> bool:
        """Exclusive create; False when a lease is already there."""
        path = self.store.path(LEASE)
        if self.store.local:    # written aside, then linked: the lease appears complete
            tmp = temporary_beside(path)
            with open(tmp, "wb") as f:
                f.write(self._record())
            try:
                os.link(tmp, path)  # fails if a lease is there: an exclusive create
            except (FileExistsError, FileNotFoundError):   # (the latter: tmp swept away)
                return False
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
            return True
        try:
            self.store.fs.pipe_file(path, self._record(), mode="create")
        except FileExistsError:
            return False
        return True

    def _read(self) -> Optional[dict]:
        """The lease there, None when there is none; {'unreadable': raw bytes} when it
        cannot be parsed (leases are created whole, so such a one is debris: a kill or a
        full disk in an older version's create-then-write)."""
        path = self.store.path(LEASE)
        if self.store.local and os.path.islink(path):    # never followed, never replaced
            raise LeaseHeld(f"{path} is a symbolic link, not a lease: refusing to write "
                            f"{self.store.url}")
        try:
            raw = self.store.read_bytes(LEASE)
        except FileNotFoundError:
            return None
        try:
            lease = json.loads(raw)
        except ValueError:
            return {"unreadable": raw}
        return lease if isinstance(lease, dict) else {"unreadable": raw}

    @staticmethod
    def stale(lease: dict) -> bool:
        import socket
        if "unreadable" in lease:
            return True
        if lease.get("host") == socket.gethostname() and isinstance(lease.get("pid"), int) \
                and lease["pid"] > 0 and not _pid_alive(lease["pid"]):
            return True
        return time.time() - float(lease.get("renewed", 0)) > LEASE_TTL_S

    def acquire(self) -> "JobLease":
        for _ in range(3):
            if self._create():
                self._start_renewing()
                return self
            held = self._read()
            if held is None:
                continue                                   # released meanwhile: try again
            if held.get("token") == self.token:            # ours: a retried create whose
                self._start_renewing()                     # first reply was lost (S3)
                return self
            if not self.stale(held):
                age = time.time() - float(held.get("renewed", 0))
                raise LeaseHeld(
                    f"{self.store.url} is being written by another '{held.get('job')}' job "
                    f"(pid {held.get('pid')} on {held.get('host')}, lease renewed {age:.0f} s "
                    f"ago): wait for it to finish or choose another output location")
            self._remove_if(lambda current: current == held)
        raise LeaseHeld(f"{self.store.url}: could not take the output lease; another job is "
                        f"starting there")

    def _remove_if(self, same) -> None:
        """Delete the lease if `same(lease there)`: still the stale one read, or still ours."""
        current = self._read()
        if current is not None and same(current):
            try:
                self.store.fs.rm_file(self.store.path(LEASE))
            except FileNotFoundError:
                pass

    def _start_renewing(self) -> None:
        import threading
        self._stop = threading.Event()

        def renew():
            while not self._stop.wait(LEASE_RENEW_S):
                try:
                    self.store.write_bytes(LEASE, self._record())
                except Exception:       # a store hiccup: the next renewal tries again
                    pass
        self._thread = threading.Thread(target=renew, name="gankit-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._thread.join()
            self._stop = None
            try:
                self._remove_if(lambda current: current.get("token") == self.token)
            except Exception as e:   # an unreachable store must not hide the job's own error
                log.warning(f"[lease] could not remove {self.store.path(LEASE)} "
                            f"({type(e).__name__}); it goes stale in {LEASE_TTL_S:.0f} s")

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
