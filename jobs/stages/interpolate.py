"""`gankit interpolate` and `gankit style-mix`: the two classic StyleGAN figures.

Both are small driver-side commands (a few dozen images: one model on the local device, no
Ray). Their sources are seeds (seed k is row 0 of a job with seed k: gankit.latent.latents.sample_z,
so `gankit sample --seed k` draws the same z) or rows of an inverted dataset (`--latents URL
--ids a,b`: the `w` or `wp` column of `gankit invert`'s output, found by its id column).

    interpolate  the sources in order, A -> B -> C ...: one grid row per pair, `steps`
                 columns with both ends; slerp in Z (directions, norms lerped), lerp in W/W+.
                 Writes interpolate.png, an optional interpolate.gif / .webp (Pillow) playing
                 every row in turn, and interpolate.json (the latents used).
    style-mix    StyleGAN's figure: the column sources along the top, the row sources down
                 the left, and in cell (i, j) row i's latent with column j's styles on
                 `layers` (NVIDIA's style_mixing.py default: ws 0-6, the coarse styles).
                 Writes style_mix.png and style_mix.json.

Images render with G's const noise, so a figure depends on its latents only. Rows of a PTI
inversion (`gankit invert --mode pti`) render through their tuned changes of G (gankit.latent.pti):
an interpolation lerps the pivots and, exactly, the changes (a rank-2r change between two
rank-r ones); a style-mix cell renders through its row source's change.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from jobs import config
from jobs.config import option, require
from jobs.options import LocalDeviceOptions, ModelOptions, StorageOptions


def id_list(text: str) -> list:
    """'a,b,c' (a flag's word) -> ['a', 'b', 'c']."""
    return [s.strip() for s in str(text).split(",") if s.strip()]


def seed_list(text: str) -> list:
    try:
        return [int(s) for s in id_list(text)]
    except ValueError:
        raise ValueError(f"seeds {text!r} must be integers separated by commas") from None


# A figure is rendered whole in memory (float images, then one grid): more cells than this is
# not a figure one looks at, and at 1024 px it is already about 13 GB of float32 renders.
MAX_FIGURE_CELLS = 1024


def check_cells(cells: int, field: str, shape: str) -> None:
    """Refuse a figure of more than MAX_FIGURE_CELLS images before anything is allocated."""
    require(cells <= MAX_FIGURE_CELLS, field,
            f"would make a figure of {cells:,} images ({shape}); at most "
            f"{MAX_FIGURE_CELLS:,} fit one figure: ask for fewer, or split the sources "
            f"over several figures")


@dataclass
class FigureOptions(ModelOptions, StorageOptions, LocalDeviceOptions):
    """What a figure renders from and where it goes."""
    out: str = option("", "output folder (local path or fsspec URL)", required=True)
    latents: str = option("", "an inverted dataset (gankit invert's output) whose w / wp rows "
                              "the --ids name (default: sources are seeds)")
    truncation_psi: float = option(1.0, "truncation of seeded latents (1 = none)")
    scale: int = option(0, "nearest upscale of each cell (0: up to 128 px a side)")

    def check_figure(self) -> None:
        require(bool(self.out), "out", "must be an output folder")
        require(self.scale >= 0, "scale", f"must be >= 0 (got {self.scale})")
        require(self.truncation_psi == 1 or not self.latents, "truncation_psi",
                "applies to seeds only: inverted latents are used as they are")


@dataclass
class InterpolateConfig(FigureOptions):
    seeds: list = option([], "sources as seeds, in path order: A,B[,C...]", parse=seed_list,
                         one_word=True)
    ids: list = option([], "sources as ids of --latents rows, in path order", parse=id_list,
                       one_word=True)
    space: str = option("w", "interpolation space: z (slerp; seeds only), w or wp (lerp); "
                             "inverted rows keep their own w or wp", choices=("z", "w", "wp"))
    steps: int = option(8, "images per pair, both ends included")
    animation: str = option("gif", "also write every row as one animation", choices=(
        "gif", "webp", "none"))
    frame_ms: int = option(80, "animation: milliseconds per frame")

    def validate(self) -> None:
        self.check_figure()
        sources = self.ids if self.latents else self.seeds
        require(len(sources) >= 2, "ids" if self.latents else "seeds",
                "must name at least two sources (A,B)")
        require(not (self.latents and self.space == "z"), "space",
                "z needs seeds: an inverted dataset has no z")
        require(self.steps >= 2, "steps", f"must be >= 2 (got {self.steps})")
        check_cells((len(sources) - 1) * self.steps, "steps",
                    f"{len(sources) - 1} pair(s) x {self.steps:,} steps")
        require(self.frame_ms >= 10, "frame_ms", f"must be >= 10 (got {self.frame_ms})")


def layer_list(text: str) -> list:
    """'0-6' or '0,1,4' (a flag's word) -> ws indices."""
    out = []
    for part in id_list(text):
        a, _, b = part.partition("-")
        try:
            out += list(range(int(a), int(b) + 1)) if b else [int(a)]
        except ValueError:
            raise ValueError(f"layers {text!r} must be ws indices like 0-6 or 0,1,4") from None
    return out


@dataclass
class StyleMixConfig(FigureOptions):
    row_seeds: list = option([], "row sources as seeds", parse=seed_list, one_word=True)
    col_seeds: list = option([], "column sources as seeds", parse=seed_list, one_word=True)
    row_ids: list = option([], "row sources as ids of --latents rows", parse=id_list,
                           one_word=True)
    col_ids: list = option([], "column sources as ids of --latents rows", parse=id_list,
                           one_word=True)
    layers: list = option(list(range(7)), "ws indices that take the column's styles, e.g. "
                                          "0-6 (coarse: pose, shape) or 8-17 (fine: colour)",
                          parse=layer_list, one_word=True)

    def validate(self) -> None:
        self.check_figure()
        rows, cols = (self.row_ids, self.col_ids) if self.latents else \
            (self.row_seeds, self.col_seeds)
        kind = "ids" if self.latents else "seeds"
        require(len(rows) >= 1, f"row_{kind}", "must name at least one source")
        require(len(cols) >= 1, f"col_{kind}", "must name at least one source")
        require(len(self.layers) >= 1, "layers", "must name at least one ws index")
        check_cells((len(rows) + 1) * (len(cols) + 1), f"row_{kind}",
                    f"{len(rows) + 1} rows x {len(cols) + 1} columns, sources included")


# ----------------------------------------------------------------------------------------
# Sources: seeds or rows of an inverted dataset


def seed_latents(G, seeds: list, space: str, psi: float):
    """z [S, z_dim] of each seed's row 0 in `space` ('z', 'w' [S, w_dim] or 'wp')."""
    from gankit.latent.latents import latents_in_space, sample_z
    z = np.concatenate([sample_z(s, [0], G.z_dim) for s in seeds])          # [S, z_dim]
    return latents_in_space(G, z, space, truncation_psi=psi)


def inverted_latents(url: str, ids: list, storage: Optional[dict]) -> tuple:
    """(latents [S, w_dim] or [S, num_ws, w_dim], 'w' or 'wp', PTI changes or None) of the
    rows named by `ids`, in the order given, from an inverted dataset's id column, w / wp
    column and, in a PTI inversion, its changes of G."""
    from gankit.data import id_column_of, latents_from_column, wplus_from_column
    from gankit.latent import pti
    from jobs import storage as st
    store = st.open_store(url, storage, must_exist=True)
    _, schema, _ = st.dataset_rows(store)
    id_col = id_column_of(schema.names)
    space = next((c for c in ("wp", "w") if c in schema.names), None)
    if id_col is None or space is None:
        raise ValueError(f"latents {url}: needs an id column (image_id or sample_id) and a "
                         f"w or wp column, as gankit invert writes; found {schema.names}")
    tuned = pti.DELTA_COLUMN in schema.names
    found, changes = {}, {}
    for t in st.iter_tables(store, [id_col, space] + ([pti.DELTA_COLUMN] if tuned else [])):
        keys = [str(k) for k in t.column(id_col).to_pylist()]
        col = t.column(space)
        x = wplus_from_column(col, schema.field(space)) if space == "wp" \
            else latents_from_column(col)
        found.update({k: x[i] for i, k in enumerate(keys) if k in ids})
        if tuned:
            flat = pti.flat_from_column(t.column(pti.DELTA_COLUMN))
            changes.update({k: flat[i] for i, k in enumerate(keys) if k in ids})
    missing = [i for i in ids if i not in found]
    if missing:
        raise ValueError(f"latents {url}: no row with {id_col} {', '.join(missing)}")
    deltas = pti.Deltas.from_flat(pti.layout_of(schema.field(pti.DELTA_COLUMN)),
                                  np.stack([changes[i] for i in ids])) if tuned else None
    return np.stack([found[i] for i in ids]), space, deltas


def sources(G, cfg: FigureOptions, seeds: list, ids: list, space: str) -> tuple:
    """(latents, their space, labels, PTI changes or None) of a figure's sources."""
    if cfg.latents:
        x, space, deltas = inverted_latents(cfg.latents, ids, cfg.storage)
        if deltas is not None:
            from gankit.latent.pti import check_layout
            check_layout(deltas.layout, G)
        return x, space, ids, deltas
    x = seed_latents(G, seeds, space, cfg.truncation_psi).cpu().numpy()
    return x, space, [f"seed {s}" for s in seeds], None


# ----------------------------------------------------------------------------------------
# Rendering and writing


def render(G, latents, space: str, deltas=None) -> np.ndarray:
    """Latents in `space` (+ each one's PTI change) -> uint8 images [N, H, W, 3], const
    noise, in chunks of 16."""
    import torch

    from gankit.images import to_uint8
    from gankit.latent import pti
    from gankit.latent.latents import to_ws
    out = []
    for s in range(0, len(latents), 16):
        ws = to_ws(G, latents[s:s + 16], space)                         # [B, num_ws, w_dim]
        d = None if deltas is None else deltas.take(list(range(s, s + len(ws))))
        with torch.no_grad():
            out.append(to_uint8(pti.render(G, ws, d)))
    return np.concatenate(out)


def path_deltas(deltas, steps: int):
    """Sources' PTI changes -> one per cell of the path grid [P * T]: pair i's change at t
    is the exact lerp of its ends' changes (None: no changes)."""
    if deltas is None:
        return None
    from gankit.latent.pti import Deltas
    ends = [deltas.take([i]) for i in range(deltas.batch)]
    return Deltas.cat([ends[i].lerp(ends[i + 1], float(t)) for i in range(len(ends) - 1)
                       for t in np.linspace(0, 1, steps)])


def load(cfg: FigureOptions):
    from gankit.loading import zoo
    from jobs.runtime.cluster import resolve_device
    return zoo.load_generator(cfg.model, device=resolve_device(cfg.device)).eval()


def write_figure(cfg: FigureOptions, name: str, cells: np.ndarray, rows: list, cols: list,
                 doc: dict) -> str:
    """cells [R, C, H, W, 3] -> <out>/<name>.png with row and column labels, and the
    latents used as <out>/<name>.json. Returns the PNG's URL."""
    from gankit.images import encode_png
    from gankit.report import labelled_grid
    from jobs import storage as st
    scale = cfg.scale or max(1, 128 // cells.shape[2])
    grid = labelled_grid(cells, rows, cols, scale=scale)
    out = st.open_store(cfg.out, cfg.storage, create=True)
    out.write_bytes(f"{name}.png", encode_png(grid, compress_level=6))
    out.write_json(f"{name}.json", doc)
    return f"{cfg.out.rstrip('/')}/{name}.png"


def path_frames(cells: np.ndarray) -> np.ndarray:
    """Grid rows [P, T, H, W, 3] -> one walk through every source [P * (T - 1) + 1, H, W, 3]:
    a row's first image is the previous row's last, shown once."""
    return np.concatenate([cells[0]] + [row[1:] for row in cells[1:]])


def animation(frames: np.ndarray, fmt: str, frame_ms: int) -> bytes:
    """uint8 frames [T, H, W, 3] -> an endlessly looping GIF or WebP (Pillow, no other
    dependency)."""
    import io

    from PIL import Image
    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format=fmt.upper(), save_all=True, append_images=images[1:],
                   duration=frame_ms, loop=0, **({"lossless": True} if fmt == "webp" else {}))
    return buf.getvalue()


# ----------------------------------------------------------------------------------------
# The two commands


def run_interpolate(cfg: InterpolateConfig) -> dict:
    """One row per consecutive pair of sources, `steps` images each; returns the JSON doc."""
    from gankit.latent.latents import interpolation_path
    cfg.validate()
    G = load(cfg)
    x, space, labels, deltas = sources(G, cfg, cfg.seeds, cfg.ids, cfg.space)
    paths = np.stack([interpolation_path(x[i], x[i + 1], cfg.steps, space).numpy()
                      for i in range(len(x) - 1)])                     # [P, T, (L,) D]
    images = render(G, paths.reshape(-1, *paths.shape[2:]), space,
                    path_deltas(deltas, cfg.steps))                    # [P*T, H, W, 3]
    cells = images.reshape(len(paths), cfg.steps, *images.shape[1:])   # [P, T, H, W, 3]
    t = np.linspace(0, 1, cfg.steps)
    doc = {"space": space, "method": "slerp" if space == "z" else "lerp",
           "sources": labels, "t": t.tolist(), "latents": x.tolist(),
           "pti": deltas is not None, "config": config.public_config(cfg)}
    rows = [f"{labels[i]} to {labels[i + 1]}" for i in range(len(paths))]
    doc["grid"] = write_figure(cfg, "interpolate", cells, rows, [f"{v:.2f}" for v in t], doc)
    if cfg.animation != "none":
        from jobs import storage as st
        name = f"interpolate.{cfg.animation}"
        st.open_store(cfg.out, cfg.storage, create=True).write_bytes(
            name, animation(path_frames(cells), cfg.animation, cfg.frame_ms))
        doc["animation"] = f"{cfg.out.rstrip('/')}/{name}"
    print(f"wrote {doc['grid']}" + (f" and {doc['animation']}" if "animation" in doc else ""))
    return doc


def run_style_mix(cfg: StyleMixConfig) -> dict:
    """StyleGAN's style-mixing grid: sources on the top row and left column, mixes inside."""
    from gankit.latent.latents import mix_layers, to_ws
    cfg.validate()
    G = load(cfg)
    space = "wp"
    x_r, s_r, rows, d_r = sources(G, cfg, cfg.row_seeds, cfg.row_ids, space)
    x_c, s_c, cols, d_c = sources(G, cfg, cfg.col_seeds, cfg.col_ids, space)
    ws_r = to_ws(G, x_r, s_r).cpu()                                    # [R, num_ws, w_dim]
    ws_c = to_ws(G, x_c, s_c).cpu()                                    # [C, num_ws, w_dim]
    R, C = len(ws_r), len(ws_c)
    mixed = mix_layers(ws_r.repeat_interleave(C, 0), ws_c.repeat(R, 1, 1), cfg.layers)
    top, left = render(G, ws_c.numpy(), "wp", d_c), render(G, ws_r.numpy(), "wp", d_r)
    cell_deltas = None if d_r is None else d_r.take([i for i in range(R) for _ in range(C)])
    images = render(G, mixed.numpy(), "wp", cell_deltas).reshape(R, C, *top.shape[1:])
    header = np.concatenate([np.full_like(top[:1], 255), top])[None]         # [1, C+1, ...]
    body = np.concatenate([left[:, None], images], axis=1)                   # [R, C+1, ...]
    cells = np.concatenate([header, body])                                   # [R+1, C+1, ...]
    doc = {"layers": cfg.layers, "rows": rows, "columns": cols,
           "row_ws": ws_r.tolist(), "col_ws": ws_c.tolist(),
           "config": config.public_config(cfg)}
    doc["grid"] = write_figure(cfg, "style_mix", cells, [""] + rows, [""] + cols, doc)
    print(f"wrote {doc['grid']}")
    return doc
