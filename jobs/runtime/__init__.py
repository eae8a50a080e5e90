"""Ray plumbing the stages share, one concept per module; this module gathers their names so
stages write `runtime.run_parts(...)`, `runtime.PartWorker`:
    cluster       start or connect to Ray (jobs.runtime.ray_session), its resources, the plan of a
                  job's actors
    part_driver   PartWorker (the actor of every part job) and run_parts (its driver)
    part_context  PartContext: what a worker's loop gets for one part (its writer, progress)
    faults        test-only fault injection
"""
from jobs.runtime.cluster import (ActorPlan, actors_for, check_model, cluster_resources, ensure_ray,
                                  job_precision, plan_actors, resolve_device)
from jobs.runtime.faults import FAULT_ENV, fault_point, hold_point, poison_point
from jobs.runtime.part_context import PartContext
from jobs.runtime.part_driver import (ATTEMPTS_DIR, PartFailed, PartWorker, WorkerFailed,
                                      clear_attempts, commit_errors, log, micro_batches, pad_rows,
                                      root_cause, run_parts, start_attempt, worker_remote_args)

__all__ = [
    "ActorPlan", "actors_for", "check_model", "cluster_resources", "ensure_ray",
    "job_precision", "plan_actors", "resolve_device", "ATTEMPTS_DIR", "PartFailed",
    "PartWorker", "WorkerFailed", "clear_attempts", "commit_errors", "log", "micro_batches",
    "pad_rows", "root_cause", "run_parts", "start_attempt", "worker_remote_args", "FAULT_ENV",
    "fault_point", "hold_point", "poison_point", "PartContext",
]
