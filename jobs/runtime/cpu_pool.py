"""The CPU side of a part actor: codecs and Parquet writes beside the model.

A 1024 px PNG takes ~100 ms of one core to encode, 20-50x what a GPU needs to render it. So
an actor does not encode, decode or write in line with its model: it hands that work to a
pool of `cpus_per_worker` threads and goes on with the next micro-batch.

Why threads inside the actor, not a CPU stage of Ray Data between the GPU actor and the
writer: a part stays the unit of commit and resume, written and committed by the actor that
computed it (storage.PartWriter), so the commit protocol, the driver and its flat memory do
not change; and images never cross the object store (a 1024 px uint8 image is 3 MiB, a
part of 1,000 rows would be 3 GiB of object-store traffic per part). Pillow's codecs, zlib
and pyarrow's Parquet writer release the GIL while they work, so threads scale with cores.

Order and determinism: the pool only encodes or decodes rows the model has already
computed (or will compute); which thread does it never changes a byte, and row groups are
written in step order by one writer thread (`StepWriter`).
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from gankit.images import encode_image


class CpuPool:
    """`threads` threads for per-row CPU work (encoding, decoding) beside the model."""

    def __init__(self, threads: int):
        self.threads = max(1, int(threads))
        self.codecs = ThreadPoolExecutor(self.threads, thread_name_prefix="gankit-codec")

    def map_chunks(self, fn: Callable[[list], list], items: list) -> list:
        """Start fn on `threads` contiguous chunks of `items`; returns their futures, in
        order (`gather` joins their results)."""
        size = max(1, -(-len(items) // self.threads))
        return [self.codecs.submit(fn, items[s:s + size]) for s in range(0, len(items), size)]

    def encode(self, u8: np.ndarray, fmt: str, quality: int) -> list:
        """uint8 [n, H, W, 3] -> futures of encoded bytes (see `gather`)."""
        return self.map_chunks(lambda rows: [encode_image(a, fmt, quality) for a in rows],
                               list(u8))

    def close(self) -> None:
        self.codecs.shutdown(wait=True, cancel_futures=True)


def gather(futures: list) -> list:
    """The concatenated results of `map_chunks` futures (re-raises a chunk's error)."""
    out = []
    for f in futures:
        out += f.result()
    return out


class StepWriter:
    """Writes a part's row groups in order, on one thread, while the caller computes.

        with StepWriter(part_writer) as steps:
            for each step:
                steps.put(make_table)   # make_table() -> pa.Table, called on the writer thread
            steps.finish()              # every row group written; re-raises the first error
        part_writer.commit(...)

    At most `depth` steps wait to be written: the caller blocks beyond that, so host memory
    stays bounded (a step of 256 rows at 1024 px is 0.8 GiB of uint8 images).
    """

    def __init__(self, writer, depth: int = 2):
        self.writer, self.depth = writer, max(1, depth)
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="gankit-writer")
        self.pending: deque = deque()

    def put(self, make_table: Callable) -> None:
        while len(self.pending) >= self.depth:
            self.pending.popleft().result()
        self.pending.append(self.thread.submit(lambda: self.writer.write(make_table())))

    def finish(self) -> None:
        while self.pending:
            self.pending.popleft().result()

    def __enter__(self) -> "StepWriter":
        return self

    def __exit__(self, *exc) -> bool:
        self.thread.shutdown(wait=True, cancel_futures=True)
        return False
