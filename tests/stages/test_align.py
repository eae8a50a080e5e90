"""`gankit align` on a local Ray cluster: real photos (scikit-image's astronaut, converted as
cameras and scanners store it), a photo with no face, junk bytes, a missing image."""
from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from gankit.faces import alignment as faces
from gankit.data import image_column
from gankit.images import decode_image
from jobs import storage
from jobs.stages.align import AlignConfig, run_align
from jobs.commands.cli import main
from test_faces import converted_photos, skimage_photo

pytest.importorskip("dlib", reason="dlib is not installed: pip install 'gankit[faces]'")
pytestmark = pytest.mark.integration

R = 64


def write_photos(path, rows: list) -> None:
    ids, data = zip(*rows)
    pq.write_table(pa.table({"image_id": list(ids), "image": image_column(list(data))}), path)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two Parquet files (two parts): good photos, and one bad row of each kind."""
    root = tmp_path_factory.mktemp("photos")
    astronaut = skimage_photo("astronaut.png")
    converted = converted_photos(decode_image(astronaut))
    write_photos(root / "a.parquet", [("astro", astronaut), ("coffee", skimage_photo(
        "coffee.png")), ("junk", b"this is not an image at all")])
    write_photos(root / "b.parquet", [("exif", converted["exif"]), ("cmyk", converted["cmyk"]),
                                      ("rgb16", converted["rgb16"]), ("empty", None)])
    return root


def test_align_writes_every_face_and_an_error_per_bad_photo(ray_cluster, photos, tmp_path):
    out = tmp_path / "aligned"
    manifest = run_align(AlignConfig(images=str(photos), out=str(out), resolution=R))
    assert (manifest["rows"], manifest["errors"]) == (4, 3)
    table = storage.read_table(str(out)).to_pylist()
    assert sorted(r["image_id"] for r in table) == ["astro", "cmyk", "exif", "rgb16"]
    photo = decode_image(skimage_photo("astronaut.png"))
    face = faces.choose_faces(faces.detect_faces(photo))[0]
    for row in table:
        aligned = decode_image(row["image"]["bytes"])
        assert aligned.shape == (R, R, 3)
        landmarks = np.array(row["landmarks"], np.float32).reshape(68, 2)
        quad = np.array(row["quad"], np.float32).reshape(4, 2)
        np.testing.assert_allclose(quad, faces.ffhq_quad(landmarks), atol=1e-3)
        assert (row["source_width"], row["source_height"]) == (512, 512)   # upright
        assert np.abs(landmarks - face.landmarks).mean() < 3, row["image_id"]
        if row["image_id"] in ("astro", "rgb16"):                  # the same pixels exactly
            np.testing.assert_array_equal(landmarks, face.landmarks)
            expected = faces.align_quad(photo, faces.ffhq_quad(face.landmarks), R)
            np.testing.assert_array_equal(aligned, expected)
    errors = {e["id"]: e["reason"] for e in storage.read_table(
        storage.open_store(str(out)).child("_errors")).to_pylist()}
    assert set(errors) == {"coffee", "junk", "empty"}
    assert "no face" in errors["coffee"] and "cannot decode" in errors["junk"]
    assert errors["empty"] == "no image bytes"


def test_align_all_faces_from_the_command_line(ray_cluster, photos, tmp_path, capsys):
    only = tmp_path / "one"
    only.mkdir()
    pq.write_table(pq.read_table(photos / "a.parquet").slice(0, 1), only / "a.parquet")
    out = tmp_path / "all"
    assert main(["align", "--images", str(only), "--out", str(out), "--resolution", str(R),
                 "--faces", "all"]) == 0
    rows = storage.read_table(str(out)).to_pylist()
    assert [(r["image_id"], r["source_id"], r["face"]) for r in rows] == \
        [("astro#0", "astro", 0), ("astro#1", "astro", 1)]             # face, then suit patch
    assert rows[0]["quad"][1] < rows[1]["quad"][1]                     # the face is higher up
    assert main(["align", "--images", str(only), "--out", str(out), "--resolution", str(R),
                 "--faces", "all"]) == 0
    assert "1 already committed, 0 to compute" in capsys.readouterr().err   # resumes


def test_bad_config_is_one_sentence(tmp_path, capsys):
    assert main(["align", "--images", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--resolution", "4"]) == 2
    assert "resolution must be >= 8" in capsys.readouterr().err


def test_photo_sizes_are_recorded_upright(tmp_path):
    from jobs.stages.align import align_photo
    buf = io.BytesIO()
    Image.fromarray(decode_image(skimage_photo("astronaut.png"))[:, :400]).save(buf, "PNG")
    rows, reason = align_photo("narrow", buf.getvalue(), AlignConfig(resolution=R))
    assert reason is None and (rows[0]["source_width"], rows[0]["source_height"]) == (400, 512)
