"""The `gankit` command line: a thin layer over functions a notebook could call.

Every command is one row of COMMANDS: its name, its help line, the config class whose
`option()` fields are its flags (jobs.config) and the function the checked config is
passed to. To add a command, add its row. The few whose words are not a config yet name a
function that adds their flags instead, and their function gets the parsed flags.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Optional

from jobs.config import HelpFormatter, add_stage_command, load


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: str                       # 'module:function' called with the config (or the args)
    config: Optional[str] = None   # 'module:Class': its option() fields are the flags
    flags: Optional[str] = None    # else 'module:function(parser)' adding them by hand
    actions: tuple = ()            # its own sub-commands (`gankit directions import`)


COMMANDS = (
    Command("inspect", "print a generator checkpoint's architecture",
            "jobs.commands.models:inspect_command", "jobs.commands.models:InspectConfig"),
    Command("convert", "convert a checkpoint to gankit's native format",
            "jobs.commands.models:convert_command", "jobs.commands.models:ConvertConfig"),
    Command("train-classifier", "train the toy attribute classifier",
            "jobs.commands.train:train_classifier", flags="gankit.train.toy:add_classifier_flags"),
    Command("train-gan", "train the toy StyleGAN2 (resumable)", "jobs.commands.train:train_gan",
            flags="gankit.train.toy:add_gan_flags"),
    Command("train-encoder", "train a W+ encoder on synthetic pairs (image, w+) of a "
            "generator (resumable)", "jobs.commands.train:train_encoder",
            "jobs.commands.train:TrainEncoderConfig"),
    Command("calibrate-gan", "refit a generator's mapping so its attribute rates match the "
            "data's (MODELS.md)", "jobs.commands.calibrate:calibrate_command",
            "jobs.commands.calibrate:CalibrateJobConfig"),
    Command("sample", "sample latents (+ images, + labels) to Parquet",
            "jobs.stages.sample:run_sample", "jobs.stages.sample:SampleConfig"),
    Command("label", "label an image dataset with a classifier", "jobs.stages.label:run_label",
            "jobs.stages.label:LabelConfig"),
    Command("fit", "fit InterFaceGAN boundaries on a sample dataset", "jobs.stages.fit:run_fit",
            "jobs.stages.fit:FitConfig"),
    Command("edit", "edit latents along boundaries and render the edits",
            "jobs.stages.edit:run_edit", "jobs.stages.edit:EditConfig"),
    Command("run", "run a pipeline from a YAML or JSON config", "jobs.commands.pipeline:cmd_run",
            "jobs.commands.pipeline:RunConfig"),
    Command("directions", "find and name unsupervised directions in W",
            "jobs.commands.directions:directions_command",
            "jobs.commands.directions:DirectionsJobConfig",
            actions=(Command("import", "import published directions (InterFaceGAN .npy, "
                             "e4e/pSp .pt, GANSpace PCA .pt) into a boundary index",
                             "jobs.stages.directions_import:run_import",
                             "jobs.stages.directions_import:DirectionImportConfig"),)),
    Command("invert", "invert real images into W / W+ (batched, resumable)",
            "jobs.stages.invert:run_invert", "jobs.stages.invert:InvertConfig"),
    Command("eval-inversion", "toy world: invert renders, edit one attribute, compare with "
            "the renderer's counterfactual", "jobs.commands.invert:cmd_eval",
            "jobs.commands.invert:EvalInversionConfig"),
    Command("report", "report.json + report.html from fit and edit outputs",
            "jobs.stages.report:run_report", "jobs.stages.report:ReportConfig"),
    Command("metrics", "separability and PPL, Z vs W (sharded PPL)",
            "jobs.stages.metrics:run_metrics", "jobs.stages.metrics:MetricsConfig"),
    Command("demo", "the whole pipeline on the bundled toy model", "jobs.stages.demo:run_demo",
            "jobs.stages.demo:DemoConfig"),
    Command("dataset", "labeled synthetic dataset, or (--pairs) paired edit dataset, with a "
            "dataset card", "jobs.stages.dataset:cmd_dataset",
            flags="jobs.stages.dataset:dataset_flags"),
    Command("align", "FFHQ-align the faces of photos (dlib landmarks; needs pip install "
            "'gankit[faces]')", "jobs.stages.align:run_align", "jobs.stages.align:AlignConfig"),
    Command("paste-back", "put edited faces back into the photos they were aligned from (CPU "
            "actors, one part of photos each)", "jobs.stages.paste_back:run_paste_back",
            "jobs.stages.paste_back:PasteBackConfig"),
    Command("interpolate", "interpolate between seeds or inverted images: a grid (+ GIF / "
            "WebP)", "jobs.stages.interpolate:run_interpolate",
            "jobs.stages.interpolate:InterpolateConfig"),
    Command("style-mix", "StyleGAN's style-mixing grid of seeds or inverted images",
            "jobs.stages.interpolate:run_style_mix", "jobs.stages.interpolate:StyleMixConfig"),
)


def add_command(subparsers, c: Command) -> None:
    """`gankit <c.name>` with its flags (and its sub-commands); `func` runs it."""
    if c.config:
        p = add_stage_command(subparsers, c.name, c.help, load(c.config), c.run)
    else:
        p = subparsers.add_parser(c.name, help=c.help, description=c.help[:1].upper() +
                                  c.help[1:] + ".")
        load(c.flags)(p)
        p.set_defaults(func=lambda args: load(c.run)(args))
    if c.actions:
        actions = p.add_subparsers(dest=c.name + "_action",
                                   metavar="{" + ",".join(a.name for a in c.actions) + "}")
        for action in c.actions:
            add_command(actions, action)
            talk_flags(actions.choices[action.name])


def talk_flags(p: argparse.ArgumentParser) -> None:
    """--quiet | --verbose, on every command."""
    p.formatter_class = HelpFormatter               # every help line ends with its default
    talk = p.add_mutually_exclusive_group()
    talk.add_argument("--quiet", action="store_true",
                      help="only warnings and errors (no progress, no start/done lines)")
    talk.add_argument("--verbose", action="store_true",
                      help="gankit's details and all of Ray's output on the console")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gankit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"gankit {version()}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        add_command(subparsers, command)
    for command in subparsers.choices.values():
        talk_flags(command)
    return parser


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed
    try:
        return installed("gankit")
    except PackageNotFoundError:         # run from a source tree that was not installed
        return "(not installed)"


def main(argv=None) -> int:
    from jobs import console
    from jobs.runtime import WorkerFailed
    args = build_parser().parse_args(argv)
    console.command_line("quiet" if args.quiet else "verbose" if args.verbose else "normal")
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()                  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:
        # the reader left (`gankit inspect ... | head`): no traceback; stdout goes to
        # /dev/null so the interpreter's final flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, OSError, WorkerFailed) as e:
        # bad input, an unreachable store, a full or read-only disk (OSError names the file),
        # a worker's failure: one clear sentence, no traceback
        where = console.ray_log_folder() if isinstance(e, WorkerFailed) else None
        more = f" (Ray's logs: {where})" if where else ""
        print(f"gankit {args.command}: error: {e}{more}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
