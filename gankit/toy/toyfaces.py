"""The toy world: a procedural face renderer driven by known factors.

Every face is drawn (pillow, 4x supersampled then box-filtered) from a row of *factors*:
seven attribute factors with a documented joint distribution, and nuisance factors that
vary the face without touching any attribute. Because the factors are known, the toy
world gives ground truth that real faces cannot: true labels for every sample, and
counterfactual renders (the same face with one factor changed).

Where it lives: gankit.toy.world (the factors, their joint distribution, the true labels,
counterfactuals) and gankit.toy.render (the drawing). This module gathers the names its users
import (`toyfaces.sample_factors`, `toyfaces.render`, ...) and writes the toy world as a
dataset: Parquet parts in the DESIGN.md image layout, usable as training data and as "real"
images.
"""
from __future__ import annotations

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gankit.data import image_bytes, image_column, make_table
from gankit.images import decode_image, encode_png
from gankit.toy.render import RESOLUTIONS, SUPERSAMPLE, render, render_parallel
from gankit.toy.world import (ATTRIBUTE_NAMES, ATTRIBUTES, FACTOR_NAMES, FACTOR_RANGES,
                              NUISANCE_NAMES, AttributeSpec, Factors, as_batch, conditional_rates,
                              counterfactual, label_matrix, labels, sample_factors, take, true_rates)

__all__ = ["ATTRIBUTES", "ATTRIBUTE_NAMES", "AttributeSpec", "FACTOR_NAMES", "FACTOR_RANGES",
           "Factors", "NUISANCE_NAMES", "RESOLUTIONS", "SUPERSAMPLE", "as_batch",
           "conditional_rates", "counterfactual", "dataset_table", "image_ids",
           "label_matrix", "labels", "read_parquet_images", "render", "render_dataset",
           "render_parallel", "sample_factors", "take", "true_rates", "write_parquet"]


def render_dataset(n: int, seed: int, resolution: int = 32, start: int = 0) -> tuple:
    """Rows start .. start+n-1 of the toy world: ([N, H, W, 3] uint8 images, factors)."""
    f = sample_factors(n, seed, start)
    return render(f, resolution), f


# ----------------------------------------------------------------------------------------
# Parquet: the DESIGN.md image layout, usable as training data and as "real" images

def image_ids(seed: int, start: int, n: int) -> list:
    return [f"toy-s{seed}-{i:09d}" for i in range(start, start + n)]


def dataset_table(n: int, seed: int, resolution: int = 32, start: int = 0):
    """One pa.Table of rows start .. start+n-1: image_id, image {bytes, path}, factors
    (float32), labels (bool)."""
    images, f = render_dataset(n, seed, resolution, start)
    ids = image_ids(seed, start, n)
    cols = {"image_id": np.array(ids, dtype=object),
            "image": image_column([encode_png(im) for im in images], [i + ".png" for i in ids])}
    cols.update({name: f[name] for name in FACTOR_NAMES})
    cols.update(labels(f))
    meta = {"gankit.toyfaces": f'{{"seed": {seed}, "resolution": {resolution}}}'}
    return make_table(cols, id_column="image_id", metadata=meta)


def write_parquet(path_or_url: str, n: int, seed: int, resolution: int = 32,
                  rows_per_file: int = 10_000) -> list:
    """Write n toy faces as part files `part-00000.parquet`, ... under a directory (local or
    fsspec URL). Each part is written to a temporary name and renamed, and parts already
    present are skipped, so a rerun finishes an interrupted write. Returns the part URLs."""
    if n < 1 or rows_per_file < 1:
        raise ValueError(f"n and rows_per_file must be >= 1, got {n}, {rows_per_file}")
    fs, root = fsspec.core.url_to_fs(str(path_or_url))
    fs.makedirs(root, exist_ok=True)
    parts = []
    for k, start in enumerate(range(0, n, rows_per_file)):
        final = f"{root.rstrip('/')}/part-{k:05d}.parquet"
        parts.append(final)
        if fs.exists(final):
            continue
        table = dataset_table(min(rows_per_file, n - start), seed, resolution, start)
        tmp = final + ".tmp"
        with fs.open(tmp, "wb") as fh:
            pq.write_table(table, fh)
        fs.mv(tmp, final)
    return [fs.unstrip_protocol(p) for p in parts]


def read_parquet_images(path_or_url: str) -> tuple:
    """A part file or a directory of them -> ([N, H, W, 3] uint8 images, pa.Table)."""
    fs, root = fsspec.core.url_to_fs(str(path_or_url))
    files = sorted(fs.glob(root.rstrip("/") + "/*.parquet")) if fs.isdir(root) else [root]
    if not files:
        raise ValueError(f"path: no .parquet files under {path_or_url}")
    tables = []
    for p in files:
        with fs.open(p, "rb") as fh:
            tables.append(pq.read_table(fh))
    table = pa.concat_tables(tables)
    images = np.stack([decode_image(b) for b in image_bytes(table.column("image"))])
    return images, table
