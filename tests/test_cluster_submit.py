"""The Jobs API path of the README's "run on a cluster": a separate head started with
`ray start --head --block` (its own ports and temp dir, so the session's cluster is left
alone), a `gankit sample` submitted through JobSubmissionClient, its parts checked.

The head is stopped by terminating the `ray start --block` process we started, which takes
its children down with it; `ray stop` is not used because it stops every Ray cluster on the
machine, including the session's."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from jobs import storage

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def ray_head():
    from helpers import free_port
    from ray.job_submission import JobSubmissionClient
    ports = {name: free_port() for name in ("port", "dashboard-port", "ray-client-server-port",
                                            "dashboard-agent-listen-port")}
    temp_dir = tempfile.mkdtemp(prefix="gkray", dir="/tmp")   # short: socket paths are capped
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    cmd = [ray_bin, "start", "--head", "--block", "--num-cpus=2", "--include-dashboard=true",
           "--dashboard-host=127.0.0.1", f"--temp-dir={temp_dir}",
           *[f"--{k}={v}" for k, v in ports.items()]]
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    env.pop("RAY_ADDRESS", None)
    log = open(os.path.join(temp_dir, "head.log"), "w")
    head = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{ports['dashboard-port']}"
    deadline, client = time.time() + 120, None
    while client is None:
        assert head.poll() is None, open(os.path.join(temp_dir, "head.log")).read()[-3000:]
        assert time.time() < deadline, "the Ray head's dashboard did not come up"
        try:
            client = JobSubmissionClient(url)
        except Exception:
            time.sleep(1)
    yield client
    head.send_signal(signal.SIGTERM)
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        head.kill()
        head.wait()
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.integration
@pytest.mark.slow
def test_gankit_sample_submitted_through_the_jobs_api(ray_head, model_files, tmp_path):
    from ray.job_submission import JobStatus
    out = tmp_path / "submitted"
    entrypoint = (f"{sys.executable} -m jobs.cli sample --model {model_files['model']} "
                  f"--classifier {model_files['classifier']} --count 60 --seed 2 "
                  f"--rows-per-part 20 --images --device cpu --out {out}")
    job_id = ray_head.submit_job(entrypoint=entrypoint,
                                 runtime_env={"env_vars": {"RAY_AUTH_MODE": "disabled"}})
    deadline = time.time() + 240
    while (status := ray_head.get_job_status(job_id)) not in JobStatus.__members__.values() \
            or not status.is_terminal():
        assert time.time() < deadline, ray_head.get_job_logs(job_id)[-3000:]
        time.sleep(1)
    logs = ray_head.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    assert "[sample] done: 60 rows, 0 errors in 3 parts" in logs
    store = storage.open_store(str(out))
    assert list(store.list_parts()) == [0, 1, 2]
    manifest = storage.read_manifest(store)
    assert manifest["status"] == "complete" and manifest["rows"] == 60
    table = storage.read_table(store)
    assert table.column("sample_id").to_pylist() == list(range(60))
    assert "logit_smile" in table.column_names


def test_cluster_yaml_parses_and_describes_gpu_workers_with_s3_roles():
    import yaml
    path = os.path.join(REPO, "cluster.yaml")
    with open(path) as f:
        text = f.read()
    cfg = yaml.safe_load(text)
    for key in ("cluster_name", "max_workers", "provider", "auth", "available_node_types",
                "head_node_type", "file_mounts", "setup_commands", "head_start_ray_commands",
                "worker_start_ray_commands"):
        assert key in cfg, key
    assert cfg["provider"]["type"] == "aws"
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    gpu = [t for t in types.values() if t["node_config"]["InstanceType"].startswith("g5.")]
    assert gpu and gpu[0]["max_workers"] >= 1
    assert all("IamInstanceProfile" in t["node_config"] for t in types.values())
    setup = " && ".join(cfg["setup_commands"])
    assert setup.index("torch==2.13.0") < setup.index("pip install -e")
    # the on-prem variant is documented, commented out, and itself valid YAML
    tail = text[text.index("# provider:\n"):].splitlines()
    local_cfg = yaml.safe_load("\n".join(line[2:] for line in tail))
    assert local_cfg["provider"]["type"] == "local" and local_cfg["provider"]["worker_ips"]
