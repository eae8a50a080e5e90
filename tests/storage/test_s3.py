"""sample -> fit -> edit against a real S3-protocol server (moto, on loopback), written and
read by Ray workers in other processes: they reach it through the jobs' `storage` options,
as they would a user's bucket (the driver here also has the AWS_* environment)."""
import json
import uuid

import pytest

from jobs import storage

pytestmark = [pytest.mark.integration, pytest.mark.s3]


@pytest.fixture(scope="module")
def s3_run(ray_cluster, s3_bucket, s3_options, model_files, tmp_path_factory):
    import yaml
    from jobs.stages.pipeline import load_config, run_pipeline
    root = f"s3://{s3_bucket}/runs/{uuid.uuid4().hex[:8]}"
    cfg = {"root": root, "stages": ["sample", "fit", "edit"], "model": model_files["model"],
           "classifier": model_files["classifier"], "device": "cpu", "workers": 2,
           "storage": s3_options,
           "sample": {"count": 300, "seed": 5, "space": "w", "images": True,
                      "rows_per_part": 75, "micro_batch": 8},
           "fit": {"spaces": ["z", "w"], "fraction": 0.1, "conditions": [["smile", ["age"]]]},
           "edit": {"boundaries": ["w/smile", "w/smile__cond_age"], "strengths": [-1.0, 1.0],
                    "count": 5}}
    path = tmp_path_factory.mktemp("s3cfg") / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return root, run_pipeline(load_config(str(path))), str(path)


def s3fs_client():
    import s3fs
    return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)


def test_every_stage_lands_in_the_bucket(s3_run):
    root, results, _ = s3_run
    fs, prefix = s3fs_client(), root[len("s3://"):]
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{prefix}/samples"))
    assert names == ["_manifest.json"] + [f"part-{k:05d}.parquet" for k in range(4)]
    manifest = json.loads(fs.cat_file(f"{prefix}/samples/_manifest.json"))
    assert manifest["status"] == "complete" and manifest["rows"] == 300
    samples = storage.read_table(f"{root}/samples")
    assert samples.column("sample_id").to_pylist() == list(range(300))
    assert samples.column("image")[0]["bytes"].as_py().startswith(b"\x89PNG")
    index = json.loads(fs.cat_file(f"{prefix}/fit/boundaries.json"))
    assert {e["name"] for e in index["boundaries"]} == {
        "z/smile", "z/age", "z/glasses", "z/smile__cond_age",
        "w/smile", "w/age", "w/glasses", "w/smile__cond_age"}
    for e in index["boundaries"]:
        assert fs.exists(f"{prefix}/fit/{e['path']}")
    edits = storage.read_table(f"{root}/edits")
    assert results["edit"]["rows"] == edits.num_rows == 5 * 2 * 2
    assert set(edits.column("boundary").to_pylist()) == {"w/smile", "w/smile__cond_age"}


def test_lost_s3_part_is_recomputed_alone_and_identically(s3_run):
    from jobs.stages.pipeline import load_config, stage_configs
    from jobs.stages.sample import run_sample
    root, _, path = s3_run
    fs, prefix = s3fs_client(), root[len("s3://"):]
    before = storage.read_table(f"{root}/samples")
    fs.rm(f"{prefix}/samples/part-00002.parquet")
    manifest = run_sample(stage_configs(load_config(path))["sample"])
    assert manifest["runs"][-1]["computed"] == [2]
    assert manifest["runs"][-1]["reused"] == [0, 1, 3]
    assert storage.read_table(f"{root}/samples").equals(before)


def test_missing_bucket_fails_before_any_work(ray_cluster, s3_server, model_files):
    from jobs.stages.sample import SampleConfig, run_sample
    with pytest.raises(storage.StoreError, match=r"the bucket of s3://no-bucket-here/x does "
                                                 r"not exist"):
        run_sample(SampleConfig(model=model_files["model"], count=4, out="s3://no-bucket-here/x"))


def test_a_part_streams_as_a_multipart_upload_visible_only_at_commit(s3_bucket):
    """Row groups go up in 5 MiB parts while they are written; the key appears only at
    commit, and an aborted part leaves neither a key nor an open upload."""
    import os

    import pyarrow as pa
    prefix = f"s3://{s3_bucket}/mpu/{uuid.uuid4().hex[:8]}"
    store = storage.Store(prefix, {"default_block_size": 5 << 20})
    assert store.multipart
    table = pa.table({"i": list(range(4)), "blob": [os.urandom(1 << 20) for _ in range(4)]})
    fs = s3fs_client()
    with storage.PartWriter(store, storage.part_name(0), table.schema) as w:
        for _ in range(4):                                          # 16 MiB: several parts
            w.write(table)
        assert len(w.upload.parts or []) >= 2 and not fs.exists(f"{prefix[5:]}/part-00000.parquet")
        footer = w.commit({"index": 0, "errors": 0})
    assert store.list_parts() == {0: f"{prefix[5:]}/part-00000.parquet"}
    assert footer.record() == storage.read_footer(store, store.list_parts()[0]).record()
    assert storage.part_footer(store, store.list_parts()[0])[1:] == (16, {"index": 0,
                                                                          "errors": 0, "rows": 16})
    with pytest.raises(RuntimeError, match="the model failed"):
        with storage.PartWriter(store, storage.part_name(1), table.schema) as w:
            for _ in range(4):
                w.write(table)
            raise RuntimeError("the model failed")
    assert sorted(store.list_parts()) == [0]
    uploads = fs.call_s3("list_multipart_uploads", Bucket=s3_bucket).get("Uploads", [])
    assert not [u for u in uploads if u["Key"].startswith(prefix[5:])]
