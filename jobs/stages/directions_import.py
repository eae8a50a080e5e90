"""`gankit directions import`: published directions (InterFaceGAN .npy, e4e/pSp .pt tensors,
GANSpace PCA .pt dicts) into a boundary index, so edit, the paired dataset, the report and
`gankit run` use them by name as they use fitted boundaries.

The index is a fit output's `boundaries.json` (created when absent, extended when there):
each imported boundary is written as `boundaries/<space>/<NAME>.npz` (Boundary.save) and
gets an entry like a fitted one, plus `source` (file, kind, sha256; GANSpace: component, std).
Entries already in the index are kept as they are; the read-modify-write of the index runs
under the location's job lease, so two imports cannot lose each other's entries.
Reading the file runs no code from it (gankit.loading.published).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

from gankit.loading.published import DirectionFileError
from jobs import storage
from jobs.config import ConfigError, check_choices, option, override, require
from jobs.options import MODEL_HELP, ModelOptions, StorageOptions
from jobs.storage.boundary_index import INDEX

log = logging.getLogger("gankit")


@dataclass
class DirectionImportConfig(StorageOptions):
    file: str = option("", "the direction file: InterFaceGAN .npy, e4e/pSp .pt tensor, or "
                           "GANSpace PCA .pt dict (a local path or fsspec URL)",
                       required=True, positional=True)
    name: str = option("", "NAME of the boundaries: SPACE/NAME in the index (GANSpace: "
                           "w/NAME_0, w/NAME_1, ...)", required=True)
    space: str = option("w", "latent space the direction lives in", choices=("z", "w"))
    out: str = option("", "boundary index URL (a fit output): boundaries.json is created, or "
                          "extended", required=True)
    model: Optional[str] = override(ModelOptions, "model", None, help=MODEL_HELP + ": the "
                                    "direction must have its Z / W width (default: unchecked)")
    components: Optional[int] = option(None, "GANSpace: import the first K components "
                                             "(default: all)")
    replace: bool = option(False, "replace boundaries of the same name imported before from "
                                  "another file (fitted ones are never replaced)")

    def validate(self) -> None:
        check_choices(self)
        require(bool(self.file), "file", "must name a direction file")
        require(bool(self.name), "name", "must name the imported boundaries")
        require(bool(self.out), "out", "must be the URL of a boundary index (a fit output)")
        require(self.components is None or self.components >= 1, "components",
                f"must be >= 1 (got {self.components})")


def read_bytes(url: str, options: dict) -> bytes:
    import fsspec
    fs, path = fsspec.core.url_to_fs(url, **storage.storage_options(url, options))
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"direction file not found: {url}") from None


def check_widths(boundaries: list, model: str) -> None:
    """ConfigError when a direction's width is not the generator's (one sentence)."""
    from gankit.loading import zoo
    from gankit.loading.published import width_problem
    G = zoo.load_generator(model, device="cpu")
    has_w = getattr(G, "has_w", True)
    for name, b in boundaries:
        require(has_w or b.space == "z", "name", f"{name} is a W direction, but {model} is "
                f"a plain z -> image generator with no W")
        problem = width_problem(name, b, getattr(G, "z_dim", None),
                                getattr(G, "w_dim", None) if has_w else None,
                                getattr(G, "num_ws", None) if has_w else None, model)
        require(problem is None, "file", f"is refused: {problem}")


def read_index(out) -> dict:
    try:
        return out.read_json(INDEX)
    except FileNotFoundError:
        return {"format": "gankit.boundaries", "version": 1, "attributes": [],
                "boundaries": []}


def merge(index: dict, new: list, replace: bool, url: str) -> list:
    """The index's entries with `new` ones added (or replacing older imports of the same
    name when `replace`); a name already taken otherwise is a ConfigError."""
    entries = list(index.get("boundaries", []))
    at = {e["name"]: i for i, e in enumerate(entries)}
    for entry in new:
        i = at.get(entry["name"])
        if i is None:
            at[entry["name"]] = len(entries)
            entries.append(entry)
            continue
        old = entries[i]
        same = (old.get("source") or {}).get("sha256") == entry["source"]["sha256"]
        require(bool(old.get("source")), "name", f"{entry['name']} is a fitted boundary of "
                f"{url}: choose another --name")
        require(same or replace, "name", f"{entry['name']} is already in {url}, imported "
                f"from {old['source'].get('file')}: choose another --name, or --replace")
        entries[i] = entry
    return entries


def run_import(cfg: DirectionImportConfig) -> dict:
    """Import `cfg.file` into the index at `cfg.out`; returns the index written."""
    from gankit.loading.published import import_boundaries, space_name
    from jobs.stages.fit import index_entry, save_boundary
    cfg.validate()
    data = read_bytes(cfg.file, cfg.storage)
    try:
        boundaries = import_boundaries(data, cfg.file, cfg.name, cfg.space, cfg.components)
    except DirectionFileError as e:
        raise ConfigError("file", f"is refused: {e}") from None
    if cfg.model:
        check_widths(boundaries, cfg.model)
    out = storage.open_store(cfg.out, cfg.storage, create=True)
    with storage.JobLease(out, "directions-import"):
        index = read_index(out)
        new = []
        for name, b in boundaries:
            path = f"boundaries/{name}.npz"
            entry = index_entry(b, name, path, space_name(b))
            new.append(dict(entry, source=b.source))
        entries = merge(index, new, cfg.replace, cfg.out)
        for (_, b), entry in zip(boundaries, new):
            save_boundary(out, b, entry["path"])
        index = dict(index, boundaries=entries)
        out.write_json(INDEX, index)
    kinds = boundaries[0][1].source["kind"]
    log.info(f"[directions] imported {len(boundaries)} {kinds} boundar"
             f"{'y' if len(boundaries) == 1 else 'ies'} ({', '.join(n for n, _ in boundaries[:3])}"
             f"{', ...' if len(boundaries) > 3 else ''}) into {cfg.out}/{INDEX}")
    return index


__all__ = ["DirectionImportConfig", "run_import"]
