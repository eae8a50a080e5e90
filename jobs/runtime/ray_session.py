"""Starting or joining the Ray cluster a job runs on, once per process.

Its own module, apart from jobs.runtime, because both sides of a job need it: the runtime
before it starts a pool of actors, and a finished job's result (jobs.runtime.result) when it opens
its output as a Ray dataset, and the runtime itself returns those results. Ray is imported
only when a cluster is wanted: the local runner runs without it.
"""
from __future__ import annotations

import logging
import os
from typing import Optional

from jobs import console


def ensure_ray(num_cpus: Optional[int] = None) -> None:
    """Connect to the cluster in RAY_ADDRESS (or the one this job was submitted to), or start
    a local one with more logical CPUs than actors (actors holding every CPU hang Ray Data)."""
    import ray
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    quiet = {"log_to_driver": console.verbose(),
             "logging_level": logging.DEBUG if console.verbose() else logging.WARNING}
    if os.environ.get("RAY_ADDRESS"):
        context = ray.init(address=os.environ["RAY_ADDRESS"], **quiet)
    else:
        cpus = max(num_cpus or 0, os.cpu_count() or 1, 4)
        context = ray.init(num_cpus=cpus, include_dashboard=False, **quiet)
    console.after_ray_init(context.address_info.get("session_dir"))
