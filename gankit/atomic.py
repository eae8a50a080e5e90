"""Local files that appear complete or not at all: write beside the final name, then rename.

A killed or failing writer leaves the previous file (or none) and no temporary behind, which
is what makes training checkpoints, models and boundaries safe to rerun into.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator, Union

PathLike = Union[str, os.PathLike]


@contextlib.contextmanager
def replacing(path: PathLike) -> Iterator[str]:
    """Yield a hidden temporary path in `path`'s directory; when the block ends without an
    error it is renamed onto `path` (atomic on POSIX), otherwise removed."""
    path = os.path.abspath(os.fspath(path))
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{os.path.basename(path)}.",
                               suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes(path: PathLike, data: bytes) -> None:
    with replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
