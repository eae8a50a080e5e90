"""Issue #23 item 5, the run a user of the field writes: an e4e checkpoint (generator and
encoder in one file), InterFaceGAN's `age.pt` as e4e ships it, ArcFace weights, and a folder
of photos; `gankit run` aligns, encodes, edits along age, scores ArcFace identity and pastes
the edited faces back. Every file is a small random-weight one in its project's layout,
written by our writers (tests/field_fixture.py, tests/direction_files.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from direction_files import random_direction, write_e4e_pt
from field_fixture import decoder, write_arcface, write_encoder_checkpoint
from jobs import storage
from jobs.commands.cli import main
from test_faces import skimage_photo

pytest.importorskip("dlib", reason="dlib is not installed: pip install 'gankit[faces]'")
pytestmark = pytest.mark.integration

STRENGTHS = [-3.0, 0.0, 3.0]


@pytest.fixture(scope="module")
def field_run(ray_cluster, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("field-run")
    e4e = write_encoder_checkpoint(tmp / "e4e_ffhq_encode.pt", "e4e", G=decoder(64))
    arcface = f"arcface:{write_arcface(tmp / 'model_ir_se50.pth')}"
    age = random_direction(64, seed=3, norm=4.0)                       # e4e's are not unit
    write_e4e_pt(tmp / "age.pt", age)
    root = tmp / "run"
    assert main(["directions", "import", str(tmp / "age.pt"), "--name", "age", "--space", "w",
                 "--out", str(root / "fit"), "--model", str(e4e)]) == 0
    (tmp / "photos").mkdir()
    (tmp / "photos" / "astronaut.png").write_bytes(skimage_photo("astronaut.png"))
    config = {"root": str(root), "stages": ["align", "invert", "edit", "paste_back"],
              "model": str(e4e), "align": {"images": str(tmp / "photos")},
              "invert": {"mode": "encode", "space": "wp", "keep_target": True,
                         "identity_metric": arcface},
              "edit": {"boundaries": ["w/age"], "strengths": STRENGTHS, "classifier": "",
                       "keep_latent": True, "identity_metric": arcface}}
    (tmp / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp / "run.yaml")]) == 0
    return root, e4e, age


def test_the_photo_is_encoded_by_the_checkpoint(field_run):
    from gankit.loading.field_encoders import load_field_encoder
    from gankit.images import decode_image, from_uint8
    root, e4e, _ = field_run
    inverted = storage.read_table(str(root / "inverted")).to_pylist()
    assert [r["image_id"] for r in inverted] == ["astronaut.png"]
    target = decode_image(inverted[0]["target"]["bytes"])                  # [64, 64, 3]
    with torch.no_grad():
        want = load_field_encoder(str(e4e))(from_uint8(target[None])).reshape(-1).numpy()
    np.testing.assert_allclose(inverted[0]["wp"], want, atol=1e-4)
    assert -1 <= inverted[0]["identity_similarity"] <= 1


def test_edits_move_along_age_and_score_arcface_identity(field_run):
    root, _, age = field_run
    edits = storage.read_table(str(root / "edits")).to_pylist()
    assert sorted(r["strength"] for r in edits) == STRENGTHS
    inverted = storage.read_table(str(root / "inverted")).to_pylist()[0]
    wp = np.asarray(inverted["wp"], np.float32).reshape(-1, 64)             # [num_ws, 64]
    for row in edits:
        edited = np.asarray(row["wp"], np.float32).reshape(-1, 64)
        np.testing.assert_allclose(edited, wp + row["strength"] * age, atol=1e-5)
        assert -1 <= row["identity_similarity"] <= 1
    at0 = next(r for r in edits if r["strength"] == 0)
    assert at0["identity_similarity"] == pytest.approx(1, abs=1e-4)
    manifest = json.loads((root / "edits" / "_manifest.json").read_text())
    assert manifest["identity"]["identity_metric"].startswith("arcface:")


def test_each_edit_is_pasted_into_the_photo(field_run):
    from gankit.images import decode_image
    root, _, _ = field_run
    pasted = sorted((root / "pasted" / "photos").iterdir())
    assert len(pasted) == len(STRENGTHS)
    photo = decode_image(skimage_photo("astronaut.png"))
    for path in pasted:
        image = decode_image(path.read_bytes())
        assert image.shape == photo.shape
        changed = np.any(image != photo, axis=2)
        assert 0 < changed.mean() < 0.25          # her face changed, the rest is the photo's
