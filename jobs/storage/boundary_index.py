"""The boundaries a fit writes and the edit, dataset and report stages read: the index
`boundaries.json` and the Boundary `.npz` files, local or in an object store."""
from __future__ import annotations

import hashlib
import io
from typing import Optional

import numpy as np

from jobs import storage
from jobs.config import ConfigError

INDEX = "boundaries.json"


def load_index(url: str, options: Optional[dict] = None) -> dict:
    store = storage.open_store(url, options)
    try:
        return store.read_json(INDEX)
    except FileNotFoundError:
        raise FileNotFoundError(f"no {INDEX} at {url} (run `gankit fit` first)") from None


def load_boundary(url: str, options: Optional[dict] = None):
    """A Boundary .npz from any fsspec URL (read as bytes: np.load never unpickles)."""
    import fsspec

    from gankit.latent.boundaries import Boundary
    fs, path = fsspec.core.url_to_fs(url, **storage.storage_options(url, options))
    try:
        data = fs.cat_file(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"boundary file not found: {url}") from None
    return Boundary.load(io.BytesIO(data))


def resolve_boundaries(names: list, index_url: Optional[str], options: dict) -> list:
    """[(name, Boundary)] in the order asked (none: every indexed one); names go through
    the index at `index_url`, .npz paths are read as they are."""
    entries = {}
    if index_url:
        entries = {e["name"]: e for e in load_index(index_url, options)["boundaries"]}
    found = []
    for name in list(names) or list(entries):
        if name in entries:
            url = f"{index_url.rstrip('/')}/{entries[name]['path']}"
        elif str(name).endswith(".npz"):
            url = str(name)
        else:
            known = ", ".join(entries) if entries else "no index given"
            raise ConfigError("boundaries", f"has {name!r}, neither an indexed boundary "
                              f"(known: {known}) nor a .npz path")
        found.append((str(name), load_boundary(url, options)))
    return found


def fingerprint(boundaries: list) -> str:
    """Digest of the boundaries' geometry: a rerun against refitted ones is another job."""
    h = hashlib.sha256()
    for name, b in boundaries:
        h.update(name.encode())
        h.update(np.ascontiguousarray(b.normal, dtype=np.float32).tobytes())
        h.update(np.float64(b.intercept).tobytes())
        if b.imported:          # a published direction's length and measure (fitted: none)
            h.update(np.float64(b.scale).tobytes())
            h.update(str(b.anchor_layer).encode())
    return h.hexdigest()[:16]
