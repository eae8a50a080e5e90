"""The report's math and drawing: rescoring, flip rates, heatmaps, edit grids, report.html.

Pure functions over arrays (no files, no Ray): jobs/report.py streams the fit and edit outputs
into small arrays and calls these.

Edits and labels. A sample's label for attribute a is `logit_a > 0`. For the report, every
held-out sample is edited along boundary b *towards the other side of b's target attribute*:
a sample labelled negative is moved to +d, a positive one to -d (`direction` = +1 / -1).
- `flip_rates`: flip_rate = share of samples whose target label ends on the side it was moved
  to; others_changed = mean over the other attributes of the share of samples whose label
  changed; `changed` [B, A] = share of samples whose label of each attribute changed.
- `rescoring_matrix`: mean change of every attribute's classifier probability (sigmoid of the
  logit), signed by the edit direction, so row b reads "how much each attribute's probability
  moves per step towards b's positive side" (the diagonal is the target's own change).

report.json keys (extensible; issue 6 adds `separability`, `ppl`, `directions`):
    boundaries  [{name, attribute, space, conditions, val_accuracy, all_accuracy, n_train, path}]
    rescoring   {plain: {attributes, boundaries, matrix [B][A]}, conditional: {...}}
    label_changes  same layout: share of samples whose label changed
    edits       {plain: {attr: {flip_rate, others_changed, boundary, changed}},
                 conditional: {'attr|c1+c2': {..., attribute, conditions}}}
    pairs       [{target, conditions, space, flip_rate {plain, conditional},
                  condition_changed {plain, conditional},
                  sweep [{strength, flip_rate, condition_changed}] at every edited strength}]
    cosine      {space: {attributes, matrix}}
    correlation {attributes, matrix, rows}: classifier probabilities on generated samples
    correlation_real  same on real images, + source ('toy' renders or a Parquet URL), errors
    correlation_true  toy world only: the true labels (factors thresholded) of those renders
    correlation_gap   {'generated vs real', ...}: mean |difference| off the diagonal
    separability {z, w}, ppl {z, w}
    directions      SeFa [{index, name, top_attribute, top_change, changes, value, std,
                    grid}]; directions_pca the same for GANSpace PCA (value = variance)
    inversion       [one `gankit eval-inversion` result per run: space, steps, recon_psnr...]
"""
from __future__ import annotations

import base64
import html
import io
from typing import Optional, Sequence

import numpy as np


# ----------------------------------------------------------------------------------------
# Math


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Sigmoid, in float64 (logits of either sign, no overflow warnings)."""
    x = np.asarray(logits, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def edit_directions(before: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """before [N, A] logits, targets [B] attribute indices -> [B, N] in {+1, -1}: move each
    sample towards the other side of its target's label (negative -> +1)."""
    before = np.asarray(before)
    return np.where(before[:, list(targets)].T > 0, -1.0, 1.0)          # [B, N]


def _check(before: np.ndarray, after: np.ndarray) -> tuple:
    before, after = np.asarray(before), np.asarray(after)
    if before.ndim != 2 or after.ndim != 3 or after.shape[1:] != before.shape:
        raise ValueError(f"logits_before must be [N, A] and logits_after [B, N, A]; got "
                         f"{list(before.shape)} and {list(after.shape)}")
    return before, after


def rescoring_matrix(logits_before: np.ndarray, logits_after: np.ndarray,
                     direction: Optional[np.ndarray] = None) -> np.ndarray:
    """[N, A], [B, N, A] (, direction [B, N] of +-1) -> [B, A]: mean change of every
    attribute's probability per boundary, each sample's change multiplied by its direction."""
    before, after = _check(logits_before, logits_after)
    delta = probabilities(after) - probabilities(before)[None]         # [B, N, A]
    if direction is not None:
        direction = np.asarray(direction, dtype=np.float64)
        if direction.shape != after.shape[:2]:
            raise ValueError(f"direction must be [B, N] = {list(after.shape[:2])}, got "
                             f"{list(direction.shape)}")
        delta = delta * direction[:, :, None]
    return delta.mean(axis=1)


def label_changes(logits_before: np.ndarray, logits_after: np.ndarray) -> np.ndarray:
    """[N, A], [B, N, A] -> [B, A]: share of samples whose label (logit > 0) changed."""
    before, after = _check(logits_before, logits_after)
    return ((after > 0) != (before > 0)[None]).mean(axis=1)


def flip_rates(logits_before: np.ndarray, logits_after: np.ndarray, targets: Sequence[int],
               direction: Optional[np.ndarray] = None) -> dict:
    """Per boundary b with target attribute targets[b]:
    flip_rate [B]: share of samples whose target label ends on the side they were moved to
                   (direction default: the side opposite their label before);
    others_changed [B]: mean over the other attributes of the share whose label changed;
    changed [B, A]: share of samples whose label of each attribute changed."""
    before, after = _check(logits_before, logits_after)
    targets = np.asarray(list(targets), dtype=int)
    if targets.shape != (after.shape[0],):
        raise ValueError(f"targets must list one attribute per boundary ({after.shape[0]}), "
                         f"got {len(targets)}")
    if direction is None:
        direction = edit_directions(before, targets)
    rows = np.arange(len(targets))
    target_after = after[rows, :, targets]                              # [B, N]
    flip = ((target_after > 0) == (np.asarray(direction) > 0)).mean(axis=1)
    changed = label_changes(before, after)                              # [B, A]
    others = np.ones_like(changed, dtype=bool)
    others[rows, targets] = False
    others_changed = (changed * others).sum(axis=1) / max(1, before.shape[1] - 1)
    return {"flip_rate": flip, "others_changed": others_changed, "changed": changed}


def correlation_matrix(values: np.ndarray) -> np.ndarray:
    """[N, A] -> [A, A] Pearson correlation of the columns (constant columns give 0)."""
    x = np.asarray(values, dtype=np.float64)
    x = x - x.mean(axis=0)
    std = np.sqrt((x * x).mean(axis=0))
    safe = np.where(std > 0, std, 1.0)
    c = (x.T @ x) / len(x) / np.outer(safe, safe)
    c[std == 0, :] = 0.0
    c[:, std == 0] = 0.0
    return c


def correlation_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |a - b| over the off-diagonal entries of two [A, A] correlation matrices."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 2:
        raise ValueError(f"need two [A, A] matrices with A >= 2, got {list(a.shape)} and "
                         f"{list(b.shape)}")
    off = ~np.eye(len(a), dtype=bool)
    return float(np.abs(a - b)[off].mean())


# ----------------------------------------------------------------------------------------
# Figures


def heatmap_png(matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str], title: str,
                vmin: float = -1.0, vmax: float = 1.0, cmap: str = "RdBu_r") -> bytes:
    """A labelled heatmap [R, C] with each value printed in its cell, as PNG bytes."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (len(rows), len(cols)):
        raise ValueError(f"matrix is {list(m.shape)} but there are {len(rows)} row and "
                         f"{len(cols)} column labels")
    fig = Figure(figsize=(1.0 + 0.75 * len(cols), 1.2 + 0.45 * len(rows)), dpi=100)
    ax = fig.add_subplot()
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)), labels=list(cols), rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), labels=list(rows), fontsize=8)
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                color="white" if abs(v) > 0.6 * max(abs(vmin), abs(vmax)) else "black")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def edit_grid(cells: np.ndarray, scale: int = 2) -> np.ndarray:
    """cells [R, C, H, W, 3] uint8 (rows of images) -> one grid image [H', W', 3] uint8,
    each cell upscaled by `scale` (nearest) so 32 px toy images stay legible."""
    from gankit.images import make_grid, upscale
    cells = np.asarray(cells)
    if cells.ndim != 5 or cells.dtype != np.uint8:
        raise ValueError(f"cells must be uint8 [R, C, H, W, 3], got {cells.dtype} "
                         f"{list(cells.shape)}")
    r, c = cells.shape[:2]
    return make_grid(upscale(cells.reshape(r * c, *cells.shape[2:]), scale), ncols=c)


# ----------------------------------------------------------------------------------------
# HTML

STYLE = """body{font-family:sans-serif;max-width:1400px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}
img{image-rendering:pixelated;margin:4px 8px 4px 0;vertical-align:top}
figure{display:inline-block;margin:0 12px 12px 0;vertical-align:top}
figcaption{font-size:12px;max-width:440px}
.side{display:flex;gap:8px;align-items:flex-start}.side figure{flex:1;margin:0}
.side img{width:100%;image-rendering:auto;margin:0}"""


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return html.escape(str(v))


def _align(v) -> str:
    """Numbers right-aligned, text left-aligned."""
    return "" if isinstance(v, (int, float)) and not isinstance(v, bool) else "l"


def table_html(header: Sequence[str], rows: Sequence[Sequence], cls: str = "") -> str:
    """An HTML table: text left-aligned, numbers right-aligned to three decimals."""
    head = "".join(f"<th class='{'l' if i == 0 else ''}'>{html.escape(str(h))}</th>"
                   for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td class='{_align(v)}'>{_fmt(v)}</td>" for v in r)
                   + "</tr>" for r in rows)
    return f"<table class='{cls}'><tr>{head}</tr>{body}</table>"


def image_html(figure, alt: str) -> str:
    """<img> of PNG bytes (embedded as base64) or of a relative file name (str)."""
    if isinstance(figure, (bytes, bytearray)):
        src = "data:image/png;base64," + base64.b64encode(bytes(figure)).decode()
    else:
        src = html.escape(str(figure))
    return f"<img src='{src}' alt='{html.escape(alt)}'>"


def _figure(figures: dict, name: str, caption: str) -> str:
    if name not in figures:
        return ""
    return (f"<figure>{image_html(figures[name], name)}"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _boundary_section(report: dict) -> str:
    rows = [(b["name"], b["attribute"], b["space"], ", ".join(b.get("conditions") or []) or "-",
             b.get("val_accuracy"), b.get("all_accuracy"), b.get("n_train"))
            for b in report.get("boundaries", [])]
    return ("<h2>Boundaries</h2><p>InterFaceGAN linear SVM on the most and least confident "
            "samples; accuracy on the held-out validation split and on all samples.</p>"
            + table_html(["boundary", "attribute", "space", "conditioned on", "val accuracy",
                          "all accuracy", "n train"], rows))


def _edits_section(report: dict) -> str:
    edits = report.get("edits", {})
    out = [f"<h2>Edits</h2><p>{report.get('num_edited', '?')} held-out samples, each moved "
           f"towards the other side of the target's label, to signed distance "
           f"&plusmn;{_fmt(report.get('edit_strength'))} (mode "
           f"{html.escape(str(report.get('edit_mode', '?')))}).</p>"]
    for kind in ("plain", "conditional"):
        rows = [(key, e.get("boundary"), e.get("flip_rate"), e.get("others_changed"))
                for key, e in edits.get(kind, {}).items()]
        if rows:
            out.append(f"<h3>{kind}</h3>" + table_html(
                ["target", "boundary", "flip rate", "others changed (mean)"], rows))
    pairs = report.get("pairs", [])
    if pairs:
        rows = [(f"{p['target']} | {'+'.join(p['conditions'])}", p["flip_rate"]["plain"],
                 p["flip_rate"]["conditional"], p["condition_changed"]["plain"],
                 p["condition_changed"]["conditional"]) for p in pairs]
        out.append("<h3>Conditional vs plain</h3>" + table_html(
            ["target | conditions", "flip rate plain", "flip rate conditional",
             "conditions changed plain", "conditions changed conditional"], rows))
        out.append(_sweep_table(pairs))
    return "".join(out)


def _sweep_table(pairs: list) -> str:
    """The same comparison at every edited strength: how far an edit can go before the
    conditioned attribute starts to change."""
    rows = [(f"{p['target']} | {'+'.join(p['conditions'])}", s["strength"],
             s["flip_rate"]["plain"], s["flip_rate"]["conditional"],
             s["condition_changed"]["plain"], s["condition_changed"]["conditional"],
             "yes" if pair_passes(s) else "no")
            for p in pairs for s in p.get("sweep", [])]
    if not rows:
        return ""
    return ("<h3>Conditional vs plain, by strength</h3><p>Passes: the conditional edit flips "
            "the target for &ge; 0.9 of samples and changes the conditions for &lt; 0.1, "
            "fewer than the plain edit.</p>" + table_html(
                ["target | conditions", "strength", "flip plain", "flip conditional",
                 "cond. changed plain", "cond. changed conditional", "passes"], rows))


def pair_passes(row: dict, min_flip: float = 0.9, max_changed: float = 0.1) -> bool:
    """The conditional-editing criterion on one {flip_rate, condition_changed} row."""
    fr, cc = row["flip_rate"], row["condition_changed"]
    return (fr["conditional"] >= min_flip and cc["conditional"] < max_changed
            and cc["conditional"] < cc["plain"])


def _latent_section(report: dict) -> str:
    """'Separability and path length (Z vs W)': one row per space present."""
    sep, ppl = report.get("separability") or {}, report.get("ppl") or {}
    spaces = [s for s in ("z", "w") if s in sep or s in ppl]
    if not spaces:
        return ""
    rows = []
    for s in spaces:
        a, b = sep.get(s) or {}, ppl.get(s) or {}
        rows.append((s.upper(), a.get("score"), a.get("num_samples"), b.get("mean"),
                     b.get("mean_filtered"), b.get("n"), b.get("sampling")))
    return ("<h2>Separability and path length (Z vs W)</h2><p>StyleGAN protocol: linear "
            "separability = exp(sum of H(Y|X)) over attributes (1 = every attribute linearly "
            "separable; lower is better); perceptual path length with the feature net's "
            "squared distance (LPIPS, or the toy classifier's features in the toy world; "
            "lower is smoother).</p>"
            + table_html(["space", "separability", "samples", "PPL mean", "PPL mean (1-99%)",
                          "paths", "sampling"], rows))


DIRECTION_METHODS = {   # report key -> (heading, what it is, name of `value`)
    "directions": ("Directions (SeFa)", "Closed-form directions (eigenvectors of the style "
                   "affines' weights)", "eigenvalue"),
    "directions_pca": ("Directions (GANSpace PCA)", "Principal components of sampled w",
                       "variance"),
}


def _directions_section(report: dict, figures: dict, key: str = "directions") -> str:
    """One method's directions: auto-annotated name and top attribute change, then each
    direction's strength-sweep grid (figure d['grid'])."""
    dirs = report.get(key) or []
    if not dirs:
        return ""
    heading, what, value = DIRECTION_METHODS[key]
    rows = [(d.get("index"), d.get("name"), d.get("top_attribute"), d.get("top_change"),
             d.get("value"), d.get("std")) for d in dirs]
    grids = "".join(_figure(figures, d["grid"], f"#{d.get('index')} {d.get('name')}: "
                            + report.get("captions", {}).get(d["grid"], ""))
                    for d in dirs if d.get("grid"))
    return (f"<h2>{heading}</h2><p>{what}, named by rescoring: the mean change of each "
            "attribute's probability when samples are moved along the direction.</p>"
            + table_html(["#", "name", "top attribute", "change", value, "w std"], rows)
            + grids)


INVERSION_COLUMNS = (   # eval-inversion key -> column header
    ("mode", "mode"), ("space", "space"), ("attribute", "edited attribute"), ("faces", "faces"),
    ("steps", "steps"), ("recon_psnr", "recon PSNR (dB)"), ("recon_mse", "recon MSE"),
    ("flip_rate", "flip rate"), ("others_kept", "others kept"),
    ("cf_flip_rate", "counterfactual flip"), ("cf_others_kept", "counterfactual kept"),
    ("edit_mse", "edit vs counterfactual MSE"), ("edit_feature", "edit vs cf feature dist"))


def _inversion_section(report: dict) -> str:
    """'Inversion quality': one row per `gankit eval-inversion` result (W, W+, ...)."""
    runs = report.get("inversion") or []
    if not runs:
        return ""
    rows = [tuple(r.get(k) for k, _ in INVERSION_COLUMNS) for r in runs]
    return ("<h2>Inversion quality</h2><p>Toy-world renders inverted, moved across the "
            "boundary, and compared with the renderer's counterfactual (the same faces with "
            "the factor changed): reconstruction error, the edit's flip rate and kept "
            "attributes, and the same on the counterfactual renders (the ceiling).</p>"
            + table_html([h for _, h in INVERSION_COLUMNS], rows))


def _correlation_section(report: dict, figures: dict, captions: dict) -> str:
    """Generated / real / true correlation heatmaps side by side, and their gaps."""
    names = sorted(n for n in figures if n.startswith("correlation"))
    if not names:
        return ""
    out = ("<h2>Attribute correlation</h2><div class='side'>"
           + "".join(_figure(figures, n, captions.get(n, n)) for n in names) + "</div>")
    gaps = report.get("correlation_gap") or {}
    if gaps:
        out += ("<p>Mean |difference| of the off-diagonal correlations:</p>"
                + table_html(["matrices", "mean |difference|"], list(gaps.items())))
    return out


def _figures_section(figures: dict, title: str, prefix: str, captions: dict) -> str:
    names = sorted(n for n in figures if n.startswith(prefix))
    if not names:
        return ""
    return f"<h2>{title}</h2>" + "".join(_figure(figures, n, captions.get(n, n)) for n in names)


def render_html(report: dict, figures: dict) -> str:
    """report.json's dict + {figure name: PNG bytes or relative path} -> a self-contained
    report.html (bytes are embedded as base64). Figure names by prefix: 'cosine_*',
    'rescoring*', 'correlation*', 'grid_*'; direction grids are named by each direction's
    'grid' entry."""
    title = html.escape(report.get("title", "gankit report"))
    captions = report.get("captions", {})
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
             f"<style>{STYLE}</style></head><body><h1>{title}</h1>"]
    if report.get("summary"):
        parts.append("<pre>" + html.escape(report["summary"]) + "</pre>")
    parts.append(_boundary_section(report))
    parts.append(_edits_section(report))
    parts.append(_latent_section(report))
    parts.append(_figures_section(figures, "Edit grids", "grid_", captions))
    parts.append(_figures_section(figures, "Rescoring", "rescoring", captions))
    parts.append(_figures_section(figures, "Boundary cosine similarity", "cosine_", captions))
    parts.append(_correlation_section(report, figures, captions))
    parts.append(_directions_section(report, figures, "directions"))
    parts.append(_directions_section(report, figures, "directions_pca"))
    parts.append(_inversion_section(report))
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)
