"""The invert stage: project real images into a generator's W / W+ by batched optimisation,
a W+ encoder, or both (mode 'optimize' | 'encode' | 'hybrid', gankit.latent.inversion's modes), or
tune a small per-image change of the generator around such a pivot (mode 'pti', gankit.latent.pti).

Input: Parquet files with an image column (struct {bytes, path}, PNG or JPEG) and an id column
(`image_id`, or `sample_id`): a gankit dataset (`part-XXXXX.parquet`) or any directory of
`*.parquet` files (file j = part j). Output part k <- input part k, one row per good image:

    image_id        string (or sample_id int64, as in the input)
    w | wp          fixed_size_list<float32>[w_dim] or [num_ws * w_dim] (shape metadata)
    noise           fixed_size_list<float32>[sum r^2] the optimised noise maps, layer after
                    layer (field metadata `resolutions`), if `save_noise`
    reconstruction  struct<bytes, path> image of G(latent, noise) (PNG, JPEG or WebP at
                    image_size: jobs.options)
    target          struct<bytes, path> the prepared input, if `keep_target` (same format)
    mse, psnr, ssim, perceptual, loss  float32 per image (gankit.latent.inversion's definitions;
                    perceptual is null without a feature net)
    steps           int32 optimisation steps run (fewer with early stop; 0 in 'encode')
    identity_similarity, identity_distance  float32, with `identity_metric` (--identity):
                    the reconstruction against the input (gankit.faces.identity); NaN: no face
    pti_delta       mode 'pti': fixed_size_list<float16> the image's tuned change of G
                    (gankit.latent.pti: field metadata `gankit.pti` = its layers, shapes
                    and rank, `gankit.pti_pivot` = the pivot's mode, space and steps); w | wp holds
                    the pivot, and G(pivot; change) with G's const noise is the
                    reconstruction. Also pti_steps (int32) and pivot_psnr (float32).

The columns `w`/`wp` + the id are what `gankit edit` reads, so "invert then edit" works.
Note: edit renders with G's const noise; the stored `noise` reproduces the reconstruction.

Images: decoded to RGB (grayscale replicated, alpha composited over white: gankit.images), then
center-cropped to a square and area-downsampled / bicubic-upsampled to the generator's
resolution (gankit.images.fit_to_resolution). Undecodable bytes, missing bytes and images
more elongated than `max_aspect` become error records (id, stage='invert', reason); the job
goes on.

Determinism: the images of a part are inverted in batches of exactly `batch_size` input rows
aligned to the part's first row (bad rows left out), and image i's randomness comes from
(seed, global row i): the output is the same whatever the worker count or restarts. The
encoder (modes encode/hybrid) runs on the same aligned batches, so its outputs are too.
`batch_size` is part of the job's identity because batched kernels round differently.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pyarrow as pa

from gankit.data import latent_column
from gankit.images import fit_to_resolution
from gankit.faces.identity import IDENTITY_COLUMNS, identity_scores, load_measure
from gankit.latent.inversion import HYBRID_SCHEDULES, LOSSES, MODES, PIVOTS
from gankit.latent.inversion import InversionConfig as Inversion
from jobs import config, options, runtime, storage
from jobs.config import Joins, option, public_config, require
from jobs.options import ActorOptions, IdentityOptions, ImageOptions, ModelOptions, StorageOptions
from jobs.runtime import PartWorker
from jobs.runtime.cpu_pool import CpuPool, StepWriter, gather
from jobs.stages.rendering import load_models, setup_device
from jobs.storage import PartSpec, Store
from jobs.storage.image_inputs import (ImageInputOptions, ImageInputs, conform, part_tables,
                                       plan_image_inputs, write_bad_file)
from jobs.storage.image_reading import decode_item

log = logging.getLogger("gankit")

METRICS = ("mse", "psnr", "ssim", "perceptual", "loss")
PTI_KEYS = ("pti_pivot", "pti_steps", "pti_lr", "pti_rank", "pti_stop", "pti_locality",
            "pti_radius")


@dataclass
class InvertConfig(ModelOptions, ActorOptions, ImageOptions, StorageOptions,
                   ImageInputOptions, IdentityOptions):
    images: str = option("", "input URL: a directory of Parquet files with an image and an "
                             "id column, a folder of images, a glob or a .txt list of image "
                             "URLs", required=True, identity=True)
    out: str = option("", "output URL: a local path or s3://bucket/prefix", required=True)
    space: str = option(Inversion.space, "w, or wp (W+)", choices=("w", "wp"), identity=True)
    mode: str = option(Inversion.mode, "optimize: from w_avg (the loss: --loss); encode: the "
                                   "encoder's w+ (0 steps, "
                                   "needs --space wp); hybrid: the encoder's w+ refined by "
                                   "--steps steps (in w from its layer mean); pti: a pivot "
                                   "(--pti-pivot) and a per-image change of G tuned on it",
                       choices=MODES)
    encoder: Optional[str] = option(None, "W+ encoder for encode / hybrid: 'toy', a native "
                                          "encoder directory, or a pSp / e4e / ReStyle "
                                          "checkpoint (e4e_ffhq_encode.pt, ...) (default: 'toy' "
                                          "with the toy model; with a checkpoint file as "
                                          "--model, that file: a pSp / e4e / ReStyle file "
                                          "holds both)")
    encoder_iterations: Optional[int] = option(None, "a ReStyle encoder's iterations from the "
                                                     "average image (default: the "
                                                     "checkpoint's n_iters_per_batch)",
                                               metavar="N")
    steps: int = option(Inversion.steps, "optimisation steps per image, NVIDIA's count "
                                         "(hybrid: the refinement steps; encode ignores it)",
                        identity=True)
    feature_net: Optional[str] = option(None, "perceptual features: 'toy', NVIDIA's vgg16.pt, "
                                              "a TorchScript or .pt2 file (default: none, "
                                              "pixel MSE only)", identity=True)
    loss: str = option(Inversion.loss, "mse+perceptual: mse_weight * pixel MSE + "
                                       "perceptual_weight * feature distance from G's w_avg "
                                       "(NVIDIA's schedule plus a pixel term); nvidia: "
                                       "NVIDIA's projector, the feature distance alone (give "
                                       "its vgg16.pt) from the mean of 10,000 mapped z",
                       choices=LOSSES,    # added later: older outputs (this loss) resume
                       identity=Joins(unless="mse+perceptual"))
    mse_weight: float = option(Inversion.mse_weight, "pixel MSE weight (loss mse+perceptual)",
                               identity=True)
    perceptual_weight: float = option(Inversion.perceptual_weight, "feature distance weight",
                                      identity=True)
    optimize_noise: bool = option(Inversion.optimize_noise, "optimise per-image noise maps",
                                  flag="noise", identity=True)
    noise_reg_weight: float = option(Inversion.noise_reg_weight,
                                     "noise autocorrelation penalty (NVIDIA's)", identity=True)
    lr: float = option(Inversion.lr, "Adam's initial learning rate", identity=True)
    hybrid_schedule: str = option(Inversion.hybrid_schedule, "mode hybrid: fast (Adamax at "
                                  "--hybrid-lr, its own ramps), lbfgs (reconstruction first: "
                                  "the latents by L-BFGS per image, the noise as fast) or "
                                  "nvidia (Adam at --lr with NVIDIA's ramps, as optimize); "
                                  "hybrid outputs resume with the one they were written with",
                                  choices=HYBRID_SCHEDULES)
    hybrid_lr: float = option(Inversion.hybrid_lr, "the fast hybrid's peak learning rate "
                                                   "(lbfgs: its noise maps', and the largest "
                                                   "latent change of its first step)")
    early_stop_loss: Optional[float] = option(None, "freeze an image once its loss is below "
                                                    "this", identity=True)
    seed: int = option(Inversion.seed, "the image at row i draws from (seed, i)", identity=True)
    save_noise: bool = option(False, "store the optimised noise maps", identity=True)
    keep_target: bool = option(False, "store the prepared input image beside the result",
                               identity=True)
    max_aspect: float = option(2.0, "more elongated images become error records",
                               identity=True)
    # not StepOptions' batch_size: batched kernels round differently, so the results
    # depend on it (and no micro_batch splits it)
    batch_size: int = option(16, "images optimised together (part of the identity)",
                             identity=True)
    class_index: Optional[int] = option(None, "a conditional generator's class K: every image "
                                              "is inverted with its label, starting at its "
                                              "mean w", flag="class", metavar="K",
                                        identity=Joins("class", unless=None))
    pti_pivot: str = option(Inversion.pti_pivot, "mode pti: the pivot's mode, run with "
                                                 "--space, --steps, --lr ... (PTI: optimize "
                                                 "in w)", choices=PIVOTS)
    pti_steps: int = option(Inversion.pti_steps, "mode pti: tuning steps per image (PTI: 350)")
    pti_lr: float = option(Inversion.pti_lr, "mode pti: Adam's learning rate for the change "
                                             "(PTI: 3e-4)")
    pti_rank: int = option(Inversion.pti_rank, "mode pti: rank of each layer's change "
                                               "(float16 in the row); 0 = full, as PTI")
    pti_stop: float = option(Inversion.pti_stop, "mode pti: stop an image once its feature "
                                                 "distance is at or below this (PTI's LPIPS "
                                                 "0.06; 0 = every step)")
    pti_locality: float = option(Inversion.pti_locality, "mode pti: weight of PTI's locality "
                                                         "regulariser (PTI: 0.1; 0 = off)")
    pti_radius: float = option(Inversion.pti_radius, "mode pti: the regulariser's distance "
                                                     "from the pivot in W")

    def validate(self) -> None:
        require(bool(self.images), "images", "must be the URL of an image dataset")
        require(bool(self.out), "out", "must be an output URL (a local path or s3://...)")
        require(self.pivot_mode() != "encode" or self.space == "wp", "space",
                "must be 'wp' with mode 'encode': the encoder outputs W+ latents (use mode "
                "'hybrid' to start a W optimisation from their layer mean)")
        require(self.pivot_mode() == "optimize" or self.encoder_spec() is not None, "encoder",
                f"must name an encoder (a directory or a pSp / e4e / ReStyle checkpoint) for "
                f"mode {self.pivot_mode()!r} with a model that is not one file")
        require(self.encoder_iterations is None or self.encoder_iterations >= 1,
                "encoder_iterations", f"must be >= 1 (got {self.encoder_iterations})")
        require(self.encoder_iterations is None or self.pivot_mode() != "optimize",
                "encoder_iterations", "applies to modes encode and hybrid (a ReStyle encoder)")
        require(self.steps >= 0, "steps", f"must be >= 0 (got {self.steps})")
        require(self.mse_weight > 0 or bool(self.feature_net), "mse_weight",
                "must be > 0 when no feature_net is given (the loss would be empty)")
        require(self.loss != "nvidia" or bool(self.feature_net), "feature_net",
                "must be given with loss 'nvidia' (NVIDIA's LPIPS vgg16.pt)")
        require(self.lr > 0, "lr", f"must be > 0 (got {self.lr})")
        require(self.hybrid_lr > 0, "hybrid_lr", f"must be > 0 (got {self.hybrid_lr})")
        require(self.max_aspect >= 1, "max_aspect", f"must be >= 1 (got {self.max_aspect})")
        require(self.class_index is None or self.class_index >= 0, "class",
                f"must be a class index >= 0 (got {self.class_index})")
        if self.mode == "pti":
            self.validate_pti()
        options.validate(self)

    def validate_pti(self) -> None:
        require(not self.save_noise, "save_noise", "is not for mode 'pti': its change is "
                "tuned and rendered with G's const noise, so a row needs no noise maps")
        require(self.pti_steps >= 0, "pti_steps", f"must be >= 0 (got {self.pti_steps})")
        require(self.pti_rank >= 0, "pti_rank", f"must be >= 0 (got {self.pti_rank})")
        require(self.pti_lr > 0, "pti_lr", f"must be > 0 (got {self.pti_lr})")
        require(self.pti_stop >= 0, "pti_stop", f"must be >= 0 (got {self.pti_stop})")
        require(self.pti_locality >= 0, "pti_locality",
                f"must be >= 0 (got {self.pti_locality})")

    def identity(self, precision: str) -> dict:
        """The options the results depend on, then those that join by mode."""
        ident = config.identity_of(self)
        if self.mode != "optimize":   # added later: outputs of the optimize mode still resume
            ident.update(mode=self.mode, encoder=self.encoder_spec())
            if self.encoder_iterations is not None:
                ident["encoder_iterations"] = self.encoder_iterations
        ident.update(self.identity_key())
        if self.mode == "pti":
            ident.update({k: getattr(self, k) for k in PTI_KEYS})
        if self.pivot_mode() == "hybrid" and self.hybrid_schedule != "nvidia":
            ident.update(hybrid_schedule=self.hybrid_schedule, hybrid_lr=self.hybrid_lr)
        return dict(ident, **options.identity(self, precision))

    def pivot_mode(self) -> str:
        """The mode that gives the latent: `mode`, or in mode 'pti' its pivot's."""
        return self.pti_pivot if self.mode == "pti" else self.mode

    def encoder_spec(self) -> Optional[str]:
        """The encoder to load (None when the latent is optimised from w_avg)."""
        if self.pivot_mode() == "optimize":
            return None
        if self.encoder or self.model == "toy":
            return self.encoder or "toy"
        return self.model if os.path.isfile(self.model) else None   # e4e_ffhq_encode.pt

    def inversion(self) -> Inversion:
        """gankit.latent.inversion's config: the fields the two share (defaults are Inversion's)."""
        shared = {f.name for f in dataclasses.fields(Inversion)}
        return Inversion(**{k: v for k, v in vars(self).items() if k in shared})


# ----------------------------------------------------------------------------------------
# Per-batch computation (actor)


def prepare_rows(items: list, resolution: int, max_aspect: float) -> tuple:
    """Image structs -> (uint8 [n_good, R, R, 3], good row positions, {row: reason})."""
    good, rows, bad = [], [], {}
    for j, item in enumerate(items):
        img, why = decode_item(item, lambda x: fit_to_resolution(x, resolution, max_aspect))
        if why:
            bad[j] = why
        else:
            good.append(img)
            rows.append(j)
    u8 = np.stack(good) if good else np.zeros((0, resolution, resolution, 3), np.uint8)
    return u8, rows, bad


def load_encoder_for(cfg: InvertConfig, G, device: str):
    """The configured encoder on `device` (None in mode 'optimize'), checked against G (a
    ReStyle encoder renders its iterations with G)."""
    from gankit.loading import zoo
    spec = cfg.encoder_spec()
    if spec is None:
        return None
    return zoo.load_encoder(spec, device=device, generator=G, iterations=cfg.encoder_iterations)


def invert_schema(cfg: InvertConfig, G, id_field: pa.Field) -> pa.Schema:
    from gankit.data import IMAGE_TYPE, wplus_field
    fields = [id_field]
    if cfg.space == "w":
        fields.append(pa.field("w", pa.list_(pa.float32(), G.w_dim)))
    else:
        fields.append(wplus_field("wp", G.num_ws, G.w_dim))
    if cfg.save_noise:
        res = [l.resolution for l in G.synthesis.noise_layers()]
        fields.append(pa.field("noise", pa.list_(pa.float32(), sum(r * r for r in res)),
                               metadata={b"resolutions": json.dumps(res).encode()}))
    fields.append(pa.field("reconstruction", IMAGE_TYPE))
    if cfg.keep_target:
        fields.append(pa.field("target", IMAGE_TYPE))
    fields += [pa.field(m, pa.float32()) for m in METRICS] + [pa.field("steps", pa.int32())]
    if cfg.identity_measure():
        fields += [pa.field(m, pa.float32()) for m in IDENTITY_COLUMNS]
    if cfg.mode == "pti":
        fields += pti_fields(cfg, G)
    meta = {"gankit.job": "invert", "gankit.resolution": str(G.img_resolution),
            "gankit.num_ws": str(G.num_ws), "gankit.space": cfg.space}
    return pa.schema(fields, metadata=meta)


def pti_fields(cfg: InvertConfig, G) -> list:
    """Mode 'pti': the change (its layout and pivot in the field's metadata), the tuning
    steps run and the pivot's own PSNR."""
    from gankit.latent import pti
    pivot = {"mode": cfg.pti_pivot, "space": cfg.space,
             "steps": 0 if cfg.pti_pivot == "encode" else cfg.steps}
    field = pti.delta_field(pti.delta_layout(G, cfg.pti_rank))
    field = field.with_metadata({**field.metadata, pti.PIVOT_KEY: json.dumps(pivot).encode()})
    return [field, pa.field(pti.PTI_STEPS_COLUMN, pa.int32()),
            pa.field(pti.PIVOT_PSNR_COLUMN, pa.float32())]


def invert_class(G, cfg: InvertConfig) -> Optional[int]:
    """The class to invert with (None: G is unconditional); ConfigError when the class does
    not fit G or G has no W to invert into. G: a model or its generator_facts."""
    from jobs.stages.conditioning import class_choices
    require(getattr(G, "has_w", True), "model", f"must have a W to invert into: {cfg.model} "
                                                f"is a plain z -> image generator")
    k = None if cfg.class_index is None else [cfg.class_index]
    choices = class_choices(k, getattr(G, "c_dim", 0), cfg.model)
    return None if choices is None else choices[0]


def with_class(G, cfg: InvertConfig):
    """G bound to the configured class (a conditional G), else G itself."""
    from gankit.models.plain import ClassConditioned
    k = invert_class(G, cfg)
    return G if k is None else ClassConditioned(G, k)


class Inverter(PartWorker):
    """Ray Data callable: loads G (+ encoder) + feature net once, then inverts whole parts."""

    job = "invert"
    batch_field = "batch_size"          # images optimised together

    def __init__(self, cfg: dict, inputs: ImageInputs, device: str, precision: str,
                 cpus: float, out):
        super().__init__(out)
        from gankit.latent.inversion import w_stats
        from gankit.models.perceptual import load_feature_net
        self.cfg = InvertConfig(**cfg)
        self.inputs, self.id_column = inputs, inputs.id_column
        self.src = Store(self.cfg.images, self.cfg.storage, probe=False)
        self.device, self.precision = setup_device(device, precision, cpus)
        G, _ = load_models(self.cfg.model, None, self.device, self.precision)
        self.G = with_class(G, self.cfg)
        self.pool = CpuPool(cpus)
        self.net = load_feature_net(self.cfg.feature_net, self.device) \
            if self.cfg.feature_net else None
        self.E = load_encoder_for(self.cfg, self.G, self.device)
        spec = self.cfg.identity_measure()
        self.identity = load_measure(spec, self.device) if spec else None
        self.w_std = w_stats(self.G, self.cfg.inversion().w_avg_samples,
                             sampled_mean=self.cfg.loss == "nvidia")[1] \
            if self.cfg.pivot_mode() != "encode" else None
        if self.cfg.mode == "pti":
            from gankit.latent.pti import modulated_layers
            modulated_layers(self.G)          # a StyleGAN3 is refused here, in one sentence

    def write_part(self, spec: PartSpec, part: runtime.PartContext) -> None:
        from gankit.data import ID_COLUMNS
        id_type = self.inputs.schema.field(self.id_column).type
        id_field = pa.field(self.id_column, ID_COLUMNS.get(self.id_column, id_type))
        schema = invert_schema(self.cfg, self.G, id_field)
        path = self.inputs.parts.get(spec.index)
        if spec.index in self.inputs.bad:
            write_bad_file(part, self.src, path, schema, self.id_column,
                           "invert", self.inputs.bad[spec.index])
            return
        read = pa.schema([id_field, self.inputs.schema.field(self.cfg.image_column)])
        errors, start = [], spec.start
        tables = part_tables(self.src, self.inputs, spec, self.cfg.image_column, read.names,
                             self.cfg.batch_size)
        with part.writer(schema) as w, StepWriter(w) as steps:
            for table in tables:
                n = table.num_rows
                table = conform(table, read)                            # an int64 image_id
                table, errs = self.invert_batch(table, start, schema, part)  # id: a string
                errors += errs
                start += n
                steps.put(table)
            steps.finish()
            runtime.commit_errors(self.out, spec, errors)
            w.commit({"index": spec.index, "start": spec.start, "stop": spec.stop,
                      "errors": len(errors)})

    def invert_batch(self, table: pa.Table, start: int, schema: pa.Schema,
                     part: runtime.PartContext) -> tuple:
        """Rows [start, start + n) of the job -> (table of good rows, error records); the
        optimisation's steps are noted in the progress of `part` (runtime.PartContext)."""
        import torch

        from gankit.images import from_uint8
        from gankit.latent.inversion import invert
        items = table.column(self.cfg.image_column).to_pylist()
        ids = table.column(self.id_column).to_pylist()
        u8, rows, bad = prepare_rows(items, self.G.img_resolution, self.cfg.max_aspect)
        errors = [{"id": ids[j], "stage": "invert", "reason": r} for j, r in sorted(bad.items())]
        if not rows:
            return schema.empty_table, errors
        x = from_uint8(u8).to(self.device)                              # [n, 3, R, R]
        init = None
        if self.E is not None:
            with torch.no_grad():
                init = self.E(x)                                        # [n, num_ws, w_dim]
        res = invert(self.G, x, self.cfg.inversion(), feature_net=self.net, init_ws=init,
                     indices=[start + j for j in rows], w_std=self.w_std,
                     on_step=lambda step, steps, loss: part.note(
                         f"images {start}-{start + len(x) - 1} step {step}/{steps}, "
                         f"loss {loss:.4f}"))
        return self.rows_table(schema, [ids[j] for j in rows], res, u8), errors

    def stored(self, images) -> list:
        """[n, 3, R, R] in [-1, 1] -> the pool's futures of the encoded images."""
        from gankit.images import downscale, to_uint8
        cfg = self.cfg
        if cfg.image_size:
            images = downscale(images, cfg.image_size)
        return self.pool.encode(to_uint8(images), cfg.image_format, cfg.image_quality)

    def rows_table(self, schema: pa.Schema, ids: list, res, u8: np.ndarray):
        """A function building the batch's table once the pool has encoded its images."""
        from gankit.images import from_uint8
        recon = self.stored(res.reconstruction)
        target = self.stored(from_uint8(u8)) if self.cfg.keep_target else None
        scores = self.identity_scores(u8, res.reconstruction) \
            if self.identity is not None else {}
        return lambda: self.finish_table(schema, ids, res, recon, target, scores)

    def identity_scores(self, u8: np.ndarray, reconstruction) -> dict:
        """{column: [n] float32} of each reconstruction against its input's face."""
        from gankit.images import to_uint8
        where = self.identity.locate(u8)
        reference = self.identity.describe(u8, where)                  # [n, D]
        scores = identity_scores(self.identity, reference, where, to_uint8(reconstruction))
        return dict(zip(IDENTITY_COLUMNS, scores))

    def finish_table(self, schema: pa.Schema, ids: list, res, recon: list,
                     target: Optional[list], scores: dict) -> pa.Table:
        from gankit.data import image_column
        n = len(ids)
        ws = res.ws.cpu().numpy()                                       # [n, num_ws, w_dim]
        cols = {self.id_column: pa.array(ids, type=schema.field(self.id_column).type),
                "reconstruction": image_column(gather(recon)),
                "steps": pa.array(res.steps.numpy().astype(np.int32))}
        cols["w" if self.cfg.space == "w" else "wp"] = latent_column(
            ws[:, 0] if self.cfg.space == "w" else ws.reshape(n, -1))
        if self.cfg.save_noise:
            noise = np.concatenate([x.cpu().numpy().reshape(n, -1) for x in res.noises], 1) \
                if res.noises else np.zeros((n, schema.field("noise").type.list_size), np.float32)
            cols["noise"] = latent_column(noise)
        if target is not None:
            cols["target"] = image_column(gather(target))
        for m in METRICS:
            v = getattr(res, m)
            cols[m] = pa.array(v.cpu().numpy().astype(np.float32)) if v is not None \
                else pa.nulls(n, pa.float32())
        cols.update({m: pa.array(v, pa.float32(), from_pandas=False) for m, v in scores.items()})
        if res.deltas is not None:
            from gankit.latent import pti
            cols.update(pti.row_columns(res))
        return pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema)


# ----------------------------------------------------------------------------------------
# Driver


def run_invert(cfg: InvertConfig) -> dict:
    """Invert every image of `cfg.images` into `cfg.out`; returns the manifest."""
    cfg.validate()
    runtime.check_model("model", cfg.model, "generator")
    runtime.check_model("feature_net", cfg.feature_net, "feature net")
    runtime.check_model("encoder", cfg.encoder_spec(), "encoder")
    if cfg.class_index is not None:           # an out-of-range class fails here, not in actors
        from types import SimpleNamespace

        from jobs.stages.conditioning import generator_facts
        invert_class(SimpleNamespace(**generator_facts(cfg.model)), cfg)
    cfg.check_identity_measure()
    src = storage.open_store(cfg.images, cfg.storage)
    out = storage.open_store(cfg.out, cfg.storage, create=True)
    inputs = plan_image_inputs(src, cfg.image_column, cfg.id_column, cfg.images, keep=[],
                               out=out, images_per_part=cfg.images_per_part,
                               follow_links=cfg.follow_links)
    for k, why in inputs.bad.items():
        log.info(f"[invert] {why}: its rows become error records")
    actors = runtime.actors_for(cfg, len(inputs.plan))
    precision = runtime.job_precision(cfg.precision, actors)
    kwargs = {"cfg": config.config_dict(cfg), "inputs": inputs.for_workers(),
              "device": actors.device, "precision": precision, "cpus": actors.num_cpus}
    identity = dict(cfg.identity(precision), input_rows=inputs.rows,
                    input_parts=len(inputs.plan), **inputs.identity())
    return runtime.run_parts("invert", out, inputs.plan, Inverter, kwargs, identity,
                             public_config(cfg), actors)


__all__ = ["InvertConfig", "Inverter", "run_invert", "invert_schema"]
