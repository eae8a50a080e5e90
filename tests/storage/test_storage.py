"""jobs.storage: fixed partitions, atomic part commits, streaming reads, manifests, and
one-sentence failures for bad or unreachable stores. No Ray here."""
import json
import os

import numpy as np
import pyarrow as pa
import pytest

from jobs import storage
from jobs.storage import PartSpec, PartWriter, StoreError


def table(start: int, n: int) -> pa.Table:
    ids = np.arange(start, start + n, dtype=np.int64)
    return pa.table({"sample_id": ids, "x": (ids * 0.5).astype(np.float32)})


def test_part_ranges_are_fixed_by_count_and_rows_per_part():
    parts = storage.part_ranges(10, 4)
    assert parts == [PartSpec(0, 0, 4), PartSpec(1, 4, 8), PartSpec(2, 8, 10)]
    assert sum(p.rows for p in parts) == 10
    with pytest.raises(ValueError):
        storage.part_ranges(10, 0)


def test_part_commit_is_atomic_and_listing_ignores_temporaries(tmp_path):
    store = storage.open_store(str(tmp_path / "ds"), create=True)
    w = PartWriter(store, storage.part_name(0), table(0, 3).schema)
    w.write(table(0, 3))
    # written but not committed: only a hidden temporary exists, no final part
    assert store.list_parts() == {}
    assert any(storage.TMP_TAG in n for n in os.listdir(store.root))
    w.commit({"index": 0, "start": 0, "stop": 3, "errors": 0})
    assert list(store.list_parts()) == [0]
    assert not any(storage.TMP_TAG in n for n in os.listdir(store.root))
    _, rows, meta = storage.part_footer(store, store.list_parts()[0])
    assert rows == 3 and meta["start"] == 0 and meta["rows"] == 3


def test_failed_writer_leaves_nothing_and_killed_writer_leftovers_are_removed(tmp_path):
    store = storage.open_store(str(tmp_path / "ds"), create=True)
    with pytest.raises(RuntimeError):
        with PartWriter(store, storage.part_name(1), table(0, 2).schema) as w:
            w.write(table(0, 2))
            raise RuntimeError("worker crashed mid-part")
    assert store.list_parts() == {} and os.listdir(store.root) == []
    # a killed process cannot clean up: its temporary is ignored, then removed on rerun
    with open(os.path.join(store.root, f".part-00002.parquet{storage.TMP_TAG}dead"), "wb") as f:
        f.write(b"PAR1 half a file")
    assert store.list_parts() == {}
    assert store.remove_temporaries() == 1
    assert os.listdir(store.root) == []


def test_iter_tables_streams_parts_in_order_by_row_group(tmp_path):
    store = storage.open_store(str(tmp_path / "ds"), create=True)
    for k in (2, 0, 1):          # committed out of order, read back in part order
        with PartWriter(store, storage.part_name(k), table(0, 1).schema) as w:
            w.write(table(10 * k, 5))
            w.write(table(10 * k + 5, 5))
            w.commit({"index": k, "errors": 0})
    chunks = list(storage.iter_tables(store, columns=["sample_id"]))
    assert len(chunks) == 6 and all(c.num_rows == 5 for c in chunks)
    assert chunks[0].column_names == ["sample_id"]
    ids = np.concatenate([c.column(0).to_numpy() for c in chunks])
    assert np.array_equal(ids, np.arange(30))
    assert storage.PART_META_KEY not in (chunks[0].schema.metadata or {})


def test_manifest_and_identity_check(tmp_path):
    store = storage.open_store(str(tmp_path / "ds"), create=True)
    plan = storage.part_ranges(4, 2)
    storage.write_table_part(store, storage.part_name(0), table(0, 2), {"index": 0, "errors": 1})
    metas = storage.footer_metas(store, store.list_parts())
    run = storage.RunRecord(computed=[0])
    m = storage.write_manifest(store, "sample", {"seed": 1}, {"seed": 1, "workers": 2}, plan,
                               metas, table(0, 1).schema, [run], complete=True)
    assert m["status"] == "incomplete" and m["rows"] == 2 and m["errors"] == 1
    size = (tmp_path / "ds" / "part-00000.parquet").stat().st_size
    entry = m["parts"][0]
    assert {k: entry[k] for k in entry if k != "footer_sha256"} == {
        "index": 0, "file": "part-00000.parquet", "start": 0, "stop": 2, "rows": 2,
        "errors": 1, "bytes": size}
    assert len(entry["footer_sha256"]) == 64
    on_disk = json.loads((tmp_path / "ds" / storage.MANIFEST).read_text())
    assert on_disk["schema"]["fields"][0] == {"name": "sample_id", "type": "int64"}
    assert storage.check_identity(store, "sample", {"seed": 1})["job"] == "sample"
    with pytest.raises(ValueError, match=r"written with seed=1, this job has seed=2"):
        storage.check_identity(store, "sample", {"seed": 2})
    with pytest.raises(ValueError, match="output of a 'sample' job"):
        storage.check_identity(store, "edit", {"seed": 1})
    # a key a later version adds (and sets only when on) leaves older outputs resumable,
    # but a key the output has and this job lacks is a difference too
    with pytest.raises(ValueError, match=r"written with mode=None, this job has mode='hybrid'"):
        storage.check_identity(store, "sample", {"seed": 1, "mode": "hybrid"})
    storage.write_manifest(store, "sample", {"seed": 1, "mode": "hybrid"}, {}, plan, metas,
                           table(0, 1).schema, [run], complete=True)
    with pytest.raises(ValueError, match=r"written with mode='hybrid', this job has mode=None"):
        storage.check_identity(store, "sample", {"seed": 1})


def test_bad_url_fails_with_one_sentence():
    with pytest.raises(StoreError, match=r"nosuchproto://x/y is not a usable storage URL"):
        storage.open_store("nosuchproto://x/y")
    with pytest.raises(StoreError, match="non-empty string"):
        storage.open_store("")


def test_missing_dataset_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nothing")):
        storage.open_store(str(tmp_path / "nothing"), must_exist=True)


@pytest.mark.s3
def test_unreachable_s3_endpoint_fails_fast_naming_the_url(monkeypatch):
    from helpers import free_port
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nobody listens
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    with pytest.raises(StoreError, match=r"cannot reach the store at s3://bucket/out"):
        storage.open_store("s3://bucket/out")


@pytest.mark.s3
def test_s3_parts_commit_with_one_put_and_missing_bucket_is_named(s3_bucket):
    url = f"s3://{s3_bucket}/storage-test"
    store = storage.open_store(url, create=True)
    with PartWriter(store, storage.part_name(3), table(0, 1).schema) as w:
        w.write(table(0, 4))
        assert store.list_parts() == {}        # nothing visible before the commit
        w.commit({"index": 3, "errors": 0})
    assert list(store.list_parts()) == [3]
    assert storage.read_table(url).column("sample_id").to_pylist() == [0, 1, 2, 3]
    store.write_json("_manifest.json", {"job": "x"})
    assert store.read_json("_manifest.json") == {"job": "x"}
    with pytest.raises(StoreError, match=r"the bucket of s3://no-such-bucket/x does not exist"):
        storage.open_store("s3://no-such-bucket/x")


def test_a_flipped_bit_in_a_part_fails_its_page_checksum_naming_the_file(tmp_path):
    """Parts carry page checksums, verified on read: a flipped bit used to read back as a
    wrong latent (and fit accepted it)."""
    from gankit.data import latent_column
    store = storage.open_store(str(tmp_path / "d"), create=True)
    z = np.random.default_rng(0).standard_normal((2000, 16)).astype(np.float32)
    table = pa.table({"sample_id": np.arange(2000), "z": latent_column(z)})
    storage.write_table_part(store, storage.part_name(0), table, {"index": 0, "errors": 0})
    assert storage.read_table(store).equals(table)
    path = tmp_path / "d" / storage.part_name(0)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x10                       # inside the z pages
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"part-00000\.parquet is damaged: row group 0 fails "
                                         r"its check .*delete the file and rerun"):
        storage.read_table(store)


def test_local_parts_are_read_through_arrows_own_file(tmp_path):
    """Python-backed buffers released by an Arrow thread while the interpreter exits abort
    the process (exit 134, about 1 exit in 4 right after a read): local reads avoid them."""
    store = storage.open_store(str(tmp_path / "d"), create=True)
    storage.write_table_part(store, storage.part_name(0), pa.table({"x": [1, 2]}), {"index": 0})
    f = store.open_for_arrow(store.path(storage.part_name(0)))
    assert isinstance(f, pa.NativeFile) and not isinstance(f, pa.PythonFile)
    f.close()
    assert storage.read_table(store).column("x").to_pylist() == [1, 2]


def test_a_failed_small_write_leaves_no_temporary(tmp_path):
    """Any failure between creating the temporary and renaming it (a full disk in practice;
    here data the file cannot take) removes the temporary: fit retries on a full disk used
    to leave one `.npz.tmp-*` per try."""
    store = storage.open_store(str(tmp_path / "d"), create=True)
    with pytest.raises(TypeError):
        store.write_bytes("boundaries/w/smile.npz", object())
    assert os.listdir(tmp_path / "d" / "boundaries" / "w") == []
    store.write_bytes("boundaries/w/smile.npz", b"ok")
    assert os.listdir(tmp_path / "d" / "boundaries" / "w") == ["smile.npz"]
