"""Hostile outputs and configs: names that climb out of the output location, symbolic
links planted in it, and pipeline configs that point a stage elsewhere are refused, and
nothing is written outside. (Hostile pickles and torch files: tests/loading/test_checkpoints.py.)"""
import os

import numpy as np
import pyarrow as pa
import pytest

from jobs import storage
from jobs.storage import StoreError

pytestmark = pytest.mark.integration


def listing(path) -> list:
    return sorted(os.path.relpath(os.path.join(d, f), path)
                  for d, _, fs in os.walk(path) for f in fs)


@pytest.mark.parametrize("name", ["../escape.json", "_errors/../../escape.json", "/etc/x",
                                  "boundaries/w/../../../escape.npz", "a//b", "./x"])
def test_names_leaving_the_root_are_refused_before_writing(tmp_path, name):
    root = tmp_path / "out"
    store = storage.open_store(str(root), create=True)
    with pytest.raises(StoreError, match=r"refusing the name .* would leave the output"):
        store.write_bytes(name, b"{}")
    with pytest.raises(StoreError, match=r"would leave the output"):
        storage.PartWriter(store, name, pa.schema([("a", pa.int64())]))
    assert listing(tmp_path) == []


def test_fit_refuses_an_attribute_name_that_climbs_out(ray_cluster, model_files, tmp_path):
    """A samples dataset whose logit column is named `logit_../../../escape`: the boundary
    file name comes from it, and would land three levels above `boundaries/w/`."""
    from gankit.data import latent_column
    from jobs.stages.fit import FitConfig, run_fit
    rng = np.random.default_rng(0)
    n = 200
    w = rng.standard_normal((n, 4)).astype(np.float32)
    evil = "../../../escape"
    table = pa.table({"sample_id": pa.array(np.arange(n)), "w": latent_column(w),
                      f"logit_{evil}": pa.array(w[:, 0] + 0.1 * rng.standard_normal(n))})
    src = storage.open_store(str(tmp_path / "samples"), create=True)
    storage.write_table_part(src, storage.part_name(0), table, {"index": 0})
    out = tmp_path / "deep" / "fit"
    with pytest.raises(StoreError, match=r"would leave the output location"):
        run_fit(FitConfig(samples=src.url, out=str(out), spaces=["w"], fraction=0.25))
    assert not (tmp_path / "escape.npz").exists() and not (tmp_path / "deep" / "escape.npz").exists()
    assert [p for p in listing(tmp_path) if "escape" in p] == []


def test_symlinked_errors_dir_is_refused_and_nothing_lands_outside(ray_cluster, model_files,
                                                                   tmp_path):
    import pyarrow.parquet as pq
    from jobs.stages.label import LabelConfig, run_label
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ".keep.tmp-x").write_text("must survive")        # looks like a temporary
    src = tmp_path / "images"
    src.mkdir()
    pq.write_table(pa.table({"image_id": ["a", "b"], "image": pa.array(
        [{"bytes": b"not an image", "path": None}] * 2,
        pa.struct([("bytes", pa.binary()), ("path", pa.string())]))}), src / "a.parquet")
    out = tmp_path / "labeled"
    out.mkdir()
    os.symlink(outside, out / "_errors")
    with pytest.raises(Exception, match=r"resolves to .*outside.* \(a symbolic link\?\)"):
        run_label(LabelConfig(images=str(src), out=str(out), resolution=8, workers=1,
                              classifier=model_files["classifier"], device="cpu"))
    assert listing(outside) == [".keep.tmp-x"]
    assert not list(out.glob("part-*"))                          # no part without its errors


def test_symlinked_part_is_not_resumed(ray_cluster, model_files, tmp_path):
    from jobs.stages.sample import SampleConfig, run_sample
    out = tmp_path / "s"
    cfg = SampleConfig(model=model_files["model"], count=20, rows_per_part=10, space="w",
                       micro_batch=4, workers=1, device="cpu", out=str(out))
    run_sample(cfg)
    planted = tmp_path / "planted.parquet"
    os.replace(out / "part-00001.parquet", planted)            # someone else's rows
    os.symlink(planted, out / "part-00001.parquet")
    before = planted.read_bytes()
    with pytest.raises(StoreError, match=r"part-00001.parquet is a symbolic link, not a "
                                         r"committed part"):
        run_sample(cfg)
    assert planted.read_bytes() == before


def test_lease_symlink_to_an_outside_file_is_never_written(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(victim, out / storage.LEASE)
    store = storage.open_store(str(out))
    with pytest.raises(storage.LeaseHeld):
        storage.JobLease(store, "sample").acquire()
    assert victim.read_text() == "precious"


def test_a_pti_row_whose_change_holds_nan_is_an_error_record(model_files, tmp_path):
    """PTI rows fed to edit with their float16 change damaged (NaN, inf, a null row): those
    rows become error records like rows with NaN latents, instead of images of NaN (or the
    whole part failing on the null); the others edit."""
    from gankit.latent import pti
    from gankit.latent.boundaries import Boundary
    from gankit.loading.checkpoints import load_generator
    from gankit.data import latent_column
    from jobs.stages.edit import EditConfig, run_edit
    G = load_generator(model_files["model"])
    layout = pti.delta_layout(G, 1)
    n = 6
    flat = np.random.default_rng(0).standard_normal((n, layout.size)).astype(np.float16)
    flat[1, 3], flat[4, 0] = np.nan, np.inf
    w = np.random.default_rng(1).standard_normal((n, G.w_dim)).astype(np.float32)
    table = pa.table({"sample_id": pa.array(range(n), pa.int64()), "w": latent_column(w)})
    table = table.append_column(pti.delta_field(layout), pa.FixedSizeListArray.from_arrays(
        pa.array(flat.reshape(-1)), layout.size, mask=pa.array([j == 5 for j in range(n)])))
    src = storage.open_store(str(tmp_path / "pti"), create=True)
    storage.write_table_part(src, storage.part_name(0), table, {})
    b = tmp_path / "w.npz"
    Boundary("smile", "w", np.eye(G.w_dim, dtype=np.float32)[0], 0.0).save(b)
    manifest = run_edit(EditConfig(latents=str(tmp_path / "pti"), out=str(tmp_path / "o"),
                                   boundaries=[str(b)], strengths=[1.0], classifier=None,
                                   model=model_files["model"], micro_batch=2, batch_size=2,
                                   device="cpu", runner="local"))
    edited = storage.read_table(str(tmp_path / "o"))
    assert sorted(edited.column("sample_id").to_pylist()) == [0, 2, 3]
    errors = storage.read_table(storage.open_store(str(tmp_path / "o")).child("_errors"))
    assert sorted(errors.column("id").to_pylist()) == ["1", "4", "5"]
    assert set(errors.column("reason").to_pylist()) == {"its PTI change (pti_delta) is null "
                                                        "or holds NaN or inf"}
    assert manifest["errors"] == 3


def test_a_pti_column_with_damaged_layout_metadata_is_named():
    """Was `JSONDecodeError: Expecting property name ...` with no column named."""
    from gankit.latent import pti
    field = pa.field(pti.DELTA_COLUMN, pa.list_(pa.float16(), 4),
                     metadata={pti.LAYOUT_KEY: b"{not json"})
    with pytest.raises(ValueError, match=r"column 'pti_delta': its PTI layout metadata is "
                                         r"damaged \(JSONDecodeError"):
        pti.layout_of(field)
