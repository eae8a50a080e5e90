"""The Z-vs-W section: StyleGAN's linear separability and perceptual path length per space.

Reads: a `gankit metrics` output (metrics.json) or the numbers the demo computed itself
(ReportConfig.latent_metrics); the report computes nothing here.
Renders: the 'latent' table, one row per space present.
report.json keys: separability {z, w}, ppl {z, w} (null when not given).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from gankit.report.markup import table_html

SPACES = ("z", "w")


@dataclass
class LatentSection:
    separability: Optional[dict] = None    # {space: {score, num_samples, entropy, ...}}
    ppl: Optional[dict] = None             # {space: {mean, mean_filtered, n, sampling, ...}}

    @classmethod
    def from_json(cls, report: dict) -> "LatentSection":
        return cls(report.get("separability"), report.get("ppl"))

    def to_json(self) -> dict:
        return {"separability": self.separability, "ppl": self.ppl}

    def score(self, space: str) -> Optional[float]:
        return ((self.separability or {}).get(space) or {}).get("score")

    def ppl_mean(self, space: str) -> Optional[float]:
        return ((self.ppl or {}).get(space) or {}).get("mean")

    def headlines(self) -> list:
        """'Separability (1 = linear): Z 5.09, W 1.01.' and the same for PPL."""
        out = []
        for label, value in (("Separability (1 = linear)", self.score),
                             ("PPL mean (lower = smoother)", self.ppl_mean)):
            got = [f"{s.upper()} {value(s):,.2f}" for s in SPACES if value(s) is not None]
            if got:
                out.append(f"{label}: {', '.join(got)}.")
        return out

    def parts(self, figures: dict, captions: dict) -> dict:
        return {"latent": ("Separability and path length (Z vs W)", "Z vs W metrics",
                           self.html())}

    def html(self) -> str:
        sep, ppl = self.separability or {}, self.ppl or {}
        spaces = [s for s in SPACES if s in sep or s in ppl]
        if not spaces:
            return ""
        rows = []
        for s in spaces:
            a, b = sep.get(s) or {}, ppl.get(s) or {}
            rows.append((s.upper(), a.get("score"), a.get("num_samples"), b.get("mean"),
                         b.get("mean_filtered"), b.get("n"), b.get("sampling")))
        return ("<p>StyleGAN protocol: linear separability = exp(sum of H(Y|X)) over "
                "attributes (1 = every attribute linearly separable; lower is better); "
                "perceptual path length with the feature net's squared distance (LPIPS, or "
                "the toy classifier's features in the toy world; lower is smoother).</p>"
                + table_html(["space", "separability", "samples", "PPL mean",
                              "PPL mean (1-99%)", "paths", "sampling"], rows))
