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
    inversion       [one `gankit eval-inversion` result per run: space, steps, recon_psnr...,
                    examples {columns, png}: faces drawn as figures 'inversion_<k>']
    fit             {samples, selection, fraction, count, val_fraction, spaces}
    edited_samples  {url, heldout}: heldout is false when the edits ran on the fit's samples
    model, classifier   what generated and scored the samples (when recorded)
    gates           [{gate, meaning, passed, total, failing}]
    warnings        [sentence]: results that mean little (gankit.caveats)
"""
from __future__ import annotations

import base64
import html
import io
from typing import Optional, Sequence

import numpy as np

from gankit.logits import sigmoid


# ----------------------------------------------------------------------------------------
# Math


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Sigmoid, in float64 (gankit.logits.sigmoid: no overflow for logits of either sign)."""
    return sigmoid(logits)


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
    # cells of about 0.85 x 0.55 inch at 100 dpi: 10 pt values stay legible at 1:1 in a page
    fig = Figure(figsize=(2.2 + 0.85 * len(cols), 1.8 + 0.55 * len(rows)), dpi=100)
    ax = fig.add_subplot()
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)), labels=list(cols), rotation=35, ha="right", fontsize=10)
    ax.set_yticks(range(len(rows)), labels=list(rows), fontsize=10)
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=10,
                color="white" if abs(v) > 0.6 * max(abs(vmin), abs(vmax)) else "black")
    ax.set_title(title, fontsize=11)
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


GRID_BORDER = 2     # gankit.images.make_grid's default border, in px


def labelled_grid(cells: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str],
                  scale: int = 2, font_size: int = 13) -> np.ndarray:
    """edit_grid with its legend drawn on it: column labels above each column, row labels
    left of each row (a figure copied out of the report keeps its meaning)."""
    from PIL import Image, ImageDraw, ImageFont
    cells = np.asarray(cells)
    grid = edit_grid(cells, scale)                                      # [H', W', 3]
    r, c, h, w = cells.shape[:4]
    if (len(row_labels), len(col_labels)) != (r, c):
        raise ValueError(f"{r} x {c} cells need as many labels, got {len(row_labels)} row "
                         f"and {len(col_labels)} column labels")
    font = ImageFont.load_default(size=font_size)
    left = max([font.getbbox(t)[2] for t in row_labels if t] or [0]) + 10
    top = font_size + 10
    canvas = Image.new("RGB", (left + grid.shape[1], top + grid.shape[0]), "white")
    canvas.paste(Image.fromarray(grid), (left, top))
    draw = ImageDraw.Draw(canvas)
    step_y, step_x = h * scale + GRID_BORDER, w * scale + GRID_BORDER
    for j, text in enumerate(col_labels):       # "ms": anchored at the middle of the baseline
        draw.text((left + GRID_BORDER + j * step_x + w * scale / 2, top - 5), text,
                  fill=(0, 0, 0), font=font, anchor="ms")
    for i, text in enumerate(row_labels):       # "rm": right end, vertical middle
        draw.text((left - 6, top + GRID_BORDER + i * step_y + h * scale / 2), text,
                  fill=(0, 0, 0), font=font, anchor="rm")
    return np.asarray(canvas)


def pack_examples(columns: Sequence[tuple]) -> dict:
    """[(column name, uint8 [N, H, W, 3]), ...] -> {columns, png}: the faces side by side
    (row i = face i) as one base64 PNG, small enough to travel inside a JSON result."""
    from gankit.images import encode_png
    names = [n for n, _ in columns]
    arrays = [np.asarray(a) for _, a in columns]
    strip = np.concatenate([np.concatenate(list(a), axis=0) for a in arrays], axis=1)
    return {"columns": names, "png": base64.b64encode(encode_png(strip, 6)).decode()}


def unpack_examples(examples: dict) -> np.ndarray:
    """pack_examples' dict -> cells uint8 [N, C, H, W, 3] (square images, H = W)."""
    from gankit.images import decode_image
    strip = decode_image(base64.b64decode(examples["png"]))             # [N*H, C*W, 3]
    c = len(examples["columns"])
    size = strip.shape[1] // c
    if c < 1 or strip.shape[1] != c * size or strip.shape[0] % size:
        raise ValueError(f"inversion examples: a {list(strip.shape)} strip does not hold "
                         f"{c} columns of square images")
    n = strip.shape[0] // size
    return strip.reshape(n, size, c, size, 3).transpose(0, 2, 1, 3, 4)


# ----------------------------------------------------------------------------------------
# HTML

STYLE = """body{font-family:sans-serif;max-width:1400px;margin:2em auto;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}
img{margin:4px 8px 4px 0;vertical-align:top;max-width:100%}
img.px{image-rendering:pixelated}
figure{display:inline-block;margin:0 12px 16px 0;vertical-align:top}
figcaption{font-size:12px;max-width:560px}
.side{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}.side figure{margin:0}
section{border-top:1px solid #ddd;margin-top:1.5em}
#summary{background:#f7f9fc;border:1px solid #d5dce8;padding:0.5em 1.2em}
.gates{list-style:none;padding-left:0}.gates li{margin:0.35em 0}
.ok,.fail{display:inline-block;min-width:3.2em;text-align:center;font-weight:bold;
 border-radius:3px;padding:0 4px;margin-right:6px;color:#fff}
.ok{background:#2e7d32}.fail{background:#c62828}
.meaning{color:#555;font-size:13px}
.warn{background:#fff4e5;border-left:4px solid #ef6c00;padding:0.3em 1em;margin:0.8em 0}
nav ol{columns:3;font-size:14px}"""

VAL_ACCURACY_GATE = 0.9     # a boundary passes when its val accuracy reaches this
FLIP_GATE = 0.9             # a plain edit passes when it flips its target for this share


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


def image_html(figure, alt: str, cls: str = "") -> str:
    """<img> of PNG bytes (embedded as base64) or of a relative file name (str)."""
    if isinstance(figure, (bytes, bytearray)):
        src = "data:image/png;base64," + base64.b64encode(bytes(figure)).decode()
    else:
        src = html.escape(str(figure))
    return f"<img class='{cls}' src='{src}' alt='{html.escape(alt)}'>"


def _figure(figures: dict, name: str, caption: str) -> str:
    """A figure; image grids (not heatmaps) keep sharp pixels when the browser scales them."""
    if name not in figures:
        return ""
    cls = "" if name.startswith(("cosine", "rescoring", "correlation")) else "px"
    return (f"<figure>{image_html(figures[name], name, cls)}"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _li(items: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


# ----------------------------------------------------------------------------------------
# What was run, the gates and the warnings: computed from report.json's own keys


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


def edited_text(report: dict) -> str:
    """'held-out samples' only when the edited samples are not the fit's own."""
    heldout = (report.get("edited_samples") or {}).get("heldout")
    if heldout is False:
        return "samples the boundaries were fitted on (not held out)"
    return "held-out samples" if heldout else "samples"


def _plain(report: dict) -> list:
    return [b for b in report.get("boundaries") or [] if not b.get("conditions")]


def gates(report: dict) -> list:
    """[{gate, meaning, passed, total, failing}] for every gate the report has data for."""
    out = []
    bs = [b for b in _plain(report) if b.get("val_accuracy") is not None]
    if bs:
        out.append(_gate(f"boundary val accuracy >= {VAL_ACCURACY_GATE:g}", "the boundary "
                         "separates the attribute on validation samples it was not fitted on",
                         {b["name"]: b["val_accuracy"] >= VAL_ACCURACY_GATE for b in bs}))
    plain = (report.get("edits") or {}).get("plain") or {}
    if plain:
        out.append(_gate(f"plain edit flips its target >= {FLIP_GATE:g}", "moving a sample "
                         "across the boundary changes the classifier's label for the target",
                         {e.get("boundary", k): e["flip_rate"] >= FLIP_GATE
                          for k, e in plain.items()}))
    pairs = report.get("pairs") or []
    if pairs:
        out.append(_gate("conditional edit keeps its conditions", "the conditional edit flips "
                         f"the target for >= {FLIP_GATE:g} of samples and changes the "
                         "conditions for < 0.1, fewer than the plain edit does",
                         {f"{p['target']} | {'+'.join(p['conditions'])}": pair_passes(p)
                          for p in pairs}))
    sep = report.get("separability") or {}
    if (sep.get("z") or {}).get("score") and (sep.get("w") or {}).get("score"):
        out.append(_gate("W more separable than Z", "attributes are closer to linear in W "
                         "than in Z (StyleGAN's claim for its mapping network)",
                         {"W vs Z": sep["w"]["score"] < sep["z"]["score"]}))
    return out


def _gate(gate: str, meaning: str, results: dict) -> dict:
    return {"gate": gate, "meaning": meaning, "passed": sum(map(bool, results.values())),
            "total": len(results), "failing": [k for k, ok in results.items() if not ok]}


def per_side(entry: dict, fit: Optional[dict]) -> Optional[list]:
    """[positives, negatives] of a boundary: recorded by the fit, or, for an older fit with
    the extremes selection, its selected count halved."""
    if entry.get("n_per_side"):
        return list(entry["n_per_side"])
    if (fit or {}).get("selection") == "extremes" and entry.get("n_train") is not None:
        k = (entry["n_train"] + (entry.get("n_val") or 0)) // 2
        return [k, k]
    return None


def caveats(report: dict) -> list:
    """Every warning for the results in the report (gankit.caveats), one sentence each."""
    from gankit.caveats import boundary_caveats, ppl_caveats, separability_caveats
    fit = report.get("fit") or {}
    out = []
    for b in _plain(report):
        out += boundary_caveats(b["name"], per_side(b, fit), b.get("val_accuracy"),
                                fit.get("val_fraction") or 0.3)
    out += separability_caveats(report.get("separability"))
    out += ppl_caveats(report.get("ppl"))
    if (report.get("edited_samples") or {}).get("heldout") is False:
        out.append("The edited samples are the ones the boundaries were fitted on: flip rates "
                   "on them can be higher than on samples the fit never saw.")
    return out


def _what_was_run(report: dict) -> list:
    fit, out = report.get("fit") or {}, []
    models = [f"{k} <b>{html.escape(str(report[k]))}</b>" for k in ("model", "classifier")
              if report.get(k)]
    if models:
        out.append("Generator and classifier: " + ", ".join(models) + ".")
    bs = report.get("boundaries") or []
    if bs:
        spaces = ", ".join(dict.fromkeys(b["space"].upper() for b in bs))
        out.append(f"{len(bs)} boundaries ({len(_plain(report))} plain) in {spaces}, fitted on "
                   f"{_fmt(report.get('num_samples'))} samples: {selection_text(fit)}.")
    if report.get("num_edited"):
        out.append(f"Edits: {report['num_edited']} {edited_text(report)}, moved to signed "
                   f"distance &plusmn;{_fmt(report.get('edit_strength'))} "
                   f"(mode {_fmt(report.get('edit_mode'))}).")
    if report.get("inversion"):
        modes = ", ".join(f"{r.get('mode', 'optimize')} {r['space'].upper()}"
                          for r in report["inversion"])
        out.append(f"Inversion of toy renders: {modes}.")
    return out


def _headlines(report: dict) -> list:
    out = []
    for space in dict.fromkeys(b["space"] for b in _plain(report)):
        acc = [b["val_accuracy"] for b in _plain(report)
               if b["space"] == space and b.get("val_accuracy") is not None]
        if acc:
            out.append(f"Val accuracy of the plain {space.upper()} boundaries: "
                       f"{min(acc):.3f} to {max(acc):.3f}.")
    plain = list(((report.get("edits") or {}).get("plain") or {}).values())
    if plain:
        flips = [e["flip_rate"] for e in plain]
        others = np.mean([e["others_changed"] for e in plain])
        out.append(f"Plain edits flip their target for {min(flips):.2f} to {max(flips):.2f} "
                   f"of samples; other attributes' labels change for {others:.3f} on average.")
    sep, ppl = report.get("separability") or {}, report.get("ppl") or {}
    for key, label, field in ((sep, "Separability (1 = linear)", "score"),
                              (ppl, "PPL mean (lower = smoother)", "mean")):
        got = [f"{s.upper()} {key[s][field]:,.2f}" for s in ("z", "w")
               if (key.get(s) or {}).get(field) is not None]
        if got:
            out.append(f"{label}: {', '.join(got)}.")
    return out


def _gate_html(g: dict) -> str:
    ok = g["passed"] == g["total"]
    failing = (f" Failing: {html.escape(', '.join(g['failing']))}." if g["failing"] else "")
    return (f"<li><span class='{'ok' if ok else 'fail'}'>{'pass' if ok else 'FAIL'}</span>"
            f"<b>{html.escape(g['gate'])}</b>: {g['passed']} of {g['total']}.{failing}"
            f"<br><span class='meaning'>{html.escape(g['meaning'])}</span></li>")


def _summary_section(report: dict) -> str:
    """What was run, on what; the headline figures; each gate with its meaning; warnings."""
    out = ["<h3>What was run</h3>" + _li(_what_was_run(report))]
    if _headlines(report):
        out.append("<h3>Headline figures</h3>" + _li(_headlines(report)))
    gs = gates(report)
    if gs:
        out.append("<h3>Gates</h3><ul class='gates'>" + "".join(map(_gate_html, gs)) + "</ul>")
    warns = caveats(report)
    if warns:
        out.append("<div class='warn'><h3>Warnings: results that mean little</h3>"
                   + _li([html.escape(w) for w in warns]) + "</div>")
    return "".join(out)


# ----------------------------------------------------------------------------------------
# Sections


def _boundary_section(report: dict) -> str:
    fit = report.get("fit") or {}
    rows = [(b["name"], b["attribute"], b["space"], ", ".join(b.get("conditions") or []) or "-",
             b.get("val_accuracy"), b.get("all_accuracy"), b.get("n_train"),
             "/".join(map(str, per_side(b, fit) or [])) or "-")
            for b in report.get("boundaries", [])]
    return (f"<p>InterFaceGAN linear SVM on {html.escape(selection_text(fit))}. Val accuracy "
            "is on the validation split, all accuracy on every sample labelled logit &gt; 0; "
            "conditional boundaries are the plain normals projected off their conditions' "
            "and inherit their accuracy.</p>"
            + table_html(["boundary", "attribute", "space", "conditioned on", "val accuracy",
                          "all accuracy", "n train", "selected +/-"], rows))


def _edits_section(report: dict) -> str:
    edits = report.get("edits", {})
    out = [f"<p>{report.get('num_edited', '?')} {edited_text(report)}, each moved "
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
    identity = report.get("identity") or {}
    measure = report.get("identity_measure", "dlib")
    if identity:
        rows = [(name, v["similarity"], v["distance"], v["edits"])
                for name, v in identity.items()]
        out.append(f"<h3>Identity kept ({IDENTITY_MEASURES[measure][0]})</h3><p>"
                   f"{IDENTITY_MEASURES[measure][1]} of each edit at "
                   f"&plusmn;{_fmt(report.get('edit_strength'))} against the reconstruction "
                   f"it was edited from: cosine similarity (1 = the same), and "
                   f"{IDENTITY_MEASURES[measure][2]}, averaged over the edits whose input "
                   f"showed a face.</p>" + table_html(
                       ["boundary", "identity similarity", "identity distance", "edits"],
                       rows))
    return "".join(out)


# measure -> (its name in the heading, what it describes, what its distance means)
IDENTITY_MEASURES = {
    "dlib": ("dlib", "dlib's face descriptor", "dlib's distance (below 0.6: the same person "
             "by dlib's rule)"),
    "arcface": ("ArcFace", "The ArcFace IR-SE50 embedding (the measure e4e, pSp, ReStyle "
                "and PTI report)", "the distance between unit embeddings (0 to 2)"),
}


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
    return not pair_failure(row, min_flip, max_changed)


def pair_failure(row: dict, min_flip: float = 0.9, max_changed: float = 0.1) -> str:
    """Why a {flip_rate, condition_changed} row fails the conditional-editing criterion, in
    a few words ('' when it passes)."""
    fr, cc = row["flip_rate"], row["condition_changed"]
    if fr["conditional"] < min_flip:
        return f"the target flips for {fr['conditional']:.3f} < {min_flip:g} of the samples"
    if cc["conditional"] >= max_changed:
        return f"the condition still changes for {cc['conditional']:.3f} >= {max_changed:g}"
    if cc["conditional"] >= cc["plain"]:
        return (f"the condition changes no less than with the plain boundary "
                f"({cc['conditional']:.3f} vs {cc['plain']:.3f})")
    return ""


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
    return ("<p>StyleGAN protocol: linear "
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
    return (f"<p>{what}, named by rescoring: the mean change of each attribute's "
            "probability when samples are moved along the direction. A name is given to one "
            "direction only, the one that moves it most; a direction whose names are taken, "
            "whose largest change is small, or whose images blow out at the sweep's ends is "
            "'unnamed'.</p>"
            + table_html(["#", "name", "top attribute", "change", value, "w std"], rows)
            + grids)


INVERSION_COLUMNS = (   # eval-inversion key -> column header
    ("mode", "mode"), ("space", "space"), ("attribute", "edited attribute"), ("faces", "faces"),
    ("steps", "steps"), ("tuned", "PTI change"), ("recon_psnr", "recon PSNR (dB)"),
    ("recon_mse", "recon MSE"),
    ("flip_rate", "flip rate"), ("others_kept", "others kept"),
    ("cf_flip_rate", "counterfactual flip"), ("cf_others_kept", "counterfactual kept"),
    ("edit_mse", "edit vs counterfactual MSE"), ("edit_feature", "edit vs cf feature dist"))


def _inversion_section(report: dict, figures: dict) -> str:
    """'Inversion quality': one row per `gankit eval-inversion` result (W, W+, ...), then
    each run's example faces (figure 'inversion_<k>'): input, reconstruction, edit."""
    runs = report.get("inversion") or []
    if not runs:
        return ""
    rows = [tuple(r.get(k) for k, _ in INVERSION_COLUMNS) for r in runs]
    captions = report.get("captions", {})
    faces = "".join(_figure(figures, f"inversion_{k}", captions.get(f"inversion_{k}", ""))
                    for k in range(len(runs)))
    return ("<p>Toy-world renders inverted, moved across the "
            "boundary, and compared with the renderer's counterfactual (the same faces with "
            "the factor changed): reconstruction error, the edit's flip rate and kept "
            "attributes, and the same on the counterfactual renders (the ceiling).</p>"
            + table_html([h for _, h in INVERSION_COLUMNS], rows)
            + (f"<div class='side'>{faces}</div>" if faces else
               "<p>These results hold no example images (eval-inversion results written "
               "before they did).</p>"))


def _correlation_section(report: dict, figures: dict, captions: dict) -> str:
    """Generated / real / true correlation heatmaps side by side, and their gaps."""
    names = sorted(n for n in figures if n.startswith("correlation"))
    if not names:
        return ""
    out = ("<div class='side'>"
           + "".join(_figure(figures, n, captions.get(n, n)) for n in names) + "</div>")
    gaps = report.get("correlation_gap") or {}
    if gaps:
        out += ("<p>Mean |difference| of the off-diagonal correlations:</p>"
                + table_html(["matrices", "mean |difference|"], list(gaps.items())))
    return out


def _figures_section(figures: dict, prefix: str, captions: dict, intro: str = "") -> str:
    names = sorted(n for n in figures if n.startswith(prefix))
    if not names:
        return ""
    return intro + "".join(_figure(figures, n, captions.get(n, n)) for n in names)


GRID_INTRO = ("<p>Each grid: rows are samples, each edited along the plain boundary and "
              "then along each conditional one (the row label says which); columns are the "
              "original and the signed distance the sample was moved to.</p>")


def sections(report: dict, figures: dict) -> list:
    """[(id, heading, contents label, body html)] of the sections with something to show."""
    c = report.get("captions", {})
    found = [
        ("boundaries", "Boundaries", "Boundaries", _boundary_section(report)),
        ("edits", "Edits", "Edits", _edits_section(report) if report.get("edits") else ""),
        ("latent", "Separability and path length (Z vs W)", "Z vs W metrics",
         _latent_section(report)),
        ("grids", "Edit grids", "Edit grids", _figures_section(figures, "grid_", c, GRID_INTRO)),
        ("rescoring", "Rescoring", "Rescoring", _figures_section(figures, "rescoring", c)),
        ("cosine", "Boundary cosine similarity", "Cosine similarity",
         _figures_section(figures, "cosine_", c)),
        ("correlation", "Attribute correlation", "Correlation",
         _correlation_section(report, figures, c)),
        ("sefa", "Directions (SeFa)", "SeFa directions",
         _directions_section(report, figures, "directions")),
        ("pca", "Directions (GANSpace PCA)", "PCA directions",
         _directions_section(report, figures, "directions_pca")),
        ("inversion", "Inversion quality", "Inversion", _inversion_section(report, figures)),
    ]
    if report.get("summary"):
        found.append(("console", "Console summary", "Console summary",
                      "<pre>" + html.escape(report["summary"]) + "</pre>"))
    return [s for s in found if s[3]]


def render_html(report: dict, figures: dict) -> str:
    """report.json's dict + {figure name: PNG bytes or relative path} -> a self-contained
    report.html (bytes are embedded as base64): the summary, a table of contents, then one
    <section id=...> per part with data. Figure names by prefix: 'cosine_*', 'rescoring*',
    'correlation*', 'grid_*', 'inversion_<k>'; direction grids are named by each
    direction's 'grid' entry."""
    title = html.escape(report.get("title", "gankit report"))
    found = sections(report, figures)
    toc = "".join(f"<li><a href='#{i}'>{html.escape(label)}</a></li>"
                  for i, _, label, _ in found)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
             f"<style>{STYLE}</style></head><body><h1>{title}</h1>",
             f"<section id='summary'><h2>Summary</h2>{_summary_section(report)}</section>",
             f"<nav id='contents'><h2>Contents</h2><ol><li><a href='#summary'>Summary</a></li>"
             f"{toc}</ol></nav>"]
    parts += [f"<section id='{i}'><h2>{html.escape(h)}</h2>{body}</section>"
              for i, h, _, body in found]
    parts.append("</body></html>")
    return "\n".join(parts)
