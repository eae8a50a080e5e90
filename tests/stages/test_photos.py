"""Photos to edits: identity columns of invert and edit (dlib descriptors), and the pipeline
align -> invert -> edit -> paste_back on a folder of photos (scikit-image's astronaut and
coffee, junk)."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import yaml
from PIL import Image

from gankit.images import decode_image
from jobs import storage
from test_faces import skimage_photo

pytest.importorskip("dlib", reason="dlib is not installed: pip install 'gankit[faces]'")
pytestmark = pytest.mark.integration


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def test_invert_identity_is_finite_with_a_face_and_nan_without(ray_cluster, tmp_path):
    from gankit.faces import alignment as faces
    from jobs.stages.invert import InvertConfig, run_invert
    folder = tmp_path / "aligned"
    folder.mkdir()
    astronaut = decode_image(skimage_photo("astronaut.png"))
    (folder / "astro.png").write_bytes(png(faces.align_faces(astronaut, 32)[0].image))
    coffee = np.asarray(Image.open(io.BytesIO(skimage_photo("coffee.png"))).resize((32, 32)))
    (folder / "coffee.png").write_bytes(png(coffee))
    run_invert(InvertConfig(images=str(folder), out=str(tmp_path / "inv"), model="toy",
                            steps=2, identity_metric=True, workers=1, batch_size=2))
    rows = {r["image_id"]: r for r in storage.read_table(str(tmp_path / "inv")).to_pylist()}
    assert set(rows) == {"astro.png", "coffee.png"}
    assert -1 <= rows["astro.png"]["identity_similarity"] <= 1
    assert np.isfinite(rows["astro.png"]["identity_distance"])
    assert np.isnan(rows["coffee.png"]["identity_similarity"])
    assert np.isnan(rows["coffee.png"]["identity_distance"])


def test_pipeline_aligns_inverts_and_edits_a_folder_of_photos(ray_cluster, model_files,
                                                              tmp_path):
    from jobs.stages.pipeline import load_config, run_pipeline
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "astro.png").write_bytes(skimage_photo("astronaut.png"))
    (photos / "coffee.png").write_bytes(skimage_photo("coffee.png"))
    (photos / "junk.jpg").write_bytes(b"not a photo")
    root = tmp_path / "root"
    cfg = {"root": str(root), "stages": ["sample", "fit", "align", "invert", "edit", "paste_back",
                                         "report"],
           "model": model_files["model32"], "classifier": model_files["classifier"],
           "device": "cpu", "workers": 1,
           "sample": {"count": 200, "space": "w", "rows_per_part": 100, "micro_batch": 8},
           "fit": {"spaces": ["w"], "fraction": 0.2},
           "align": {"images": str(photos)},
           "invert": {"steps": 2, "keep_target": True, "identity_metric": True},
           "edit": {"boundaries": ["w/smile"], "strengths": [-2.0, 0.0, 2.0],
                    "identity_metric": True, "micro_batch": 8, "keep_input": True},
           "report": {"grid_samples": 1}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    run_pipeline(load_config(str(tmp_path / "run.yaml")))
    aligned = storage.read_table(str(root / "aligned"))
    assert aligned.column("image_id").to_pylist() == ["astro.png"]
    assert decode_image(aligned.column("image")[0].as_py()["bytes"]).shape == (32, 32, 3)
    errors = storage.read_table(storage.open_store(str(root / "aligned")).child("_errors"))
    assert sorted(errors.column("id").to_pylist()) == ["coffee.png", "junk.jpg"]
    inverted = storage.read_table(str(root / "inverted")).to_pylist()
    assert np.isfinite(inverted[0]["identity_distance"])
    edits = storage.read_table(str(root / "edits"))
    assert edits.num_rows == 3
    assert np.isfinite(edits.column("identity_similarity").to_numpy()).all()
    # the report reads the inversion's edits: before = the edits at strength 0, identity
    report = json.loads((root / "report" / "report.json").read_text())
    assert report["num_edited"] == 1 and report["edited_samples"]["heldout"]
    kept = report["identity"]["w/smile"]
    assert kept["edits"] == 2 and 0 < kept["similarity"] <= 1         # at -2 and +2
    assert "Identity kept" in (root / "report" / "report.html").read_text()
    # and pasted back into the photo by the paste_back stage: its size, changed only
    # around the face (the face blend: within the dilated hull of the jaw and brows)
    from gankit.faces import alignment as faces
    from test_faces import distance_to_polygon, pixel_centres
    pasted = storage.read_table(str(root / "pasted")).to_pylist()
    assert [(r["source_id"], r["strength"], r["faces"]) for r in pasted] == [
        ("astro.png", s, 1) for s in (-2.0, 0.0, 2.0)]
    photo = decode_image(skimage_photo("astronaut.png"))
    image = decode_image((root / "pasted" / pasted[2]["image"]["path"]).read_bytes())
    assert image.shape == photo.shape
    changed = (image != photo).any(axis=2)                              # [H, W]
    face = aligned.to_pylist()[0]
    quad, landmarks = np.reshape(face["quad"], (4, 2)), np.reshape(face["landmarks"], (68, 2))
    beyond = distance_to_polygon(pixel_centres(changed), faces.face_hull(landmarks))
    assert changed.any() and beyond.max() <= faces.Blend().dilation * faces.quad_size(quad) + 1.5
