"""A worker node lost mid-job, on a local multi-node Ray cluster of its own.

    python tests/node_loss.py OUT [sample align invert]

tests/runtime/test_node_loss.py runs this script in a process of its own. A process holds one Ray
driver, and the session's cluster (fixture `ray_cluster`) may already be up in pytest's
process, or start after: a separate process never touches it, and RAY_TMPDIR (set by the
caller) keeps this cluster's address file and sockets apart, so no other `ray.init()` on
the machine finds it.

The cluster: a head with no CPUs (the driver, Ray's own services; never an actor, as on
cluster.yaml's CPU head) and two worker nodes of 2 CPUs. For each stage: an uninterrupted run
into OUT/<stage>/whole, in this process (the local runner: byte-identical part files to an
actor pool's, tests/test_local_runner.py; the cluster's actors are what the lost run tests),
then the same job into OUT/<stage>/lost with part_attempts=1 and the
test-only hold hook (jobs/runtime/faults.py): the first part to start stays in flight; a
watcher reads which node holds it and removes that node, its processes SIGKILLed as a
reclaimed spot machine's. The job must finish on the surviving worker. A fresh worker then
joins (the autoscaler's replacement) before the next stage, if there is one. OUT/result.json says, per stage,
which part was held on which node, and which nodes were alive at the end. The invert stage
inverts the align stage's faces: it runs after align.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import threading
import time

# Health checks every 200 ms, a node dead after 3 failed: only shortens how long the cluster
# takes to notice a lost node (Ray's defaults take tens of seconds). A check fails at once on
# a killed node's closed port; a live node fails one only by not answering within its timeout
# (Ray's health_check_timeout_ms, 10 s), which these leave alone.
HEAD = {"num_cpus": 0, "_system_config": {"health_check_period_ms": 200,
                                          "health_check_failure_threshold": 3}}
WORKER_CPUS = 2
PHOTOS = 4                              # the astronaut under 4 names: 4 align / invert parts


def stage_configs(out: str) -> dict:
    """name -> (config class, run function, keyword arguments but `out`)."""
    from jobs.stages.align import AlignConfig, run_align
    from jobs.stages.invert import InvertConfig, run_invert
    from jobs.stages.sample import SampleConfig, run_sample
    common = {"workers": 2, "device": "cpu"}
    return {
        "sample": (SampleConfig, run_sample, dict(common, model="toy", classifier="toy",
                                                  count=40, rows_per_part=10, micro_batch=4,
                                                  space="w")),
        "align": (AlignConfig, run_align, dict(common, images=photos(out), resolution=32,
                                               images_per_part=1)),
        "invert": (InvertConfig, run_invert, dict(common, images=f"{out}/align/whole",
                                                  model="toy", space="wp", steps=3,
                                                  batch_size=1, images_per_part=1)),
    }


def photos(out: str) -> str:
    """A folder holding scikit-image's astronaut under PHOTOS names."""
    import importlib.util
    folder = os.path.join(out, "photos")
    os.makedirs(folder, exist_ok=True)
    root = importlib.util.find_spec("skimage").submodule_search_locations[0]
    for k in range(PHOTOS):
        shutil.copy(os.path.join(root, "data", "astronaut.png"), f"{folder}/astro{k}.png")
    return folder


class NodeRemover(threading.Thread):
    """Waits for the hold marker, then removes the worker node whose process wrote it."""

    def __init__(self, cluster, marker: str, out: str):
        super().__init__(daemon=True)
        self.cluster, self.marker, self.out = cluster, marker, out
        self.result, self.error = {}, None

    def run(self) -> None:
        try:
            deadline = time.time() + 300
            while not os.path.exists(self.marker):
                assert time.time() < deadline, "no part was ever held"
                time.sleep(0.05)
            node_id, pid, part = open(self.marker).read().split()
            victim = [n for n in self.cluster.worker_nodes if n.node_id == node_id]
            assert victim, f"the held part runs on {node_id}, not on a worker node"
            from jobs import storage
            committed = sorted(storage.open_store(self.out).list_parts())
            self.cluster.remove_node(victim[0], allow_graceful=False)
            self.result = {"node": node_id, "pid": int(pid), "part": int(part),
                           "committed_at_removal": committed}
        except BaseException as e:          # reported by the main thread
            self.error = e


def run_stage(cluster, name: str, out: str, replace: bool) -> dict:
    import ray
    cls, run, kwargs = stage_configs(out)[name]
    run(cls(out=f"{out}/{name}/whole", runner="local", **kwargs))
    lost = f"{out}/{name}/lost"
    marker = f"{out}/{name}/held"
    remover = NodeRemover(cluster, marker, lost)
    os.environ["GANKIT_FAULT_HOLD_MARKER"] = marker
    try:
        remover.start()
        manifest = run(cls(out=lost, part_attempts=1, **kwargs))
    finally:
        del os.environ["GANKIT_FAULT_HOLD_MARKER"]
    remover.join(timeout=60)
    if remover.error:
        raise remover.error
    alive = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
    if replace:                                     # the replacement, for the next stage
        cluster.add_node(num_cpus=WORKER_CPUS)
    return dict(remover.result, alive_at_end=alive, status=manifest["status"],
                runs=manifest["runs"], head=cluster.head_node.node_id)


def main(out: str, stages: list) -> None:
    import ray
    from ray.cluster_utils import Cluster
    from ray.data import DataContext
    os.makedirs(out, exist_ok=True)
    cluster = Cluster(initialize_head=True, head_node_args=HEAD)
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=WORKER_CPUS)
        ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.WARNING)
        DataContext.get_current().enable_progress_bars = False
        result = {name: run_stage(cluster, name, out, replace=name != stages[-1])
                  for name in stages}
        with open(os.path.join(out, "result.json"), "w") as f:
            json.dump(result, f, indent=1)
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:] or ["sample", "align", "invert"])
