"""The pipeline's optional stages: `heldout` (the edits are made on fresh samples the fit
never saw) and `invert` (real images inverted, then edited, in one config). What is checked
is the wiring between stages, so the stages run where `auto` puts them here (in this
process); the same pipeline on Ray actors: test_jobs_pipeline.py, test_s3.py, test_demo.py."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs import storage
from test_jobs_pipeline import write_config

pytestmark = pytest.mark.integration


def test_heldout_samples_are_what_gets_edited(model_files, tmp_path):
    from jobs.stages.pipeline import load_config, run_pipeline
    path = write_config(tmp_path / "run.yaml", model_files, tmp_path / "root", workers=0,
                        stages=["sample", "fit", "heldout", "edit"],
                        heldout={"count": 12, "rows_per_part": 6})
    run_pipeline(load_config(path))
    root = tmp_path / "root"
    fitted = storage.read_table(str(root / "samples")).sort_by("sample_id")
    fresh = storage.read_table(str(root / "heldout")).sort_by("sample_id")
    assert fresh.num_rows == 12 and fresh.schema.names == fitted.schema.names
    z_fit, z_new = (np.stack(t.column("z").to_numpy(zero_copy_only=False))
                    for t in (fitted, fresh))
    assert not np.isclose(z_fit[:12], z_new).all(axis=1).any()      # seed + 1: other draws
    manifest = storage.read_manifest(storage.open_store(str(root / "edits")))
    assert manifest["config"]["latents"] == str(root / "heldout")
    edits = storage.read_table(str(root / "edits"))
    assert set(edits.column("sample_id").to_pylist()) == set(range(6))   # edit.count 6


def toy_image_dataset(root, n: int) -> str:
    from gankit.toy import toyfaces
    from gankit.data import image_column, make_table
    from gankit.images import encode_png
    faces = toyfaces.render(toyfaces.sample_factors(n, seed=11), 32)     # [n, 32, 32, 3]
    root.mkdir()
    table = make_table({"image_id": np.array([f"face-{i}" for i in range(n)], dtype=object),
                        "image": image_column([encode_png(f) for f in faces])},
                       id_column="image_id")
    pq.write_table(table, str(root / "faces.parquet"))
    return str(root)


def test_invert_then_edit_in_one_config(tmp_path):
    from jobs.stages.pipeline import load_config, run_pipeline
    images = toy_image_dataset(tmp_path / "faces", 3)
    path = write_config(
        tmp_path / "run.yaml", {"model": "toy", "classifier": "toy"}, tmp_path / "root",
        workers=0,
        stages=["sample", "fit", "invert", "edit"],
        sample={"count": 200, "space": "w", "rows_per_part": 100},
        fit={"spaces": ["w"], "fraction": 0.2},
        invert={"images": images, "space": "w", "steps": 3, "batch_size": 3,
                "save_noise": True, "keep_target": True},
        edit={"boundaries": ["w/eyeglasses"], "strengths": [0.0, 3.0], "keep_input": True})
    run_pipeline(load_config(path))
    root = tmp_path / "root"
    inverted = storage.read_table(str(root / "inverted"))
    assert sorted(inverted.column("image_id").to_pylist()) == ["face-0", "face-1", "face-2"]
    edits = storage.read_table(str(root / "edits"))
    assert edits.num_rows == 3 * 2
    target = dict(zip(inverted.column("image_id").to_pylist(),
                      inverted.column("target").to_pylist()))
    for i, cell in zip(edits.column("image_id").to_pylist(), edits.column("input").to_pylist()):
        assert cell["bytes"] == target[i]["bytes"]
    hi = edits.filter(pa.compute.equal(edits["strength"], 3.0))
    lo = edits.filter(pa.compute.equal(edits["strength"], 0.0))
    assert hi.column("image").to_pylist() != lo.column("image").to_pylist()
