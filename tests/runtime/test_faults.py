"""Worker faults and concurrent writers, on the session's real Ray cluster.

- An actor process that exits mid-part (test-only hook runtime.fault_point, as a preempted
  machine would) is restarted by Ray Data and its part retried: the job finishes and its rows
  equal an uninterrupted run's bit for bit, with no temporary file left.
- Two jobs writing to one output location: the second fails fast naming the holder of the
  lease (storage.JobLease); a lease left by a dead driver does not block its rerun.
"""
import json
import os
import socket
import threading
import time

import pyarrow as pa
import pytest

from jobs import storage
from jobs.stages.sample import SampleConfig, run_sample

pytestmark = pytest.mark.integration


def cfg(model_files, out, **kw) -> SampleConfig:
    base = dict(model=model_files["model"], classifier=model_files["classifier"], count=120,
                seed=5, space="w", rows_per_part=20, micro_batch=4, batch_size=8,
                workers=2, out=str(out), device="cpu")
    base.update(kw)
    return SampleConfig(**base)


def rows(url) -> pa.Table:
    return storage.read_table(url).sort_by("sample_id")


@pytest.fixture(scope="module")
def uninterrupted(ray_cluster, model_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("faults") / "ref"
    run_sample(cfg(model_files, out, workers=1))
    return rows(out)


def test_actor_killed_mid_part_then_job_finishes_with_identical_rows(
        uninterrupted, model_files, tmp_path, monkeypatch):
    marker = tmp_path / "fault-fired"
    monkeypatch.setenv("GANKIT_FAULT_EXIT_AFTER_BATCHES", "4")   # mid part 1 of the actor
    monkeypatch.setenv("GANKIT_FAULT_MARKER", str(marker))
    out = tmp_path / "faulted"
    manifest = run_sample(cfg(model_files, out))
    assert marker.exists(), "the fault hook never fired: the test proves nothing"
    pid = int(marker.read_text())
    assert pid != os.getpid()                                 # it was a worker that died
    assert manifest["status"] == "complete" and manifest["rows"] == 120
    got = rows(out)
    assert got.column("sample_id").to_pylist() == list(range(120))   # none lost or doubled
    assert got.equals(uninterrupted)                          # ids, z, w, logits bitwise
    assert sorted(os.listdir(out)) == ["_manifest.json"] + [storage.part_name(k)
                                                            for k in range(6)]


def test_a_part_that_kills_every_worker_stops_the_job_naming_it(
        uninterrupted, model_files, tmp_path, monkeypatch):
    """Part 3 kills each actor that starts it: after part_attempts starts the job stops with
    one sentence naming the part, and a rerun (the fault gone) computes what is missing,
    part 3 among them, and matches an uninterrupted run."""
    from jobs.runtime import WorkerFailed
    monkeypatch.setenv("GANKIT_FAULT_POISON_PART", "3")
    out = tmp_path / "poisoned"
    with pytest.raises(WorkerFailed) as e:
        run_sample(cfg(model_files, out, workers=1, part_attempts=2))
    msg = str(e.value)
    assert "\n" not in msg and "part 00003: its worker died on each of its 2 starts" in msg, msg
    assert storage.part_name(3) not in os.listdir(out)
    monkeypatch.delenv("GANKIT_FAULT_POISON_PART")
    manifest = run_sample(cfg(model_files, out, workers=1, part_attempts=2))
    assert 3 in manifest["runs"][-1]["computed"]
    assert rows(out).equals(uninterrupted)
    assert sorted(os.listdir(out)) == ["_manifest.json"] + [storage.part_name(k)
                                                            for k in range(6)]


def test_damaged_committed_parts_are_set_aside_and_recomputed_on_rerun(
        uninterrupted, model_files, tmp_path, capsys):
    """A rerun checks each committed part against the manifest's record (size, footer hash):
    a truncated, an edited, a swapped and an emptied part are each named in one sentence, moved to
    _damaged/ and computed again; the rows then equal an uninterrupted run's."""
    out = tmp_path / "damaged"
    first = run_sample(cfg(model_files, out, workers=1))
    assert all({"bytes", "footer_sha256"} <= set(p) for p in first["parts"])
    part = [out / storage.part_name(k) for k in range(6)]
    part[1].write_bytes(part[1].read_bytes()[:-100])          # truncated
    edited = part[2].read_bytes().replace(b'"index": 2', b'"index": 7', 1)
    assert edited != part[2].read_bytes()
    part[2].write_bytes(edited)                               # same size, other footer
    part[3].write_bytes(part[0].read_bytes())                 # another part's file
    part[4].write_bytes(b"")                                  # emptied
    capsys.readouterr()
    manifest = run_sample(cfg(model_files, out, workers=1))
    said = [ln for ln in capsys.readouterr().err.splitlines() if "_damaged/" in ln]
    assert len(said) == 4, said
    assert "part-00001.parquet cannot be read" in said[0]
    assert "part-00002.parquet differs from the part the manifest recorded" in said[1]
    assert "part-00003.parquet is " in said[2] and "where the manifest recorded" in said[2]
    assert "part-00004.parquet cannot be read" in said[3]
    assert manifest["runs"][-1]["computed"] == [1, 2, 3, 4]
    assert rows(out).equals(uninterrupted)
    assert sorted(n.split(".parquet")[0] for n in os.listdir(out / "_damaged")) == [
        "part-00001", "part-00002", "part-00003", "part-00004"]


def test_fault_hook_is_off_without_its_marker(monkeypatch):
    from jobs import runtime
    monkeypatch.setenv("GANKIT_FAULT_EXIT_AFTER_BATCHES", "1")
    monkeypatch.delenv("GANKIT_FAULT_MARKER", raising=False)
    runtime.fault_point()                                     # returns: this process lives
    args = runtime.worker_remote_args(runtime.ActorPlan(1, 0, 1, "cpu"))
    assert args["runtime_env"] == {"env_vars": {"GANKIT_FAULT_EXIT_AFTER_BATCHES": "1"}}
    monkeypatch.delenv("GANKIT_FAULT_EXIT_AFTER_BATCHES")
    assert "runtime_env" not in runtime.worker_remote_args(runtime.ActorPlan(1, 0, 1, "cpu"))


def test_second_job_on_the_same_output_fails_fast_and_the_first_is_intact(
        uninterrupted, model_files, tmp_path):
    out = tmp_path / "shared"
    first = {}

    def job_a():
        try:
            first["manifest"] = run_sample(cfg(model_files, out, count=600, workers=1))
        except BaseException as e:      # surfaced by the assertions below
            first["error"] = e

    a = threading.Thread(target=job_a)
    a.start()
    store = storage.open_store(str(out))
    deadline = time.time() + 120
    while not (store.exists(storage.LEASE) and store.list_parts()):
        assert a.is_alive() and time.time() < deadline, first
        time.sleep(0.02)
    held = store.read_json(storage.LEASE)
    with pytest.raises(storage.LeaseHeld, match=rf"{out} is being written by another 'sample' "
                       rf"job \(pid {os.getpid()} on {socket.gethostname()}"):
        run_sample(cfg(model_files, out, count=600, workers=1))
    assert store.read_json(storage.LEASE)["token"] == held["token"]   # B took nothing over
    a.join(timeout=300)
    assert "error" not in first, first.get("error")
    assert first["manifest"]["rows"] == 600 and len(first["manifest"]["runs"]) == 1
    assert not store.exists(storage.LEASE)                    # released at the end
    got = rows(out)
    assert got.column("sample_id").to_pylist() == list(range(600))
    assert got.slice(0, 120).equals(uninterrupted)           # same seed: same first rows
    assert not [n for n in os.listdir(out) if storage.TMP_TAG in n]


def test_lease_of_a_dead_driver_is_taken_over(uninterrupted, model_files, tmp_path):
    out = tmp_path / "stale"
    os.makedirs(out)
    dead = {"job": "sample", "token": "old", "host": socket.gethostname(), "pid": 2 ** 22 + 7,
            "renewed": time.time()}
    (out / storage.LEASE).write_text(json.dumps(dead))
    run_sample(cfg(model_files, out))
    assert rows(out).equals(uninterrupted)
    assert not (out / storage.LEASE).exists()


def test_lease_rules_local(tmp_path):
    store = storage.open_store(str(tmp_path / "x"), create=True)
    a = storage.JobLease(store, "sample").acquire()
    with pytest.raises(storage.LeaseHeld, match="is being written by another 'sample' job"):
        storage.JobLease(store, "label").acquire()
    a.release()
    assert not store.exists(storage.LEASE)
    with storage.JobLease(store, "label"):                   # free again
        assert store.read_json(storage.LEASE)["job"] == "label"
    # another machine's lease: live while renewed, stale after LEASE_TTL_S
    other = {"job": "sample", "token": "t", "host": "elsewhere", "pid": 1}
    assert not storage.JobLease.stale(dict(other, renewed=time.time()))
    assert storage.JobLease.stale(dict(other, renewed=time.time() - storage.LEASE_TTL_S - 1))


@pytest.mark.parametrize("debris", [b"", b'{"job": "sample", "tok', b"[1, 2]"])
def test_an_unreadable_lease_is_debris_and_taken_over(tmp_path, debris):
    """A 0-byte or half-written `_lease.json` (a kill between create and write, a full disk)
    no longer locks the location for good; leases are now created whole."""
    store = storage.open_store(str(tmp_path / "o"), create=True)
    (tmp_path / "o" / storage.LEASE).write_bytes(debris)
    with storage.JobLease(store, "sample") as lease:
        assert store.read_json(storage.LEASE)["token"] == lease.token
    assert not store.exists(storage.LEASE)
    assert os.listdir(tmp_path / "o") == []                 # no temporary lease left


def test_unreadable_lease_does_not_stop_a_job(ray_cluster, model_files, tmp_path):
    """`mkdir o && : > o/_lease.json && gankit sample ... --out o` used to fail every time."""
    out = tmp_path / "o"
    out.mkdir()
    (out / storage.LEASE).write_bytes(b"")
    manifest = run_sample(SampleConfig(model=model_files["model"], count=10, out=str(out),
                                       rows_per_part=10, device="cpu", workers=1))
    assert manifest["rows"] == 10 and not (out / storage.LEASE).exists()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_job_recognises_its_own_lease(tmp_path, where, request):
    """The reply to a create can be lost and the create retried (S3 clients retry): the job
    then finds its own lease, by its run token, and goes on; another run's is still held."""
    url = str(tmp_path / "o") if where == "local" else \
        f"s3://{request.getfixturevalue('s3_bucket')}/own-lease-{os.getpid()}"
    store = storage.open_store(url, create=True)
    lease = storage.JobLease(store, "sample")
    store.write_bytes(storage.LEASE, lease._record())     # its first create went through
    lease.acquire()
    with pytest.raises(storage.LeaseHeld, match="is being written by another 'sample' job"):
        storage.JobLease(store, "sample").acquire()
    lease.release()
    assert not store.exists(storage.LEASE)


def test_lease_on_s3_uses_a_conditional_put(s3_bucket):
    store = storage.open_store(f"s3://{s3_bucket}/lease-test")
    a = storage.JobLease(store, "sample").acquire()
    with pytest.raises(storage.LeaseHeld, match=rf"s3://{s3_bucket}/lease-test is being "
                                                r"written by another 'sample' job"):
        storage.JobLease(store, "sample").acquire()
    assert store.read_json(storage.LEASE)["token"] == a.token
    a.release()
    assert not store.exists(storage.LEASE)


@pytest.mark.slow
def test_store_stopped_mid_job_fails_in_bounded_time_naming_the_url(ray_cluster, model_files):
    """A second S3-protocol server (its own port: the session's stays up) stopped once the
    job has committed a part: the job fails, within a bound, with an error naming the
    store's URL; it does not hang, and the parts committed before stay readable later."""
    from moto.server import ThreadedMotoServer
    from helpers import free_port
    import s3fs
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    opts = {"endpoint_url": endpoint, "key": "testing", "secret": "testing",
            "client_kwargs": {"region_name": "us-east-1"}, "config_kwargs": {"connect_timeout": 2,
            "read_timeout": 5, "retries": {"max_attempts": 2}}}
    s3fs.S3FileSystem(skip_instance_cache=True, endpoint_url=endpoint, key="testing",
                      secret="testing").mkdir("faulty")   # (a region would be sent as a
                                                          # location constraint moto refuses)
    url = "s3://faulty/out"
    result = {}

    def job():
        try:
            result["manifest"] = run_sample(cfg(model_files, url, count=2000, workers=1,
                                                storage=opts))
        except BaseException as e:
            result["error"] = e

    t = threading.Thread(target=job)
    try:
        t.start()
        store = storage.open_store(url, opts)
        deadline = time.time() + 120
        while not store.list_parts():
            assert t.is_alive() and time.time() < deadline, result
            time.sleep(0.05)
    finally:
        server.stop()
    t.join(timeout=180)
    assert not t.is_alive(), "the job hung after its store went away"
    assert "error" in result, "the job cannot have finished 100 parts without its store"
    from jobs.runtime import WorkerFailed
    err = result["error"]
    assert isinstance(err, WorkerFailed), repr(err)[-2000:]
    assert str(err).startswith(f"sample job writing to {url} failed in a worker: ")
    assert "\n" not in str(err) and f"127.0.0.1:{port}" in str(err), str(err)


def test_cli_names_the_holder_in_one_sentence(ray_cluster, model_files, tmp_path, capsys):
    from jobs.commands.cli import main
    out = tmp_path / "busy"
    store = storage.open_store(str(out), create=True)
    with storage.JobLease(store, "sample"):                  # a live job: this process
        assert main(["sample", "--model", model_files["model"], "--count", "4",
                     "--device", "cpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"gankit sample: error: {out} is being written by another 'sample' "
                          f"job (pid {os.getpid()}") and "\n" not in err, err
    assert sorted(os.listdir(out)) == []                      # nothing written, lease released
