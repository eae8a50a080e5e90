"""`gankit sample | label | fit | edit | run`: flags derived from each stage's config."""
from __future__ import annotations

from jobs import config


def register(subparsers) -> None:
    from jobs.edit import EditConfig
    from jobs.fit import FitConfig
    from jobs.label import LabelConfig
    from jobs.sample import SampleConfig
    for name, help, cls, run in (
            ("sample", "sample latents (+ images, + labels) to Parquet", SampleConfig,
             "jobs.sample:run_sample"),
            ("label", "label an image dataset with a classifier", LabelConfig,
             "jobs.label:run_label"),
            ("fit", "fit InterFaceGAN boundaries on a sample dataset", FitConfig,
             "jobs.fit:run_fit"),
            ("edit", "edit latents along boundaries and render the edits", EditConfig,
             "jobs.edit:run_edit")):
        config.add_stage_command(subparsers, name, help, cls, run)
    r = subparsers.add_parser("run", help="run a pipeline from a YAML or JSON config",
                              formatter_class=config.HelpFormatter)
    r.add_argument("config", help="pipeline config file (YAML or JSON)")
    r.set_defaults(func=cmd_run)


def cmd_run(args) -> None:
    from jobs.pipeline import load_config, run_pipeline
    run_pipeline(load_config(args.config))
