"""Image files as input (jobs.image_inputs): a folder, a glob, a .txt list of URLs, Parquet
rows with a path and no bytes; fixed parts across reruns; junk files as error records."""
from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from gankit.images import decode_image
from jobs import storage
from jobs import listing
from jobs.image_inputs import no_bytes_reason, part_tables, plan_image_inputs
from jobs.label import LabelConfig, run_label


def photo_bytes(seed: int, fmt: str = "PNG", size: int = 8) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **({"lossless": True} if fmt == "WEBP"
                                                      else {}))
    return buf.getvalue()


@pytest.fixture
def folder(tmp_path):
    """A folder of photos: nested, three formats, a junk file, a hidden file."""
    root = tmp_path / "photos"
    (root / "b").mkdir(parents=True)
    (root / "a.png").write_bytes(photo_bytes(0))
    (root / "b" / "c.jpg").write_bytes(photo_bytes(1, "JPEG"))
    (root / "b" / "d.webp").write_bytes(photo_bytes(2, "WEBP"))
    (root / "notes.txt").write_bytes(b"not a photo")
    (root / ".hidden.png").write_bytes(photo_bytes(3))
    return root


def plan(url: str, out=None, per_part: int = 2):
    src = storage.open_store(url)
    out_store = storage.open_store(str(out), create=True) if out is not None else None
    return src, plan_image_inputs(src, "image", None, url, out=out_store,
                                  images_per_part=per_part)


def ids_of(inputs) -> list:
    """The ids of an image-file input's listing, in order."""
    return inputs.listing.read(0, inputs.rows).column("image_id").to_pylist()


def rows_of(src, inputs) -> dict:
    """{id: bytes} over every part, read as the workers read them."""
    got = {}
    for spec in inputs.plan:
        for t in part_tables(src, inputs, spec, "image", ["image_id", "image"], 16):
            for i, item in zip(t.column("image_id").to_pylist(), t.column("image").to_pylist()):
                got[i] = item["bytes"]
    return got


def test_folder_lists_every_file_by_relative_path_in_fixed_parts(folder):
    src, inputs = plan(str(folder))
    assert ids_of(inputs) == ["a.png", "b/c.jpg", "b/d.webp", "notes.txt"]
    assert [(p.start, p.stop) for p in inputs.plan] == [(0, 2), (2, 4)]
    got = rows_of(src, inputs)
    assert got["b/c.jpg"] == (folder / "b" / "c.jpg").read_bytes()
    assert decode_image(got["b/d.webp"]).shape == (8, 8, 3)
    assert inputs.identity()["input_listing"] == plan(str(folder))[1].listing.sha256


def test_glob_ids_are_relative_to_its_fixed_prefix(folder):
    src, inputs = plan(str(folder / "b" / "*.*"))
    assert ids_of(inputs) == ["c.jpg", "d.webp"]
    src, inputs = plan(str(folder) + "/**/*.webp")
    assert ids_of(inputs) == ["b/d.webp"]


def test_list_file_takes_relative_and_absolute_entries(folder, tmp_path):
    lst = folder / "list.txt"
    lst.write_text(f"# photos\nb/c.jpg\n\n{folder / 'a.png'}\nb/c.jpg\nmissing.png\n")
    src, inputs = plan(str(lst))
    assert ids_of(inputs) == ["a.png", "b/c.jpg", "missing.png"]
    got = rows_of(src, inputs)
    assert got["a.png"] == (folder / "a.png").read_bytes()
    assert got["missing.png"] is None                 # unreadable: no bytes, its URL kept
    t = next(part_tables(src, inputs, inputs.plan[1], "image", [], 16))
    assert "missing.png cannot be read" in no_bytes_reason(t.column("image").to_pylist()[0])


def test_parquet_rows_with_a_path_and_no_bytes_are_read_from_it(folder, tmp_path):
    data = tmp_path / "data"
    (data / "img").mkdir(parents=True)
    (data / "img" / "x.png").write_bytes(photo_bytes(5))
    column = pa.StructArray.from_arrays(
        [pa.array([photo_bytes(6), None, None], pa.binary()),
         pa.array([None, "img/x.png", "../photos/a.png"], pa.string())], ["bytes", "path"])
    pq.write_table(pa.table({"image_id": ["inline", "by_path", "escaping"], "image": column}),
                   data / "rows.parquet")
    src, inputs = plan(str(data))
    got = rows_of(src, inputs)
    assert got["by_path"] == (data / "img" / "x.png").read_bytes()
    assert got["inline"] == photo_bytes(6)
    assert got["escaping"] is None                    # a path leaving the dataset is refused


def test_rerun_after_a_file_is_added_keeps_the_parts(ray_cluster, folder, tmp_path):
    out = tmp_path / "labels"
    cfg = LabelConfig(images=str(folder), out=str(out), images_per_part=2, workers=1,
                      micro_batch=2)
    first = run_label(cfg)
    assert first["rows"] == 3 and first["errors"] == 1
    index = json.loads((out / listing.INDEX).read_text())
    (folder / "b" / "added.png").write_bytes(photo_bytes(9))
    (out / "part-00001.parquet").unlink()             # a part to recompute
    second = run_label(cfg)
    assert json.loads((out / listing.INDEX).read_text()) == index
    assert [(p["start"], p["stop"]) for p in second["parts"]] == [(0, 2), (2, 4)]
    table = storage.read_table(str(out))
    assert sorted(table.column("image_id").to_pylist()) == ["a.png", "b/c.jpg", "b/d.webp"]
    errors = storage.read_table(storage.open_store(str(out)).child("_errors")).to_pylist()
    assert [e["id"] for e in errors] == ["notes.txt"]
    assert "cannot decode image" in errors[0]["reason"]


def test_another_input_into_the_same_output_is_one_sentence(folder, tmp_path):
    out = tmp_path / "o"
    plan(str(folder), out)
    with pytest.raises(ValueError, match="holds the listing of"):
        plan(str(folder / "b"), out)


def test_empty_folder_is_one_sentence(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no Parquet files and no image files"):
        plan(str(tmp_path / "empty"))
