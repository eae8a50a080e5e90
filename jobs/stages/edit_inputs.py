"""The edit stage's driver side: the boundaries checked against the latents and the generator,
the input rows planned, the truncation mapping z, and the column keep_latent writes
(jobs.stages.edit runs them; each check fails in one sentence naming the option)."""
from __future__ import annotations

from typing import Optional

import pyarrow as pa

from gankit.data import field_shape, id_column_of, latent_dim
from gankit.loading.published import width_problem
from jobs import storage
from jobs.config import ConfigError, require
from jobs.storage import PartSpec, Store


def check_generator(boundaries: list, schema: pa.Schema, G, cfg) -> None:
    """ConfigError unless G can render these latents with these boundaries: a plain
    z -> image model (no W) takes Z boundaries only, and a conditional one needs the
    latents' `class` column for mapping z. G: the model, or its generator_facts; cfg: the
    stage's EditConfig."""
    w_bounds = [n for n, b in boundaries if b.space != "z"]
    require(getattr(G, "has_w", True) or not w_bounds, "boundaries",
            f"has {w_bounds[0] if w_bounds else ''!r}, a W / W+ boundary, but {cfg.model} "
            f"is a plain z -> image generator with no W: use Z boundaries")
    maps_z = any(b.space == "z" for _, b in boundaries) or not {"w", "wp"} & set(schema.names)
    require(not (getattr(G, "c_dim", 0) and maps_z) or "class" in schema.names, "latents",
            f"needs a `class` column to map its z: {cfg.model} is conditional (sample with "
            f"--class)")
    require(getattr(G, "has_w", True) or not cfg.keep_latent, "keep_latent",
            f"writes W / W+ latents, but {cfg.model} is a plain z -> image generator with no W")


def check_widths(boundaries: list, G, model: str) -> None:
    """ConfigError when a boundary (a published direction, say) is not as wide as G's
    Z / W (the actor's check, on the model it loaded)."""
    has_w = getattr(G, "has_w", True)
    for name, b in boundaries:
        problem = width_problem(name, b, G.z_dim, G.w_dim if has_w else None,
                                G.num_ws if has_w else None, model)
        require(problem is None, "boundaries", f"has {problem}")


def kept_latent(cfg, schema: pa.Schema, boundaries: list,
                truncation: tuple) -> Optional[str]:
    """The column keep_latent writes: 'w' when every edited latent is one w repeated over
    the W+ layers, else 'wp'; None when not asked (cfg: the stage's EditConfig)."""
    if not cfg.keep_latent:
        return None
    spaces = {b.space for _, b in boundaries}
    maps_z = "z" in spaces or not {"w", "wp"} & set(schema.names)
    psi, cutoff = truncation
    layered = (cfg.layers is not None and "w" in spaces) or "wp" in spaces
    uneven_mapping = maps_z and cutoff is not None and psi != 1
    return "wp" if "wp" in schema.names or layered or uneven_mapping else "w"


def check_dims(boundaries: list, schema: pa.Schema, url: str) -> None:
    """Fail in the driver, naming the boundary, when it cannot edit these latents."""
    if not {"z", "w", "wp"} & set(schema.names):
        raise ConfigError("latents", f"{url} has no z, w or wp column "
                          f"(columns: {', '.join(schema.names)})")
    z_dim = latent_dim(schema, "z", url) if "z" in schema.names else None
    num_ws = w_dim = None
    if "wp" in schema.names:
        latent_dim(schema, "wp", url)
        num_ws, w_dim = field_shape(schema.field("wp"))
    elif "w" in schema.names:
        w_dim = latent_dim(schema, "w", url)
    for name, b in boundaries:
        if b.space == "z":
            if z_dim is None:
                raise ConfigError("boundaries", f"has {name!r}, a Z boundary, but {url} "
                                  f"has no z column")
            want = z_dim
        elif b.space == "w":
            want = w_dim
        else:
            want = (b.layers[1] - b.layers[0]) * w_dim if w_dim else None
            if num_ws is not None and b.layers[1] > num_ws:
                raise ConfigError("boundaries", f"has {name!r} on W+ layers {b.layers}, but "
                                  f"{url} has {num_ws} layers")
        if want is not None and b.dim != want:
            raise ConfigError("boundaries", f"has {name!r}, a {b.dim}-dim {b.space!r} "
                              f"boundary, but the latents of {url} are {want}-dim there")


def id_column(schema: pa.Schema, url: str) -> str:
    name = id_column_of(schema.names)
    if name is None:
        raise ConfigError("latents", f"{url} has neither a sample_id nor an image_id column")
    return name


def input_plan(src: Store, count: Optional[int]) -> tuple:
    """({index: path}, [PartSpec]) of the input rows to edit: every row, or the first
    `count` in part order; spec.start/stop are input row offsets."""
    parts, plan, start = src.list_parts(), [], 0
    if not parts:
        raise FileNotFoundError(f"no part files at {src.url} (run `gankit sample` first)")
    for k, path in parts.items():
        if count is not None and start >= count:
            break
        n = storage.part_footer(src, path)[1]
        n = n if count is None else min(n, count - start)
        plan.append(PartSpec(k, start, start + n))
        start += n
    return {k: parts[k] for k in (p.index for p in plan)}, plan


def sample_truncation(src: Store, cfg) -> tuple:
    """(psi, cutoff) for mapping z: the config's, else the sample job's manifest, else 1."""
    if cfg.truncation is not None:
        return float(cfg.truncation), cfg.truncation_cutoff
    manifest = storage.read_manifest(src) or {}
    ident = manifest.get("identity", {})
    return float(ident.get("truncation", 1.0)), ident.get("truncation_cutoff")
