"""What the report reads from a run's outputs, streaming part by part and keeping only small
arrays: the fit's index and boundaries, the edit parts' logits, identity columns and a few
images, the samples' logits, metrics.json and eval-inversion results.
"""
from __future__ import annotations

import json
import os
from typing import Optional

import fsspec
import numpy as np

from gankit.data import id_column_of
from gankit.images import decode_image
from jobs import storage
from jobs.config import require
from jobs.storage.boundary_index import load_boundary


def plain_boundaries(fit_url: str, index: dict, options: dict) -> dict:
    """{space: [(index entry, Boundary)]} of the plain boundaries, in the index's order."""
    out = {}
    for e in index["boundaries"]:
        if not e["conditions"]:
            b = load_boundary(f"{fit_url.rstrip('/')}/{e['path']}", options)
            out.setdefault(e["space"], []).append((e, b))
    return out


def same_dataset(a: str, b: str, options: dict) -> bool:
    """Two dataset URLs name the same rows: the same place, or the same recorded identity
    (a copy of the fit's samples is still the fit's samples)."""
    norm = lambda u: os.path.abspath(u) if "://" not in u else u.rstrip("/")  # noqa: E731
    if not a or not b:
        return False
    if norm(a) == norm(b):
        return True
    ident = [(storage.read_manifest(storage.open_store(u, options)) or {}).get("identity")
             for u in (a, b)]
    return ident[0] is not None and ident[0] == ident[1]


def logit_attributes(url: str, options: dict) -> list:
    """The classifier's attributes, from a dataset's logit columns."""
    names = columns_of(storage.open_store(url, options, must_exist=True))
    return [n[len("logit_"):] for n in names if n.startswith("logit_")]


def columns_of(store) -> list:
    """A dataset's column names, from its first part's footer (one small read)."""
    parts = store.list_parts()
    require(bool(parts), "edits", f"no committed parts at {store.url}")
    return storage.part_footer(store, next(iter(parts.values())))[0].names


def id_name(store) -> str:
    """The id column of an edit or latents dataset: sample_id, or image_id (inversions)."""
    name = id_column_of(columns_of(store))
    require(name is not None, "edits", f"{store.url} has neither a sample_id nor an image_id")
    return name


def _logits(t, attributes: list, keep) -> np.ndarray:
    return np.stack([t.column(f"logit_{a}").to_numpy()[keep] for a in attributes], 1)


def edit_logits(edits, strength: Optional[float], attributes: list) -> tuple:
    """({(boundary, sign): {id: logits [A]}}, strength used) from the edit parts."""
    key = id_name(edits)
    cols = [key, "boundary", "strength"] + [f"logit_{a}" for a in attributes]
    if strength is None:
        strength = max(float(np.abs(t.column("strength").to_numpy()).max())
                       for t in storage.iter_tables(edits, ["strength"]))
    found = {}
    for t in storage.iter_tables(edits, cols):
        s = t.column("strength").to_numpy()
        keep = np.nonzero(np.isclose(np.abs(s), strength))[0]
        if not len(keep):
            continue
        ids = np.asarray(t.column(key).to_pylist(), dtype=object)[keep]
        names = np.asarray(t.column("boundary").to_pylist(), dtype=object)[keep]
        for i, name, sign, row in zip(ids, names, np.sign(s[keep]),
                                      _logits(t, attributes, keep)):
            found.setdefault((name, int(sign)), {})[i] = row
    return found, strength


def edited_strengths(edits) -> list:
    """Every |strength| > 0 the edit job wrote, ascending."""
    found = set()
    for t in storage.iter_tables(edits, ["strength"]):
        found.update(np.abs(t.column("strength").to_numpy()).round(6).tolist())
    return sorted(found - {0.0})


def sample_logits(url: str, options: dict, ids: Optional[set], attributes: list,
                  limit: Optional[int] = None) -> tuple:
    """(ids [N], logits [N, A]) of the rows of `url` whose id is in `ids` (or the first
    `limit` rows), streamed."""
    store = storage.open_store(url, options, must_exist=True)
    key = id_name(store)
    got_ids, got = [], []
    n = 0
    for t in storage.iter_tables(store, [key] + [f"logit_{a}" for a in attributes]):
        i = np.asarray(t.column(key).to_pylist(), dtype=object)
        keep = np.isin(i, list(ids)) if ids is not None else np.arange(len(i)) < limit - n
        got_ids.append(i[keep])
        got.append(_logits(t, attributes, keep))
        n += len(i)
        if limit is not None and n >= limit:
            break
    return np.concatenate(got_ids), np.concatenate(got)


def before_logits(edits, latents: str, options: dict, ids: set, attributes: list) -> tuple:
    """(ids, logits [N, A]) before the edit: the latents dataset's logit columns, or, for
    latents without them (an inversion's), the edits' own renders at strength 0."""
    store = storage.open_store(latents, options, must_exist=True)
    if all(f"logit_{a}" in columns_of(store) for a in attributes):
        return sample_logits(latents, options, ids, attributes)
    found, _ = edit_logits(edits, 0.0, attributes)
    require(bool(found), "edits", f"{latents} has no logit columns, and {edits.url} has no "
            f"edit at strength 0 to score the unedited images: edit with a strength of 0")
    rows = next(iter(found.values()))
    got = [i for i in sorted(rows) if i in ids]
    return np.asarray(got, dtype=object), np.stack([rows[i] for i in got])


def identity_rows(edits, strength: float) -> dict:
    """{boundary: {similarity, distance, edits}}: identity of the edits at +-strength to
    their reconstructions, averaged over the edits whose input showed a face (edits written
    with --identity)."""
    if "identity_similarity" not in columns_of(edits):
        return {}
    sums = {}
    for t in storage.iter_tables(edits, ["boundary", "strength", "identity_similarity",
                                         "identity_distance"]):
        at = np.isclose(np.abs(t.column("strength").to_numpy()), strength)
        sim = t.column("identity_similarity").to_numpy(zero_copy_only=False)
        dist = t.column("identity_distance").to_numpy(zero_copy_only=False)
        for name, a, b, keep in zip(t.column("boundary").to_pylist(), sim, dist, at):
            if keep and np.isfinite(a):
                s = sums.setdefault(name, [0.0, 0.0, 0])
                s[0], s[1], s[2] = s[0] + a, s[1] + b, s[2] + 1
    return {n: {"similarity": float(a / k), "distance": float(b / k), "edits": k}
            for n, (a, b, k) in sums.items()}


def grid_images(edits, boundaries: list, ids: list) -> tuple:
    """({boundary: {(id, strength): [H, W, 3]}}, {id: original [H, W, 3]}); an inversion's
    edits show its input image (`input`) as the original when they kept it."""
    names, key = columns_of(edits), id_name(edits)
    first = next((c for c in ("original", "input") if c in names), None)
    cols = [key, "boundary", "strength", "image"] + ([first] if first else [])
    cells, originals = {}, {}
    for t in storage.iter_tables(edits, cols):
        sid = t.column(key).to_pylist()
        for r in (r for r, i in enumerate(sid) if i in ids):
            name = t.column("boundary")[r].as_py()
            if name not in boundaries:
                continue
            cell = (sid[r], float(t.column("strength")[r].as_py()))
            cells.setdefault(name, {})[cell] = decode_image(t.column("image")[r].as_py()["bytes"])
            if first and sid[r] not in originals:
                originals[sid[r]] = decode_image(t.column(first)[r].as_py()["bytes"])
    return cells, originals


def read_metrics(url: str, options: dict) -> dict:
    """separability and ppl from a `gankit metrics` output (metrics.json), or {}."""
    if not url:
        return {}
    found = storage.open_store(url, options).read_json("metrics.json")
    return {k: found.get(k) for k in ("separability", "ppl") if found.get(k)}


def read_inversion(urls: list, options: dict) -> list:
    """Every eval-inversion result (a JSON object, or a list of them) of `urls`."""
    runs = []
    for url in urls:
        with fsspec.open(url, "r", **options) as f:
            doc = json.load(f)
        for run in doc if isinstance(doc, list) else [doc]:
            require(isinstance(run, dict) and "recon_psnr" in run, "inversion",
                    f"{url} is not a `gankit eval-inversion --out` result")
            runs.append(dict(run, source=url))
    return runs


def recorded_models(samples: str, options: dict) -> dict:
    """The config the sample job recorded in its manifest ({} without samples)."""
    if not samples:
        return {}
    store = storage.open_store(samples, options)
    return (storage.read_manifest(store) or {}).get("config") or {}
