"""The report stage's driver: fit output + edit output (+ samples, real images, models,
metrics, eval-inversion results) -> report.json, report.html and figures/ under cfg.out."""
from __future__ import annotations

import logging
import warnings

from gankit.caveats import CaveatWarning
from gankit.report.correlation import CorrelationSection
from gankit.report.document import Report
from gankit.report.fit import FitSection
from gankit.report.inversion import InversionSection
from gankit.report.latent import LatentSection
from jobs import storage
from jobs.stages.report import build, reading
from jobs.stages.report.config import ReportConfig
from jobs.storage.boundary_index import load_index

log = logging.getLogger("gankit")


def run_report(cfg: ReportConfig) -> dict:
    """Build report.json, report.html and figures/*.png under cfg.out; returns report.json's
    dict."""
    cfg.validate()
    report, figs = build_report(cfg)
    doc = report.to_json()
    for sentence in doc["warnings"]:
        warnings.warn(sentence, CaveatWarning, stacklevel=2)
    write_outputs(cfg, report, figs)
    return doc


def build_report(cfg: ReportConfig) -> tuple:
    """(Report, {figure name: PNG}) with every section cfg asks for."""
    index = load_index(cfg.fit, cfg.storage)
    attributes = list(index["attributes"]) or edit_attributes(cfg)
    report = Report(cfg.title, attributes, index.get("num_samples"),
                    fit=FitSection.from_index(index, reading.plain_boundaries(
                        cfg.fit, index, cfg.storage)),
                    latent=latent_section(cfg))
    figs, captions = {}, {}
    if cfg.edits:
        report.edits, figs, captions = build.build_edits(cfg, index, attributes)
    report.correlation = CorrelationSection(build.generated_correlation(cfg, attributes))
    runs = reading.read_inversion(cfg.inversion, cfg.storage)
    report.inversion = InversionSection(runs or None)
    report.model, report.classifier = build.model_specs(cfg)
    report.directions, more, more_captions = build.build_model_sections(
        cfg, report.correlation, attributes)
    report.directions = directions_given(cfg, report.directions)
    for more, more_captions in ((more, more_captions), report.section_figures()):
        figs.update(more)
        captions.update(more_captions)
    report.captions, report.figures = captions, [f"figures/{n}.png" for n in sorted(figs)]
    return report, figs


def edit_attributes(cfg: ReportConfig) -> list:
    """The classifier's attributes, from the logit columns of the edits (else the samples):
    an index that holds only imported directions (`gankit directions import`) lists none."""
    url = cfg.edits or cfg.samples
    return reading.logit_attributes(url, cfg.storage) if url else []


def latent_section(cfg: ReportConfig) -> LatentSection:
    """separability and ppl: the config's latent_metrics, else a metrics output's."""
    latent = {**reading.read_metrics(cfg.metrics, cfg.storage),
              **{k: v for k, v in (cfg.latent_metrics or {}).items() if v}}
    return LatentSection(latent.get("separability"), latent.get("ppl"))


def directions_given(cfg: ReportConfig, found):
    """The directions the report found, else those latent_metrics carries (the demo's
    older caches)."""
    given = cfg.latent_metrics or {}
    if found.sefa is None and given.get("directions"):
        found.sefa = given["directions"]
    if found.pca is None and given.get("directions_pca"):
        found.pca = given["directions_pca"]
    return found


def write_outputs(cfg: ReportConfig, report: Report, figs: dict) -> None:
    out = storage.open_store(cfg.out, cfg.storage, create=True)
    for name, png in figs.items():
        out.write_bytes(f"figures/{name}.png", png)
    out.write_json("report.json", report.to_json())
    out.write_bytes("report.html", report.html(figs).encode())
    log.info(f"[report] wrote report.json, report.html and {len(figs)} figures to {cfg.out}")


__all__ = ["ReportConfig", "build_report", "run_report"]
