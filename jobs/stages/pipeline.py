"""The pipeline driver: sample -> fit -> [heldout | invert] -> edit -> [paste_back] -> report
from one YAML or JSON config.

    root: s3://bucket/runs/toy-1      # every stage writes under it:
                                      #   samples/  fit/  heldout/  inverted/  edits/  report/
    stages: [sample, fit, edit, report]
    model: toy                        # shared by the stages that need them
    classifier: toy
    device: auto                      # actor options shared by the model stages:
    workers: 0                        #   jobs.options.ActorOptions
    precision: auto
    cpus_per_worker: 0                #   (0: a GPU actor takes its node's CPUs but one)
    storage: {}                       # fsspec options for every URL (endpoint_url, ...)
    sample: {count: 20000, seed: 0, space: w, rows_per_part: 2000}
    fit:    {spaces: [z, w], conditions: [[glasses, [age]]]}
    edit:   {strengths: [-3, 0, 3], count: 16}      # boundaries: default all W ones
    report: {}                        # ReportConfig fields (jobs.stages.report)

Photos to edits: `stages: [align, invert, edit, report]` with `align: {images: FOLDER}`
aligns the photos' faces (a folder, a glob, a .txt list or Parquet: jobs.storage.image_inputs) at
the generator's resolution into root/aligned/, which the invert stage reads; `paste_back` after
edit puts the edited faces back into the photos (root/pasted/; its `edits` and `aligned`
default to root/edits/ and root/aligned/).

What the edit stage edits: `edit.latents` when the config sets it; else the `invert` stage's
output when that stage runs (invert then edit: `invert: {images: s3://.../faces, space: wp,
save_noise: true, keep_target: true}` and `edit: {keep_input: true}` give each real image,
its edits and its reconstruction noise in one run); else the `heldout` stage's fresh samples
(`heldout: {count: 256}`, seed defaulting to the sample seed + 1, so the edits are judged on
latents the fit never saw); else the first rows of the fit's own samples.

Every section is validated before anything runs: an unknown key or a bad value fails with
one sentence naming it (`sample.space must be one of z, w, wp (got 'q')`). Stages are
resumable like the jobs themselves: rerunning the same config recomputes only missing parts.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass

from jobs import options
from jobs.config import ConfigError, config_from_dict, option, override, require
from jobs.options import ActorOptions, ModelOptions, StorageOptions
from jobs.stages.report import ReportConfig, run_report

log = logging.getLogger("gankit")

STAGES = ("sample", "fit", "heldout", "align", "invert", "edit", "paste_back", "report")
WIRED = {"sample": ("out",), "fit": ("samples", "out"), "heldout": ("out",),
         "align": ("out",), "invert": ("out",), "edit": ("index", "out"),
         "paste_back": ("out",)}
DEFAULT_STAGES = ("sample", "fit", "edit", "report")
FOLDERS = {"sample": "samples", "edit": "edits", "invert": "inverted", "align": "aligned",
           "paste_back": "pasted"}


@dataclass
class PipelineConfig(ModelOptions, ActorOptions, StorageOptions):
    """A config file's keys (no flags: `gankit run FILE`); the model, the actor options and
    the storage options go to every stage that takes them, each section to its stage."""
    root: str = option("", "output root URL; stages write to root/<stage>/", flag=False)
    stages: list = option(list(DEFAULT_STAGES), "stages to run", choices=STAGES, flag=False)
    model: str = override(ModelOptions, "model", "toy")     # (listed here: after stages)
    classifier: str = option("toy", "classifier for sample labels and edit rescoring",
                             flag=False)
    sample: dict = option({}, "SampleConfig fields", flag=False)
    fit: dict = option({}, "FitConfig fields", flag=False)
    heldout: dict = option({}, "SampleConfig fields of fresh samples", flag=False)
    align: dict = option({}, "AlignConfig fields (images: the photos)", flag=False)
    invert: dict = option({}, "InvertConfig fields (images: URL, or the align stage's output "
                              "when it runs)", flag=False)
    edit: dict = option({}, "EditConfig fields", flag=False)
    paste_back: dict = option({}, "PasteBackConfig fields (edits, aligned: default "
                                  "root/edits, root/aligned)", flag=False)
    report: dict = option({}, "ReportConfig fields (fit, edits, samples, out: root's by "
                              "default)", flag=False)

    def validate(self) -> None:
        require(bool(self.root), "root", "must be the output root URL (a path or s3://...)")
        require(len(self.stages) > 0, "stages", "must list at least one stage")
        options.validate(self)          # (each of stages one of STAGES)
        require(not {"heldout", "invert"} <= set(self.stages), "stages",
                "can hold heldout or invert, not both: the edit stage edits one of them")
        require("align" not in self.stages or "invert" in self.stages, "stages",
                "holds align without invert: the aligned faces feed the invert stage")

    def url(self, stage: str) -> str:
        return f"{self.root.rstrip('/')}/{FOLDERS.get(stage, stage)}"

    def edit_latents(self) -> str:
        """The latents the edit stage edits (see the module docstring)."""
        for stage in ("invert", "heldout"):
            if stage in self.stages:
                return self.url(stage)
        return self.url("sample")


def load_config(path: str) -> PipelineConfig:
    """Read and validate a YAML or JSON pipeline config file."""
    import yaml
    if not os.path.exists(path):
        raise FileNotFoundError(f"pipeline config not found: {path}")
    with open(path) as f:
        text = f.read()
    try:
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise ValueError(f"{path} is not valid {'JSON' if path.endswith('.json') else 'YAML'}: "
                         f"{str(e).splitlines()[0]}") from None
    check_expanded_size(data, path)
    cfg = config_from_dict(PipelineConfig, data or {})
    stage_configs(cfg)          # validate every section now, before anything runs
    return cfg


# A config that expands to more values than this is refused: YAML aliases can make a few
# lines stand for billions of values (the "billion laughs"), which safe_load builds as
# shared references but anything walking the config (validation, fsspec) would expand.
MAX_CONFIG_VALUES = 100_000


def check_expanded_size(data, path: str) -> None:
    """Count the config's values as aliases expand them, stopping past MAX_CONFIG_VALUES."""
    count, todo = 0, [data]
    while todo:
        item = todo.pop()
        count += 1
        if count > MAX_CONFIG_VALUES:
            raise ValueError(f"{path} expands to more than {MAX_CONFIG_VALUES:,} values "
                             f"(nested YAML aliases?): refusing it")
        if isinstance(item, dict):
            todo += list(item.keys()) + list(item.values())
        elif isinstance(item, (list, tuple)):
            todo += list(item)


def _section(cfg: PipelineConfig, stage: str, shared: dict) -> dict:
    """A stage's section plus the shared fields it did not set, plus the wiring."""
    section = dict(getattr(cfg, stage))
    for key in WIRED.get(stage, ()):
        if key in section:
            raise ConfigError(f"{stage}.{key}", "is set by the pipeline from root; remove it")
    for key, value in shared.items():
        section.setdefault(key, value)
    return section


def stage_configs(cfg: PipelineConfig) -> dict:
    """{stage: its validated config} (heldout, invert and report only when they run:
    invert has no defaults for its images)."""
    from jobs.stages.edit import EditConfig
    from jobs.stages.fit import FitConfig
    from jobs.stages.invert import InvertConfig
    from jobs.stages.sample import SampleConfig
    actor = dict(options.values(cfg, ActorOptions), storage=cfg.storage)
    sample = _section(cfg, "sample", dict(actor, model=cfg.model, classifier=cfg.classifier,
                                          out=cfg.url("sample")))
    configs = {"sample": config_from_dict(SampleConfig, sample, "sample"),
               "fit": config_from_dict(FitConfig, _section(cfg, "fit", {
                   "samples": cfg.url("sample"), "out": cfg.url("fit"),
                   "storage": cfg.storage}), "fit")}
    if "heldout" in cfg.stages:
        fresh = {k: v for k, v in sample.items() if k != "count"}
        fresh.update(seed=configs["sample"].seed + 1, out=cfg.url("heldout"))
        configs["heldout"] = config_from_dict(SampleConfig, _section(cfg, "heldout", fresh),
                                              "heldout")
    if "align" in cfg.stages:
        configs["align"] = align_config(cfg, actor)
    if "invert" in cfg.stages:
        wired = {"images": cfg.url("align")} if "align" in cfg.stages else {}
        if wired and "images" in cfg.invert:
            raise ConfigError("invert.images", "is set by the pipeline to the align stage's "
                              "output; remove it (align.images names the photos)")
        configs["invert"] = config_from_dict(InvertConfig, _section(cfg, "invert", dict(
            actor, model=cfg.model, out=cfg.url("invert"), **wired)), "invert")
    edit = _section(cfg, "edit", dict(actor, model=cfg.model, classifier=cfg.classifier,
                                      latents=cfg.edit_latents(), index=cfg.url("fit"),
                                      out=cfg.url("edit")))
    configs["edit"] = config_from_dict(EditConfig, edit, "edit")
    if "paste_back" in cfg.stages:
        configs["paste_back"] = paste_back_config(cfg, actor)
    if "report" in cfg.stages:
        configs["report"] = report_config(cfg)
    return configs


def report_config(cfg: PipelineConfig) -> ReportConfig:
    """The report stage's config: the run's fit, edits and samples, its models and storage,
    out = root/report; the section may name others."""
    wiring = {"fit": cfg.url("fit"), "edits": cfg.url("edit"), "samples": cfg.url("sample"),
              "out": cfg.url("report"), "model": cfg.model, "classifier": cfg.classifier,
              "storage": cfg.storage}
    return config_from_dict(ReportConfig, dict(wiring, **cfg.report), "report")


def paste_back_config(cfg: PipelineConfig, actor: dict):
    """The paste_back stage's config: the run's edits and aligned faces unless it names
    others, its output root/pasted."""
    from jobs.stages.paste_back import PasteBackConfig
    return config_from_dict(PasteBackConfig, _section(cfg, "paste_back", dict(
        actor, edits=cfg.url("edit"), aligned=cfg.url("align"),
        out=cfg.url("paste_back"))), "paste_back")


def align_config(cfg: PipelineConfig, actor: dict):
    """The align stage's config (its resolution: the section's, else the generator's, set
    by run_pipeline: the aligned faces are what invert fits to G)."""
    from jobs.stages.align import AlignConfig
    return config_from_dict(AlignConfig, _section(cfg, "align", dict(actor, out=cfg.url(
        "align"))), "align")


def at_generator_resolution(cfg: PipelineConfig, align):
    """`align` at the generator's resolution unless the align section sets one."""
    from gankit.loading import zoo
    if "resolution" in cfg.align:
        return align
    size = zoo.load_generator(cfg.model).img_resolution
    return dataclasses.replace(align, resolution=int(size))


def run_pipeline(cfg: PipelineConfig) -> dict:
    """Run the configured stages in order; returns {stage: its result}."""
    from jobs.stages.align import run_align
    from jobs.stages.edit import run_edit
    from jobs.stages.fit import run_fit
    from jobs.stages.invert import run_invert
    from jobs.stages.paste_back import run_paste_back
    from jobs.stages.sample import run_sample
    cfg.validate()
    configs = stage_configs(cfg)
    runners = {"sample": run_sample, "fit": run_fit, "heldout": run_sample,
               "align": run_align, "invert": run_invert, "edit": run_edit,
               "paste_back": run_paste_back, "report": run_report}
    results = {}
    for stage in STAGES:
        if stage not in cfg.stages:
            continue
        log.info(f"[pipeline] stage {stage} -> {cfg.url(stage)}")
        if stage == "align":
            results[stage] = run_align(at_generator_resolution(cfg, configs["align"]))
        else:
            results[stage] = runners[stage](configs[stage])
    return results
