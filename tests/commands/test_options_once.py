"""Options declared once: every command keeps the flags it had, and each job's identity
(what must match for a rerun to resume) stays what older outputs recorded.

The flags of every command were pinned from main before the option groups existed
(tests/commands/cli_flags.json: name, default, type, choices, required; not the help text). The
identities are checked against frozen copies of main's hand-written identity functions,
over default configs and configs that turn on each conditional key.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os

import numpy as np
import pytest

from gankit.latent.boundaries import Boundary
from jobs import storage
from jobs.commands.cli import build_parser

PINNED = os.path.join(os.path.dirname(__file__), "cli_flags.json")
CHANGED_ELSEWHERE = {"report"}          # its flags are the report's (issue #26 item 1)
ADDED_SINCE = {"--follow-links --no-follow-links"}   # issue #27 item 4, on the image inputs
DEFAULTS_SINCE = {"--pti-steps": 200, "--pti-lr": 1e-3}  # issue #25: PTI's, measured apart


def flag_table() -> dict:
    """{command: {flags: {dest, default, required, nargs, const, choices, action, type}}}"""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    table = {}
    for name, p in sub.choices.items():
        table[name] = {" ".join(a.option_strings) or a.dest: {
            "dest": a.dest, "default": a.default, "required": a.required, "nargs": a.nargs,
            "const": a.const, "choices": shown_choices(a),
            "action": type(a).__name__, "type": getattr(a.type, "__name__", None)}
            for a in p._actions if not isinstance(a, argparse._HelpAction)}
    return json.loads(json.dumps(table, default=repr))


def shown_choices(a: argparse.Action):
    """argparse's choices, or those a config option shows in its metavar (and checks)."""
    if a.choices:
        return list(a.choices)
    if isinstance(a.metavar, str) and a.metavar.startswith("{"):
        return a.metavar[1:-1].split(",")
    return None


def as_user_sees(spec: dict) -> dict:
    """What a flag means to a user: a plain word is a str whether or not argparse converts
    it, a required flag has no default, choices are choices whoever checks them."""
    spec = dict(spec, type=spec["type"] or "str")
    if spec["required"]:
        spec["default"] = None
    if spec["choices"]:
        spec["choices"] = [str(c) for c in spec["choices"]]
    return spec


def test_every_command_keeps_its_flags():
    with open(PINNED) as f:
        before = json.load(f)
    now = flag_table()
    assert sorted(now) == sorted(before)
    for command in sorted(set(before) - CHANGED_ELSEWHERE):
        assert sorted(set(now[command]) - ADDED_SINCE) == sorted(before[command]), command
        for flag, spec in before[command].items():
            spec = dict(spec, default=DEFAULTS_SINCE.get(flag, spec["default"]))
            assert as_user_sees(now[command][flag]) == as_user_sees(spec), (command, flag)


def test_every_command_help_lists_its_flags():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    top = parser.format_help()
    for name, p in sub.choices.items():
        assert name in top
        text = p.format_help()
        for a in p._actions:
            for flag in a.option_strings:
                assert flag in text, (name, flag)


# ----------------------------------------------------------------------------------------
# Frozen copies of main's identity functions (2026-12-07, before identity=True marks)


def main_shared(cfg, precision, images=True):
    from jobs.options import ClassifierOptions, ImageCodecOptions, ImageOptions
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


def main_identity_key(cfg):
    spec = cfg.identity_measure()
    return {} if spec is None else {"identity_metric": True if spec == "dlib" else spec}


def main_sample(cfg, precision):
    keys = ("model", "count", "seed", "space", "truncation", "truncation_cutoff", "images",
            "classifier", "rows_per_part", "micro_batch")
    ident = {k: getattr(cfg, k) for k in keys}
    ident.update({} if cfg.classes is None else {"classes": cfg.classes})
    return dict(ident, **main_shared(cfg, precision, cfg.images))


def main_label(cfg, precision):
    keys = ("images", "classifier", "image_column", "id_column", "resolution",
            "keep_columns", "micro_batch")
    return dict({k: getattr(cfg, k) for k in keys}, **main_shared(cfg, precision))


def main_invert(cfg, precision):
    keys = ("images", "model", "space", "steps", "feature_net", "mse_weight",
            "perceptual_weight", "optimize_noise", "noise_reg_weight", "lr",
            "early_stop_loss", "seed", "save_noise", "keep_target", "image_column",
            "id_column", "max_aspect", "batch_size")
    ident = {k: getattr(cfg, k) for k in keys}
    if cfg.mode != "optimize":
        ident.update(mode=cfg.mode, encoder=cfg.encoder_spec())
        if cfg.encoder_iterations is not None:
            ident["encoder_iterations"] = cfg.encoder_iterations
    ident.update(main_identity_key(cfg))
    if cfg.loss != "mse+perceptual":
        ident["loss"] = cfg.loss
    if cfg.class_index is not None:
        ident["class"] = cfg.class_index
    if cfg.mode == "pti":
        ident.update({k: getattr(cfg, k) for k in ("pti_pivot", "pti_steps", "pti_lr",
                      "pti_rank", "pti_stop", "pti_locality", "pti_radius")})
    if cfg.pivot_mode() == "hybrid" and cfg.hybrid_schedule != "nvidia":
        ident.update(hybrid_schedule=cfg.hybrid_schedule, hybrid_lr=cfg.hybrid_lr)
    return dict(ident, **main_shared(cfg, precision))


def main_align(cfg):
    keys = ("images", "resolution", "faces", "upsample", "detector", "image_column",
            "id_column")
    return {k: getattr(cfg, k) for k in keys}


def main_paste_back(cfg):
    keys = ("edits", "aligned", "strengths", "blend", "dilation", "feather", "output")
    return dict({k: getattr(cfg, k) for k in keys}, **main_shared(cfg, "fp32"))


def main_ppl(cfg, space):
    keys = ("model", "feature_net", "ppl_paths", "sampling", "epsilon", "seed",
            "micro_batch", "rows_per_part")
    ident = {"space": space, **{k: getattr(cfg, k) for k in keys}}
    ident.update({"crop": True} if cfg.crop else {})
    ident.update({"noise": cfg.noise} if cfg.noise != "const" else {})
    precision = "fp32" if cfg.precision == "auto" else cfg.precision
    return dict(ident, **main_shared(cfg, precision))


def main_fit(cfg, manifest, attributes):
    keys = ("samples", "spaces", "wp_layers", "selection", "fraction", "count",
            "val_fraction", "seed", "solver", "conditions")
    ident = {k: getattr(cfg, k) for k in keys}
    ident.update(attributes=attributes, sample_identity=manifest.get("identity"),
                 sample_rows=manifest.get("rows"))
    return json.loads(json.dumps(ident, default=str))


def main_edit(cfg, precision, boundaries, truncation, noise_stored, latent):
    from jobs.storage.boundary_index import fingerprint
    ident = {"latents": cfg.latents, "boundaries": [n for n, _ in boundaries],
             "geometry": fingerprint(boundaries), "strengths": list(cfg.strengths),
             "mode": cfg.mode, "layers": cfg.layers, "count": cfg.count,
             "keep_original": cfg.keep_original, "model": cfg.model,
             "classifier": cfg.classifier, "truncation": list(truncation),
             "micro_batch": cfg.micro_batch}
    ident.update({k: True for k, on in (("keep_input", cfg.keep_input), ("stored_noise",
                  cfg.stored_noise and noise_stored)) if on})
    ident.update(main_identity_key(cfg))
    if latent:
        ident["keep_latent"] = latent
    return dict(ident, **main_shared(cfg, precision))


def main_labeled(cfg):
    keys = ("min_confidence", "confidence_attributes", "balance")
    return dict({k: getattr(cfg, k) for k in keys}, kind="labeled", samples=cfg.samples)


def main_labeled_sample(cfg, precision):
    """What main's DatasetConfig.sample_config('') handed the sample stage, as its identity."""
    from jobs.stages.sample import SampleConfig
    s = SampleConfig(model=cfg.model, count=cfg.count, seed=cfg.seed, space=cfg.space,
                     truncation=cfg.truncation, truncation_cutoff=cfg.truncation_cutoff,
                     images=True, classifier=cfg.classifier, out="",
                     rows_per_part=cfg.rows_per_part, micro_batch=cfg.micro_batch,
                     batch_size=cfg.batch_size, classes=cfg.classes,
                     classifier_input=cfg.classifier_input, image_format=cfg.image_format,
                     image_quality=cfg.image_quality, image_size=cfg.image_size)
    return main_sample(s, precision)


def main_pairs(cfg, boundaries, precision):
    from jobs.storage.boundary_index import fingerprint
    from jobs.stages.sample import SampleConfig
    s = SampleConfig(model=cfg.model, count=cfg.count, seed=cfg.seed, space="wp",
                     truncation=cfg.truncation, truncation_cutoff=cfg.truncation_cutoff,
                     images=False, classifier=cfg.classifier, out="",
                     rows_per_part=cfg.rows_per_part, micro_batch=cfg.micro_batch,
                     batch_size=cfg.batch_size, classes=cfg.classes,
                     classifier_input=cfg.classifier_input)
    return {"kind": "pairs", "sample": main_sample(s, precision),
            "boundaries": [n for n, _ in boundaries], "geometry": fingerprint(boundaries),
            "strengths": list(cfg.strengths), "mode": cfg.mode, "layers": cfg.layers}


# ----------------------------------------------------------------------------------------
# The configs compared: defaults, then each conditional key turned on


def variants(cls, required: dict, *changes: dict) -> list:
    base = cls(**required)
    names = {f.name for f in dataclasses.fields(cls)}
    return [base] + [dataclasses.replace(base, **c) for c in changes if set(c) <= names]


SHARED_ON = ({"image_format": "jpeg", "image_quality": 80}, {"image_size": 64},
             {"classifier_input": {"input_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3}})
PRECISIONS = ("fp32", "fp16")


def same(a: dict, b: dict) -> None:
    """Equal as the manifest records them (JSON), key for key."""
    assert json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True,
                                                                     default=str)


def test_sample_identity_as_main():
    from jobs.stages.sample import SampleConfig
    for cfg in variants(SampleConfig, {"out": "o"}, {"images": True}, {"classes": [1, 2]},
                        {"truncation": 0.7, "truncation_cutoff": 8, "space": "wp"},
                        {"classifier": "toy", "micro_batch": 8, "batch_size": 64},
                        *({"images": True, **c} for c in SHARED_ON)):
        for p in PRECISIONS:
            same(cfg.identity(p), main_sample(cfg, p))


def test_label_identity_as_main():
    from jobs.stages.label import LabelConfig
    for cfg in variants(LabelConfig, {"images": "i", "out": "o"},
                        {"keep_columns": ["a"], "resolution": 32, "id_column": "x"},
                        *SHARED_ON):
        for p in PRECISIONS:
            same(cfg.identity(p), main_label(cfg, p))


def test_invert_identity_as_main():
    from jobs.stages.invert import InvertConfig
    for cfg in variants(InvertConfig, {"images": "i", "out": "o"},
                        {"mode": "encode", "space": "wp", "encoder": "toy"},
                        {"mode": "hybrid", "encoder": "toy", "encoder_iterations": 3},
                        {"mode": "hybrid", "encoder": "toy", "hybrid_schedule": "nvidia"},
                        {"mode": "pti", "pti_rank": 4}, {"loss": "nvidia", "feature_net": "f"},
                        {"class_index": 3}, {"identity_metric": "dlib"},
                        {"identity_metric": "arcface:/x.pth"}, {"batch_size": 4},
                        *SHARED_ON):
        for p in PRECISIONS:
            same(cfg.identity(p), main_invert(cfg, p))


def test_align_and_paste_back_identity_as_main():
    from jobs.stages.align import AlignConfig
    from jobs.stages.paste_back import PasteBackConfig
    for cfg in variants(AlignConfig, {"images": "i", "out": "o"},
                        {"faces": "all", "id_column": "x", "batch_size": 8}):
        same(cfg.identity(), main_align(cfg))
    for cfg in variants(PasteBackConfig, {"edits": "e", "aligned": "a", "out": "o"},
                        {"strengths": [1.0], "blend": "square"}, SHARED_ON[0]):
        same(cfg.identity(), main_paste_back(cfg))


def test_metrics_identity_as_main():
    from jobs.stages.metrics import MetricsConfig
    for cfg in variants(MetricsConfig, {"out": "o", "ppl_paths": 64}, {"crop": True},
                        {"noise": "const"}, {"precision": "fp16"}, {"micro_batch": 32}):
        for space in ("z", "w"):
            same(cfg.ppl_identity(space), main_ppl(cfg, space))


def test_fit_identity_as_main(tmp_path):
    from jobs.stages.fit import FitConfig, fit_identity
    src = storage.open_store(str(tmp_path), create=True)
    for cfg in variants(FitConfig, {"samples": "s", "out": "o"},
                        {"spaces": ["wp"], "wp_layers": [[0, 4]], "count": 10},
                        {"conditions": [["smile", ["old"]]], "solver": "svm"}):
        same(fit_identity(cfg, src, ["smile"]), main_fit(cfg, {}, ["smile"]))


def boundaries() -> list:
    n = np.zeros(8, np.float32)
    n[0] = 1
    return [("w/smile", Boundary("smile", "w", n, 0.5))]


def test_edit_identity_as_main():
    from jobs.stages.edit import EditConfig
    for cfg in variants(EditConfig, {"latents": "l", "out": "o", "boundaries": ["w/smile"]},
                        {"keep_input": True, "keep_original": True, "count": 5},
                        {"stored_noise": False}, {"identity_metric": "dlib"},
                        {"layers": [0, 4], "mode": "to_distance", "truncation": 0.5},
                        *SHARED_ON):
        for p in PRECISIONS:
            for noise in (False, True):
                for latent in (None, "wp"):
                    args = (p, boundaries(), (0.7, None), noise, latent)
                    same(cfg.identity(*args), main_edit(cfg, *args))


def test_dataset_identities_as_main():
    from jobs.stages.dataset import DatasetConfig, PairsConfig
    for cfg in variants(DatasetConfig, {"out": "o"}, {"balance": "smile", "samples": "s"},
                        {"min_confidence": 0.9, "classes": [1]},
                        {"space": "wp", "truncation": 0.5, "micro_batch": 4}, *SHARED_ON):
        same(cfg.identity(), main_labeled(cfg))
        for p in PRECISIONS:
            same(cfg.sample_config("").identity(p), main_labeled_sample(cfg, p))
    for cfg in variants(PairsConfig, {"out": "o", "boundaries": ["w/smile"]},
                        {"strengths": [1.0], "mode": "to_distance", "layers": [0, 2]},
                        {"truncation": 0.5, "count": 7, "classes": "uniform"},
                        SHARED_ON[2]):
        for p in PRECISIONS:
            same(cfg.identity(boundaries(), p), main_pairs(cfg, boundaries(), p))


# ----------------------------------------------------------------------------------------
# The mechanisms: one declaration per shared option, marks, compositions


def test_model_has_one_help_naming_every_form():
    from jobs.options import MODEL_HELP
    for form in ("'toy'", ".pkl", "rosinality", "e4e", "script:PATH", "package.module:factory"):
        assert form in MODEL_HELP
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {name: a.help for name, p in sub.choices.items() for a in p._actions
             if "--model" in a.option_strings}
    assert {"sample", "edit", "invert", "metrics", "dataset", "train-encoder"} <= set(helps)
    assert all(h.startswith(MODEL_HELP) for h in helps.values()), helps


def test_identity_marks_join_always_or_only_when_changed():
    from dataclasses import dataclass

    from jobs.config import Joins, identity_of, option, override

    @dataclass
    class Group:
        a: int = option(1, "a", identity=True)
        b: int = option(2, "b")

    @dataclass
    class Stage(Group):
        c: str = option("x", "c", identity=Joins(unless="x"))
        d: object = option(None, "d", identity=Joins("dee", unless=None))
        b: int = override(Group, "b", 5, identity=True)

    assert identity_of(Stage()) == {"a": 1, "b": 5}
    assert identity_of(Stage(c="y", d=[3])) == {"a": 1, "b": 5, "c": "y", "dee": [3]}
    assert identity_of(Stage(c="y"), only=(Group,)) == {"a": 1, "b": 5}
    assert dataclasses.fields(Stage)[1].metadata["help"] == "b"     # the group's help


def test_a_dataset_hands_every_sample_and_edit_option_on():
    """No field is mapped by hand: each option of the groups reaches the stage's config."""
    from jobs.stages.dataset import DatasetConfig, PairsConfig
    from jobs.stages.edit import EditOptions
    from jobs.options import BatchOptions, ModelOptions
    from jobs.stages.sample import SampleOptions
    changed = {"model": "m", "truncation": 0.5, "truncation_cutoff": 4, "micro_batch": 4,
               "batch_size": 8, "classes": [2], "count": 7, "seed": 3, "classifier": "c",
               "rows_per_part": 5, "workers": 2, "image_format": "jpeg", "storage": {"k": 1}}
    sample = DatasetConfig(out="o", **changed).sample_config("s")
    assert {k: getattr(sample, k) for k in changed} == changed
    assert {f.name for f in dataclasses.fields(SampleOptions)} <= set(changed)
    edits = {"boundaries": ["w/a"], "index": "i", "strengths": [1.0], "mode": "to_distance",
             "layers": [0, 2]}
    pairs = PairsConfig(out="o", **changed, **edits)
    edit = pairs.edit_config("l", "e")
    handed = {f.name for g in (EditOptions, ModelOptions, BatchOptions)
              for f in dataclasses.fields(g)}
    assert {k: getattr(edit, k) for k in handed} == {k: getattr(pairs, k) for k in handed}
    assert pairs.sample_config("s").space == "wp" and edit.keep_original
