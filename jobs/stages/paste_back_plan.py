"""The paste-back stage's driver side: its inputs checked, and the plan of which edit parts
hold the faces of each aligned part (jobs.stages.paste_back's docstring has the two ways: lineage,
from three manifests, or an index of the ids of both)."""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import pyarrow as pa

from jobs import storage
from jobs.config import require
from jobs.stages.paste_back_rows import boundary_token
from jobs.storage import Store
from jobs.storage.image_inputs import is_image_struct

log = logging.getLogger("gankit")

EDIT_COLUMNS = ("image_id", "boundary", "strength", "image")
ALIGNED_COLUMNS = ("image_id", "source_id", "quad")


def first_schema(store: Store) -> Optional[pa.Schema]:
    parts = store.list_parts()
    return storage.part_footer(store, next(iter(parts.values())))[0] if parts else None


def input_problem(name: str, store: Store, needs: tuple, what: str) -> Optional[str]:
    """Why `store` cannot be paste-back's `name` input (the columns it lacks), or None."""
    schema, job = first_schema(store), (storage.read_manifest(store) or {}).get("job")
    made_by = f" (a '{job}' output)" if job else ""
    if schema is None:
        return f"{name} {store.url}{made_by} holds no part files"
    missing = [c for c in needs if c not in schema.names]
    if "image" not in missing and "image" in needs:
        if not is_image_struct(schema.field("image").type):
            missing.append("image (an image struct)")
    if missing:
        hint = " (edits of sampled latents have no photo)" if job == "edit" and \
            "sample_id" in schema.names else ""
        return (f"{name} {store.url}{made_by} has no {', '.join(missing)} column, which "
                f"{what} has{hint}")
    if name == "aligned" and job != "align":
        return f"aligned {store.url}{made_by} is not a `gankit align` output"
    return None


def check_inputs(edits: Store, aligned: Store, blend: str) -> None:
    """Each input has the columns paste-back needs; else one sentence naming each bad one."""
    needs = ALIGNED_COLUMNS + (("landmarks",) if blend == "face" else ())
    problems = [p for p in (
        input_problem("edits", edits, EDIT_COLUMNS, "an edit output of aligned faces"),
        input_problem("aligned", aligned, needs, "an align output")) if p]
    if problems:
        raise ValueError(f"paste-back cannot use its inputs: {'; '.join(problems)}")


def complete_manifest(store: Store, name: str) -> dict:
    manifest = storage.read_manifest(store) or {}
    require(manifest.get("status") == "complete", name,
            f"{store.url} is not a complete job output (its manifest says "
            f"{manifest.get('status', 'nothing')}): rerun the job that writes it first")
    return manifest


def same_location(url: Optional[str], store: Store) -> bool:
    if not url:
        return False
    try:
        other = Store(url, store.options, probe=False)
    except storage.StoreError:
        return False
    return other.fs.unstrip_protocol(other.root) == store.fs.unstrip_protocol(store.root)


def lineage(edits: Store, edit_manifest: dict, aligned: Store) -> bool:
    """Whether the edits' latents are an inversion of `aligned` itself (their manifests say
    so): then edit part k holds faces of aligned part k only."""
    latents = (edit_manifest.get("config") or {}).get("latents")
    if edit_manifest.get("job") != "edit" or not latents:
        return False
    try:
        inverted = storage.read_manifest(Store(latents, edits.options, probe=False)) or {}
    except (OSError, ValueError):
        return False
    return inverted.get("job") == "invert" and same_location(
        (inverted.get("config") or {}).get("images"), aligned)


def id_hashes(ids: list) -> np.ndarray:
    """int64 hashes of string ids (Python's hash: the same within the driver process)."""
    return np.fromiter((hash(str(i)) for i in ids), dtype=np.int64, count=len(ids))


def indexed_edit_parts(edits: Store, aligned: Store) -> dict:
    """{aligned part: [edit parts holding any of its faces]} from the `image_id` columns of
    both: a sorted array of (id hash, edit part), then a lookup per aligned part. A hash
    collision only adds a part to read: the actor matches real ids."""
    keys, owners = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for j, path in edits.list_parts().items():
        h = np.unique(id_hashes(storage.read_column(edits, path, "image_id")))
        keys.append(h)
        owners.append(np.full(h.size, j, dtype=np.int64))
    key, owner = np.concatenate(keys), np.concatenate(owners)
    order = np.argsort(key, kind="stable")
    key, owner = key[order], owner[order]
    plan = {}
    for k, path in aligned.list_parts().items():
        faces = np.unique(id_hashes(storage.read_column(aligned, path, "image_id")))
        lo, hi = np.searchsorted(key, faces, "left"), np.searchsorted(key, faces, "right")
        hits = [owner[a:b] for a, b in zip(lo, hi) if b > a]
        plan[k] = sorted(set(np.concatenate(hits).tolist())) if hits else []
    return plan


def plan_edit_parts(edits: Store, edit_manifest: dict, aligned: Store, plan: list) -> tuple:
    """({aligned part: [edit parts]}, whether edit part k holds only aligned part k's faces)."""
    if lineage(edits, edit_manifest, aligned):
        have = set(edits.list_parts())
        log.info(f"[paste_back] {edits.url} edits an inversion of {aligned.url}: part k's "
                 f"edits are in edit part k")
        return {p.index: [p.index] if p.index in have else [] for p in plan}, True
    log.info(f"[paste_back] {edits.url} does not come from {aligned.url} by its manifests: "
             f"indexing the ids of both")
    return indexed_edit_parts(edits, aligned), False


def check_file_names(edit_manifest: dict) -> None:
    """Two boundaries whose names give one file name would overwrite each other's photos."""
    seen = {}
    for name in (edit_manifest.get("identity") or {}).get("boundaries") or []:
        other = seen.setdefault(boundary_token(name), name)
        require(other == name, "output", f"files: boundaries {other!r} and {name!r} give the "
                f"same file name; use --output parquet")
