"""The whole report: what was run, one record per section, the gates and warnings;
report.json and report.html are written from it.

report.json's keys, in the order they are written (each section's record owns its keys):
    title, format, version, attributes, num_samples        Report
    fit, boundaries, cosine                                FitSection
    separability, ppl                                      LatentSection
    directions, directions_pca                             DirectionsSection
    correlation, correlation_real, correlation_true,       CorrelationSection
    correlation_gap
    edit_mode ... identity_measure                         EditSection (when edits ran)
    inversion                                              InversionSection
    model, classifier, captions, figures, gates, warnings  Report
    summary                                                Report (the demo's console text)
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from gankit.report import gates as G
from gankit.report.correlation import CorrelationSection
from gankit.report.directions import DirectionsSection
from gankit.report.edits import EditSection
from gankit.report.fit import FitSection, selection_text, spaces_of
from gankit.report.inversion import InversionSection
from gankit.report.latent import LatentSection
from gankit.report.markup import STYLE, esc, fmt, li

FORMAT, VERSION = "gankit.report", 1
ORDER = ("boundaries", "edits", "latent", "grids", "rescoring", "cosine", "correlation",
         "sefa", "pca", "inversion")     # the page's sections, after the summary


@dataclass
class Report:
    title: str = "gankit report"
    attributes: list = field(default_factory=list)
    num_samples: Optional[int] = None
    model: Optional[str] = None         # what generated and scored the samples
    classifier: Optional[str] = None
    fit: FitSection = field(default_factory=FitSection)
    latent: LatentSection = field(default_factory=LatentSection)
    directions: DirectionsSection = field(default_factory=DirectionsSection)
    correlation: CorrelationSection = field(default_factory=CorrelationSection)
    edits: EditSection = field(default_factory=EditSection)
    inversion: InversionSection = field(default_factory=InversionSection)
    captions: dict = field(default_factory=dict)     # {figure name: caption}
    figures: list = field(default_factory=list)      # ['figures/<name>.png']
    summary: Optional[str] = None                     # the demo's console summary

    @classmethod
    def from_json(cls, d: dict) -> "Report":
        return cls(d.get("title", "gankit report"), d.get("attributes") or [],
                   d.get("num_samples"), d.get("model"), d.get("classifier"),
                   FitSection.from_json(d), LatentSection.from_json(d),
                   DirectionsSection.from_json(d), CorrelationSection.from_json(d),
                   EditSection.from_json(d), InversionSection.from_json(d),
                   d.get("captions") or {}, d.get("figures") or [], d.get("summary"))

    def to_json(self) -> dict:
        out = {"title": self.title, "format": FORMAT, "version": VERSION,
               "attributes": self.attributes, "num_samples": self.num_samples}
        for section in (self.fit, self.latent, self.directions, self.correlation,
                        self.edits, self.inversion):
            out.update(section.to_json())
        out.update(model=self.model, classifier=self.classifier, captions=self.captions,
                   figures=self.figures, gates=[g.to_json() for g in self.gates()],
                   warnings=self.warnings())
        if self.summary is not None:
            out["summary"] = self.summary
        return out

    def gates(self) -> list:
        return G.gate_records(self)

    def warnings(self) -> list:
        return G.caveats(self)

    def section_figures(self) -> tuple:
        """The heatmaps and face grids drawn from the report's own numbers."""
        figs, captions = {}, {}
        for section in (self.fit, self.edits, self.correlation, self.inversion):
            more, more_captions = section.figures()
            figs.update(more)
            captions.update(more_captions)
        return figs, captions

    # ------------------------------------------------------------------------------------
    # The page

    def html(self, figures: dict) -> str:
        """A self-contained page: the summary, a table of contents, then one <section> per
        part with something to show. figures: {name: PNG bytes (embedded as base64) or a
        relative path}."""
        found = self.sections(figures)
        toc = "".join(f"<li><a href='#{i}'>{html.escape(label)}</a></li>"
                      for i, _, label, _ in found)
        title = html.escape(self.title)
        parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
                 f"<style>{STYLE}</style></head><body><h1>{title}</h1>",
                 f"<section id='summary'><h2>Summary</h2>{self.summary_html()}</section>",
                 f"<nav id='contents'><h2>Contents</h2><ol><li><a href='#summary'>Summary</a>"
                 f"</li>{toc}</ol></nav>"]
        parts += [f"<section id='{i}'><h2>{html.escape(h)}</h2>{body}</section>"
                  for i, h, _, body in found]
        parts.append("</body></html>")
        return "\n".join(parts)

    def sections(self, figures: dict) -> list:
        """[(id, heading, contents label, body html)] of the sections with something to
        show, in ORDER, then the console summary."""
        parts = {}
        for section in (self.fit, self.edits, self.latent, self.correlation,
                        self.directions, self.inversion):
            parts.update(section.parts(figures, self.captions))
        found = [(i, *parts[i]) for i in ORDER]
        if self.summary:
            found.append(("console", "Console summary", "Console summary",
                          "<pre>" + html.escape(self.summary) + "</pre>"))
        return [s for s in found if s[3]]

    def summary_html(self) -> str:
        """What was run, on what; the headline figures; each gate with its meaning and
        reasons; warnings."""
        out = ["<h3>What was run</h3>" + li(self.what_was_run())]
        if self.headlines():
            out.append("<h3>Headline figures</h3>" + li(self.headlines()))
        gates = self.gates()
        if gates:
            out.append("<h3>Gates</h3><ul class='gates'>" + "".join(g.html() for g in gates)
                       + "</ul>")
        warns = self.warnings()
        if warns:
            out.append("<div class='warn'><h3>Warnings: results that mean little</h3>"
                       + li([html.escape(w) for w in warns]) + "</div>")
        return "".join(out)

    def what_was_run(self) -> list:
        models = [f"{k} <b>{esc(v)}</b>" for k, v in (("model", self.model),
                                                      ("classifier", self.classifier)) if v]
        out = ["Generator and classifier: " + ", ".join(models) + "."] if models else []
        bs = self.fit.boundaries
        if bs:
            spaces = ", ".join(s.upper() for s in spaces_of(bs))
            out.append(f"{len(bs)} boundaries ({len(self.fit.plain())} plain) in {spaces}, "
                       f"fitted on {fmt(self.num_samples)} samples: "
                       f"{selection_text(self.fit.fit)}.")
        e = self.edits
        if e.num_edited:
            out.append(f"Edits: {e.num_edited} {e.heldout_text()}, moved to signed distance "
                       f"&plusmn;{fmt(e.strength)} (mode {fmt(e.mode)}).")
        if self.inversion.runs:
            modes = ", ".join(f"{r.get('mode', 'optimize')} {r['space'].upper()}"
                              for r in self.inversion.runs)
            out.append(f"Inversion of toy renders: {modes}.")
        return out

    def headlines(self) -> list:
        out = []
        plain = self.fit.plain()
        for space in spaces_of(plain):
            acc = [b["val_accuracy"] for b in plain
                   if b["space"] == space and b.get("val_accuracy") is not None]
            if acc:
                out.append(f"Val accuracy of the plain {space.upper()} boundaries: "
                           f"{min(acc):.3f} to {max(acc):.3f}.")
        edits = list((self.edits.edits.get("plain") or {}).values())
        if edits:
            flips = [e["flip_rate"] for e in edits]
            others = np.mean([e["others_changed"] for e in edits])
            out.append(f"Plain edits flip their target for {min(flips):.2f} to "
                       f"{max(flips):.2f} of samples; other attributes' labels change for "
                       f"{others:.3f} on average.")
        return out + self.latent.headlines()


def render_html(report: dict, figures: dict) -> str:
    """report.json's dict + {figure name: PNG bytes or relative path} -> report.html.
    Figure names by prefix: 'cosine_*', 'rescoring*', 'correlation*', 'grid_*',
    'inversion_<k>'; direction grids are named by each direction's 'grid' entry."""
    return Report.from_json(report).html(figures)


def gates(report: dict) -> list:
    """[{gate, meaning, passed, total, failing}] for every gate report.json's dict has
    data for."""
    return [g.to_json() for g in Report.from_json(report).gates()]


def caveats(report: dict) -> list:
    """Every warning for the results in report.json's dict, one sentence each."""
    return Report.from_json(report).warnings()
