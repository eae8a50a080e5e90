"""TEST-ONLY fault injection: worker processes that exit mid-part or on a chosen part, as a
preempted machine or a crashing native library would, or that hold a part in flight until a
test removes their node or kills the driver. Never set these in production."""
from __future__ import annotations

import os
import time

# TEST-ONLY fault injection. With GANKIT_FAULT_EXIT_AFTER_BATCHES=N and GANKIT_FAULT_MARKER=
# <path> in the driver's environment, the first worker process to write its N-th row group
# (counted over the parts it computes; fault_point, called for every stage by the part's
# runtime.PartContext) creates <path> (exclusively, so this fires once per marker across all
# processes) and exits with os._exit mid-part, as a preempted machine would.
# With GANKIT_FAULT_POISON_PART=<index>, every worker that starts that part exits at once.
# With GANKIT_FAULT_HOLD_MARKER=<path>, the first worker to start a part holds it (hold_point).
# Both are called by PartWorker.start as each part starts. Never set them in production.
FAULT_ENV = ("GANKIT_FAULT_EXIT_AFTER_BATCHES", "GANKIT_FAULT_MARKER", "GANKIT_FAULT_POISON_PART",
             "GANKIT_FAULT_HOLD_MARKER")
_fault_batches = 0


def poison_point(index: int) -> None:
    if os.environ.get("GANKIT_FAULT_POISON_PART") == str(index):
        os._exit(13)


def hold_point(index: int) -> None:
    """Called by workers as they start a part. The first one (across all processes) creates
    the marker whole, holding '<Ray node id> <pid> <part index>', and then never returns: the
    part stays in flight until the process is killed, so a test that waits for the marker
    removes that node, or kills the driver, while a part is certainly in flight."""
    marker = os.environ.get("GANKIT_FAULT_HOLD_MARKER")
    if not marker:
        return
    import ray
    aside = f"{marker}.{os.getpid()}"
    with open(aside, "w") as f:
        f.write(f"{ray.get_runtime_context().get_node_id()} {os.getpid()} {index}")
    try:
        os.link(aside, marker)                 # exclusive, and never seen half-written
    except FileExistsError:
        return
    finally:
        os.unlink(aside)
    while True:
        time.sleep(1)


def fault_point() -> None:
    """Called after each row group a part's writer writes (before the part commits), by
    runtime.PartContext: the same point in every stage's loop."""
    global _fault_batches
    after, marker = (os.environ.get(k) for k in FAULT_ENV[:2])
    if not after or not marker:
        return
    _fault_batches += 1
    if _fault_batches < int(after):
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    os._exit(13)
