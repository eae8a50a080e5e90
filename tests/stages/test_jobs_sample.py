"""The sample job on the session's real Ray cluster: bit-identical rows whatever the worker
count and batch size, resume after lost parts or a killed driver with nothing lost or
duplicated (the parts committed before the kill kept as they were), and the output
layout/schema contract."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pytest

from jobs import runtime, storage
from jobs.stages.sample import SampleConfig, run_sample

pytestmark = pytest.mark.integration


def sample_cfg(model_files, out, **kw) -> SampleConfig:
    base = dict(model=model_files["model"], classifier=model_files["classifier"], count=90,
                seed=7, space="wp", truncation=0.7, images=True, rows_per_part=20,
                micro_batch=8, out=str(out), device="cpu")
    base.update(kw)
    return SampleConfig(**base)


def rows(url) -> pa.Table:
    t = storage.read_table(url)
    return t.sort_by("sample_id")


@pytest.fixture(scope="module")
def reference(ray_cluster, model_files, tmp_path_factory):
    """One uninterrupted run: 1 worker, batch size 64."""
    out = tmp_path_factory.mktemp("sample") / "reference"
    manifest = run_sample(sample_cfg(model_files, out, workers=1, batch_size=64))
    return out, manifest


def test_layout_schema_and_manifest(reference, model_files):
    out, manifest = reference
    assert sorted(os.listdir(out)) == ["_manifest.json"] + [f"part-{k:05d}.parquet"
                                                            for k in range(5)]
    assert manifest["status"] == "complete" and manifest["rows"] == 90
    assert [(p["start"], p["stop"], p["rows"]) for p in manifest["parts"]] == \
        [(0, 20, 20), (20, 40, 20), (40, 60, 20), (60, 80, 20), (80, 90, 10)]
    t = rows(out)
    assert t.column("sample_id").to_pylist() == list(range(90))
    assert t.schema.field("z").type == pa.list_(pa.float32(), 16)
    assert t.schema.field("wp").type == pa.list_(pa.float32(), 4 * 16)       # 8px: 4 ws
    assert t.schema.field("wp").metadata[b"shape"] == b"[4, 16]"
    assert t.schema.field("image").type == pa.struct([("bytes", pa.binary()),
                                                       ("path", pa.string())])
    assert [n for n in t.column_names if n.startswith("logit_")] == \
        ["logit_smile", "logit_age", "logit_glasses"]
    from gankit.images import decode_image
    assert decode_image(t.column("image")[0]["bytes"].as_py()).shape == (8, 8, 3)
    # row i is a function of (seed, i) only: z of part 3 matches a direct draw
    from gankit.latent.latents import sample_z
    z = np.stack(t.column("z").to_numpy(zero_copy_only=False)[60:80])
    assert np.array_equal(z, sample_z(7, np.arange(60, 80), 16))


def test_rows_identical_whatever_workers_and_batch_size(reference, model_files, tmp_path):
    ref_out, _ = reference
    other = tmp_path / "other"
    run_sample(sample_cfg(model_files, other, workers=2, batch_size=5))
    a, b = rows(ref_out), rows(other)
    assert a.num_rows == b.num_rows == 90
    for name in a.column_names:            # bitwise: latents, PNG bytes and logits
        assert a.column(name).equals(b.column(name)), name


def test_rerun_recomputes_only_missing_parts(reference, model_files, tmp_path):
    ref_out, _ = reference
    out = tmp_path / "resume"
    cfg = sample_cfg(model_files, out, workers=2, batch_size=16)
    run_sample(cfg)
    for k in (1, 3):                       # lose two parts (a crash before they committed)
        os.remove(out / storage.part_name(k))
    kept = {k: os.stat(out / storage.part_name(k)).st_mtime_ns for k in (0, 2, 4)}
    manifest = run_sample(cfg)
    last = manifest["runs"][-1]
    assert last["computed"] == [1, 3] and last["reused"] == [0, 2, 4]
    assert len(manifest["runs"]) == 2 and manifest["rows"] == 90
    assert {k: os.stat(out / storage.part_name(k)).st_mtime_ns for k in kept} == kept
    assert rows(out).equals(rows(ref_out))


def test_rerun_with_other_row_settings_is_refused(reference, model_files):
    out, _ = reference
    with pytest.raises(ValueError, match=r"written with seed=7, this job has seed=8"):
        run_sample(sample_cfg(model_files, out, seed=8))


def test_killed_driver_then_rerun_gives_the_uninterrupted_rows(ray_cluster, model_files,
                                                                tmp_path):
    """`gankit sample` in a subprocess (a second driver on the session cluster), killed with
    SIGKILL once a part is committed while another is certainly in flight: the test-only
    hold hook keeps the first part to start running until its process dies. The rerun
    reuses the committed parts untouched (same inode, same mtime), computes the others, the
    held one among them, and its rows equal an uninterrupted run's, every id once."""
    args = ["--model", model_files["model"], "--classifier", model_files["classifier"],
            "--count", "200", "--seed", "11", "--rows-per-part", "20", "--images",
            "--space", "w", "--workers", "2", "--device", "cpu"]
    killed, whole, held = tmp_path / "killed", tmp_path / "whole", tmp_path / "held"
    env = dict(os.environ, RAY_ADDRESS=ray_cluster.get_runtime_context().gcs_address,
               RAY_AUTH_MODE="disabled", GANKIT_FAULT_HOLD_MARKER=str(held))
    log = open(tmp_path / "driver.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jobs.commands.cli", "sample", *args, "--out",
                             str(killed)], env=env, stdout=log, stderr=subprocess.STDOUT)
    store = storage.open_store(str(killed))
    deadline = time.time() + 240
    while not (held.exists() and store.list_parts()):
        assert proc.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
        assert time.time() < deadline, "no part held, or none committed"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _, held_pid, held_part = held.read_text().split()
    wait_gone(int(held_pid))                # Ray ends a dead driver's actors
    at_kill = {k: stamp(killed / storage.part_name(k)) for k in store.list_parts()}
    assert int(held_part) not in at_kill
    assert storage.read_manifest(store)["status"] == "incomplete"
    assert (killed / runtime.ATTEMPTS_DIR).exists()          # the killed run's start markers

    from jobs.commands.cli import main
    assert main(["sample", *args, "--out", str(killed), "--batch-size", "32"]) == 0
    assert main(["sample", *args, "--out", str(whole), "--workers", "1"]) == 0
    manifest = storage.read_manifest(store)
    first, last = manifest["runs"]
    assert first["finished"] is None and first["computed"] == list(range(10))
    assert set(last["reused"]) >= set(at_kill)
    assert set(last["reused"]) | set(last["computed"]) == set(range(10))
    assert not set(last["reused"]) & set(last["computed"])
    assert int(held_part) in last["computed"]
    for k, before in at_kill.items():       # reused as they were: not written again
        assert stamp(killed / storage.part_name(k)) == before, k
    a, b = rows(killed), rows(whole)
    assert a.column("sample_id").to_pylist() == list(range(200))     # none lost, none doubled
    for name in a.column_names:               # bitwise, naming the parts that differ
        differ = [k for k in range(10)
                  if not a.column(name)[20 * k:20 * k + 20].equals(b.column(name)[20 * k:20 * k + 20])]
        assert not differ, f"column {name} differs in parts {differ} (committed at kill: {sorted(at_kill)})"
    assert sorted(os.listdir(killed)) == ["_manifest.json"] + [storage.part_name(k)
                                                              for k in range(10)]


def stamp(path) -> tuple:
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns, st.st_size


def wait_gone(pid: int, timeout: float = 60) -> None:
    """Until process `pid` has exited (a zombie counts as gone)."""
    deadline = time.time() + timeout
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
        except FileNotFoundError:
            return
        assert time.time() < deadline, f"process {pid} outlived its driver"
        time.sleep(0.1)


def test_cli_bad_space_is_one_sentence_naming_the_field(capsys, tmp_path):
    from jobs.commands.cli import main
    assert main(["sample", "--count", "4", "--out", str(tmp_path / "x"), "--space", "q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "gankit sample: error: space must be one of z, w, wp (got 'q')"
    assert not (tmp_path / "x").exists()


def test_missing_model_file_fails_before_any_work(ray_cluster, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model: no generator at /nowhere/g"):
        run_sample(SampleConfig(model="/nowhere/g", count=4, out=str(tmp_path / "x")))
    assert not (tmp_path / "x").exists()
