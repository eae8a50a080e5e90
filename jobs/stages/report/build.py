"""Building the report's section records (gankit.report) from a run's outputs: the fit, the
edits, the correlations on generated and real images, the directions, the inversion runs.
Each builder reads through jobs.stages.report.reading and leaves the math and the drawing to
gankit.report; the models (real images, directions) run in the driver on cfg.device.
"""
from __future__ import annotations

import numpy as np
import torch

from gankit.faces.identity import measure_name, measure_spec
from gankit.images import from_uint8
from gankit.loading import zoo
from gankit.report import edits as edit_math
from gankit.report.correlation import CorrelationSection, attribute_correlation
from gankit.report.directions import DirectionsSection
from gankit.report.edits import EditSection
from gankit.report.stats import probabilities
from gankit.toy import toyfaces
from jobs import storage
from jobs.config import require
from jobs.runtime.cluster import resolve_device
from jobs.stages.rendering import load_models
from jobs.stages.report import reading
from jobs.stages.report.config import ReportConfig
from jobs.storage.image_inputs import first_resolution, input_parts
from jobs.storage.image_reading import decode_rows

# ----------------------------------------------------------------------------------------
# Edits


def build_edits(cfg: ReportConfig, index: dict, attributes: list) -> tuple:
    """(EditSection, grid figures, captions) of the edit output cfg.edits."""
    edits = storage.open_store(cfg.edits, cfg.storage, must_exist=True)
    edit_config = (storage.read_manifest(edits) or {}).get("config") or {}
    found, strength = reading.edit_logits(edits, cfg.edit_strength, attributes)
    require(bool(found), "edit_strength", f"no edit at |strength| {strength} in {cfg.edits}")
    ids = sorted({i for rows in found.values() for i in rows})
    latents = edit_config.get("latents") or cfg.samples
    require(bool(latents), "edits", f"{cfg.edits} has no manifest naming its latents dataset")
    got_ids, before = reading.before_logits(edits, latents, cfg.storage, set(ids), attributes)
    section = EditSection(True, edit_config.get("mode"), strength, len(got_ids), {
        "url": latents, "heldout": not reading.same_dataset(latents, index.get("samples"),
                                                            cfg.storage)})
    entries = [e for e in index["boundaries"] if (e["name"], 1) in found]
    section.set_rates(edit_math.compute(entries, found, got_ids, before, attributes))
    add_sweeps(section, edits, index, got_ids, before, attributes)
    add_identity(section, edits, edit_config)
    grid_ids = list(got_ids[:cfg.grid_samples])
    cells, originals = reading.grid_images(edits, [e["name"] for e in entries], grid_ids)
    figs, captions = edit_math.grid_figures(
        cells, originals, [e for e in entries if e["space"] == "w"] or entries, grid_ids)
    return section, figs, captions


def add_sweeps(section: EditSection, edits, index: dict, ids, before, attributes) -> None:
    """Each pair's conditional-vs-plain comparison at every edited strength, weakest first
    (one pass over the edits each)."""
    sweeps = {}
    for strength in reading.edited_strengths(edits):
        found, _ = reading.edit_logits(edits, strength, attributes)
        entries = [e for e in index["boundaries"] if (e["name"], 1) in found]
        for p in edit_math.compute(entries, found, ids, before, attributes)["pairs"]:
            sweeps.setdefault(edit_math.pair_key(p), []).append(
                edit_math.sweep_row(strength, p))
    for p in section.pairs:
        p["sweep"] = sweeps.get(edit_math.pair_key(p), [])


def add_identity(section: EditSection, edits, edit_config: dict) -> None:
    section.identity = reading.identity_rows(edits, section.strength)
    if section.identity:
        section.identity_measure = measure_name(
            measure_spec(edit_config.get("identity_metric")) or "dlib")


# ----------------------------------------------------------------------------------------
# Correlations and directions: the sections that need the models


def generated_correlation(cfg: ReportConfig, attributes: list):
    """The correlation of the first correlation_rows samples' probabilities, or None."""
    if not (cfg.samples and cfg.correlation_rows and attributes):
        return None
    _, logits = reading.sample_logits(cfg.samples, cfg.storage, None, attributes,
                                      cfg.correlation_rows)
    return attribute_correlation(probabilities(logits), attributes)


def model_specs(cfg: ReportConfig) -> tuple:
    """(generator, classifier) specs: the config's, else those the samples job recorded."""
    recorded = {} if cfg.model and cfg.classifier else \
        reading.recorded_models(cfg.samples, cfg.storage)
    return cfg.model or recorded.get("model"), cfg.classifier or recorded.get("classifier")


def build_model_sections(cfg: ReportConfig, correlation: CorrelationSection,
                         attributes: list) -> tuple:
    """Real-image correlations (into `correlation`) and the directions: (DirectionsSection,
    figures, captions). Nothing is loaded when neither is asked for."""
    if not (cfg.real or cfg.directions):
        return DirectionsSection(), {}, {}
    model, classifier = model_specs(cfg)
    require(bool(classifier), "classifier", "must be given for `real` and `directions` "
            "(the samples' manifest names none)")
    require(bool(model) or not cfg.directions, "model", "must be given for `directions`")
    device = resolve_device(cfg.device)
    G, C = load_models(model, classifier, device) if model else (None, None)
    if C is None:
        C = zoo.load_classifier(classifier, device=device).eval()
    if cfg.real:
        add_real(cfg, correlation, attributes, C,
                 G.img_resolution if G is not None else getattr(C, "resolution", 32))
    if not cfg.directions:
        return DirectionsSection(), {}, {}
    return DirectionsSection.compute(G, C, cfg.directions, cfg.direction_w_samples,
                                     cfg.direction_samples, cfg.grid_seeds)


def add_real(cfg: ReportConfig, correlation: CorrelationSection, attributes: list, C,
             resolution: int) -> None:
    """correlation_real (+ correlation_true for toy renders) and correlation_gap."""
    names = list(C.attribute_names)
    require(set(attributes) <= set(names), "classifier",
            f"scores {names}, but the fit has {attributes}")
    truth, errors = None, 0
    if cfg.real == "toy":
        images, truth = toy_real(cfg.real_rows, cfg.real_seed, resolution, attributes)
    else:
        images, errors = parquet_real(cfg)
    logits = classify(C, images)[:, [names.index(a) for a in attributes]]  # [N, A]
    correlation.real = attribute_correlation(probabilities(logits), attributes,
                                             source=cfg.real, errors=errors)
    if truth is not None:
        correlation.true = attribute_correlation(truth.astype(np.float64), attributes)
    correlation.gap = correlation.gaps()


def classify(C, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """uint8 [N, H, W, 3] -> logits [N, A] (float64)."""
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
    images, factors = toyfaces.render_dataset(n, seed, resolution)
    labels = toyfaces.labels(factors)
    truth = np.stack([labels[a] for a in attributes], 1) if set(attributes) <= set(labels) \
        else None
    return images, truth


def parquet_real(cfg: ReportConfig) -> tuple:
    """The first real_rows decodable images of a Parquet dataset (uint8 [N, R, R, 3], R the
    first image's size) and the number of rows skipped as undecodable or of another size."""
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
