"""The manifest: a driver's record of a job (identity, config, parts with their size and
footer hash, runs), and the checks a rerun makes against it."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Optional

import pyarrow as pa

from jobs.storage.reading import (FOOTER_ERRORS, first_line, raw_footer, read_footer,
                                  strip_part_metadata)
from jobs.storage.store import MANIFEST, Store, part_name


def schema_json(schema: Optional[pa.Schema]) -> Optional[dict]:
    if schema is None:
        return None
    schema = strip_part_metadata(schema)
    meta = {k.decode(): v.decode(errors="replace") for k, v in (schema.metadata or {}).items()}
    return {"fields": [{"name": f.name, "type": str(f.type)} for f in schema],
            "metadata": meta}


def read_manifest(store: Store) -> Optional[dict]:
    try:
        return store.read_json(MANIFEST)
    except FileNotFoundError:
        return None


def check_identity(store: Store, job: str, identity: dict) -> Optional[dict]:
    """Refuse to mix two different jobs' rows in one output; returns the old manifest."""
    old = read_manifest(store)
    if old is None:
        if store.list_parts():
            raise ValueError(f"{store.url} holds part files but no {MANIFEST}: "
                             f"choose an empty output location")
        return None
    if not store.list_parts() and not old.get("parts"):
        return None        # nothing was committed: a changed job (a smaller micro_batch
                           # after an out-of-memory error) may start over here
    if old.get("job") != job:
        raise ValueError(f"{store.url} holds the output of a '{old.get('job')}' job, "
                         f"not '{job}': choose another output location")
    recorded = old.get("identity", {})
    for key in {**recorded, **identity}:     # a key on one side only counts as None there
        before, value = recorded.get(key), identity.get(key)
        if json.loads(json.dumps(before, default=str)) != json.loads(json.dumps(value, default=str)):
            raise ValueError(f"{store.url} was written with {key}={before!r}, this job has "
                             f"{key}={value!r}: rows would not match; use another output location")
    return old


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass
class RunRecord:
    """What one run of a job did: which parts it computed, which it found committed."""
    started: str = field(default_factory=now)
    finished: Optional[str] = None
    computed: list = field(default_factory=list)   # part indices computed by this run
    reused: list = field(default_factory=list)     # part indices already committed


def footer_metas(store: Store, committed: dict) -> dict:
    """{index: {rows, errors, bytes, footer_sha256}} of committed parts, from their footers."""
    return {index: read_footer(store, path).record() for index, path in committed.items()}


DAMAGED_DIR = "_damaged"


def set_aside_damaged(store: Store, committed: dict, old: Optional[dict]) -> tuple:
    """Check the committed parts a rerun would reuse against the manifest's record of them
    (size and footer hash; page checksums are verified whenever rows are read). A part
    that cannot be read or differs is moved to _damaged/ so it is recomputed, never reused.
    Returns ({index: path} of the good parts, one sentence per part set aside)."""
    recorded = {p["index"]: p for p in (old or {}).get("parts", [])}
    good, said = {}, []
    for index, path in committed.items():
        problem = part_problem(store, path, recorded.get(index))
        if problem is None:
            good[index] = path
            continue
        moved = f"{DAMAGED_DIR}/{part_name(index)}.{time.strftime('%Y%m%dT%H%M%S')}"
        store.move(path, moved)
        said.append(f"{path} {problem}: moved to {moved}, and it is computed again")
    return good, said


def part_problem(store: Store, path: str, entry: Optional[dict]) -> Optional[str]:
    """Why a committed part cannot be reused, or None."""
    try:
        footer = raw_footer(store, path)
    except FOOTER_ERRORS as e:
        return f"cannot be read ({type(e).__name__}: {first_line(e)})"
    if entry is None or "bytes" not in entry:  # committed after the last manifest, or by
        return None                            # a version that kept no fingerprint
    if footer.bytes != entry["bytes"]:
        return f"is {footer.bytes} bytes where the manifest recorded {entry['bytes']}"
    if footer.sha256 != entry["footer_sha256"]:
        return "differs from the part the manifest recorded (its footer hash)"
    return None


def write_manifest(store: Store, job: str, identity: dict, config: dict, plan: list,
                   metas: dict, schema: Optional[pa.Schema], runs: list,
                   complete: bool) -> dict:
    """The driver's record of a job. `metas` {index: {rows, errors}} holds the committed
    parts (from the workers' replies and the footers of parts found committed): the
    manifest is built from part metadata, never from the rows."""
    parts = [{"index": p.index, "file": part_name(p.index), "start": p.start, "stop": p.stop,
              **metas[p.index]} for p in plan if p.index in metas]
    manifest = {
        "format": "gankit.dataset", "version": 1, "job": job,
        "status": "complete" if complete and len(parts) == len(plan) else "incomplete",
        "identity": identity, "config": config, "schema": schema_json(schema),
        "rows": sum(p["rows"] for p in parts), "errors": sum(p["errors"] for p in parts),
        "num_parts": len(plan), "parts": parts,
        "runs": [r.__dict__ if isinstance(r, RunRecord) else r for r in runs],
    }
    store.write_json(MANIFEST, manifest)
    return manifest
