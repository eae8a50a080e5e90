"""The report's gates and warnings: what a reader must act on, what is a known property of
the model, and what is a comparison rather than a requirement.

A gate is a requirement on every item it covers (each boundary, each edit, each pair); an
item that misses it fails, with its reason beside it. Two kinds of result are not failures:
- comparisons: Z against W. StyleGAN found attributes less linear in Z than in W, so Z
  boundaries below the accuracy gate next to W boundaries above it are that finding, not a
  fault. When a fit has both, Z's boundaries are compared with W's instead of gated.
- known properties: a failing item documented as a property of a bundled model (KNOWN,
  keyed by the model spec; MODELS.md explains each). It shows as 'known' with its reason;
  any other failing item of the same gate still fails.

report.json's `gates` keeps its layout, [{gate, meaning, passed, total, failing}]: the
counts are the facts (a known item still counts as failing there); the status badge, the
reasons and the known properties are the page's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from gankit.caveats import boundary_caveats, ppl_caveats, separability_caveats
from gankit.report.edits import pair_label
from gankit.report.markup import badge, esc
from gankit.report.stats import MIN_FLIP, pair_failure, pair_passes, per_side

VAL_ACCURACY_GATE = 0.9     # a boundary passes when its val accuracy reaches this
FLIP_GATE = MIN_FLIP        # a plain edit passes when it flips its target for this share

KNOWN = {   # model spec -> {(gate kind, failing item): why it is expected}
    "toy": {
        ("flip", "w/dark_skin"): (
            "a known property of the bundled toy generator: it draws few dark faces with "
            "some of the other attributes, so far out along the dark_skin normal the "
            "classifier's dark_skin surface lies elsewhere (MODELS.md, 'The demo on this "
            "model')"),
        ("pair", "blond_hair | dark_skin"): (
            "a known cost of the toy generator's calibration: it nearly stopped drawing blond "
            "dark faces, so a conditional blond edit of a dark face goes where the fit saw no "
            "samples (MODELS.md, 'What calibration cost the demo')"),
    },
}


@dataclass
class Gate:
    kind: str                     # 'val_accuracy', 'z_vs_w', 'flip', 'pair', 'separability'
    gate: str                     # its name, with its threshold
    meaning: str                  # what passing means, in a sentence
    results: dict                 # {item: passed}
    reasons: dict = field(default_factory=dict)   # {failing item: why, in a few words}
    known: dict = field(default_factory=dict)     # {failing item: the documented property}
    comparison: Optional[str] = None              # Z against W: the figures side by side

    def failing(self) -> list:
        return [k for k, ok in self.results.items() if not ok]

    def status(self) -> str:
        """'ok', 'known' (every failing item is a known property), 'fail', or 'cmp'."""
        if self.comparison is not None:
            return "cmp"
        failing = self.failing()
        if not failing:
            return "ok"
        return "known" if all(k in self.known for k in failing) else "fail"

    def to_json(self) -> dict:
        return {"gate": self.gate, "meaning": self.meaning,
                "passed": sum(map(bool, self.results.values())), "total": len(self.results),
                "failing": self.failing()}

    def html(self) -> str:
        """One <li>: the badge, the gate, its count or comparison, the reasons, the meaning."""
        status = self.status()
        label = {"ok": "pass", "known": "known", "fail": "FAIL", "cmp": "Z vs W"}[status]
        j = self.to_json()
        if status == "cmp":
            verdict = ("W ahead, as StyleGAN found" if j["passed"] == j["total"]
                       else "Z not behind W, unlike StyleGAN's finding")
            body = f": {esc(self.comparison)}: {verdict}."
        else:
            body = f": {j['passed']} of {j['total']}." + self._failing_html()
        return (f"<li>{badge(status, label)}<b>{esc(self.gate)}</b>{body}"
                f"<br><span class='meaning'>{esc(self.meaning)}</span></li>")

    def _failing_html(self) -> str:
        why = lambda k, d: esc(k) + (f" ({esc(d[k])})" if d.get(k) else "")  # noqa: E731
        acting = [why(k, self.reasons) for k in self.failing() if k not in self.known]
        known = [why(k, self.known) for k in self.failing() if k in self.known]
        return ((f" Failing: {'; '.join(acting)}." if acting else "")
                + (f" Known: {'; '.join(known)}." if known else ""))


def gate_records(report) -> list:
    """[Gate] for every gate `report` (a gankit.report.document.Report) has data for."""
    known = KNOWN.get(str(report.model), {})
    found = _accuracy_gates(report.fit.plain()) + [
        _flip_gate((report.edits.edits or {}).get("plain") or {}),
        _pair_gate(report.edits.pairs), _separability_gate(report.latent)]
    out = [g for g in found if g is not None]
    for g in out:
        g.known = {item: why for (kind, item), why in known.items()
                   if kind == g.kind and item in g.failing()}
    return out


def _accuracy_gates(plain: list) -> list:
    """The 0.9 gate on val accuracy; with Z and W boundaries both, Z is compared with W."""
    bs = [b for b in plain if b.get("val_accuracy") is not None]
    by_space = {s: [b["val_accuracy"] for b in bs if b["space"] == s] for s in ("z", "w")}
    compare = bool(by_space["z"] and by_space["w"])
    gated = [b for b in bs if not (compare and b["space"] == "z")]
    out = []
    if gated:
        out.append(Gate("val_accuracy", f"boundary val accuracy >= {VAL_ACCURACY_GATE:g}",
                        "the boundary separates the attribute on validation samples it was "
                        "not fitted on" + (" (Z boundaries: compared with W's below)"
                                           if compare else ""),
                        {b["name"]: b["val_accuracy"] >= VAL_ACCURACY_GATE for b in gated},
                        {b["name"]: f"val accuracy {b['val_accuracy']:.3f}" for b in gated}))
    if compare:
        z, w = by_space["z"], by_space["w"]
        out.append(Gate("z_vs_w", "W boundaries more accurate than Z's",
                        "StyleGAN's finding: the mapping network makes attributes closer to "
                        "linear in W than in Z, so boundaries in Z separate less well; a "
                        "comparison, not a requirement",
                        {"W vs Z": float(np.mean(w)) > float(np.mean(z))},
                        comparison=f"val accuracy Z {min(z):.3f} to {max(z):.3f}, "
                                   f"W {min(w):.3f} to {max(w):.3f}"))
    return out


def _flip_gate(plain: dict) -> Optional[Gate]:
    if not plain:
        return None
    return Gate("flip", f"plain edit flips its target >= {FLIP_GATE:g}", "moving a sample "
                "across the boundary changes the classifier's label for the target",
                {e.get("boundary", k): e["flip_rate"] >= FLIP_GATE for k, e in plain.items()},
                {e.get("boundary", k): f"flips {e['flip_rate']:.3f} of the samples"
                 for k, e in plain.items()})


def _pair_gate(pairs: list) -> Optional[Gate]:
    if not pairs:
        return None
    return Gate("pair", "conditional edit keeps its conditions", "the conditional edit flips "
                f"the target for >= {FLIP_GATE:g} of samples and changes the conditions for "
                "< 0.1, fewer than the plain edit does",
                {pair_label(p): pair_passes(p) for p in pairs},
                {pair_label(p): pair_failure(p) for p in pairs})


def _separability_gate(latent) -> Optional[Gate]:
    z, w = latent.score("z"), latent.score("w")
    if not (z and w):
        return None
    return Gate("separability", "W more separable than Z", "attributes are closer to linear "
                "in W than in Z (StyleGAN's claim for its mapping network)",
                {"W vs Z": w < z}, comparison=f"separability Z {z:,.3f}, W {w:,.3f} "
                                              f"(1 = linear)")


def caveats(report) -> list:
    """Every warning for the results in `report` (gankit.caveats), one sentence each."""
    fit = report.fit.fit
    out = []
    for b in report.fit.plain():
        out += boundary_caveats(b["name"], per_side(b, fit), b.get("val_accuracy"),
                                fit.get("val_fraction") or 0.3)
    out += separability_caveats(report.latent.separability)
    out += ppl_caveats(report.latent.ppl)
    if report.edits.edited_samples.get("heldout") is False:
        out.append("The edited samples are the ones the boundaries were fitted on: flip rates "
                   "on them can be higher than on samples the fit never saw.")
    return out
