"""The identity measure option: `--identity` (dlib), `--identity arcface:PATH`, YAML's
`identity_metric: true` as before; each spec checked in one sentence."""
from __future__ import annotations

import argparse

import pytest

from gankit.faces.identity import measure_name, measure_spec
from jobs.config import ConfigError, add_flags, config_from_dict, from_args
from jobs.stages.edit import EditConfig
from jobs.stages.invert import InvertConfig


def parsed(cls, words: list):
    parser = argparse.ArgumentParser()
    add_flags(parser, cls)
    return from_args(cls, parser.parse_args(words))


@pytest.mark.parametrize("value, spec", [(True, "dlib"), ("dlib", "dlib"), (None, None),
                                         (False, None), ("arcface:/m/ir.pth", "arcface:/m/ir.pth")])
def test_measure_specs(value, spec):
    assert measure_spec(value) == spec


@pytest.mark.parametrize("value", ["arcface:", "vgg", 3])
def test_a_bad_measure_is_one_sentence(value):
    with pytest.raises(ValueError, match="is not an identity measure"):
        measure_spec(value)


def test_the_flag_alone_is_dlib_and_takes_an_arcface_path():
    base = ["--images", "in", "--out", "o"]
    assert parsed(InvertConfig, base + ["--identity"]).identity_measure() == "dlib"
    cfg = parsed(InvertConfig, base + ["--identity", "arcface:ir.pth"])
    assert cfg.identity_measure() == "arcface:ir.pth"
    assert parsed(InvertConfig, base).identity_measure() is None


def test_yaml_true_still_means_dlib_and_the_identity_of_older_outputs_is_kept():
    old = config_from_dict(InvertConfig, {"images": "in", "out": "o", "identity_metric": True})
    assert old.identity_measure() == "dlib"
    assert old.identity("fp32")["identity_metric"] is True       # as older manifests say
    arc = config_from_dict(EditConfig, {"latents": "in", "out": "o", "boundaries": ["w/x"],
                                        "identity_metric": "arcface:ir.pth"})
    assert arc.identity_key() == {"identity_metric": "arcface:ir.pth"}
    assert measure_name(arc.identity_measure()) == "arcface"


def test_a_bad_measure_in_a_config_names_the_field():
    with pytest.raises(ConfigError, match="identity_metric is not usable"):
        config_from_dict(InvertConfig, {"images": "in", "out": "o", "identity_metric": "vgg"})


def test_missing_arcface_weights_fail_before_any_work(tmp_path):
    cfg = InvertConfig(images="in", out="o", identity_metric=f"arcface:{tmp_path}/none.pth")
    with pytest.raises(FileNotFoundError, match="no such ArcFace weights file"):
        cfg.check_identity_measure()


def test_arcface_measure_scores_unit_embeddings_of_the_central_crop(tmp_path):
    import numpy as np
    import torch

    from field_fixture import write_arcface
    from gankit.faces.identity import identity_scores, load_measure
    from gankit.faces.identity_arcface import arcface_similarity, load_arcface
    from gankit.images import from_uint8
    path = write_arcface(tmp_path / "model_ir_se50.pth")
    measure = load_measure(f"arcface:{path}")
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8) for _ in range(2))
    where = measure.locate(a)
    reference = measure.describe(a, where)                                # [3, 512]
    np.testing.assert_allclose(np.linalg.norm(reference, axis=1), 1, atol=1e-5)
    sim, dist = identity_scores(measure, reference, where, b)
    want = arcface_similarity(load_arcface(path), from_uint8(a), from_uint8(b)).numpy()
    np.testing.assert_allclose(sim, want, atol=1e-5)
    np.testing.assert_allclose(dist, np.sqrt(np.maximum(2 - 2 * want, 0)), atol=1e-4)
    same = identity_scores(measure, reference, where, a)[0]
    np.testing.assert_allclose(same, 1, atol=1e-5)
    assert torch.is_tensor(measure.net.input_layer[0].weight)


def test_invert_and_edit_write_arcface_identity(ray_cluster, tmp_path):
    import json

    import numpy as np

    from field_fixture import write_arcface
    from gankit.latent.boundaries import Boundary
    from jobs import storage
    from jobs.stages.edit import run_edit
    from jobs.stages.invert import run_invert
    from test_local_runner import random_pngs
    spec = f"arcface:{write_arcface(tmp_path / 'ir.pth')}"
    random_pngs(tmp_path / "faces", 2)
    run_invert(InvertConfig(images=str(tmp_path / "faces"), out=str(tmp_path / "inv"),
                            model="toy", steps=2, identity_metric=spec, device="cpu"))
    inv = storage.read_table(str(tmp_path / "inv"))
    assert np.isfinite(inv.column("identity_similarity").to_numpy()).all()
    normal = np.random.default_rng(1).standard_normal(128)
    Boundary("smile", "w", normal / np.linalg.norm(normal), 0.0).save(tmp_path / "b.npz")
    run_edit(EditConfig(latents=str(tmp_path / "inv"), boundaries=[str(tmp_path / "b.npz")],
                        strengths=[0.0, 3.0], model="toy", identity_metric=spec,
                        out=str(tmp_path / "edits"), device="cpu"))
    edits = storage.read_table(str(tmp_path / "edits")).to_pylist()
    at0 = [r["identity_similarity"] for r in edits if r["strength"] == 0]
    np.testing.assert_allclose(at0, 1, atol=1e-4)        # strength 0 is the reconstruction
    assert all(-1 <= r["identity_similarity"] <= 1 for r in edits)
    manifest = json.loads((tmp_path / "edits" / "_manifest.json").read_text())
    assert manifest["identity"]["identity_metric"] == spec


@pytest.mark.parametrize("measure, named", [("arcface", "Identity kept (ArcFace)"),
                                            ("dlib", "Identity kept (dlib)")])
def test_the_report_names_the_identity_measure(measure, named):
    from gankit.report.edits import EditSection
    report = {"identity": {"w/smile": {"similarity": 0.8, "distance": 0.6, "edits": 4}},
              "identity_measure": measure, "edit_strength": 3.0}
    assert named in EditSection.from_json(report).edits_html()
