"""The report stage (driver): fit output + edit output (+ samples) -> report.json,
report.html and figures/ under `out`.

Reads, streaming part by part and keeping only small arrays:
- `fit`/boundaries.json and the boundary .npz files (cosine matrices);
- `edits`: the logit columns of the rows at strength +-edit_strength (rescoring, flip rates)
  and the images of the first `grid_samples` sample ids (edit grids);
- the edited samples' logits before editing, from the latents dataset the edit job read (its
  manifest names it), and the first `correlation_rows` rows of `samples` (correlation).
The edit set is small by design (a few hundred samples x boundaries x strengths).

Optional sections, each computed in the driver on one device (all small):
- `real`: the classifier's attribute correlation on real images ('toy' renders of the toy
  world, or a Parquet dataset with an image column) beside the generated one; for 'toy' also
  the true labels' correlation (the toy factors thresholded);
- `directions`: the top SeFa and GANSpace PCA directions of `model`, auto-annotated by
  rescoring with `classifier`, each with a strength-sweep grid;
- `inversion`: `gankit eval-inversion --out` JSON files, one table row per run.
"""
from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from jobs import storage
from jobs.config import require

log = logging.getLogger("gankit")


@dataclass
class ReportConfig:
    fit: str = ""                      # fit output URL (boundaries.json)
    edits: str = ""                    # edit output URL (edit job parts, to_distance or shift)
    samples: str = ""                  # sample dataset URL for the correlation ('' = skip)
    out: str = ""                      # output URL: report.json, report.html, figures/
    edit_strength: Optional[float] = None  # |strength| the flip rates use (None = the largest)
    grid_samples: int = 4              # sample ids shown per edit grid
    correlation_rows: int = 20000      # sample rows read for the correlation matrix
    title: str = "gankit report"
    # latent-space metrics computed elsewhere (the demo): 'separability' {z, w}, 'ppl' {z, w},
    # 'directions' [...]; each missing key is null in report.json and its table is left out
    latent_metrics: dict = field(default_factory=dict)
    metrics: str = ""                  # a `gankit metrics` output URL: its separability and
                                       # ppl fill the keys latent_metrics leaves empty
    model: Optional[str] = None        # generator for the directions ('' / None = samples')
    classifier: Optional[str] = None   # classifier for real images and direction annotation
    real: str = ""                     # real images: 'toy' renders, a Parquet URL, '' = skip
    real_rows: int = 2000              # real images classified for their correlation
    real_seed: int = 0                 # toy renders' seed (rows 0 .. real_rows-1)
    image_column: str = "image"        # image column of a real Parquet dataset
    directions: int = 0                # top SeFa and PCA directions annotated (0 = skip)
    direction_samples: int = 16        # samples edited to annotate each direction
    direction_w_samples: int = 2000    # sampled w for PCA and each direction's std
    grid_seeds: int = 3                # rows of each direction's sweep grid
    inversion: list = field(default_factory=list)  # eval-inversion JSON URLs
    device: str = "cpu"
    storage: dict = field(default_factory=dict)  # fsspec options for every URL

    def validate(self) -> None:
        require(bool(self.fit), "fit", "must be the URL of a fit output (boundaries.json)")
        require(bool(self.out), "out", "must be an output URL (a local path or s3://...)")
        require(self.edit_strength is None or self.edit_strength > 0, "edit_strength",
                f"must be > 0 or null (got {self.edit_strength})")
        require(self.grid_samples >= 0, "grid_samples", "must be >= 0")
        require(self.correlation_rows >= 0, "correlation_rows", "must be >= 0")
        require(self.real_rows >= 2, "real_rows", f"must be >= 2 (got {self.real_rows})")
        require(self.directions >= 0, "directions", f"must be >= 0 (got {self.directions})")
        require(self.direction_samples >= 1, "direction_samples", "must be >= 1")
        require(self.direction_w_samples >= 2, "direction_w_samples", "must be >= 2")
        require(self.grid_seeds >= 1, "grid_seeds", "must be >= 1")
        require(all(isinstance(u, str) and u for u in self.inversion), "inversion",
                "must be a list of eval-inversion JSON URLs")


# ----------------------------------------------------------------------------------------
# Reading


def boundary_rows(index: dict) -> list:
    keys = ("name", "attribute", "space", "conditions", "val_accuracy", "all_accuracy",
            "n_train", "path")
    return [{**{k: e.get(k) for k in keys}, "n_val": (e.get("metrics") or {}).get("n_val"),
             "n_per_side": e.get("n_per_side")} for e in index["boundaries"]]


def fit_settings(index: dict) -> dict:
    """What the report's text says about the fit: the samples and how they were selected."""
    cfg = index.get("config") or {}
    keys = ("selection", "fraction", "count", "val_fraction", "spaces")
    return {"samples": index.get("samples"), **{k: cfg.get(k) for k in keys}}


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


def cosine_section(cfg: ReportConfig, index: dict) -> dict:
    """{space: {attributes, matrix}} over the plain boundaries of each space."""
    from gankit.boundaries import cosine_matrix
    from jobs.boundary_index import load_boundary
    out = {}
    for space in dict.fromkeys(e["space"] for e in index["boundaries"]):
        plain = [e for e in index["boundaries"] if e["space"] == space and not e["conditions"]]
        bs = [load_boundary(f"{cfg.fit.rstrip('/')}/{e['path']}", cfg.storage) for e in plain]
        if bs:
            out[space] = {"attributes": [e["attribute"] for e in plain],
                          "matrix": cosine_matrix(bs).tolist()}
    return out


def edit_attributes(cfg: ReportConfig) -> list:
    """The classifier's attributes, from the logit columns of the edits (else the samples):
    an index that holds only imported directions (`gankit directions import`) lists none."""
    url = cfg.edits or cfg.samples
    if not url:
        return []
    names = columns_of(storage.open_store(url, cfg.storage, must_exist=True))
    return [n[len("logit_"):] for n in names if n.startswith("logit_")]


def columns_of(store) -> list:
    """A dataset's column names, from its first part's footer (one small read)."""
    parts = store.list_parts()
    require(bool(parts), "edits", f"no committed parts at {store.url}")
    return storage.part_footer(store, next(iter(parts.values())))[0].names


def id_name(store) -> str:
    """The id column of an edit or latents dataset: sample_id, or image_id (inversions)."""
    from gankit.data import id_column_of
    name = id_column_of(columns_of(store))
    require(name is not None, "edits", f"{store.url} has neither a sample_id nor an image_id")
    return name


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
        logits = np.stack([t.column(f"logit_{a}").to_numpy()[keep] for a in attributes], 1)
        for i, name, sign, row in zip(ids, names, np.sign(s[keep]), logits):
            found.setdefault((name, int(sign)), {})[i] = row
    return found, strength


def sample_logits(url: str, options: dict, ids: Optional[set], attributes: list,
                  limit: Optional[int] = None) -> tuple:
    """(ids [N], logits [N, A]) of the rows of `url` whose id is in `ids` (or the first
    `limit` rows), streamed."""
    store = storage.open_store(url, options, must_exist=True)
    key = id_name(store)
    cols = [key] + [f"logit_{a}" for a in attributes]
    got_ids, got = [], []
    n = 0
    for t in storage.iter_tables(store, cols):
        i = np.asarray(t.column(key).to_pylist(), dtype=object)
        keep = np.isin(i, list(ids)) if ids is not None else np.arange(len(i)) < limit - n
        got_ids.append(i[keep])
        got.append(np.stack([t.column(f"logit_{a}").to_numpy()[keep] for a in attributes], 1))
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
    names = columns_of(edits)
    if "identity_similarity" not in names:
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
    from gankit.images import decode_image
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


# ----------------------------------------------------------------------------------------
# Computing the sections


def edit_sections(entries: list, found: dict, ids: np.ndarray, before: np.ndarray,
                  attributes: list) -> dict:
    """rescoring, label_changes, edits and pairs, for the boundaries that were edited."""
    from gankit import report as R
    pos = {i: k for k, i in enumerate(ids)}
    out = {"rescoring": {}, "label_changes": {}, "edits": {}, "pairs": []}
    for kind in ("plain", "conditional"):
        group = [e for e in entries if bool(e["conditions"]) == (kind == "conditional")
                 and (e["name"], 1) in found and (e["name"], -1) in found
                 and e["attribute"] in attributes]     # an import may name none of them
        if not group:
            continue
        targets = [attributes.index(e["attribute"]) for e in group]
        direction = R.edit_directions(before, targets)                   # [B, N]
        after = np.empty((len(group), *before.shape), dtype=np.float32)  # [B, N, A]
        for b, e in enumerate(group):
            for i, k in pos.items():
                after[b, k] = found[(e["name"], int(direction[b, k]))][i]
        names = [e["name"] for e in group]
        resc = R.rescoring_matrix(before, after, direction)
        flips = R.flip_rates(before, after, targets, direction)
        out["rescoring"][kind] = {"attributes": attributes, "boundaries": names,
                                  "matrix": resc.tolist()}
        out["label_changes"][kind] = {"attributes": attributes, "boundaries": names,
                                      "matrix": flips["changed"].tolist()}
        out["edits"][kind] = {edit_key(e): {
            "attribute": e["attribute"], "conditions": e["conditions"], "boundary": e["name"],
            "flip_rate": float(flips["flip_rate"][b]),
            "others_changed": float(flips["others_changed"][b]),
            "changed": dict(zip(attributes, map(float, flips["changed"][b])))}
            for b, e in enumerate(group)}
    out["pairs"] = pair_rows(out["edits"])
    return out


def edited_strengths(edits) -> list:
    """Every |strength| > 0 the edit job wrote, ascending."""
    found = set()
    for t in storage.iter_tables(edits, ["strength"]):
        found.update(np.abs(t.column("strength").to_numpy()).round(6).tolist())
    return sorted(found - {0.0})


def pair_sweeps(edits, index: dict, ids: np.ndarray, before: np.ndarray,
                attributes: list) -> dict:
    """{pair key: [{strength, flip_rate, condition_changed}]}: the conditional-vs-plain
    comparison at every edited strength, weakest first (one pass over the edits each)."""
    sweeps = {}
    for strength in edited_strengths(edits):
        found, _ = edit_logits(edits, strength, attributes)
        entries = [e for e in index["boundaries"] if (e["name"], 1) in found]
        for p in edit_sections(entries, found, ids, before, attributes)["pairs"]:
            sweeps.setdefault(pair_key(p), []).append(
                {"strength": strength, "flip_rate": p["flip_rate"],
                 "condition_changed": p["condition_changed"]})
    return sweeps


def pair_key(pair: dict) -> str:
    return f"{pair['space']}/{pair['target']}|{'+'.join(pair['conditions'])}"


def edit_key(entry: dict) -> str:
    return entry["attribute"] + ("|" + "+".join(entry["conditions"]) if entry["conditions"]
                                 else "")


def pair_rows(edits: dict) -> list:
    """Conditional vs plain, for each conditional boundary whose plain boundary (same
    attribute, same space) was edited too."""
    space = lambda e: e["boundary"].split("/")[0]  # noqa: E731
    rows = []
    for e in edits.get("conditional", {}).values():
        p = next((q for q in edits.get("plain", {}).values()
                  if q["attribute"] == e["attribute"] and space(q) == space(e)), None)
        if p is None:
            continue
        cond = lambda x: float(np.mean([x["changed"][c] for c in e["conditions"]]))  # noqa: E731
        rows.append({"target": e["attribute"], "conditions": e["conditions"],
                     "space": space(e),
                     "flip_rate": {"plain": p["flip_rate"], "conditional": e["flip_rate"]},
                     "condition_changed": {"plain": cond(p), "conditional": cond(e)}})
    return rows


def strength_label(t: float) -> str:
    return "0" if t == 0 else f"{t:+g}"


def row_label(sample_id: int, entry: dict) -> str:
    """'#12 plain' or '#12 | old+yaw' (the conditions the edit keeps)."""
    conds = entry.get("conditions") or []
    return f"#{sample_id} " + ("| " + "+".join(conds) if conds else "plain")


def grid_figures(cells: dict, originals: dict, entries: list, ids: list) -> dict:
    """{'grid_<attr>': PNG}: rows = sample x (plain, conditional...), columns = original
    then every strength in increasing order, both labelled on the image."""
    from gankit.images import encode_png
    from gankit.report import labelled_grid
    figs, captions = {}, {}
    for attr in dict.fromkeys(e["attribute"] for e in entries):
        group = [e for e in entries if e["attribute"] == attr and e["name"] in cells]
        if not group:
            continue
        strengths = sorted({t for e in group for (_, t) in cells[e["name"]]})
        with_original = all(i in originals for i in ids)
        rows, labels = [], []
        for i in ids:
            for e in group:
                row = [cells[e["name"]].get((i, t)) for t in strengths]
                if all(c is not None for c in row):
                    rows.append(([originals[i]] if with_original else []) + row)
                    labels.append(row_label(i, e))
        if rows:
            cols = ["original"] * with_original + [strength_label(t) for t in strengths]
            figs[f"grid_{attr}"] = encode_png(labelled_grid(np.asarray(rows), labels, cols),
                                              compress_level=6)
            captions[f"grid_{attr}"] = (f"{attr}: each sample along "
                                        f"{', then '.join(e['name'] for e in group)}; columns: "
                                        f"signed distance to the boundary in W")
    return figs, captions


def heatmaps(report: dict) -> tuple:
    from gankit.report import heatmap_png
    figs, captions = {}, {}
    for space, c in report["cosine"].items():
        figs[f"cosine_{space}"] = heatmap_png(c["matrix"], c["attributes"], c["attributes"],
                                              f"cosine of boundary normals, {space.upper()}")
        captions[f"cosine_{space}"] = f"cosine similarity of the plain {space} boundaries"
    for kind, r in (report.get("rescoring") or {}).items():
        figs[f"rescoring_{kind}"] = heatmap_png(r["matrix"], r["boundaries"], r["attributes"],
                                                f"rescoring, {kind} boundaries")
        captions[f"rescoring_{kind}"] = (f"{kind}: mean change of each attribute's "
                                         f"probability, signed by the edit direction")
    for key, title, caption in CORRELATIONS:
        c = report.get(key)
        if c:
            figs[key] = heatmap_png(c["matrix"], c["attributes"], c["attributes"],
                                    title.format(rows=c["rows"]))
            captions[key] = caption.format(source=c.get("source"))
    return figs, captions


CORRELATIONS = (   # report key, heatmap title, caption
    ("correlation", "generated: classifier probabilities ({rows} samples)",
     "Pearson correlation of the classifier probabilities on generated samples"),
    ("correlation_real", "real: classifier probabilities ({rows} images)",
     "the same on real images ({source})"),
    ("correlation_true", "real: true labels ({rows} images)",
     "toy world: correlation of the true labels (factors thresholded) of the same renders"),
)


# ----------------------------------------------------------------------------------------
# Real images, directions, inversion


def model_specs(cfg: ReportConfig) -> tuple:
    """(generator, classifier) specs: the config's, else those the samples job recorded."""
    recorded = {}
    if cfg.samples and not (cfg.model and cfg.classifier):
        store = storage.open_store(cfg.samples, cfg.storage)
        recorded = (storage.read_manifest(store) or {}).get("config") or {}
    return cfg.model or recorded.get("model"), cfg.classifier or recorded.get("classifier")


def classify(C, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """uint8 [N, H, W, 3] -> logits [N, A] (float64)."""
    import torch

    from gankit.images import from_uint8
    p = next(iter(C.parameters()), None)
    device = p.device if p is not None else "cpu"
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch_size):
            out.append(C(from_uint8(images[s:s + batch_size]).to(device)).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(C.attribute_names)))


def toy_real(n: int, seed: int, resolution: int, attributes: list) -> tuple:
    """n toy renders (uint8 [n, R, R, 3]) and their true labels [n, A] (bool), or None when
    the attributes are not toy-world attributes."""
    from gankit import toyfaces
    images, factors = toyfaces.render_dataset(n, seed, resolution)
    labels = toyfaces.labels(factors)
    truth = np.stack([labels[a] for a in attributes], 1) if set(attributes) <= set(labels) \
        else None
    return images, truth


def parquet_real(cfg: ReportConfig) -> tuple:
    """The first real_rows decodable images of a Parquet dataset (uint8 [N, R, R, 3], R the
    first image's size) and the number of rows skipped as undecodable or of another size."""
    from jobs.image_inputs import decode_rows, first_resolution, input_parts
    store = storage.open_store(cfg.real, cfg.storage)
    parts = input_parts(store)
    res = first_resolution(store, parts, cfg.image_column)
    got, errors, n = [], 0, 0
    for path in parts.values():
        pf = storage.open_parquet(store, path)
        try:
            for batch in pf.iter_batches(batch_size=256, columns=[cfg.image_column]):
                u8, bad = decode_rows(batch.column(0).to_pylist(), res)   # [b, R, R, 3]
                good = np.ones(len(u8), dtype=bool)
                good[list(bad)] = False
                got.append(u8[good][:cfg.real_rows - n])
                errors += len(bad)
                n += len(got[-1])
                if n >= cfg.real_rows:
                    return np.concatenate(got), errors
        finally:
            pf.close()
    return np.concatenate(got), errors


def add_real(cfg: ReportConfig, report: dict, attributes: list, C, resolution: int) -> None:
    """correlation_real (+ correlation_true for toy renders) and correlation_gap."""
    from gankit.report import correlation_gap, correlation_matrix, probabilities
    names = list(C.attribute_names)
    require(set(attributes) <= set(names), "classifier",
            f"scores {names}, but the fit has {attributes}")
    truth, errors = None, 0
    if cfg.real == "toy":
        images, truth = toy_real(cfg.real_rows, cfg.real_seed, resolution, attributes)
    else:
        images, errors = parquet_real(cfg)
    logits = classify(C, images)[:, [names.index(a) for a in attributes]]  # [N, A]
    corr = lambda m: {"attributes": attributes, "rows": int(len(images)),  # noqa: E731
                      "matrix": correlation_matrix(m).tolist()}
    report["correlation_real"] = dict(corr(probabilities(logits)), source=cfg.real,
                                      errors=errors)
    if truth is not None:
        report["correlation_true"] = corr(truth.astype(np.float64))
    mats = {"generated": report.get("correlation"), "real": report["correlation_real"],
            "true": report.get("correlation_true")}
    mats = {k: np.asarray(v["matrix"]) for k, v in mats.items() if v}
    keys = list(mats)
    report["correlation_gap"] = {f"{a} vs {b}": correlation_gap(mats[a], mats[b])
                                 for i, a in enumerate(keys) for b in keys[i + 1:]}


SWEEP = (-3, -2, -1, 0, 1, 2, 3)   # direction grids' columns, in units of the direction's std


def direction_grid(G, result, k: int, seeds: int, seed: int) -> bytes:
    """PNG: rows = `seeds` samples, columns = SWEEP * std along direction k, labelled."""
    from gankit.directions import sweep_images
    from gankit.images import encode_png, to_uint8
    from gankit.report import labelled_grid
    images = to_uint8(sweep_images(G, result.vectors[k], result.std[k], SWEEP, seeds,
                                   result.layers, seed))                  # [S*T, H, W, 3]
    cells = images.reshape(seeds, len(SWEEP), *images.shape[1:])        # [S, T, H, W, 3]
    rows = [f"sample {i}" for i in range(seeds)]
    cols = [f"{strength_label(t)} std" if t else "0" for t in SWEEP]
    return encode_png(labelled_grid(cells, rows, cols, 2 if images.shape[1] <= 64 else 1),
                      compress_level=6)


def add_directions(cfg: ReportConfig, report: dict, G, C) -> tuple:
    """directions (SeFa) and directions_pca, annotated, with one sweep grid each."""
    from gankit.directions import AnnotateConfig, DirectionsConfig, find_directions
    figs, captions = {}, {}
    for key, method in (("directions", "sefa"), ("directions_pca", "pca")):
        result = find_directions(G, C, DirectionsConfig(
            method=method, top=cfg.directions, n_samples=cfg.direction_w_samples,
            annotate=AnnotateConfig(k=cfg.direction_samples)))
        entries = result.to_json()["directions"]
        for k, entry in enumerate(entries):
            name = f"dir_{method}_{k:02d}"
            figs[name] = direction_grid(G, result, k, cfg.grid_seeds, 0)
            captions[name] = "samples moved along the direction, in units of its w std"
            entry.update(method=method, grid=name)
        report[key] = entries
    return figs, captions


def read_inversion(cfg: ReportConfig) -> list:
    """Every eval-inversion result (a JSON object, or a list of them) of cfg.inversion."""
    import json

    import fsspec
    runs = []
    for url in cfg.inversion:
        with fsspec.open(url, "r", **cfg.storage) as f:
            doc = json.load(f)
        for run in doc if isinstance(doc, list) else [doc]:
            require(isinstance(run, dict) and "recon_psnr" in run, "inversion",
                    f"{url} is not a `gankit eval-inversion --out` result")
            runs.append(dict(run, source=url))
    return runs


def inversion_figures(runs: list) -> tuple:
    """{'inversion_<k>': PNG} for each run with example faces: input, reconstruction, edit
    (and the renderer's counterfactual), one face per row."""
    from gankit.images import encode_png
    from gankit.report import labelled_grid, unpack_examples
    figs, captions = {}, {}
    for k, run in enumerate(runs):
        if not run.get("examples"):
            continue
        cells = unpack_examples(run["examples"])                         # [N, C, H, W, 3]
        scale = 3 if cells.shape[2] <= 64 else 1
        figs[f"inversion_{k}"] = encode_png(labelled_grid(
            cells, [f"face {i}" for i in range(len(cells))], run["examples"]["columns"],
            scale), compress_level=6)
        captions[f"inversion_{k}"] = (f"{run.get('mode', 'optimize')} "
                                      f"{str(run.get('space')).upper()}: edited = moved to "
                                      f"distance {_num(run.get('strength'))} of the "
                                      f"{run.get('attribute')} boundary")
    return figs, captions


def _num(v) -> str:
    return "?" if v is None else f"{v:+g}"


def add_models_sections(cfg: ReportConfig, report: dict, attributes: list) -> tuple:
    """The sections that need the generator or the classifier: real correlation and
    directions. Returns their figures and captions (none when neither is asked for)."""
    from jobs.rendering import load_models
    if not (cfg.real or cfg.directions):
        return {}, {}
    model, classifier = model_specs(cfg)
    require(bool(classifier), "classifier", "must be given for `real` and `directions` "
            "(the samples' manifest names none)")
    require(bool(model) or not cfg.directions, "model", "must be given for `directions`")
    G, C = load_models(model, classifier, cfg.device) if model else (None, None)
    if C is None:
        from gankit import zoo
        C = zoo.load_classifier(classifier, device=cfg.device).eval()
    if cfg.real:
        add_real(cfg, report, attributes, C,
                 G.img_resolution if G is not None else getattr(C, "resolution", 32))
    return add_directions(cfg, report, G, C) if cfg.directions else ({}, {})


# ----------------------------------------------------------------------------------------
# Driver


def edited_inputs(edits, cfg: ReportConfig) -> str:
    """The latents dataset the edit job read (its manifest records its config)."""
    manifest = storage.read_manifest(edits) or {}
    url = (manifest.get("config") or {}).get("latents") or cfg.samples
    require(bool(url), "edits", f"{cfg.edits} has no manifest naming its latents dataset")
    return url


def add_edits(cfg: ReportConfig, report: dict, index: dict, attributes: list) -> dict:
    """Fills rescoring / edits / pairs; returns the grid figures and captions."""
    edits = storage.open_store(cfg.edits, cfg.storage, must_exist=True)
    manifest = storage.read_manifest(edits) or {}
    edit_config = manifest.get("config") or {}
    report["edit_mode"] = edit_config.get("mode")
    found, strength = edit_logits(edits, cfg.edit_strength, attributes)
    require(bool(found), "edit_strength", f"no edit at |strength| {strength} in {cfg.edits}")
    ids = sorted({i for rows in found.values() for i in rows})
    latents = edited_inputs(edits, cfg)
    got_ids, before = before_logits(edits, latents, cfg.storage, set(ids), attributes)
    report.update(edit_strength=strength, num_edited=len(got_ids), edited_samples={
        "url": latents, "heldout": not same_dataset(latents, index.get("samples"),
                                                    cfg.storage)})
    entries = [e for e in index["boundaries"] if (e["name"], 1) in found]
    report.update(edit_sections(entries, found, got_ids, before, attributes))
    sweeps = pair_sweeps(edits, index, got_ids, before, attributes)
    for p in report["pairs"]:
        p["sweep"] = sweeps.get(pair_key(p), [])
    report["identity"] = identity_rows(edits, strength)
    if report["identity"]:
        from gankit.identity import measure_name, measure_spec
        report["identity_measure"] = measure_name(
            measure_spec(edit_config.get("identity_metric")) or "dlib")
    grid_ids = list(got_ids[:cfg.grid_samples])
    cells, originals = grid_images(edits, [e["name"] for e in entries], grid_ids)
    return grid_figures(cells, originals, [e for e in entries if e["space"] == "w"]
                        or entries, grid_ids)


LATENT_KEYS = ("separability", "ppl", "directions", "directions_pca")


def read_metrics(cfg: ReportConfig) -> dict:
    """separability and ppl from a `gankit metrics` output (metrics.json), or {}."""
    if not cfg.metrics:
        return {}
    found = storage.open_store(cfg.metrics, cfg.storage).read_json("metrics.json")
    return {k: found.get(k) for k in ("separability", "ppl") if found.get(k)}


OPTIONAL_KEYS = ("correlation", "correlation_real", "correlation_true", "correlation_gap")


def run_report(cfg: ReportConfig) -> dict:
    """Build report.json, report.html and figures/*.png under cfg.out; returns the report."""
    from gankit.caveats import CaveatWarning
    from gankit.report import caveats, correlation_matrix, gates, probabilities, render_html
    from jobs.boundary_index import load_index
    cfg.validate()
    index = load_index(cfg.fit, cfg.storage)
    attributes = list(index["attributes"]) or edit_attributes(cfg)
    report = {"title": cfg.title, "format": "gankit.report", "version": 1,
              "attributes": attributes, "num_samples": index.get("num_samples"),
              "fit": fit_settings(index),
              "boundaries": boundary_rows(index), "cosine": cosine_section(cfg, index)}
    latent = {**read_metrics(cfg), **{k: v for k, v in (cfg.latent_metrics or {}).items() if v}}
    for key in LATENT_KEYS:
        report[key] = latent.get(key)
    report.update(dict.fromkeys(OPTIONAL_KEYS))
    figs, captions = {}, {}
    if cfg.edits:
        figs, captions = add_edits(cfg, report, index, attributes)
    if cfg.samples and cfg.correlation_rows and attributes:
        _, logits = sample_logits(cfg.samples, cfg.storage, None, attributes,
                                  cfg.correlation_rows)
        report["correlation"] = {"attributes": attributes, "rows": int(len(logits)),
                                 "matrix": correlation_matrix(probabilities(logits)).tolist()}
    report["inversion"] = read_inversion(cfg) or None
    report["model"], report["classifier"] = model_specs(cfg)
    for more, more_captions in (add_models_sections(cfg, report, attributes), heatmaps(report),
                                inversion_figures(report["inversion"] or [])):
        figs.update(more)
        captions.update(more_captions)
    report["captions"] = captions
    report["figures"] = [f"figures/{n}.png" for n in sorted(figs)]
    report["gates"], report["warnings"] = gates(report), caveats(report)
    for sentence in report["warnings"]:
        warnings.warn(sentence, CaveatWarning, stacklevel=2)
    write_outputs(cfg, report, figs, render_html)
    return report


def write_outputs(cfg: ReportConfig, report: dict, figs: dict, render_html) -> None:
    out = storage.open_store(cfg.out, cfg.storage, create=True)
    for name, png in figs.items():
        out.write_bytes(f"figures/{name}.png", png)
    out.write_json("report.json", report)
    out.write_bytes("report.html", render_html(report, figs).encode())
    log.info(f"[report] wrote report.json, report.html and {len(figs)} figures to {cfg.out}")


# ----------------------------------------------------------------------------------------
# Command line


def register(subparsers) -> None:
    r = subparsers.add_parser("report", help="report.json + report.html from fit and edit outputs")
    r.add_argument("--fit", required=True, help="fit output URL (boundaries.json)")
    r.add_argument("--edits", default="", help="edit output URL")
    r.add_argument("--samples", default="", help="sample dataset URL (correlation)")
    r.add_argument("--out", required=True, help="output folder: report.json, report.html, "
                   "figures/")
    r.add_argument("--edit-strength", type=float, default=None,
                   help="the edit strength the report scores (default: the largest edited)")
    r.add_argument("--grid-samples", type=int, default=4, help="samples (rows) per edit grid")
    r.add_argument("--model", default=None, help="generator (default: the samples' model)")
    r.add_argument("--classifier", default=None,
                   help="classifier (default: the samples' classifier)")
    r.add_argument("--real", default="", help="real images for the correlation: 'toy' "
                   "renders or a Parquet URL with an image column")
    r.add_argument("--real-rows", type=int, default=2000,
                   help="real images read for the correlation section")
    r.add_argument("--directions", type=int, default=0,
                   help="top SeFa and GANSpace PCA directions, annotated, with grids")
    r.add_argument("--metrics", default="", help="a `gankit metrics --out` URL "
                   "(separability and PPL, Z vs W)")
    r.add_argument("--inversion", action="append", default=[],
                   help="a `gankit eval-inversion --out` JSON file (repeatable)")
    r.set_defaults(func=lambda a: run_report(ReportConfig(
        fit=a.fit, edits=a.edits, samples=a.samples, out=a.out,
        edit_strength=a.edit_strength, grid_samples=a.grid_samples, model=a.model,
        classifier=a.classifier, real=a.real, real_rows=a.real_rows,
        directions=a.directions, metrics=a.metrics, inversion=a.inversion)) and 0)


__all__ = ["ReportConfig", "run_report"]
