"""The directions' sections: the top SeFa and GANSpace PCA directions of the generator, each
named by rescoring with the classifier, with a strength-sweep grid.

Reads: the generator and the classifier (loaded by jobs.stages.report).
Computes (`DirectionsSection.compute`): gankit.latent.directions.find_directions per method, then
each direction's sweep grid (rows: samples, columns: SWEEP x its w std).
Renders: the 'sefa' and 'pca' tables and grids.
report.json keys: directions (SeFa), directions_pca ([{index, name, top_attribute,
top_change, changes, value, std, method, grid, ...}], null when not asked for).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from gankit.images import to_uint8
from gankit.latent.directions import AnnotateConfig, DirectionsConfig, find_directions, sweep_images
from gankit.report.drawing import labelled_grid_png, strength_label
from gankit.report.markup import figure_html, table_html

SWEEP = (-3, -2, -1, 0, 1, 2, 3)   # direction grids' columns, in units of the direction's std
METHODS = {   # report key -> (method, section id, heading, what it is, name of `value`)
    "directions": ("sefa", "Directions (SeFa)", "SeFa directions", "Closed-form directions "
                   "(eigenvectors of the style affines' weights)", "eigenvalue"),
    "directions_pca": ("pca", "Directions (GANSpace PCA)", "PCA directions",
                       "Principal components of sampled w", "variance"),
}
GRID_CAPTION = "samples moved along the direction, in units of its w std"


@dataclass
class DirectionsSection:
    sefa: Optional[list] = None    # report.json's `directions`
    pca: Optional[list] = None     # report.json's `directions_pca`

    @classmethod
    def from_json(cls, report: dict) -> "DirectionsSection":
        return cls(report.get("directions"), report.get("directions_pca"))

    def to_json(self) -> dict:
        return {"directions": self.sefa, "directions_pca": self.pca}

    @classmethod
    def compute(cls, G, C, top: int, n_samples: int, k: int, grid_seeds: int) -> tuple:
        """(section, {'dir_<method>_<k>': PNG}, captions): the top `top` directions of each
        method from `n_samples` sampled w, annotated by editing `k` samples."""
        found, figs, captions = {}, {}, {}
        for key, (method, *_) in METHODS.items():
            result = find_directions(G, C, DirectionsConfig(
                method=method, top=top, n_samples=n_samples, annotate=AnnotateConfig(k=k)))
            entries = result.to_json()["directions"]
            for j, entry in enumerate(entries):
                name = f"dir_{method}_{j:02d}"
                figs[name] = direction_grid(G, result, j, grid_seeds, 0)
                captions[name] = GRID_CAPTION
                entry.update(method=method, grid=name)
            found[key] = entries
        return cls(found["directions"], found["directions_pca"]), figs, captions

    def parts(self, figures: dict, captions: dict) -> dict:
        return {{"directions": "sefa", "directions_pca": "pca"}[key]:
                (heading, label, self.html(key, figures, captions))
                for key, (_, heading, label, _, _) in METHODS.items()}

    def html(self, key: str, figures: dict, captions: dict) -> str:
        """One method's directions: auto-annotated name and top attribute change, then each
        direction's strength-sweep grid (figure d['grid'])."""
        dirs = (self.sefa if key == "directions" else self.pca) or []
        if not dirs:
            return ""
        _, _, _, what, value = METHODS[key]
        rows = [(d.get("index"), d.get("name"), d.get("top_attribute"), d.get("top_change"),
                 d.get("value"), d.get("std")) for d in dirs]
        grids = "".join(figure_html(figures, d["grid"], f"#{d.get('index')} {d.get('name')}: "
                                    + captions.get(d["grid"], ""))
                        for d in dirs if d.get("grid"))
        return (f"<p>{what}, named by rescoring: the mean change of each attribute's "
                "probability when samples are moved along the direction. A name is given to "
                "one direction only, the one that moves it most; a direction whose names are "
                "taken, whose largest change is small, or whose images blow out at the "
                "sweep's ends is 'unnamed'.</p>"
                + table_html(["#", "name", "top attribute", "change", value, "w std"], rows)
                + grids)


def direction_grid(G, result, k: int, seeds: int, seed: int) -> bytes:
    """PNG: rows = `seeds` samples, columns = SWEEP * std along direction k, labelled."""
    images = to_uint8(sweep_images(G, result.vectors[k], result.std[k], SWEEP, seeds,
                                   result.layers, seed))                  # [S*T, H, W, 3]
    cells = images.reshape(seeds, len(SWEEP), *images.shape[1:])        # [S, T, H, W, 3]
    rows = [f"sample {i}" for i in range(seeds)]
    cols = [f"{strength_label(t)} std" if t else "0" for t in SWEEP]
    return labelled_grid_png(cells, rows, cols, 2 if images.shape[1] <= 64 else 1)
