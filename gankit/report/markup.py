"""The report's HTML building blocks: the page's style, tables, embedded figures, lists.
Strings in, HTML strings out; the sections (gankit.report.sections) compose them.
"""
from __future__ import annotations

import base64
import html
from typing import Sequence

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
.ok,.fail,.known,.cmp{display:inline-block;min-width:3.2em;text-align:center;font-weight:bold;
 border-radius:3px;padding:0 4px;margin-right:6px;color:#fff}
.ok{background:#2e7d32}.fail{background:#c62828}.known{background:#6d6d6d}.cmp{background:#1565c0}
.meaning{color:#555;font-size:13px}
.warn{background:#fff4e5;border-left:4px solid #ef6c00;padding:0.3em 1em;margin:0.8em 0}
nav ol{columns:3;font-size:14px}"""


def esc(v) -> str:
    return html.escape(str(v))


def fmt(v) -> str:
    """A value for a table cell or a sentence: floats to three decimals, None as '-'."""
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
    body = "".join("<tr>" + "".join(f"<td class='{_align(v)}'>{fmt(v)}</td>" for v in r)
                   + "</tr>" for r in rows)
    return f"<table class='{cls}'><tr>{head}</tr>{body}</table>"


def image_html(figure, alt: str, cls: str = "") -> str:
    """<img> of PNG bytes (embedded as base64) or of a relative file name (str)."""
    if isinstance(figure, (bytes, bytearray)):
        src = "data:image/png;base64," + base64.b64encode(bytes(figure)).decode()
    else:
        src = html.escape(str(figure))
    return f"<img class='{cls}' src='{src}' alt='{html.escape(alt)}'>"


def figure_html(figures: dict, name: str, caption: str) -> str:
    """A figure; image grids (not heatmaps) keep sharp pixels when the browser scales them."""
    if name not in figures:
        return ""
    cls = "" if name.startswith(("cosine", "rescoring", "correlation")) else "px"
    return (f"<figure>{image_html(figures[name], name, cls)}"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def figures_html(figures: dict, prefix: str, captions: dict, intro: str = "") -> str:
    """Every figure whose name starts with `prefix`, sorted by name, after `intro`."""
    names = sorted(n for n in figures if n.startswith(prefix))
    if not names:
        return ""
    return intro + "".join(figure_html(figures, n, captions.get(n, n)) for n in names)


def li(items: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def badge(cls: str, text: str) -> str:
    return f"<span class='{cls}'>{html.escape(text)}</span>"
