"""The Jobs API path of docs/at-scale.md's "Run on a cluster": a separate head started with
`ray start --head --block` (its own ports and temp dir, so the session's cluster is left
alone), a `gankit sample` submitted through JobSubmissionClient, its parts checked. The
launcher's cluster.yaml and KubeRay's k8s/rayjob.yaml are parsed and checked against what
docs/at-scale.md says of them (command, config, resources, spot, S3 access, versions): the
figures are read from both files, never copied here.

The head is stopped by terminating the `ray start --block` process we started, which takes
its children down with it; `ray stop` is not used because it stops every Ray cluster on the
machine, including the session's."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from jobs import storage

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
    # no drain on SIGTERM: it waits up to 30 s for leases to return, for Serve's sake
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")
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
            time.sleep(0.2)
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
    entrypoint = (f"{sys.executable} -m jobs.commands.cli sample --model {model_files['model']} "
                  f"--classifier {model_files['classifier']} --count 60 --seed 2 "
                  f"--rows-per-part 20 --images --device cpu --out {out}")
    job_id = ray_head.submit_job(entrypoint=entrypoint,
                                 runtime_env={"env_vars": {"RAY_AUTH_MODE": "disabled"}})
    deadline = time.time() + 240
    while (status := ray_head.get_job_status(job_id)) not in JobStatus.__members__.values() \
            or not status.is_terminal():
        assert time.time() < deadline, ray_head.get_job_logs(job_id)[-3000:]
        time.sleep(0.2)
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
    # the launcher runs the GPU workers on spot and the head on demand, as the doc says,
    # and keeps the GPU workers up that a stage plans its actors on
    head = types[cfg["head_node_type"]]
    assert "InstanceMarketOptions" not in head["node_config"]
    assert gpu[0]["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    stated = re.search(r"`min_workers: (\d+)`", at_scale_doc()).group(1)
    assert gpu[0]["min_workers"] == int(stated) >= 1


# ---------------------------------------------------------------------------------------
# k8s/rayjob.yaml: the KubeRay path, checked against what docs/at-scale.md says of it


def at_scale_doc() -> str:
    """docs/at-scale.md: the cluster launcher and KubeRay, as a user reads them."""
    with open(os.path.join(REPO, "docs", "at-scale.md")) as f:
        return f.read()


def doc_section(title: str) -> str:
    text = at_scale_doc()
    start = text.index(title)
    end = re.compile(r"^#{2,3} ", re.M).search(text, start + len(title))
    return text[start:end.start() if end else len(text)]


def kuberay() -> dict:
    """The documents of k8s/rayjob.yaml by kind."""
    import yaml
    with open(os.path.join(REPO, "k8s", "rayjob.yaml")) as f:
        return {doc["kind"]: doc for doc in yaml.safe_load_all(f)}


def pods(job: dict) -> dict:
    """'head' / 'worker' -> (group spec, pod spec, the Ray container)."""
    spec = job["spec"]["rayClusterSpec"]
    (worker,) = spec["workerGroupSpecs"]
    out = {}
    for name, group in (("head", spec["headGroupSpec"]), ("worker", worker)):
        pod = group["template"]["spec"]
        (ray_container,) = [c for c in pod["containers"] if c["name"].startswith("ray-")]
        out[name] = (group, pod, ray_container)
    return out


def test_rayjob_runs_the_docs_command_with_its_config_from_a_configmap(tmp_path):
    docs, section = kuberay(), doc_section("## On Kubernetes (KubeRay)")
    job = docs["RayJob"]
    assert job["apiVersion"] == "ray.io/v1"
    entrypoint = re.search(r"entrypoint is `([^`]+)`", section).group(1)
    assert job["spec"]["entrypoint"] == entrypoint
    assert entrypoint.split()[:2] == ["gankit", "run"]
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    # the config path is the ConfigMap's key, mounted on the head (where the driver runs)
    name, key = re.search(r"ConfigMap \(`([^`]+)`, key `([^`]+)`\)", section).groups()
    config_map = docs["ConfigMap"]
    assert config_map["metadata"]["name"] == name and key in config_map["data"]
    _, head_pod, head = pods(job)["head"]
    (volume,) = [v["name"] for v in head_pod["volumes"]
                 if v.get("configMap", {}).get("name") == name]
    (mount,) = [m["mountPath"] for m in head["volumeMounts"] if m["name"] == volume]
    assert entrypoint.split()[-1] == f"{mount}/{key}"
    # and it is a pipeline config `gankit run` accepts
    from jobs.stages.pipeline import load_config
    (tmp_path / key).write_text(config_map["data"][key])
    assert load_config(str(tmp_path / key)).root.startswith("s3://")


def test_rayjob_resources_are_the_docs():
    """docs/at-scale.md's table of pods (count, GPU, CPU, memory, nodes) is the manifest's."""
    job, section = kuberay()["RayJob"], doc_section("## On Kubernetes (KubeRay)")
    rows = re.findall(r"^\| (head|worker)\b[^|]*\| (\d+) \| (\d+) \| (\d+) \| (\w+) \| "
                      r"([^|]+?) \|$", section, re.M)
    assert [r[0] for r in rows] == ["head", "worker"], rows
    capacity = {"on demand": "ON_DEMAND", "spot": "SPOT"}
    for name, count, gpus, cpus, memory, nodes in rows:
        group, pod, container = pods(job)[name]
        res = container["resources"]
        assert res["requests"] == res["limits"], name
        assert str(res["limits"]["cpu"]) == cpus and res["limits"]["memory"] == memory, name
        assert int(res["limits"].get("nvidia.com/gpu", 0)) == int(gpus), name
        assert pod["nodeSelector"]["eks.amazonaws.com/capacityType"] == capacity[nodes], name
        if name == "worker":        # fixed: a stage plans its actors on the GPUs up
            assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == int(count)
    # one GPU actor per worker, taking the CPUs the doc says it takes
    from jobs.runtime import plan_actors
    _, _, worker = pods(job)["worker"]
    cpus, gpus = int(worker["resources"]["limits"]["cpu"]), int(
        worker["resources"]["limits"]["nvidia.com/gpu"])
    group = pods(job)["worker"][0]
    plan = plan_actors(0, "auto", 1000, resources=(cpus * group["replicas"],
                                                   gpus * group["replicas"], cpus // gpus))
    assert plan.workers == group["replicas"] and plan.num_gpus == 1
    assert plan.num_cpus == int(re.search(r"takes (\d+) of the\s+CPUs", section).group(1))


def test_rayjob_reaches_s3_through_its_service_account_with_no_keys():
    docs, section = kuberay(), doc_section("## On Kubernetes (KubeRay)")
    account = docs["ServiceAccount"]
    assert account["metadata"]["name"] == re.search(r"service account \(`([^`]+)`",
                                                    section).group(1)
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+",
                        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"])
    for name, (_, pod, _) in pods(docs["RayJob"]).items():
        assert pod["serviceAccountName"] == account["metadata"]["name"], name
    with open(os.path.join(REPO, "k8s", "rayjob.yaml")) as f:
        text = f.read()
    assert not re.search(r"AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY|aws_secret", text)


def test_rayjob_image_has_the_versions_cluster_yaml_installs():
    """rayVersion, the Dockerfile's base image and pins, and cluster.yaml's pins agree; the
    pods run the image docs/at-scale.md builds."""
    import yaml
    with open(os.path.join(REPO, "cluster.yaml")) as f:
        setup = " ".join(yaml.safe_load(f)["setup_commands"])
    ray_pin = re.search(r"ray\[data,default\]==([\d.]+)", setup).group(1)
    torch_pin = re.search(r"torch==([\d.]+)", setup).group(1)
    job = kuberay()["RayJob"]
    assert job["spec"]["rayClusterSpec"]["rayVersion"] == ray_pin
    with open(os.path.join(REPO, "k8s", "Dockerfile")) as f:
        dockerfile = f.read()
    assert re.search(rf"^FROM rayproject/ray:{re.escape(ray_pin)}-py\d+-gpu$", dockerfile, re.M)
    assert f"torch=={torch_pin}" in dockerfile and f"ray[data,default]=={ray_pin}" in dockerfile
    image = re.search(r"docker build -f k8s/Dockerfile -t (\S+) ", at_scale_doc()).group(1)
    assert {c["image"] for _, _, c in pods(job).values()} == {image}
