"""The `gankit` command line: a thin layer over functions a notebook could call.

Each command lives in the module that owns it and registers itself through a function
`register(subparsers)` that adds a subparser and sets `func` (called with the parsed args).
To add a command, append its module to COMMAND_MODULES.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# Modules that define `register(subparsers)`; imported lazily so `gankit --help` stays fast.
COMMAND_MODULES = [
    "jobs.cmd_models",      # inspect, convert
    "jobs.cmd_train",       # train-classifier, train-gan
    "jobs.cmd_calibrate",   # calibrate-gan
    "jobs.cmd_pipeline",    # sample, label, fit, edit, run
    "jobs.cmd_directions",  # directions
    "jobs.cmd_invert",      # invert
    "jobs.report",          # report
    "jobs.metrics",         # metrics (separability, sharded PPL)
    "jobs.demo",            # demo
    "jobs.dataset",         # dataset (labeled synthetic, or --pairs)
    "jobs.align",           # align (FFHQ faces; the optional [faces] extra)
    "jobs.paste_back",      # paste-back (edited faces into their photos)
    "jobs.interpolate",     # interpolate, style-mix (figures)
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gankit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"gankit {version()}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    from jobs.config import HelpFormatter
    for command in subparsers.choices.values():     # every help line ends with its default
        command.formatter_class = HelpFormatter
        talk = command.add_mutually_exclusive_group()
        talk.add_argument("--quiet", action="store_true",
                          help="only warnings and errors (no progress, no start/done lines)")
        talk.add_argument("--verbose", action="store_true",
                          help="gankit's details and all of Ray's output on the console")
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
