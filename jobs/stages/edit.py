"""The edit stage: move sampled latents along boundaries, render, and rescore.

Input: a dataset with an id column (`sample_id`, or `image_id` for real images) and latents
`z` and/or `w` / `wp` (a sample job's output; an inversion's W / W+ output works the same
way, without Z boundaries), and boundaries (names from a fit output's boundaries.json, or .npz
paths/URLs). Output part k <- the first rows of input part k (all of them unless `count` stops
earlier); one row per (sample, boundary, strength), sample-major, in the order given:

    sample_id  int64 (or image_id string, as in the input)
    boundary   string   the boundary's name ('w/smile', 'w/smile__cond_age', or the path)
    strength   float32  signed distance moved (mode 'shift') or reached ('to_distance')
    image      struct<bytes: binary, path: string>  the edited latent's image (PNG, JPEG or
                                                     WebP at image_size: jobs.options)
    logit_<a>  float32  classifier logits of the edited image (rescoring), if a classifier
    original   struct<bytes: binary, path: string>  the unedited latent's (keep_original)
    input      struct<bytes: binary, path: string>  the inverted image (keep_input: the
                                                     latents' `target` column)
    identity_similarity, identity_distance  float32 (identity_metric, --identity): the
               edit's face against the reconstruction's, by dlib's descriptor at the
               input's landmarks (NaN where the input shows no face) or ArcFace
               (gankit.faces.identity)
    w | wp     fixed_size_list<float32>  the edited latent (keep_latent, --keep-latent): `w`
               [w_dim] when every edit is one w per row (W or Z latents, Z / W boundaries,
               no `layers`, no truncation cutoff), else `wp` (W+ flattened, its shape in the
               field's metadata, as the sample job writes it)

Latents: a 'z' boundary edits z, which is then mapped with the sample job's truncation; 'w'
and 'wp' boundaries edit the sample's W+ codes (built from its w or wp column, or from z
through the mapping), 'w' ones on `layers` only when given (gankit.latent.editing's semantics).
Published directions (`gankit directions import`) are boundaries too: the strength of an
InterFaceGAN / e4e direction is e4e's factor, of a GANSpace component its std units.
Invert then edit: an inversion's output (`gankit invert --save-noise --keep-target`) is a
latents dataset like any other. Its optimised noise maps are used for every edit of that
image (`stored_noise`), so strength 0 reproduces the stored reconstruction, and `keep_input`
puts the real image beside each edit.

A PTI inversion (`gankit invert --mode pti`) holds each image's tuned change of G
(`pti_delta`, gankit.latent.pti): every edit of that image renders through its own change, the
edit moving its pivot (w | wp) as for any other row; strength 0 is its reconstruction.

Conditional generators: a latents dataset with a `class` column (a sample job's with
`--class`) maps its z, original and edited, with each row's class, so a Z boundary, plain
or conditional, edits within the class. A plain z -> image generator (no W) takes Z
boundaries only.

Synthesis uses noise_mode='const' (or the stored noise) and micro-batches of exactly
`micro_batch` edits aligned to the part's first edit, so the output is deterministic like
the sample job's. Encoding and writing run on `cpus_per_worker` threads beside the model.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace
from typing import Optional

import numpy as np
import pyarrow as pa
import torch

from gankit.data import image_column, latent_column, latents_from_column, noise_from_column
from gankit.faces.identity import load_measure
from gankit.latent import pti
from gankit.latent.editing import MODES, edit
from gankit.latent.latents import to_ws
from jobs import config, options, runtime, storage
from jobs.config import Joins, layer_span, option, override, public_config, require
from jobs.options import (ActorOptions, BatchOptions, ClassifierOptions, IdentityOptions,
                          ImageOptions, ModelOptions, StorageOptions, TruncationOptions)
from jobs.runtime import PartWorker
from jobs.runtime.cpu_pool import CpuPool, StepWriter, gather
from jobs.stages.conditioning import generator_facts, needs_facts, one_hot_rows
from jobs.stages.edit_inputs import (check_dims, check_generator, check_widths, id_column,
                                     input_plan, kept_latent, sample_truncation)
from jobs.stages.edit_rows import edit_identity, edit_schema, reference_faces
from jobs.stages.rendering import load_models, render_and_label, setup_device
from jobs.storage import PartSpec, Store
from jobs.storage.boundary_index import fingerprint, resolve_boundaries


@dataclass
class EditOptions:
    """Which edits: the boundaries, the strengths along each, how they move a latent."""
    boundaries: list = option([], "names in the index (w/smile) or .npz paths / URLs "
                                  "(a config file may leave it empty: every indexed one)",
                              required=True)
    index: Optional[str] = option(None, "fit output URL holding boundaries.json (for names)")
    strengths: list[float] = option([-3.0, 0.0, 3.0], "edit strengths, for every boundary",
                                    identity=True)
    mode: str = option("shift", "shift: move by t; to_distance: move to signed distance t",
                       choices=MODES, identity=True)
    layers: Optional[list] = option(None, "W+ layers [start, stop) a w boundary edits "
                                          "(default: all)", parse=layer_span, one_word=True,
                                    metavar="START-STOP", identity=True)


@dataclass
class EditConfig(EditOptions, ModelOptions, TruncationOptions, BatchOptions, ActorOptions,
                 ImageOptions, ClassifierOptions, StorageOptions, IdentityOptions):
    latents: str = option("", "latents dataset URL: an id column and z and/or w | wp "
                              "(a sample or invert output)", required=True, identity=True)
    out: str = option("", "output URL: a local path or s3://bucket/prefix", required=True)
    count: Optional[int] = option(None, "edit the first N input rows only", identity=True)
    keep_original: bool = option(False, "add the unedited image as column `original`",
                                 identity=True)
    # added later, so it joins the identity only when on: older outputs still resume
    keep_input: bool = option(False, "add the inverted image (the latents' `target` column) "
                                     "as column `input`", identity=Joins(unless=False))
    keep_latent: bool = option(False, "add each edited latent beside its image: column `w` "
                                      "when every edit is one w per row, else `wp` (W+)")
    stored_noise: bool = option(True, "render with the latents' `noise` maps where they hold "
                                      "them (--no-stored-noise: G's const noise)")
    classifier: Optional[str] = option("toy", "rescoring classifier ('' = none: no logit "
                                              "columns)", parse=lambda text: text or None,
                                       identity=True)
    # the identity holds the (psi, cutoff) the edits map z with, the sample job's by default
    truncation: Optional[float] = override(TruncationOptions, "truncation", None,
                                           help="psi for mapping edited z (default: the "
                                                "sample job's)", identity=False)
    truncation_cutoff: Optional[int] = override(TruncationOptions, "truncation_cutoff", None,
                                                help="with --truncation: the W+ layers "
                                                     "truncated", identity=False)

    def validate(self) -> None:
        require(bool(self.latents), "latents", "must be the URL of a sample dataset")
        require(bool(self.out), "out", "must be an output URL (a local path or s3://...)")
        require(bool(self.boundaries) or bool(self.index), "boundaries",
                "must name boundaries, or `index` must point at a fit output")
        require(len(self.strengths) > 0 and all(isinstance(t, (int, float)) and
                np.isfinite(t) for t in self.strengths), "strengths",
                f"must be a non-empty list of finite numbers (got {self.strengths!r})")
        require(self.layers is None or (len(self.layers) == 2 and
                0 <= self.layers[0] < self.layers[1]), "layers",
                f"must be [start, stop] with 0 <= start < stop (got {self.layers!r})")
        require(self.count is None or self.count >= 1, "count", f"must be >= 1 (got {self.count})")
        options.validate(self)

    def identity(self, precision: str, boundaries: list, truncation: tuple,
                 noise_stored: bool, latent: Optional[str]) -> dict:
        """What the edits depend on: a rerun must match it to resume. boundaries: the
        resolved [(name, Boundary)]; truncation: (psi, cutoff) as mapped; noise_stored: the
        latents hold `noise` maps; latent: the column keep_latent writes."""
        identity = dict(config.identity_of(self), boundaries=[n for n, _ in boundaries],
                        geometry=fingerprint(boundaries), truncation=list(truncation))
        if self.stored_noise and noise_stored:     # added later: joins only when on
            identity["stored_noise"] = True
        identity.update(self.identity_key())
        if latent:
            identity["keep_latent"] = latent
        identity.update(options.identity(self, precision))
        return identity


# ----------------------------------------------------------------------------------------
# Actor


class Editor(PartWorker):
    """Ray Data callable: loads G (+ classifier) once, then edits whole parts."""

    job = "edit"

    def __init__(self, cfg: dict, boundaries: list, inputs: dict, truncation: tuple,
                 id_name: str, device: str, precision: str, cpus: float, out,
                 latent: Optional[str] = None):
        super().__init__(out)
        self.cfg = EditConfig(**cfg)
        self.boundaries = boundaries                                  # [(name, Boundary)]
        self.inputs = {int(k): v for k, v in inputs.items()}
        self.psi, self.cutoff = truncation
        self.src = Store(self.cfg.latents, self.cfg.storage, probe=False)
        self.device, self.precision = setup_device(device, precision, cpus)
        self.G, self.C = load_models(self.cfg.model, self.cfg.classifier, self.device,
                                     self.precision, self.cfg.classifier_input)
        check_widths(boundaries, self.G, self.cfg.model)
        self.pool = CpuPool(cpus)
        self.names = list(self.C.attribute_names) if self.C is not None else []
        self.id_name = id_name
        self.c_dim = int(getattr(self.G, "c_dim", 0) or 0)
        spec = self.cfg.identity_measure()
        self.identity = load_measure(spec, self.device) if spec else None
        self.latent = latent                                          # 'w', 'wp' or None
        self.schema = edit_schema(self.names, self.cfg.keep_original, id_name,
                                  self.cfg.keep_input, self.identity is not None,
                                  latent and (latent, self.G.num_ws, self.G.w_dim))

    def read_rows(self, spec: PartSpec) -> tuple:
        """(ids [n], z [n, z_dim] or None, base ws [n, num_ws, w_dim], extras) of part
        `spec`; extras: 'noise' [n, sum r^2] and 'input' (PNG structs) where used."""
        pf = storage.open_parquet(self.src, self.inputs[spec.index])
        wanted = [self.id_name, "z", "w", "wp", "class" if self.c_dim else None,
                  "noise" if self.cfg.stored_noise else None,
                  "target" if self.cfg.keep_input or self.identity else None,
                  "reconstruction" if self.identity else None, "pti_delta"]
        cols = [c for c in wanted if c and c in pf.schema_arrow.names]
        t = pf.read(columns=cols).slice(0, spec.rows)
        pf.close()
        check_generator(self.boundaries, t.schema, self.G, self.cfg)
        extras = {}
        if "class" in cols:
            extras["class"] = t.column("class").to_numpy(zero_copy_only=False)
        if "noise" in cols:
            self.noise_field = t.schema.field("noise")
            extras["noise"] = latents_from_column(t.column("noise"))
        if "pti_delta" in cols:
            extras["pti"] = self.pti_rows(t)
        if self.cfg.keep_input:
            extras["input"] = t.column("target").combine_chunks()
        for name in ("reconstruction", "target"):
            if self.identity and name in cols:
                extras[name] = t.column(name).combine_chunks()
        ids = t.column(self.id_name).to_numpy(zero_copy_only=False)
        z = latents_from_column(t.column("z")) if "z" in cols else None
        if "wp" in cols:
            ws = latents_from_column(t.column("wp")).reshape(len(ids), self.G.num_ws, -1)
            ws = torch.from_numpy(ws.copy())
        elif "w" in cols:
            ws = to_ws(self.G, latents_from_column(t.column("w")).copy(), "w").cpu()
        else:
            ws = self.map_z(torch.from_numpy(z.copy()), extras.get("class")).cpu()
        return ids, z, ws, extras

    def pti_rows(self, t: pa.Table) -> np.ndarray:
        """float16 [n, size]: each row's tuned change of G (its layout checked against G)."""
        self.pti_layout = pti.layout_of(t.schema.field(pti.DELTA_COLUMN))
        pti.check_layout(self.pti_layout, self.G)
        col = t.column(pti.DELTA_COLUMN).combine_chunks()
        if not col.null_count:
            return pti.flat_from_column(col)
        size = col.type.list_size          # a null row: NaN, an error record (drop_nonfinite)
        flat = col.values.slice(col.offset * size, len(col) * size).to_numpy(
            zero_copy_only=False).astype(np.float16).reshape(len(col), size)
        flat[col.is_null().to_numpy(zero_copy_only=False)] = np.nan
        return flat

    def map_z(self, z, labels=None):
        """z [n, z_dim] (+ classes [n]) -> ws, in micro-batches of exactly micro_batch."""
        m, out = self.cfg.micro_batch, []
        with torch.no_grad():
            for s in range(0, len(z), m):
                zb = runtime.pad_rows(z[s:s + m], m).to(self.device)
                cb = None if labels is None else one_hot_rows(
                    runtime.pad_rows(labels[s:s + m], m), self.c_dim, self.device)
                ws = self.G.mapping(zb, cb, truncation_psi=self.psi,
                                    truncation_cutoff=self.cutoff)
                out.append(ws[:len(z[s:s + m])])
        return torch.cat(out)

    def edited_ws(self, z, ws, rows, bidx, strengths, labels=None):
        """ws [k, num_ws, w_dim] of edits (row, boundary, strength) given as index arrays."""
        out = torch.empty((len(rows), *ws.shape[1:]), dtype=torch.float32)
        for bi in np.unique(bidx):
            sel = np.nonzero(bidx == bi)[0]
            b, t = self.boundaries[bi][1], strengths[sel]
            if b.space == "z":
                ze = edit(torch.from_numpy(z[rows[sel]].copy()), b, t, self.cfg.mode)
                out[sel] = self.map_z(ze, None if labels is None else labels[rows[sel]]).cpu()
            else:
                layers = tuple(self.cfg.layers) if self.cfg.layers and b.space == "w" else None
                out[sel] = edit(ws[rows[sel]], b, t, self.cfg.mode, layers)
        return out

    def drop_nonfinite(self, spec: PartSpec, ids, z, ws, extras) -> tuple:
        """Rows whose latents or PTI change hold NaN or inf become error records; the rest
        go on."""
        good = np.isfinite(ws.reshape(len(ids), -1).numpy()).all(axis=1)
        if z is not None:
            good &= np.isfinite(z).all(axis=1)
        tuned = extras.get("pti")                        # [n, size] float16 or None
        fine = np.isfinite(tuned).all(axis=1) if tuned is not None else np.ones_like(good)
        errors = [(str(i), "edit", "latent contains NaN or inf" if not g else
                   "its PTI change (pti_delta) is null or holds NaN or inf")
                  for i, g in zip(ids[~(good & fine)], good[~(good & fine)])]
        good &= fine
        runtime.commit_errors(self.out, spec, errors)
        keep = np.nonzero(good)[0]
        extras = {k: (v.take(pa.array(keep)) if isinstance(v, pa.Array) else v[keep])
                  for k, v in extras.items()}
        return ids[keep], (z[keep] if z is not None else None), ws[keep], extras, len(errors)

    def write_part(self, spec: PartSpec, part: runtime.PartContext) -> None:
        if spec.rows == 0:         # an input part with no rows (an align part whose photos
            part.commit_empty(self.schema)                                   # had no face)
            return
        ids, z, ws, extras, n_errors = self.drop_nonfinite(spec, *self.read_rows(spec))
        noise = extras.get("noise")                      # [n, sum r^2] or None
        tuned = extras.get("pti")                        # [n, size] float16 or None
        nb, ns, m = len(self.boundaries), len(self.cfg.strengths), self.cfg.micro_batch
        total = len(ids) * nb * ns                       # edits, sample-major
        step = max(1, -(-self.cfg.batch_size // m)) * m
        originals = self.render(ws, noise, tuned)[0] if self.cfg.keep_original else None
        strengths = np.asarray(self.cfg.strengths, dtype=np.float64)
        if self.identity is not None:
            extras["faces"] = reference_faces(self.identity, extras)
        with part.writer(self.schema) as w, StepWriter(w) as steps:
            for s in range(0, total, step):
                j = np.arange(s, min(s + step, total))   # edit index -> (row, boundary, t)
                rows, bidx, tidx = j // (nb * ns), (j // ns) % nb, j % ns
                e_ws = self.edited_ws(z, ws, rows, bidx, strengths[tidx], extras.get("class"))
                images, logits = self.render(e_ws, None if noise is None else noise[rows],
                                             None if tuned is None else tuned[rows])
                steps.put(partial(self.table, ids, rows, bidx, strengths[tidx], images,
                                  logits, originals, extras, self.kept(e_ws)))
            steps.finish()
            w.commit({"index": spec.index, "start": spec.start, "stop": spec.stop,
                      "errors": n_errors})

    def kept(self, e_ws) -> Optional[pa.Array]:
        """The edited latents as the keep_latent column (w: layer 0 of ws that are one w)."""
        if self.latent is None:
            return None
        if self.latent == "wp":
            return latent_column(e_ws.reshape(len(e_ws), -1).numpy())
        assert torch.equal(e_ws, e_ws[:, :1].expand_as(e_ws)), "edited W+ layers differ"
        return latent_column(e_ws[:, 0].numpy())

    def table(self, ids, rows, bidx, strengths, images: list, logits, originals,
              extras: dict, latents: Optional[pa.Array] = None) -> pa.Table:
        """One step's edits as rows; images and originals are the pool's futures."""
        cols = {self.id_name: pa.array(ids[rows]),
                "boundary": pa.array([self.boundaries[b][0] for b in bidx]),
                "strength": pa.array(strengths.astype(np.float32)),
                "image": image_column(gather(images))}
        for a, name in enumerate(self.names):
            cols[f"logit_{name}"] = pa.array(logits[:, a])
        if originals is not None:
            kept = gather(originals)
            cols["original"] = image_column([kept[r] for r in rows])
        if "input" in extras:
            cols["input"] = extras["input"].take(pa.array(rows))
        if "faces" in extras:
            cols.update(edit_identity(self.identity, extras["faces"], rows, cols["image"]))
        if latents is not None:
            cols[self.latent] = latents
        return pa.Table.from_arrays([cols[f.name] for f in self.schema], schema=self.schema)

    def fits(self, m: int) -> bool:
        """One render (+ rescoring) of m edits runs on the device."""
        ws = torch.zeros([m, self.G.num_ws, self.G.w_dim], device=self.device)
        render_and_label(self.G, self.C, ws, precision=self.precision)
        return True

    def render(self, ws, noise: Optional[np.ndarray] = None,
               tuned: Optional[np.ndarray] = None) -> tuple:
        """ws [k, num_ws, w_dim] (+ stored noise [k, sum r^2], + PTI changes [k, size]) ->
        (futures of the k encoded images, logits [k, A] float32 or None), in micro-batches
        of exactly micro_batch."""
        cfg, m, images, logits = self.cfg, self.cfg.micro_batch, [], []
        with torch.no_grad():
            for s in range(0, len(ws), m):
                n = len(ws[s:s + m])
                u8, l = render_and_label(self.G, self.C,
                                         runtime.pad_rows(ws[s:s + m], m).to(self.device),
                                         cfg.image_size, self.noise_maps(noise, s, m),
                                         self.precision, self.deltas(tuned, s, m))
                images += self.pool.encode(u8[:n], cfg.image_format, cfg.image_quality)
                if l is not None:
                    logits.append(l[:n])
        return images, (np.concatenate(logits).astype(np.float32) if logits else None)

    def deltas(self, tuned: Optional[np.ndarray], s: int, m: int) -> Optional[dict]:
        """Rows [s, s + m) of PTI changes as the synthesis network's `deltas` (padded)."""
        if tuned is None:
            return None
        flat = runtime.pad_rows(tuned[s:s + m], m)                        # [m, size]
        return pti.Deltas.from_flat(self.pti_layout, flat, self.device).layers

    def noise_maps(self, noise: Optional[np.ndarray], s: int, m: int) -> Optional[list]:
        """Rows [s, s + m) of stored noise as per-layer [m, 1, r, r] tensors (padded)."""
        if noise is None:
            return None
        flat = runtime.pad_rows(noise[s:s + m], m)                        # [m, sum r^2]
        return [torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
                for x in noise_from_column(flat, self.noise_field)]


# ----------------------------------------------------------------------------------------
# Driver


def run_edit(cfg: EditConfig) -> dict:
    """Edit the latents of `cfg.latents` along each boundary at each strength into `cfg.out`;
    returns the manifest."""
    cfg.validate()
    runtime.check_model("model", cfg.model, "generator")
    runtime.check_model("classifier", cfg.classifier, "classifier")
    src = storage.open_store(cfg.latents, cfg.storage, must_exist=True)
    out = storage.open_store(cfg.out, cfg.storage, create=True)
    boundaries = resolve_boundaries(cfg.boundaries, cfg.index, cfg.storage)
    require(len(boundaries) > 0, "boundaries", f"is empty and the index at {cfg.index} has none")
    inputs, plan = input_plan(src, cfg.count)
    schema = storage.part_footer(src, next(iter(inputs.values())))[0]
    check_dims(boundaries, schema, cfg.latents)
    if needs_facts(cfg.model, None):        # a program: check here, not in every actor
        check_generator(boundaries, schema, SimpleNamespace(**generator_facts(cfg.model)), cfg)
    id_name = id_column(schema, cfg.latents)
    require(not cfg.keep_input or "target" in schema.names, "keep_input",
            f"needs a `target` image column in {cfg.latents} (gankit invert --keep-target)")
    require(not cfg.identity_measure() or "reconstruction" in schema.names, "identity_metric",
            f"needs the `reconstruction` column of an invert output in {cfg.latents}")
    cfg.check_identity_measure()
    truncation = sample_truncation(src, cfg)
    actors = runtime.actors_for(cfg, len(plan))
    precision = runtime.job_precision(cfg.precision, actors)
    latent = kept_latent(cfg, schema, boundaries, truncation)
    kwargs = {"cfg": config.config_dict(cfg), "boundaries": boundaries,
              "inputs": {str(k): v for k, v in inputs.items()}, "truncation": truncation,
              "id_name": id_name, "device": actors.device, "precision": precision,
              "cpus": actors.num_cpus,
              "latent": latent}
    identity = cfg.identity(precision, boundaries, truncation,
                            "noise" in schema.names, latent)
    return runtime.run_parts("edit", out, plan, Editor, kwargs, identity, public_config(cfg),
                             actors)
