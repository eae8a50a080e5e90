"""The inversion section: one row per `gankit eval-inversion` result (W, W+, encoder,
hybrid, PTI...), and each run's example faces.

Reads (jobs.stages.report): the eval-inversion JSON files the config lists.
Computes: nothing; the example faces are unpacked into a labelled grid.
Renders: the 'inversion' table and the 'inversion_<k>' figures.
report.json key: inversion (the results as read, + source; null when none).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from gankit.report.drawing import labelled_grid_png, unpack_examples
from gankit.report.markup import figure_html, table_html

COLUMNS = (   # eval-inversion key -> column header
    ("mode", "mode"), ("space", "space"), ("attribute", "edited attribute"), ("faces", "faces"),
    ("steps", "steps"), ("tuned", "PTI change"), ("recon_psnr", "recon PSNR (dB)"),
    ("recon_mse", "recon MSE"),
    ("flip_rate", "flip rate"), ("others_kept", "others kept"),
    ("cf_flip_rate", "counterfactual flip"), ("cf_others_kept", "counterfactual kept"),
    ("edit_mse", "edit vs counterfactual MSE"), ("edit_feature", "edit vs cf feature dist"))


@dataclass
class InversionSection:
    runs: Optional[list] = None    # eval-inversion results, each + {source: its URL}

    @classmethod
    def from_json(cls, report: dict) -> "InversionSection":
        return cls(report.get("inversion"))

    def to_json(self) -> dict:
        return {"inversion": self.runs or None}

    def figures(self) -> tuple:
        """({'inversion_<k>': PNG}, captions) for each run with example faces: input,
        reconstruction, edit (and the renderer's counterfactual), one face per row."""
        figs, captions = {}, {}
        for k, run in enumerate(self.runs or []):
            if not run.get("examples"):
                continue
            cells = unpack_examples(run["examples"])                     # [N, C, H, W, 3]
            figs[f"inversion_{k}"] = labelled_grid_png(
                cells, [f"face {i}" for i in range(len(cells))], run["examples"]["columns"],
                3 if cells.shape[2] <= 64 else 1)
            captions[f"inversion_{k}"] = (f"{run.get('mode', 'optimize')} "
                                          f"{str(run.get('space')).upper()}: edited = moved "
                                          f"to distance {_num(run.get('strength'))} of the "
                                          f"{run.get('attribute')} boundary")
        return figs, captions

    def parts(self, figures: dict, captions: dict) -> dict:
        return {"inversion": ("Inversion quality", "Inversion", self.html(figures, captions))}

    def html(self, figures: dict, captions: dict) -> str:
        """One row per result, then each run's example faces side by side."""
        if not self.runs:
            return ""
        rows = [tuple(r.get(k) for k, _ in COLUMNS) for r in self.runs]
        faces = "".join(figure_html(figures, f"inversion_{k}", captions.get(f"inversion_{k}",
                                                                             ""))
                        for k in range(len(self.runs)))
        return ("<p>Toy-world renders inverted, moved across the boundary, and compared with "
                "the renderer's counterfactual (the same faces with the factor changed): "
                "reconstruction error, the edit's flip rate and kept attributes, and the same "
                "on the counterfactual renders (the ceiling).</p>"
                + table_html([h for _, h in COLUMNS], rows)
                + (f"<div class='side'>{faces}</div>" if faces else
                   "<p>These results hold no example images (eval-inversion results written "
                   "before they did).</p>"))


def _num(v) -> str:
    return "?" if v is None else f"{v:+g}"
