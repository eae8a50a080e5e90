"""TEST-ONLY fault injection: worker processes that exit mid-part or on a chosen part, as a
preempted machine or a crashing native library would. Never set these in production."""
from __future__ import annotations

import os

# TEST-ONLY fault injection. With GANKIT_FAULT_EXIT_AFTER_BATCHES=N and GANKIT_FAULT_MARKER=
# <path> in the driver's environment, the first worker process to write its N-th row group
# creates <path> (exclusively, so this fires once per marker across all processes) and
# exits with os._exit mid-part, as a preempted machine would. Never set them in production.
# With GANKIT_FAULT_POISON_PART=<index>, every worker that starts that part exits at once.
FAULT_ENV = ("GANKIT_FAULT_EXIT_AFTER_BATCHES", "GANKIT_FAULT_MARKER", "GANKIT_FAULT_POISON_PART")
_fault_batches = 0


def poison_point(index: int) -> None:
    if os.environ.get("GANKIT_FAULT_POISON_PART") == str(index):
        os._exit(13)


def fault_point() -> None:
    """Called by workers after each row group written (before the part commits)."""
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
