"""The edits' section: how far editing along each boundary moves its target and the other
attributes, conditional edits against plain ones, identity kept, and the edit grids.

Reads (jobs.stages.report.edits): the edit job's logit columns at +-strength, the edited samples'
logits before editing, its identity columns, the images of a few sample ids.
Computes (`EditSection.compute`, `pair_sweep`): rescoring and label-change matrices, flip
rates, the conditional-vs-plain pairs at every strength (gankit.report.stats).
Renders: the 'edits' tables, the 'grids' figures, the 'rescoring' heatmaps.
report.json keys: edit_mode, edit_strength, num_edited, edited_samples, rescoring,
label_changes, edits, pairs, identity, identity_measure (all absent when nothing was edited).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from gankit.report import stats
from gankit.report.drawing import heatmap_png, labelled_grid_png, strength_label
from gankit.report.markup import esc, figures_html, fmt, table_html

KINDS = ("plain", "conditional")
GRID_INTRO = ("<p>Each grid: rows are samples, each edited along the plain boundary and "
              "then along each conditional one (the row label says which); columns are the "
              "original and the signed distance the sample was moved to.</p>")
# measure -> (its name in the heading, what it describes, what its distance means)
IDENTITY_MEASURES = {
    "dlib": ("dlib", "dlib's face descriptor", "dlib's distance (below 0.6: the same person "
             "by dlib's rule)"),
    "arcface": ("ArcFace", "The ArcFace IR-SE50 embedding (the measure e4e, pSp, ReStyle "
                "and PTI report)", "the distance between unit embeddings (0 to 2)"),
}


@dataclass
class EditSection:
    ran: bool = False                   # an edit output was given (else no keys at all)
    mode: Optional[str] = None          # the edit job's mode (to_distance, shift)
    strength: Optional[float] = None    # the |strength| the rates are measured at
    num_edited: Optional[int] = None
    edited_samples: dict = field(default_factory=dict)  # {url, heldout}
    rescoring: dict = field(default_factory=dict)       # {kind: {attributes, boundaries,
    label_changes: dict = field(default_factory=dict)   #         matrix [B][A]}}
    edits: dict = field(default_factory=dict)           # {kind: {key: {flip_rate, ...}}}
    pairs: list = field(default_factory=list)           # conditional vs plain, + sweep
    identity: dict = field(default_factory=dict)        # {boundary: {similarity, ...}}
    identity_measure: Optional[str] = None               # 'dlib' or 'arcface'

    @classmethod
    def from_json(cls, report: dict) -> "EditSection":
        g = report.get
        return cls("edits" in report or "edit_strength" in report, g("edit_mode"),
                   g("edit_strength"), g("num_edited"), g("edited_samples") or {},
                   g("rescoring") or {}, g("label_changes") or {}, g("edits") or {},
                   g("pairs") or [], g("identity") or {}, g("identity_measure"))

    def to_json(self) -> dict:
        if not self.ran:
            return {}
        out = {"edit_mode": self.mode, "edit_strength": self.strength,
               "num_edited": self.num_edited, "edited_samples": self.edited_samples,
               "rescoring": self.rescoring, "label_changes": self.label_changes,
               "edits": self.edits, "pairs": self.pairs, "identity": self.identity}
        if self.identity:
            out["identity_measure"] = self.identity_measure
        return out

    def set_rates(self, rates: dict) -> None:
        """Take compute()'s rescoring, label_changes, edits and pairs."""
        self.rescoring, self.label_changes = rates["rescoring"], rates["label_changes"]
        self.edits, self.pairs = rates["edits"], rates["pairs"]

    def heldout_text(self) -> str:
        """'held-out samples' only when the edited samples are not the fit's own."""
        heldout = self.edited_samples.get("heldout")
        if heldout is False:
            return "samples the boundaries were fitted on (not held out)"
        return "held-out samples" if heldout else "samples"

    def figures(self) -> tuple:
        """({'rescoring_<kind>': PNG}, captions)."""
        figs, captions = {}, {}
        for kind, r in self.rescoring.items():
            figs[f"rescoring_{kind}"] = heatmap_png(r["matrix"], r["boundaries"],
                                                    r["attributes"],
                                                    f"rescoring, {kind} boundaries")
            captions[f"rescoring_{kind}"] = (f"{kind}: mean change of each attribute's "
                                             f"probability, signed by the edit direction")
        return figs, captions

    def parts(self, figures: dict, captions: dict) -> dict:
        """{section id: (heading, contents label, body html)}."""
        return {"edits": ("Edits", "Edits", self.edits_html() if self.edits else ""),
                "grids": ("Edit grids", "Edit grids",
                          figures_html(figures, "grid_", captions, GRID_INTRO)),
                "rescoring": ("Rescoring", "Rescoring",
                              figures_html(figures, "rescoring", captions))}

    def edits_html(self) -> str:
        out = [f"<p>{self.num_edited if self.num_edited is not None else '?'} "
               f"{self.heldout_text()}, each moved towards the other side of the target's "
               f"label, to signed distance &plusmn;{fmt(self.strength)} (mode "
               f"{esc(self.mode or '?')}).</p>"]
        for kind in KINDS:
            rows = [(key, e.get("boundary"), e.get("flip_rate"), e.get("others_changed"))
                    for key, e in self.edits.get(kind, {}).items()]
            if rows:
                out.append(f"<h3>{kind}</h3>" + table_html(
                    ["target", "boundary", "flip rate", "others changed (mean)"], rows))
        if self.pairs:
            out.append(self.pairs_html() + sweep_html(self.pairs))
        if self.identity:
            out.append(self.identity_html())
        return "".join(out)

    def pairs_html(self) -> str:
        rows = [(pair_label(p), p["flip_rate"]["plain"], p["flip_rate"]["conditional"],
                 p["condition_changed"]["plain"], p["condition_changed"]["conditional"])
                for p in self.pairs]
        return "<h3>Conditional vs plain</h3>" + table_html(
            ["target | conditions", "flip rate plain", "flip rate conditional",
             "conditions changed plain", "conditions changed conditional"], rows)

    def identity_html(self) -> str:
        name, what, distance = IDENTITY_MEASURES[self.identity_measure or "dlib"]
        rows = [(b, v["similarity"], v["distance"], v["edits"])
                for b, v in self.identity.items()]
        return (f"<h3>Identity kept ({name})</h3><p>{what} of each edit at "
                f"&plusmn;{fmt(self.strength)} against the reconstruction it was edited "
                f"from: cosine similarity (1 = the same), and {distance}, averaged over the "
                f"edits whose input showed a face.</p>"
                + table_html(["boundary", "identity similarity", "identity distance",
                              "edits"], rows))


def pair_label(p: dict) -> str:
    return f"{p['target']} | {'+'.join(p['conditions'])}"


def sweep_html(pairs: list) -> str:
    """The same comparison at every edited strength: how far an edit can go before the
    conditioned attribute starts to change."""
    rows = [(pair_label(p), s["strength"], s["flip_rate"]["plain"],
             s["flip_rate"]["conditional"], s["condition_changed"]["plain"],
             s["condition_changed"]["conditional"], "yes" if stats.pair_passes(s) else "no")
            for p in pairs for s in p.get("sweep", [])]
    if not rows:
        return ""
    return ("<h3>Conditional vs plain, by strength</h3><p>Passes: the conditional edit flips "
            "the target for &ge; 0.9 of samples and changes the conditions for &lt; 0.1, "
            "fewer than the plain edit.</p>" + table_html(
                ["target | conditions", "strength", "flip plain", "flip conditional",
                 "cond. changed plain", "cond. changed conditional", "passes"], rows))


# ----------------------------------------------------------------------------------------
# Computing the rates from logits


def compute(entries: list, found: dict, ids: np.ndarray, before: np.ndarray,
            attributes: list) -> dict:
    """rescoring, label_changes, edits and pairs of the edited boundaries `entries` (index
    entries). found {(boundary, sign): {id: logits [A]}} at one strength; ids [N] and
    before [N, A]: the edited samples and their logits before editing."""
    out = {"rescoring": {}, "label_changes": {}, "edits": {}, "pairs": []}
    for kind in KINDS:
        group = [e for e in entries if bool(e["conditions"]) == (kind == "conditional")
                 and (e["name"], 1) in found and (e["name"], -1) in found
                 and e["attribute"] in attributes]     # an import may name none of them
        if group:
            _rates(out, kind, group, found, ids, before, attributes)
    out["pairs"] = pair_rows(out["edits"])
    return out


def _rates(out: dict, kind: str, group: list, found: dict, ids, before, attributes) -> None:
    targets = [attributes.index(e["attribute"]) for e in group]
    direction = stats.edit_directions(before, targets)                  # [B, N]
    after = np.empty((len(group), *before.shape), dtype=np.float32)     # [B, N, A]
    for b, e in enumerate(group):
        for k, i in enumerate(ids):
            after[b, k] = found[(e["name"], int(direction[b, k]))][i]
    names = [e["name"] for e in group]
    flips = stats.flip_rates(before, after, targets, direction)
    out["rescoring"][kind] = {"attributes": attributes, "boundaries": names, "matrix":
                              stats.rescoring_matrix(before, after, direction).tolist()}
    out["label_changes"][kind] = {"attributes": attributes, "boundaries": names,
                                  "matrix": flips["changed"].tolist()}
    out["edits"][kind] = {edit_key(e): {
        "attribute": e["attribute"], "conditions": e["conditions"], "boundary": e["name"],
        "flip_rate": float(flips["flip_rate"][b]),
        "others_changed": float(flips["others_changed"][b]),
        "changed": dict(zip(attributes, map(float, flips["changed"][b])))}
        for b, e in enumerate(group)}


def edit_key(entry: dict) -> str:
    return entry["attribute"] + ("|" + "+".join(entry["conditions"]) if entry["conditions"]
                                 else "")


def pair_key(pair: dict) -> str:
    return f"{pair['space']}/{pair['target']}|{'+'.join(pair['conditions'])}"


def pair_rows(edits: dict) -> list:
    """Conditional vs plain, for each conditional boundary whose plain boundary (same
    attribute, same space) was edited too."""
    rows = []
    for e in edits.get("conditional", {}).values():
        p = next((q for q in edits.get("plain", {}).values()
                  if q["attribute"] == e["attribute"] and _space(q) == _space(e)), None)
        if p is None:
            continue
        cond = lambda x: float(np.mean([x["changed"][c] for c in e["conditions"]]))  # noqa: E731
        rows.append({"target": e["attribute"], "conditions": e["conditions"],
                     "space": _space(e),
                     "flip_rate": {"plain": p["flip_rate"], "conditional": e["flip_rate"]},
                     "condition_changed": {"plain": cond(p), "conditional": cond(e)}})
    return rows


def _space(edit: dict) -> str:
    return edit["boundary"].split("/")[0]


def sweep_row(strength: float, pair: dict) -> dict:
    """One strength of a pair's sweep."""
    return {"strength": strength, "flip_rate": pair["flip_rate"],
            "condition_changed": pair["condition_changed"]}


# ----------------------------------------------------------------------------------------
# Edit grids


def row_label(sample_id, entry: dict) -> str:
    """'#12 plain' or '#12 | old+yaw' (the conditions the edit keeps)."""
    conds = entry.get("conditions") or []
    return f"#{sample_id} " + ("| " + "+".join(conds) if conds else "plain")


def grid_figures(cells: dict, originals: dict, entries: list, ids: list) -> tuple:
    """({'grid_<attr>': PNG}, captions) from cells {boundary: {(id, strength): [H, W, 3]}}
    and originals {id: [H, W, 3]}: rows = sample x (plain, conditional...), columns =
    original then every strength in increasing order, both labelled on the image."""
    figs, captions = {}, {}
    for attr in dict.fromkeys(e["attribute"] for e in entries):
        group = [e for e in entries if e["attribute"] == attr and e["name"] in cells]
        grid = _grid_rows(cells, originals, group, ids) if group else None
        if grid:
            figs[f"grid_{attr}"] = labelled_grid_png(np.asarray(grid[0]), grid[1], grid[2])
            captions[f"grid_{attr}"] = (f"{attr}: each sample along "
                                        f"{', then '.join(e['name'] for e in group)}; columns: "
                                        f"signed distance to the boundary in W")
    return figs, captions


def _grid_rows(cells: dict, originals: dict, group: list, ids: list) -> Optional[tuple]:
    """(rows of cells, row labels, column labels) of one attribute's grid, or None."""
    strengths = sorted({t for e in group for (_, t) in cells[e["name"]]})
    with_original = all(i in originals for i in ids)
    rows, labels = [], []
    for i in ids:
        for e in group:
            row = [cells[e["name"]].get((i, t)) for t in strengths]
            if all(c is not None for c in row):
                rows.append(([originals[i]] if with_original else []) + row)
                labels.append(row_label(i, e))
    cols = ["original"] * with_original + [strength_label(t) for t in strengths]
    return (rows, labels, cols) if rows else None
