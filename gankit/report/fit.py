"""The fit's section: the boundaries, how their samples were selected, the cosine of their
normals.

Reads (jobs.stages.report.reading): the fit's boundaries.json and the plain boundaries' .npz files.
Computes: one row per boundary; per space, the cosine matrix of the plain normals.
Renders: the 'boundaries' table and the 'cosine' heatmaps.
report.json keys: fit, boundaries, cosine.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from gankit.latent.boundaries import cosine_matrix
from gankit.report.drawing import heatmap_png
from gankit.report.markup import esc, figures_html, table_html
from gankit.report.stats import per_side

ROW_KEYS = ("name", "attribute", "space", "conditions", "val_accuracy", "all_accuracy",
            "n_train", "path")


def selection_text(fit: Optional[dict]) -> str:
    """One phrase saying which samples the boundaries were fitted on."""
    fit = fit or {}
    sel, val = fit.get("selection"), fit.get("val_fraction")
    split = f"; {val:.0%} of them held out for validation" if val else ""
    if sel == "extremes":
        ends = (f"the {fit['count']} highest and {fit['count']} lowest" if fit.get("count")
                else f"the top and bottom {fit.get('fraction', 0):.1%}")
        return f"{ends} of the samples by classifier score (InterFaceGAN's selection){split}"
    if sel == "threshold":
        return f"every sample, labelled positive where the classifier's logit > 0{split}"
    return "samples selected as the fit recorded no selection"


@dataclass
class FitSection:
    fit: dict = field(default_factory=dict)         # {samples, selection, fraction, count,
                                                    #  val_fraction, spaces}
    boundaries: list = field(default_factory=list)  # [{name, attribute, space, conditions,
                                                    #   val_accuracy, ..., n_per_side}]
    cosine: dict = field(default_factory=dict)      # {space: {attributes, matrix [A][A]}}

    @classmethod
    def from_index(cls, index: dict, plain: dict) -> "FitSection":
        """From boundaries.json's dict and {space: [(index entry, Boundary)]} of its plain
        boundaries, in the index's order."""
        cfg = index.get("config") or {}
        fit = {"samples": index.get("samples"),
               **{k: cfg.get(k) for k in ("selection", "fraction", "count", "val_fraction",
                                          "spaces")}}
        rows = [{**{k: e.get(k) for k in ROW_KEYS},
                 "n_val": (e.get("metrics") or {}).get("n_val"),
                 "n_per_side": e.get("n_per_side")} for e in index["boundaries"]]
        cosine = {space: {"attributes": [e["attribute"] for e, _ in pairs],
                          "matrix": cosine_matrix([b for _, b in pairs]).tolist()}
                  for space, pairs in plain.items() if pairs}
        return cls(fit, rows, cosine)

    @classmethod
    def from_json(cls, report: dict) -> "FitSection":
        return cls(report.get("fit") or {}, report.get("boundaries") or [],
                   report.get("cosine") or {})

    def to_json(self) -> dict:
        return {"fit": self.fit, "boundaries": self.boundaries, "cosine": self.cosine}

    def plain(self) -> list:
        return [b for b in self.boundaries if not b.get("conditions")]

    def figures(self) -> tuple:
        """({'cosine_<space>': PNG}, captions)."""
        figs, captions = {}, {}
        for space, c in self.cosine.items():
            figs[f"cosine_{space}"] = heatmap_png(c["matrix"], c["attributes"],
                                                  c["attributes"],
                                                  f"cosine of boundary normals, {space.upper()}")
            captions[f"cosine_{space}"] = f"cosine similarity of the plain {space} boundaries"
        return figs, captions

    def boundaries_html(self) -> str:
        rows = [(b["name"], b["attribute"], b["space"],
                 ", ".join(b.get("conditions") or []) or "-", b.get("val_accuracy"),
                 b.get("all_accuracy"), b.get("n_train"),
                 "/".join(map(str, per_side(b, self.fit) or [])) or "-")
                for b in self.boundaries]
        return (f"<p>InterFaceGAN linear SVM on {esc(selection_text(self.fit))}. Val accuracy "
                "is on the validation split, all accuracy on every sample labelled logit &gt; "
                "0; conditional boundaries are the plain normals projected off their "
                "conditions' and inherit their accuracy.</p>"
                + table_html(["boundary", "attribute", "space", "conditioned on",
                              "val accuracy", "all accuracy", "n train", "selected +/-"], rows))

    def parts(self, figures: dict, captions: dict) -> dict:
        """{section id: (heading, contents label, body html)}."""
        return {"boundaries": ("Boundaries", "Boundaries", self.boundaries_html()),
                "cosine": ("Boundary cosine similarity", "Cosine similarity",
                           figures_html(figures, "cosine_", captions))}


def spaces_of(boundaries: Sequence[dict]) -> list:
    """The spaces of `boundaries`, in order of first appearance."""
    return list(dict.fromkeys(b["space"] for b in boundaries))
