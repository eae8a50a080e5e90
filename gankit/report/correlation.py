"""The correlation section: how the classifier's attributes co-occur on generated samples,
on real images, and (toy world) in the true labels of those images.

Reads (jobs.stages.report): the first rows of the samples' logits; real images (toy renders or a
Parquet dataset) scored by the classifier.
Computes (`attribute_correlation`, `gaps`): Pearson matrices of the probabilities, and the
mean |difference| of each two off the diagonal (gankit.report.stats).
Renders: the 'correlation' heatmaps side by side and the table of gaps.
report.json keys: correlation, correlation_real, correlation_true, correlation_gap.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from gankit.report.drawing import heatmap_png
from gankit.report.markup import figure_html, table_html
from gankit.report.stats import correlation_gap, correlation_matrix

CORRELATIONS = (   # report key, heatmap title, caption
    ("correlation", "generated: classifier probabilities ({rows} samples)",
     "Pearson correlation of the classifier probabilities on generated samples"),
    ("correlation_real", "real: classifier probabilities ({rows} images)",
     "the same on real images ({source})"),
    ("correlation_true", "real: true labels ({rows} images)",
     "toy world: correlation of the true labels (factors thresholded) of the same renders"),
)


def attribute_correlation(values: np.ndarray, attributes: list, **more) -> dict:
    """{attributes, rows, matrix [A][A]} of values [N, A] (+ `more` keys)."""
    return {"attributes": attributes, "rows": int(len(values)),
            "matrix": correlation_matrix(values).tolist(), **more}


@dataclass
class CorrelationSection:
    generated: Optional[dict] = None   # {attributes, rows, matrix}
    real: Optional[dict] = None        # the same + source ('toy' or a URL), errors
    true: Optional[dict] = None        # toy world only: the renders' true labels
    gap: Optional[dict] = None         # {'generated vs real': mean |difference|, ...}

    @classmethod
    def from_json(cls, report: dict) -> "CorrelationSection":
        return cls(*(report.get(k) for k, _, _ in CORRELATIONS), report.get("correlation_gap"))

    def to_json(self) -> dict:
        return {"correlation": self.generated, "correlation_real": self.real,
                "correlation_true": self.true, "correlation_gap": self.gap}

    def gaps(self) -> dict:
        """{'a vs b': mean off-diagonal |difference|} of every two matrices present."""
        mats = {"generated": self.generated, "real": self.real, "true": self.true}
        mats = {k: np.asarray(v["matrix"]) for k, v in mats.items() if v}
        keys = list(mats)
        return {f"{a} vs {b}": correlation_gap(mats[a], mats[b])
                for i, a in enumerate(keys) for b in keys[i + 1:]}

    def figures(self) -> tuple:
        """({'correlation', 'correlation_real', 'correlation_true': PNG}, captions)."""
        figs, captions = {}, {}
        for (key, title, caption), c in zip(CORRELATIONS, (self.generated, self.real,
                                                           self.true)):
            if c:
                figs[key] = heatmap_png(c["matrix"], c["attributes"], c["attributes"],
                                        title.format(rows=c["rows"]))
                captions[key] = caption.format(source=c.get("source"))
        return figs, captions

    def parts(self, figures: dict, captions: dict) -> dict:
        return {"correlation": ("Attribute correlation", "Correlation",
                                self.html(figures, captions))}

    def html(self, figures: dict, captions: dict) -> str:
        """Generated / real / true heatmaps side by side, and their gaps."""
        names = sorted(n for n in figures if n.startswith("correlation"))
        if not names:
            return ""
        out = ("<div class='side'>"
               + "".join(figure_html(figures, n, captions.get(n, n)) for n in names)
               + "</div>")
        if self.gap:
            out += ("<p>Mean |difference| of the off-diagonal correlations:</p>"
                    + table_html(["matrices", "mean |difference|"], list(self.gap.items())))
        return out
