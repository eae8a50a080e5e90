"""A whole worker node lost mid-job (a reclaimed spot machine), for sample, align and invert.

tests/node_loss.py runs the scenario on a local multi-node Ray cluster (`ray.cluster_utils.
Cluster`: a CPU-less head and two 2-CPU workers) in a subprocess of its own, so the session's
cluster (fixture `ray_cluster`) is neither touched nor found, whichever test started Ray
before this one: one process holds one Ray driver, and the subprocess's RAY_TMPDIR keeps its
cluster's address file and sockets apart. For each stage the first part to start is held in
flight (test-only hook, jobs/runtime/faults.py) and the node running it is removed, its
processes SIGKILLed. The job runs with part_attempts=1: a start lost with its node does not
count against the part, so the part is recomputed on the surviving node and the job finishes.
Its output equals an uninterrupted run's on the same cluster: rows, ids, latent bytes.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from jobs import storage

pytest.importorskip("dlib", reason="align needs dlib: pip install 'gankit[faces]'")
pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STAGES = {"sample": ("sample_id", ["z", "w"]), "align": ("image_id", ["landmarks", "quad"]),
          "invert": ("image_id", ["wp"])}


@pytest.fixture(scope="module")
def node_loss(tmp_path_factory):
    """Runs tests/node_loss.py once for the three stages; (output folder, its result.json)."""
    out = tmp_path_factory.mktemp("node_loss")
    ray_tmp = tempfile.mkdtemp(prefix="gkn", dir="/tmp")    # short: socket paths are capped
    env = dict(os.environ, RAY_TMPDIR=ray_tmp, RAY_AUTH_MODE="disabled",
               PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    env.pop("RAY_ADDRESS", None)
    try:
        proc = subprocess.run([sys.executable, os.path.join(REPO, "tests", "node_loss.py"),
                               str(out), *STAGES], env=env, cwd=REPO, capture_output=True,
                              text=True, timeout=600)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return out, json.loads((out / "result.json").read_text())


def latent_bytes(table, name: str) -> bytes:
    return np.asarray(table.column(name).combine_chunks().flatten()).tobytes()


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_lost_node_costs_its_part_in_flight_and_nothing_else(node_loss, stage):
    out, result = node_loss
    lost, whole, held = out / stage / "lost", out / stage / "whole", result[stage]
    assert held["node"] != held["head"]                       # a worker node was removed ...
    assert held["node"] not in held["alive_at_end"]           # ... and stayed gone
    assert held["part"] not in held["committed_at_removal"]   # its part was in flight
    n_parts = len(storage.open_store(str(whole)).list_parts())
    assert held["status"] == "complete" and len(held["runs"]) == 1
    assert held["runs"][0]["computed"] == list(range(n_parts))
    key, latents = STAGES[stage]
    a = storage.read_table(str(lost)).sort_by(key)
    b = storage.read_table(str(whole)).sort_by(key)
    assert a.num_rows == b.num_rows > 0
    assert a.column(key).to_pylist() == b.column(key).to_pylist()     # none lost or doubled
    assert len(set(a.column(key).to_pylist())) == a.num_rows
    for name in latents:
        assert latent_bytes(a, name) == latent_bytes(b, name), name
    assert a.equals(b)                                        # every column, images too
    assert sorted(os.listdir(lost)) == sorted(os.listdir(whole))   # no debris, no _attempts
