"""Option groups the stage configs share, each option declared once (jobs.config.option).

A stage's config inherits the groups it uses; the flags, the YAML keys and the checks of
enumerated values come from jobs.config, the rules between fields from `validate` here, and
what joins a job's identity from the options marked `identity=True` (jobs.config.identity_of)
and, for the groups here, from `identity`:

    @dataclass
    class SampleConfig(SampleOptions, ActorOptions, ImageOptions, ClassifierOptions,
                       StorageOptions):
        ...

A stage whose default differs from the group's says so in one place:
`micro_batch: int = override(MicroBatchOptions, "micro_batch", 64)`.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Optional, Union

from gankit.images import IMAGE_FORMATS
from gankit.precision import PRECISIONS
from jobs.config import check_choices, option, require
from jobs.runtime.cluster import RUNNERS

DEVICES = ("auto", "cuda", "cpu")

MODEL_HELP = ("generator: 'toy' (the bundled toy model), a checkpoint (NVIDIA's StyleGAN2-ADA "
              "/ StyleGAN3 .pkl, a rosinality or pSp / e4e / ReStyle .pt, a gankit native "
              "directory: config.json + model.safetensors), package.module:factory (a Python "
              "entry point) or script:PATH (a z -> image TorchScript / .pt2 program)")


@dataclass
class ModelOptions:
    """The generator a job loads."""
    model: str = option("toy", MODEL_HELP, identity=True)


@dataclass
class TruncationOptions:
    """The truncation trick on the latents a job maps from z: w_avg + psi (w - w_avg)."""
    truncation: float = option(1.0, "truncation psi (1 = none)", identity=True)
    truncation_cutoff: Optional[int] = option(None, "truncate only the first N W+ layers "
                                                    "(default: all)", identity=True)


@dataclass
class StepOptions:
    """How many rows an actor takes per step."""
    batch_size: int = option(256, "rows per actor step and Parquet row group (a memory knob: "
                                  "outputs do not depend on it)")


@dataclass
class MicroBatchOptions:
    """How many rows one model call takes."""
    micro_batch: int = option(16, "rows per model call: outputs depend on it (kernels pick "
                                  "their algorithm by batch shape), so it is part of the "
                                  "job's identity", identity=True)


@dataclass
class BatchOptions(MicroBatchOptions, StepOptions):
    """Model calls and actor steps of a job that runs a model row by row."""


@dataclass
class LocalDeviceOptions:
    """Where a driver-side command (no actors) runs its models."""
    device: str = option("auto", "auto (cuda when this machine has a GPU), cuda or cpu",
                         choices=DEVICES)


@dataclass
class ActorOptions:
    """Where and how the actors of a part job run their models."""
    workers: int = option(0, "actors; 0 = one per GPU, or CPUs - 1 on a CPU cluster")
    cpus_per_worker: int = option(0, "CPUs per actor: the threads that decode, encode and "
                                     "write beside the model (and a CPU actor's torch "
                                     "threads); 0 = a GPU actor takes its node's CPUs per "
                                     "GPU less one, a CPU actor one")
    device: str = option("auto", "auto (GPU actors when the cluster has GPUs), cuda or cpu",
                         choices=DEVICES)
    precision: str = option("auto", "model precision: auto (fp16 on a GPU, fp32 on a CPU), "
                                    "fp32 (bit-exact), tf32, bf16, fp16 (the generator's "
                                    "top blocks in half precision, NVIDIA's semantics)",
                            choices=PRECISIONS)
    part_attempts: int = option(3, "times a part may be started in one run: a part whose "
                                   "worker dies every time (a crashing native library, a "
                                   "poison row) then stops the job, naming it; starts on a "
                                   "node the cluster has lost do not count")
    runner: str = option("auto", "where the parts run: ray (an actor pool on the Ray "
                                 "cluster), local (one worker in this process: the same "
                                 "parts, commits and outputs, no Ray), auto (local when no "
                                 "cluster address is set and one worker is all the job "
                                 "would get here, else ray)", choices=RUNNERS)


@dataclass
class ImageCodecOptions:
    """How a job encodes the images it stores."""
    image_format: str = option("png", "stored image format (png is lossless)",
                               choices=IMAGE_FORMATS)
    image_quality: int = option(95, "JPEG / WebP quality, 1-100 (png ignores it)")


@dataclass
class ImageOptions(ImageCodecOptions):
    """How a job stores the images it renders."""
    image_size: Optional[int] = option(None, "store an antialiased downscale to this many "
                                             "pixels a side (default: the generator's size)")


@dataclass
class StorageOptions:
    """How a job reaches its object store."""
    storage: dict = option({}, "fsspec options as JSON for every URL of the job, e.g. "
                               "'{\"endpoint_url\": \"http://...\"}'", parse=json.loads)


@dataclass
class ClassifierOptions:
    """How a job feeds its attribute classifier."""
    classifier_input: Optional[dict] = option(
        None, "the classifier's input as JSON, overriding its sidecar: {input_size, mean, std}",
        parse=json.loads)


@dataclass
class IdentityOptions:
    """Identity columns of an inversion, or of the edits of one (gankit.faces.identity)."""
    identity_metric: Union[bool, str, None] = option(
        None, "add identity_similarity / identity_distance: 'dlib' (a bare --identity: "
              "dlib's face descriptors, pip install 'gankit[faces]') or 'arcface:PATH' "
              "(ArcFace IR-SE50 weights in the model_ir_se50.pth layout, the papers' "
              "measure); invert scores each reconstruction against its input, edit each "
              "edit against its row's reconstruction", flag="identity", const="dlib",
        metavar="dlib|arcface:PATH")

    def identity_measure(self) -> Optional[str]:
        """'dlib', 'arcface:PATH' or None (no identity columns)."""
        from gankit.faces.identity import measure_spec
        return measure_spec(self.identity_metric)

    def check_identity_measure(self) -> None:
        """Fail in the driver, in one sentence, when the measure cannot load anywhere."""
        spec = self.identity_measure()
        if spec == "dlib":
            from gankit.faces.alignment import check_installed
            check_installed()
        elif spec is not None:
            import os
            path = spec.split(":", 1)[1]
            if not os.path.isfile(path):
                raise FileNotFoundError(f"identity_metric: {path}: no such ArcFace weights "
                                        f"file (IR-SE50, the model_ir_se50.pth layout)")

    def identity_key(self) -> dict:
        """What the measure adds to a job's identity (dlib: True, as older outputs say)."""
        spec = self.identity_measure()
        return {} if spec is None else {"identity_metric": True if spec == "dlib" else spec}


def values(source, *groups) -> dict:
    """{field: value} of the groups' options, read from a config."""
    return {f.name: getattr(source, f.name) for group in groups
            for f in dataclasses.fields(group)}


def validate(cfg) -> None:
    """Check the shared options `cfg` has, its batch sizes and every enumerated field of
    it; a bad one raises ConfigError naming the field."""
    from jobs.config import ConfigError
    check_choices(cfg)
    for name in ("micro_batch", "batch_size"):
        if hasattr(cfg, name):
            require(getattr(cfg, name) >= 1, name, f"must be >= 1 (got {getattr(cfg, name)})")
    if isinstance(cfg, ActorOptions):
        require(cfg.workers >= 0, "workers", f"must be >= 0 (got {cfg.workers})")
        require(cfg.cpus_per_worker >= 0, "cpus_per_worker",
                f"must be >= 0 (got {cfg.cpus_per_worker})")
        require(cfg.part_attempts >= 1, "part_attempts",
                f"must be >= 1 (got {cfg.part_attempts})")
    if isinstance(cfg, ModelOptions):
        require(cfg.model is None or bool(cfg.model), "model",
                "must name a generator ('toy' or a path)")
    if isinstance(cfg, TruncationOptions):
        require(cfg.truncation is None or math.isfinite(cfg.truncation), "truncation",
                "must be a finite number")
        require(cfg.truncation_cutoff is None or cfg.truncation_cutoff >= 1,
                "truncation_cutoff", f"must be >= 1 or null (got {cfg.truncation_cutoff})")
    if isinstance(cfg, ImageCodecOptions):
        require(1 <= cfg.image_quality <= 100, "image_quality",
                f"must be in 1..100 (got {cfg.image_quality})")
    if isinstance(cfg, ImageOptions):
        require(cfg.image_size is None or cfg.image_size >= 1, "image_size",
                f"must be >= 1 or null (got {cfg.image_size})")
    if isinstance(cfg, IdentityOptions):
        try:
            cfg.identity_measure()
        except ValueError as e:
            raise ConfigError("identity_metric", f"is not usable: {e}") from None
    if isinstance(cfg, ClassifierOptions) and cfg.classifier_input is not None:
        from gankit.loading.classifier_input import validate_input_spec
        try:
            validate_input_spec(cfg.classifier_input, "classifier_input")
        except ValueError as e:
            raise ConfigError("classifier_input", f"is not usable: {e}") from None


def identity(cfg, precision: str, images: bool = True) -> dict:
    """What the shared options add to a job's identity. They were added after the first
    outputs were written, so each joins only when it differs from what those outputs used
    (fp32, PNG at G's size, the classifier's own input): older outputs still resume."""
    ident = {}
    if precision != "fp32":
        ident["precision"] = precision
    if isinstance(cfg, ClassifierOptions) and cfg.classifier_input:
        ident["classifier_input"] = cfg.classifier_input
    if images and isinstance(cfg, ImageCodecOptions):
        if cfg.image_format != "png":
            ident.update(image_format=cfg.image_format, image_quality=cfg.image_quality)
        if isinstance(cfg, ImageOptions) and cfg.image_size is not None:
            ident["image_size"] = cfg.image_size
    return ident
