"""The report's PNG figures: labelled heatmaps, image grids with their legend drawn on them,
and the example faces an eval-inversion result carries. Arrays in, PNG bytes (or uint8
arrays) out; no HTML, no files.
"""
from __future__ import annotations

import base64
import io
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from gankit.images import decode_image, encode_png, make_grid, upscale

GRID_BORDER = 2     # gankit.images.make_grid's default border, in px


def heatmap_png(matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str], title: str,
                vmin: float = -1.0, vmax: float = 1.0, cmap: str = "RdBu_r") -> bytes:
    """A labelled heatmap [R, C] with each value printed in its cell, as PNG bytes."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (len(rows), len(cols)):
        raise ValueError(f"matrix is {list(m.shape)} but there are {len(rows)} row and "
                         f"{len(cols)} column labels")
    fig = _figure(len(rows), len(cols))
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


def _figure(rows: int, cols: int):
    """A matplotlib Figure (no pyplot state) with cells of about 0.85 x 0.55 inch at 100 dpi:
    10 pt values stay legible at 1:1 in a page."""
    import matplotlib           # lazy: a second to import, and only heatmaps need it
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    return Figure(figsize=(2.2 + 0.85 * cols, 1.8 + 0.55 * rows), dpi=100)


def edit_grid(cells: np.ndarray, scale: int = 2) -> np.ndarray:
    """cells [R, C, H, W, 3] uint8 (rows of images) -> one grid image [H', W', 3] uint8,
    each cell upscaled by `scale` (nearest) so 32 px toy images stay legible."""
    cells = np.asarray(cells)
    if cells.ndim != 5 or cells.dtype != np.uint8:
        raise ValueError(f"cells must be uint8 [R, C, H, W, 3], got {cells.dtype} "
                         f"{list(cells.shape)}")
    r, c = cells.shape[:2]
    return make_grid(upscale(cells.reshape(r * c, *cells.shape[2:]), scale), ncols=c)


def labelled_grid(cells: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str],
                  scale: int = 2, font_size: int = 13) -> np.ndarray:
    """edit_grid with its legend drawn on it: column labels above each column, row labels
    left of each row (a figure copied out of the report keeps its meaning)."""
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


def labelled_grid_png(cells: np.ndarray, row_labels: Sequence[str],
                      col_labels: Sequence[str], scale: int = 2) -> bytes:
    """labelled_grid as PNG bytes (zlib level 6: figures are written once, read often)."""
    return encode_png(labelled_grid(cells, row_labels, col_labels, scale), compress_level=6)


def pack_examples(columns: Sequence[tuple]) -> dict:
    """[(column name, uint8 [N, H, W, 3]), ...] -> {columns, png}: the faces side by side
    (row i = face i) as one base64 PNG, small enough to travel inside a JSON result."""
    names = [n for n, _ in columns]
    arrays = [np.asarray(a) for _, a in columns]
    strip = np.concatenate([np.concatenate(list(a), axis=0) for a in arrays], axis=1)
    return {"columns": names, "png": base64.b64encode(encode_png(strip, 6)).decode()}


def unpack_examples(examples: dict) -> np.ndarray:
    """pack_examples' dict -> cells uint8 [N, C, H, W, 3] (square images, H = W)."""
    strip = decode_image(base64.b64decode(examples["png"]))             # [N*H, C*W, 3]
    c = len(examples["columns"])
    size = strip.shape[1] // c
    if c < 1 or strip.shape[1] != c * size or strip.shape[0] % size:
        raise ValueError(f"inversion examples: a {list(strip.shape)} strip does not hold "
                         f"{c} columns of square images")
    n = strip.shape[0] // size
    return strip.reshape(n, size, c, size, 3).transpose(0, 2, 1, 3, 4)


def strength_label(t: float) -> str:
    return "0" if t == 0 else f"{t:+g}"
