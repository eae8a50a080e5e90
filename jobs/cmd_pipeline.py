"""`gankit sample | label | fit | edit | run`: flags -> a stage config -> its run_* function."""
from __future__ import annotations

import json

from jobs import options
from jobs.options import ActorOptions, ClassifierOptions, ImageOptions


def register(subparsers) -> None:
    s = subparsers.add_parser("sample", help="sample latents (+ images, + labels) to Parquet")
    s.add_argument("--model", default="toy", help="generator: 'toy' or a checkpoint path")
    s.add_argument("--count", type=int, required=True, help="number of rows")
    s.add_argument("--seed", type=int, default=0, help="row i is drawn from (seed, i)")
    s.add_argument("--out", required=True, help="output URL: a local path or s3://...")
    s.add_argument("--space", default="w", help="latents stored besides z: z, w or wp")
    s.add_argument("--truncation", type=float, default=1.0, help="truncation psi")
    s.add_argument("--truncation-cutoff", type=int, default=None)
    s.add_argument("--images", action="store_true",
                   help="store the images (--image-format, --image-quality, --image-size)")
    s.add_argument("--classifier", default=None, help="add logit_<attr> columns")
    s.add_argument("--rows-per-part", type=int, default=1000)
    s.add_argument("--micro-batch", type=int, default=16,
                   help="rows per model call (rows depend on it)")
    _common(s, ImageOptions, ClassifierOptions)
    s.set_defaults(func=cmd_sample)

    lb = subparsers.add_parser("label", help="label an image dataset with a classifier")
    lb.add_argument("--images", required=True, help="input dataset URL (image column)")
    lb.add_argument("--out", required=True)
    lb.add_argument("--classifier", default="toy")
    lb.add_argument("--image-column", default="image")
    lb.add_argument("--id-column", default=None)
    lb.add_argument("--resolution", type=int, default=None)
    lb.add_argument("--micro-batch", type=int, default=16)
    _common(lb, ClassifierOptions)
    lb.set_defaults(func=cmd_label)

    f = subparsers.add_parser("fit", help="fit InterFaceGAN boundaries on a sample dataset")
    f.add_argument("--samples", required=True, help="sample dataset URL")
    f.add_argument("--out", required=True)
    f.add_argument("--attributes", nargs="+", default=None, help="default: every logit column")
    f.add_argument("--spaces", nargs="+", default=["z", "w"], help="z, w, wp")
    f.add_argument("--wp-layers", nargs="+", default=[], metavar="START-STOP",
                   help="W+ layer ranges, e.g. 0-4 4-8")
    f.add_argument("--selection", default="extremes", choices=["extremes", "threshold"],
                   help="InterFaceGAN's top/bottom by score, or every sample labelled logit > 0")
    f.add_argument("--fraction", type=float, default=0.02, help="extremes: top/bottom share")
    f.add_argument("--count", type=int, default=None)
    f.add_argument("--val-fraction", type=float, default=0.3)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--solver", default="auto")
    f.add_argument("--condition", action="append", default=[], metavar="TARGET:A[,B...]",
                   help="conditional boundary of TARGET on A, B (repeatable)")
    f.add_argument("--storage", type=json.loads, default={}, help="fsspec options as JSON")
    f.set_defaults(func=cmd_fit)

    e = subparsers.add_parser("edit", help="edit sampled latents along boundaries")
    e.add_argument("--latents", required=True, help="sample dataset URL")
    e.add_argument("--boundaries", nargs="+", required=True,
                   help="names from the index (w/smile) or .npz paths")
    e.add_argument("--index", default=None, help="fit output URL holding boundaries.json")
    e.add_argument("--strengths", nargs="+", type=float, default=[-3.0, 0.0, 3.0])
    e.add_argument("--mode", default="shift")
    e.add_argument("--layers", default=None, metavar="START-STOP")
    e.add_argument("--count", type=int, default=None, help="edit the first N rows only")
    e.add_argument("--keep-original", action="store_true")
    e.add_argument("--keep-input", action="store_true",
                   help="add the inverted image (the latents' `target` column) as `input`")
    e.add_argument("--no-stored-noise", action="store_true",
                   help="render with G's const noise even where the latents hold noise maps")
    e.add_argument("--model", default="toy")
    e.add_argument("--classifier", default="toy", help="rescoring classifier ('' = none)")
    e.add_argument("--out", required=True)
    e.add_argument("--micro-batch", type=int, default=16)
    _common(e, ImageOptions, ClassifierOptions)
    e.set_defaults(func=cmd_edit)

    r = subparsers.add_parser("run", help="run a pipeline from a YAML or JSON config")
    r.add_argument("config", help="pipeline config file (YAML or JSON)")
    r.set_defaults(func=cmd_run)


def _common(p, *groups) -> None:
    """Flags every part job has (batch size, actor options, storage) + `groups`' options."""
    p.add_argument("--batch-size", type=int, default=256,
                   help="rows per actor step / Parquet row group (rows do not depend on it)")
    options.add_flags(p, ActorOptions, *groups)
    p.add_argument("--storage", type=json.loads, default={},
                   help='fsspec options as JSON, e.g. \'{"endpoint_url": "http://..."}\'')


def _span(text):
    if text is None:
        return None
    a, _, b = str(text).partition("-")
    try:
        return [int(a), int(b)]
    except ValueError:
        raise ValueError(f"layer range {text!r} must be START-STOP, e.g. 0-4") from None


def cmd_sample(args) -> None:
    from jobs.runtime import config_from_dict
    from jobs.sample import SampleConfig, run_sample
    run_sample(config_from_dict(SampleConfig, dict(
        model=args.model, count=args.count, seed=args.seed, out=args.out, space=args.space,
        truncation=args.truncation, truncation_cutoff=args.truncation_cutoff,
        images=args.images, classifier=args.classifier, rows_per_part=args.rows_per_part,
        micro_batch=args.micro_batch, batch_size=args.batch_size, storage=args.storage,
        **options.values(args, ActorOptions, ImageOptions, ClassifierOptions))))


def cmd_label(args) -> None:
    from jobs.label import LabelConfig, run_label
    from jobs.runtime import config_from_dict
    run_label(config_from_dict(LabelConfig, dict(
        images=args.images, out=args.out, classifier=args.classifier,
        image_column=args.image_column, id_column=args.id_column, resolution=args.resolution,
        micro_batch=args.micro_batch, batch_size=args.batch_size, storage=args.storage,
        **options.values(args, ActorOptions, ClassifierOptions))))


def cmd_fit(args) -> None:
    from jobs.fit import FitConfig, run_fit
    from jobs.runtime import config_from_dict
    conditions = []
    for c in args.condition:
        target, _, conds = c.partition(":")
        if not conds:
            raise ValueError(f"--condition {c!r} must be TARGET:A[,B...]")
        conditions.append([target, conds.split(",")])
    run_fit(config_from_dict(FitConfig, dict(
        samples=args.samples, out=args.out, attributes=args.attributes, spaces=args.spaces,
        wp_layers=[_span(s) for s in args.wp_layers], selection=args.selection,
        fraction=args.fraction,
        count=args.count, val_fraction=args.val_fraction, seed=args.seed, solver=args.solver,
        conditions=conditions, storage=args.storage)))


def cmd_edit(args) -> None:
    from jobs.edit import EditConfig, run_edit
    from jobs.runtime import config_from_dict
    run_edit(config_from_dict(EditConfig, dict(
        latents=args.latents, boundaries=args.boundaries, index=args.index,
        strengths=args.strengths, mode=args.mode, layers=_span(args.layers), count=args.count,
        keep_original=args.keep_original, keep_input=args.keep_input,
        stored_noise=not args.no_stored_noise, model=args.model,
        classifier=args.classifier or None, out=args.out, micro_batch=args.micro_batch,
        batch_size=args.batch_size, storage=args.storage,
        **options.values(args, ActorOptions, ImageOptions, ClassifierOptions))))


def cmd_run(args) -> None:
    from jobs.pipeline import load_config, run_pipeline
    run_pipeline(load_config(args.config))
