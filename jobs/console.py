"""What a user sees on the console: gankit's own lines, warnings that matter, errors.

gankit logs through the `gankit` logger (INFO by default, WARNING with --quiet, DEBUG with
--verbose): one line when a job starts and when it ends, a progress bar or line while it
runs (jobs.runtime.progress), warnings and errors. Ray's own output goes to Ray's log folder
instead: its Python loggers are set to WARNING, Ray Data's progress block is off, worker output is
not forwarded to the driver, and native lines written straight to the process's stderr (the
core worker's) go to a file in the session's log folder; a failure names that folder.
--verbose keeps all of Ray's output on the console.
"""
from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Optional

from gankit.caveats import CaveatWarning

log = logging.getLogger("gankit")
LEVELS = {"quiet": logging.WARNING, "normal": logging.INFO, "verbose": logging.DEBUG}
RAY_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune")

_state = {"verbosity": "normal", "divert": False, "session": None}


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (a notebook's, pytest's capture)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def install() -> None:
    """gankit's lines on stderr at INFO, unless the application configured the logger."""
    if not log.handlers:
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def command_line(verbosity: str) -> None:
    """Called by `gankit` before a command runs: its verbosity, and Ray's native output
    may be moved off the console (which a library caller's process is left alone)."""
    log.setLevel(LEVELS[verbosity])
    _state.update(verbosity=verbosity, divert=verbosity != "verbose")
    show_caveats_as_lines()


def show_caveats_as_lines() -> None:
    """gankit's caveats (results that mean little) print as one 'warning:' line each,
    not as Python's file:line and source text; other warnings keep Python's form."""
    python_show = warnings.showwarning
    if getattr(python_show, "gankit", False):       # installed already (main called again)
        return

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, CaveatWarning):
            log.warning(f"warning: {message}")
        else:
            python_show(message, category, filename, lineno, file, line)
    show.gankit = True
    warnings.showwarning = show


def verbose() -> bool:
    return _state["verbosity"] == "verbose"


def after_ray_init(session_dir: Optional[str]) -> None:
    """Ray's loggers at WARNING and Ray Data's progress output off (gankit shows its own
    progress); under `gankit`, Ray's native stderr to the session's log folder."""
    _state["session"] = session_dir
    if verbose():
        return
    for name in RAY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    quiet_ray_data_console()
    from ray.data import DataContext
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    from ray.util.debug import log_once
    log_once("ray_data_progress_manager_disabled")    # its "bars disabled" warning: spent
    if _state.get("divert") and session_dir:
        divert_native_stderr(os.path.join(session_dir, "logs", "gankit-driver-native.log"))


def quiet_ray_data_console() -> None:
    """Ray Data re-applies its logging config (DEBUG to its file, INFO to the console) for
    every dataset it runs; keep its console handler at WARNING, its file as it is. Best
    effort: the config is Ray Data's internal default."""
    try:
        from ray.data._internal import logging as ray_data_logging
        ray_data_logging.DEFAULT_CONFIG["handlers"]["console"]["level"] = "WARNING"
        ray_data_logging.configure_logging()
    except Exception:
        pass


def divert_native_stderr(path: str) -> None:
    """What native code writes to fd 2 (Ray's core worker) goes to `path`; Python's
    sys.stderr (gankit's lines, tracebacks) stays on the console."""
    try:
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        console = os.dup(2)
    except OSError:
        return
    sys.stderr.flush()
    sys.stderr = os.fdopen(console, "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
                           errors="backslashreplace")
    os.dup2(target, 2)
    os.close(target)
    _state["divert"] = False


def ray_log_folder() -> Optional[str]:
    """Where Ray's logs of this run are (said with an error), if Ray was started."""
    session = _state.get("session")
    return os.path.join(session, "logs") if session else None


install()
