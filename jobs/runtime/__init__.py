"""Ray plumbing the stages share, one concept per module; this module gathers their names so
stages write `runtime.run_parts(...)`, `runtime.PartWorker`:
    cluster       start or connect to Ray (jobs.runtime.ray_session), its resources, the plan of a
                  job's actors
    part_driver   PartWorker (the actor of every part job) and run_parts (its driver)
    part_context  PartContext: what a worker's loop gets for one part (its writer, progress)
    faults        test-only fault injection

The names load with their module on first use (PEP 562): a process that needs one light
module of the package -- the run's progress counter, an actor of its own (progress.Counter)
-- imports that module alone, not torch through part_driver (seconds of a CPU for each job's
counter actor).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

MODULE_OF = {
    "cluster": ("ActorPlan", "actors_for", "check_model", "cluster_resources", "ensure_ray",
                "job_precision", "plan_actors", "resolve_device"),
    "faults": ("FAULT_ENV", "fault_point", "hold_point", "poison_point"),
    "part_context": ("PartContext",),
    "part_driver": ("ATTEMPTS_DIR", "PartFailed", "PartWorker", "WorkerFailed",
                    "clear_attempts", "commit_errors", "log", "micro_batches", "pad_rows",
                    "root_cause", "run_parts", "start_attempt", "worker_remote_args"),
}
_MODULE = {name: module for module, names in MODULE_OF.items() for name in names}
__all__ = list(_MODULE)

if TYPE_CHECKING:
    from jobs.runtime.cluster import (ActorPlan, actors_for, check_model, cluster_resources,
                                      ensure_ray, job_precision, plan_actors, resolve_device)
    from jobs.runtime.faults import FAULT_ENV, fault_point, hold_point, poison_point
    from jobs.runtime.part_context import PartContext
    from jobs.runtime.part_driver import (ATTEMPTS_DIR, PartFailed, PartWorker, WorkerFailed,
                                          clear_attempts, commit_errors, log, micro_batches,
                                          pad_rows, root_cause, run_parts, start_attempt,
                                          worker_remote_args)


def __getattr__(name: str):
    if name not in _MODULE:
        raise AttributeError(f"module 'jobs.runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"jobs.runtime.{_MODULE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_MODULE))
