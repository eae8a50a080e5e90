"""Shared fixtures: ONE local Ray cluster and ONE S3-protocol server per pytest session,
each started only by the tests that need it, plus tiny models written to files (the jobs load
models by path, like users do). Plain helpers live in tests/helpers.py.

The S3 server is real, on loopback: its endpoint and keys go in this process's environment
(for the driver's reads) and, as `s3_options`, into the jobs' `storage` options, which is how
Ray workers in other processes reach it (as they would a user's bucket).
"""
from __future__ import annotations

import os
import sys

import pytest

from helpers import (ATTRIBUTES, fit_toy_samples, free_port, tiny_classifier_module,
                     tiny_generator)

# Test modules import helpers from one another across the folders of tests/ (test_faces'
# photos, test_jobs_invert's inputs, ...): every folder is on the path, whichever files a run
# collects, as pytest would put it there once it collects a file of that folder.
HERE = os.path.dirname(os.path.abspath(__file__))
for _folder in sorted(os.scandir(HERE), key=lambda e: e.name):
    if _folder.is_dir() and _folder.name[0] not in "._" and _folder.path not in sys.path:
        sys.path.append(_folder.path)

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# No implicit cluster: a Ray call made before ray.init (ray.get_actor, ray.put, ...) fails
# instead of starting a cluster of its own, so the session's one (`ray_cluster`, or a job's
# ensure_ray) is the only one.
os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")


def pytest_collection_modifyitems(items) -> None:
    """A test that uses the Ray cluster starts actors (seconds each on 2 cores): it is
    `slow`, so `make test-fast` (-m "not slow") leaves it to `make test`."""
    for item in items:
        if "ray_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1; sets AWS_* so s3fs (driver and workers) talks to it."""
    from moto.server import ThreadedMotoServer
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def s3_options(s3_server) -> dict:
    """fsspec options that reach the session's S3 server from any process."""
    return {"endpoint_url": s3_server["AWS_ENDPOINT_URL"], "key": "testing",
            "secret": "testing", "client_kwargs": {"region_name": "us-east-1"}}


@pytest.fixture(scope="session")
def s3_bucket(s3_server):
    import s3fs
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir("gankit-test")
    return "gankit-test"


@pytest.fixture(scope="session")
def ray_cluster():
    """The session's Ray cluster: 3 logical CPUs, so a pool is at most 2 CPU actors (one CPU
    left to Ray Data, jobs.runtime.plan_actors) -- as many as this 2-core machine runs at
    once; no dashboard."""
    import ray
    if not ray.is_initialized():
        ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    from ray.data import DataContext
    DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def model_files(tmp_path_factory):
    """{'model': path of a tiny G checkpoint, 'classifier': path of a TorchScript file}."""
    import json

    import torch
    from gankit.loading.checkpoints import save_generator
    root = tmp_path_factory.mktemp("models")
    g_path = root / "tiny_g"
    save_generator(tiny_generator(), g_path)
    c_path = root / "tiny_classifier.pt"
    torch.jit.script(tiny_classifier_module()).save(str(c_path))
    with open(str(c_path) + ".json", "w") as f:   # attribute names beside the scripted file
        json.dump({"attribute_names": ATTRIBUTES}, f)
    g32_path = root / "tiny_g32"
    save_generator(tiny_generator(resolution=32), g32_path)
    return {"model": str(g_path), "classifier": str(c_path), "model32": str(g32_path)}


@pytest.fixture(scope="session")
def toy_fit(tmp_path_factory):
    """A folder holding REPORT_SAMPLES toy samples (samples/) and their W boundaries (fit/),
    made once: the report tests write their reports (and other fits) beside them."""
    root = tmp_path_factory.mktemp("toy_fit")
    fit_toy_samples(root)
    return root


@pytest.fixture(scope="session")
def inverted(ray_cluster, tmp_path_factory):
    """(folder, good ids): one `gankit invert` on the session's cluster of
    test_jobs_invert's inputs into folder/out (with noise maps and targets), made once for
    the tests of tests/stages/test_jobs_invert.py and test_edit_inverted.py. A test that
    removes a part recomputes it: the rows stay the same."""
    from test_jobs_invert import run, write_inputs
    root = tmp_path_factory.mktemp("invert")
    good = write_inputs(root / "images")
    assert run(root / "images", root / "out", "--save-noise", "--keep-target") == 0
    return root, good
