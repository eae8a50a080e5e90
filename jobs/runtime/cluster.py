"""The Ray cluster a job runs on: start or connect, its resources, and the plan of a job's
actors (how many, GPU or CPU, CPUs each, at which precision), or the local runner's one
in-process worker when one worker is all the job would get (`runner`)."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Optional

import torch

from gankit import precision as numerics
from gankit.loading import zoo
from jobs.config import ConfigError
from jobs.runtime.faults import FAULT_ENV
from jobs.runtime.ray_session import ensure_ray

RUNNERS = ("auto", "ray", "local")


def check_model(field: str, spec: Optional[str], kind: str) -> None:
    """Fail in the driver, naming the field, when a model file is not there (the actors
    would otherwise fail one by one). Entry points 'package.module:factory' are left to them."""
    problem = zoo.missing(spec, kind) if spec else None
    if problem:
        raise FileNotFoundError(f"{field}: {problem}")


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when this process sees a GPU, else 'cpu'."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def cluster_resources() -> tuple:
    """(CPUs, GPUs, CPUs per GPU) of the connected Ray cluster; the last is the smallest
    over the nodes that have GPUs (0 when none has), so an actor that asks for it fits on
    every GPU node."""
    import ray
    res = ray.cluster_resources()
    per_gpu = [int(n["Resources"].get("CPU", 0) // n["Resources"]["GPU"]) for n in ray.nodes()
               if n.get("Alive") and n["Resources"].get("GPU", 0) > 0]
    return int(res.get("CPU", 0)), int(res.get("GPU", 0)), min(per_gpu, default=0)


@dataclass
class ActorPlan:
    workers: int          # actors in the pool
    num_gpus: float       # per actor
    num_cpus: float       # per actor
    device: str           # what the actor puts its models on ('cuda', 'cpu', or as asked)
    attempts: int = 3     # starts of one part in one run before the job stops (ActorOptions)
    runner: str = "ray"   # 'ray': an actor pool; 'local': one worker in the driver's process


def plan_actors(workers: int, device: str, n_parts: int, cpus_per_worker: int = 0,
                resources: Optional[tuple] = None) -> ActorPlan:
    """GPU actors (num_gpus=1) when the cluster has GPUs and the device allows it; CPU actors
    otherwise, never more than CPUs - 1 so Ray Data keeps a CPU for its own tasks. Each
    actor takes `cpus_per_worker` CPUs (its codec threads; a CPU actor's torch threads);
    0 = a GPU actor takes its node's CPUs per GPU less one (left to Ray Data's own tasks),
    a CPU actor one. `resources` (CPUs, GPUs, CPUs per GPU) defaults to the cluster's."""
    cpus, gpus, per_gpu = resources if resources is not None else cluster_resources()
    if gpus > 0 and device in ("auto", "cuda"):
        k = min(workers or gpus, gpus)
        each = cpus_per_worker or max(1, per_gpu - 1)
        return ActorPlan(max(1, min(k, n_parts)), 1, each, "cuda")
    if device == "cuda":
        raise ConfigError("device", "is 'cuda' but the Ray cluster has no GPUs")
    each = cpus_per_worker or 1
    cap = max(1, (cpus - 1) // each)
    k = min(workers or cap, cap)
    return ActorPlan(max(1, min(k, n_parts)), 0, each, "cpu")


def actors_for(cfg, n_parts: int, device: Optional[str] = None) -> ActorPlan:
    """The actor plan of a stage config (options.ActorOptions) for `n_parts` parts: one
    in-process worker for the local runner, else an actor pool (Ray started or joined).
    The local worker takes the CPUs an actor would (its torch threads on a CPU), so both
    runners round alike: an optimisation's sums depend on the thread count."""
    device = device or cfg.device
    if choose_runner(cfg, n_parts, device) == "local":
        plan = plan_actors(1, device, 1, cfg.cpus_per_worker, local_resources())
        return dataclasses.replace(plan, attempts=cfg.part_attempts, runner="local")
    ensure_ray()
    plan = plan_actors(cfg.workers, device, n_parts, cfg.cpus_per_worker)
    return dataclasses.replace(plan, attempts=cfg.part_attempts)


def choose_runner(cfg, n_parts: int, device: str) -> str:
    """`cfg.runner`, with 'auto' resolved: 'local' when no cluster address is set, no pool
    is asked for (--workers above 1) and one worker is all the job would get here (one
    part, or one actor's worth of GPUs or CPUs): an actor pool could then not be faster,
    only later by Ray's start-up (BENCHMARKS.md). The test-only fault hooks kill workers,
    which only actors survive."""
    if cfg.runner != "auto":
        return cfg.runner
    if os.environ.get("RAY_ADDRESS") or any(os.environ.get(k) for k in FAULT_ENV) \
            or cfg.workers > 1:
        return "ray"
    here = plan_actors(cfg.workers, device, n_parts, cfg.cpus_per_worker, local_resources())
    return "local" if here.workers == 1 else "ray"


def local_resources() -> tuple:
    """(CPUs, GPUs, CPUs per GPU) of this machine, as a local Ray would see them."""
    cpus, gpus = os.cpu_count() or 1, torch.cuda.device_count()
    return cpus, gpus, cpus // gpus if gpus else 0


def job_precision(precision: str, actors: ActorPlan) -> str:
    """The precision the actors will run at, resolved for their device. CPU actors are
    checked here, so a precision they cannot run fails before any work; a GPU's abilities
    are checked by each actor as it starts (the driver may have no GPU)."""
    resolved = numerics.resolve(precision, actors.device)
    if actors.device == "cpu":
        try:
            numerics.check(resolved, "cpu")
        except ValueError as e:
            raise ConfigError("precision", f"cannot run here: {e}") from None
    return resolved
