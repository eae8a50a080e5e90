"""The fit stage: one InterFaceGAN boundary per (attribute, space[, W+ layers]), plus
conditional boundaries, from a labeled sample dataset.

Memory: the driver streams only the needed columns (latents of the asked spaces and the
logit columns) row group by row group into arrays preallocated from the part footers, so
the peak is the arrays themselves: N x D float32 per space (500K x 512 = 1 GB; W+ layer
ranges count (stop - start) x w_dim per row), plus one row group. That is what a linear fit
needs in memory anyway; no copy of the dataset is ever held. Fitting runs in the driver
(CPU; gankit.latent.boundaries uses sklearn's linear solvers / torch), no Ray needed.

Output under `out`:
    boundaries/<space>/<attr>.npz                 plain boundary (Boundary.save)
    boundaries/<space>/<attr>__cond_<a>+<b>.npz   <attr> conditioned on a and b
    boundaries.json   index: [{name, attribute, space, layers, conditions, path,
                               val_accuracy, all_accuracy, n_train, metrics}], the config
W+ layer ranges use the space name 'wp<start>-<stop>' (layers start..stop-1).
"""
from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pyarrow as pa

from gankit.data import attribute_names, field_shape, latent_dim
from gankit.latent.boundaries import SELECTIONS, SOLVERS
from jobs import config, storage
from jobs.config import ConfigError, check_choices, layer_span, option, public_config, require
from jobs.options import StorageOptions
from jobs.storage.boundary_index import INDEX

log = logging.getLogger("gankit")


def condition(text: str) -> list:
    """'TARGET:A,B' (a flag's word) -> [target, [a, b]]."""
    target, _, conds = text.partition(":")
    if not conds:
        raise ValueError(f"--condition {text!r} must be TARGET:A[,B...]")
    return [target, conds.split(",")]


@dataclass
class FitConfig(StorageOptions):
    samples: str = option("", "sample dataset URL (latents + logit_<attr> columns)",
                          required=True, identity=True)
    out: str = option("", "output URL (boundaries/ and boundaries.json)", required=True)
    attributes: Optional[list] = option(None, "attributes to fit (default: every logit_<attr> "
                                              "column)")
    spaces: list = option(["z", "w"], "latent spaces to fit in", choices=("z", "w", "wp"),
                          identity=True)
    wp_layers: list = option([], "W+ layer ranges fitted when spaces has wp, e.g. 0-4 4-8",
                             parse=layer_span, metavar="START-STOP", identity=True)
    selection: str = option("extremes", "extremes: InterFaceGAN's top and bottom by score; "
                                        "threshold: every sample, labelled logit > 0",
                            choices=SELECTIONS, identity=True)
    fraction: float = option(0.02, "extremes: the top and bottom share kept by score ...",
                             identity=True)
    count: Optional[int] = option(None, "... or this many at each end (overrides fraction)",
                                  identity=True)
    val_fraction: float = option(0.3, "share of the kept samples held out for validation",
                                 identity=True)
    seed: int = option(0, "train/validation split seed", identity=True)
    solver: str = option("auto", "linear classifier: auto picks by selection and size "
                                 "(BENCHMARKS.md)", choices=SOLVERS, identity=True)
    conditions: list = option([], "conditional boundary of TARGET on A, B (repeatable)",
                              parse=condition, repeat=True, flag="condition",
                              metavar="TARGET:A[,B...]", identity=True)

    def validate(self) -> None:
        check_choices(self)
        require(bool(self.samples), "samples", "must be the URL of a sample dataset")
        require(bool(self.out), "out", "must be an output URL (a local path or s3://...)")
        require(len(self.spaces) > 0, "spaces", "must list at least one of z, w, wp")
        if "wp" in self.spaces:
            require(len(self.wp_layers) > 0, "wp_layers",
                    "must list W+ layer ranges [[start, stop], ...] when spaces has 'wp'")
        for r in self.wp_layers:
            require(isinstance(r, (list, tuple)) and len(r) == 2 and all(isinstance(v, int)
                    for v in r) and 0 <= r[0] < r[1], "wp_layers",
                    f"entries must be [start, stop] with 0 <= start < stop (got {r!r})")
        require(0 < self.fraction <= 0.5, "fraction", f"must be in (0, 0.5] (got {self.fraction})")
        require(self.count is None or self.count >= 2, "count", f"must be >= 2 (got {self.count})")
        require(0 < self.val_fraction < 1, "val_fraction",
                f"must be in (0, 1) (got {self.val_fraction})")
        for c in self.conditions:
            require(isinstance(c, (list, tuple)) and len(c) == 2 and isinstance(c[0], str)
                    and isinstance(c[1], (list, tuple)) and len(c[1]) > 0, "conditions",
                    f"entries must be [target, [condition, ...]] (got {c!r})")


def cond_name(attribute: str, conditions: list) -> str:
    return f"{attribute}__cond_{'+'.join(conditions)}" if conditions else attribute


def space_names(cfg: FitConfig) -> list:
    """'z', 'w', and 'wp<a>-<b>' for each W+ layer range."""
    names = [s for s in cfg.spaces if s != "wp"]
    if "wp" in cfg.spaces:
        names += [f"wp{a}-{b}" for a, b in cfg.wp_layers]
    return names


def parse_space(name: str) -> tuple:
    """'w' -> ('w', None); 'wp2-6' -> ('wp', (2, 6))."""
    m = re.fullmatch(r"wp(\d+)-(\d+)", name)
    return ("wp", (int(m.group(1)), int(m.group(2)))) if m else (name, None)


# ----------------------------------------------------------------------------------------
# Streaming the needed columns into arrays


def column_plan(schema: pa.Schema, spaces: list, url: str) -> dict:
    """{space name: (source column, first value, stop value)} per row; W from W+ layer 0."""
    plan = {}
    num_ws = w_dim = None
    if "wp" in schema.names:
        latent_dim(schema, "wp", url)
        num_ws, w_dim = field_shape(schema.field("wp"))
    for name in spaces:
        space, layers = parse_space(name)
        if space == "wp" and num_ws:
            a, b = layers
            if b > num_ws:
                raise ConfigError("wp_layers", f"range [{a}, {b}] exceeds the {num_ws} W+ "
                                  f"layers of {url}")
            plan[name] = ("wp", a * w_dim, b * w_dim)
        elif space in ("z", "w") and space in schema.names:
            plan[name] = (space, 0, latent_dim(schema, space, url))
        elif space == "w" and num_ws:
            plan[name] = ("wp", 0, w_dim)          # W+ layer 0 is w (truncated alike)
        else:
            raise ConfigError("spaces", f"has {space!r} but {url} has no {space!r} column "
                              f"(columns: {', '.join(schema.names)}); sample with space="
                              f"{'wp' if space == 'wp' else 'w or wp'}")
    return plan


def load_arrays(store, plan: dict, attributes: list) -> tuple:
    """({space: [N, D] float32}, scores [N, A] float32), streamed part by part."""
    rows, _, _ = storage.dataset_rows(store)
    latents = {s: np.empty((rows, b - a), dtype=np.float32) for s, (_, a, b) in plan.items()}
    scores = np.empty((rows, len(attributes)), dtype=np.float32)
    columns = sorted({c for c, _, _ in plan.values()}) + [f"logit_{a}" for a in attributes]
    from gankit.data import latents_from_column
    i = 0
    for table in storage.iter_tables(store, columns):
        n = table.num_rows
        flat = {c: latents_from_column(table.column(c)) for c, _, _ in plan.values()}
        for s, (c, a, b) in plan.items():
            latents[s][i:i + n] = flat[c][:, a:b]
        for j, attr in enumerate(attributes):
            scores[i:i + n, j] = table.column(f"logit_{attr}").to_numpy()
        i += n
    assert i == rows, f"read {i} rows, footers promised {rows}"
    return latents, scores


# ----------------------------------------------------------------------------------------
# Fitting and saving


def save_boundary(out, boundary, name: str) -> None:
    """Boundary.save to a local scratch file, then an atomic publish under `name`."""
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "boundary.npz")
        boundary.save(local)
        out.put_file(local, name)


def index_entry(boundary, name: str, path: str, space_name: str) -> dict:
    m = dict(boundary.metrics or {})
    return {"name": name, "attribute": boundary.attribute, "space": space_name,
            "layers": list(boundary.layers) if boundary.layers is not None else None,
            "conditions": list(boundary.conditions or []), "path": path,
            "val_accuracy": m.get("val_accuracy"), "all_accuracy": m.get("all_accuracy"),
            "n_train": m.get("n_train"), "metrics": m}


def fit_all(cfg: FitConfig, latents: dict, scores: np.ndarray, attributes: list, out) -> list:
    from gankit.latent.boundaries import condition_boundary, fit_boundary
    entries = []
    for space_name, x in latents.items():
        space, layers = parse_space(space_name)
        plain = {}
        for j, attr in enumerate(attributes):
            b = fit_boundary(x, scores[:, j], attr, space, selection=cfg.selection,
                             fraction=cfg.fraction, count=cfg.count,
                             val_fraction=cfg.val_fraction, seed=cfg.seed,
                             solver=cfg.solver, layers=layers)
            plain[attr] = b
            entry = save_entry(out, b, space_name, attr, [])
            entries.append(add_caveats(entry, cfg, per_side(cfg, b, scores[:, j])))
        log.info(f"[fit] {space_name}: val accuracy " + ", ".join(
            f"{a} {format_accuracy(b.metrics.get('val_accuracy'))}" for a, b in plain.items()))
        for target, conds in cfg.conditions:
            b = condition_boundary(plain[target], [plain[c] for c in conds])
            entries.append(save_entry(out, b, space_name, target, list(conds)))
    return entries


def format_accuracy(value: Optional[float]) -> str:
    return "n/a (no validation split)" if value is None else f"{value:.3f}"


def per_side(cfg: FitConfig, boundary, scores: np.ndarray) -> list:
    """[positives, negatives] the boundary was fitted and validated on."""
    if cfg.selection == "extremes":
        k = boundary.metrics["n_selected"] // 2          # the same count at both ends
        return [k, k]
    positive = int((scores > boundary.metrics.get("threshold", 0.0)).sum())
    return [positive, int(len(scores)) - positive]


def add_caveats(entry: dict, cfg: FitConfig, sides: list) -> dict:
    """entry + n_per_side and warnings (gankit.caveats), each also warned on the console:
    a val accuracy on a few rows, or near chance, reads like a good one otherwise."""
    from gankit.caveats import CaveatWarning, boundary_caveats
    found = boundary_caveats(entry["name"], sides, entry["val_accuracy"], cfg.val_fraction)
    for sentence in found:
        warnings.warn(sentence, CaveatWarning, stacklevel=2)
    return dict(entry, n_per_side=sides, warnings=found)


def save_entry(out, boundary, space_name: str, attr: str, conds: list) -> dict:
    name = cond_name(attr, conds)
    path = f"boundaries/{space_name}/{name}.npz"
    save_boundary(out, boundary, path)
    return index_entry(boundary, f"{space_name}/{name}", path, space_name)


def fit_identity(cfg: FitConfig, src, attributes: list) -> dict:
    """What the boundaries depend on: the fit settings and the samples' own identity."""
    manifest = storage.read_manifest(src) or {}
    ident = config.identity_of(cfg)
    ident.update(attributes=attributes, sample_identity=manifest.get("identity"),
                 sample_rows=manifest.get("rows"))
    return json.loads(json.dumps(ident, default=str))


def previous_fit(out, identity: dict) -> Optional[dict]:
    """The index of an identical earlier fit whose files are all there, else None."""
    try:
        index = out.read_json(INDEX)
    except FileNotFoundError:
        return None
    if index.get("identity") != identity:
        return None
    if not all(out.exists(e["path"]) for e in index.get("boundaries", [])):
        return None
    return index


def imported_entries(out, fitted: list) -> list:
    """The entries of the index there that `gankit directions import` added: a refit keeps
    them, unless a fitted boundary now takes the name (and so its file)."""
    try:
        old = out.read_json(INDEX).get("boundaries", [])
    except FileNotFoundError:
        return []
    taken = {e["name"] for e in fitted}
    for e in old:
        if e.get("source") and e["name"] in taken:
            log.warning(f"[fit] the fitted {e['name']} replaces the one imported from "
                        f"{e['source'].get('file')}")
    return [e for e in old if e.get("source") and e["name"] not in taken]


def run_fit(cfg: FitConfig) -> dict:
    """Fit every asked (attribute, space) boundary; returns the index written to
    `<out>/boundaries.json`."""
    cfg.validate()
    src = storage.open_store(cfg.samples, cfg.storage, must_exist=True)
    out = storage.open_store(cfg.out, cfg.storage, create=True)
    _, schema, _ = storage.dataset_rows(src)
    if schema is None:
        raise FileNotFoundError(f"no committed parts at {cfg.samples}")
    known = attribute_names(schema)
    attributes = list(cfg.attributes) if cfg.attributes else known
    require(len(attributes) > 0, "attributes",
            f"cannot default: {cfg.samples} has no logit_<attr> columns (sample with a classifier)")
    for a in attributes:
        require(a in known, "attributes", f"has {a!r}, not a logit column of {cfg.samples} "
                f"(attributes: {', '.join(known)})")
    for target, conds in cfg.conditions:
        for a in [target, *conds]:
            require(a in attributes, "conditions", f"names {a!r}, which is not fitted "
                    f"(attributes: {', '.join(attributes)})")
    identity = fit_identity(cfg, src, attributes)
    done = previous_fit(out, identity)
    if done is not None:
        log.info(f"[fit] {cfg.out} already holds these {len(done['boundaries'])} boundaries; "
                 f"nothing to do")
        return done
    plan = column_plan(schema, space_names(cfg), cfg.samples)
    latents, scores = load_arrays(src, plan, attributes)
    log.info(f"[fit] {len(scores)} samples, {len(attributes)} attributes, spaces "
             f"{', '.join(latents)}")
    entries = fit_all(cfg, latents, scores, attributes, out)
    entries += imported_entries(out, entries)
    index = {"format": "gankit.boundaries", "version": 1, "samples": cfg.samples,
             "num_samples": int(len(scores)), "attributes": attributes,
             "identity": identity, "config": public_config(cfg), "boundaries": entries}
    out.write_json(INDEX, index)
    log.info(f"[fit] wrote {len(entries)} boundaries and {INDEX} to {cfg.out}")
    return index


__all__ = ["FitConfig", "run_fit"]
