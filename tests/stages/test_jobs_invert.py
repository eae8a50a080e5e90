"""The invert job on the bundled toy model, with toy-world renders as the "real" images:
outputs, bad-input error records, resume, and invert-then-edit."""
from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from gankit.toy import toyfaces
from gankit.data import image_column, make_table
from jobs import storage
from jobs.commands.cli import main

STEPS = 4


def png(arr: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def write_inputs(root) -> list:
    """Two Parquet files of 3 rows: toy faces, plus a corrupt, a grayscale, an RGBA, a
    larger non-square and an over-elongated image. Returns the expected good ids."""
    faces = toyfaces.render(toyfaces.sample_factors(4, seed=7), 32)       # [4, 32, 32, 3]
    gray = faces[1].mean(axis=2).astype(np.uint8)                        # [32, 32]
    rgba = np.concatenate([faces[2], np.full((32, 32, 1), 255, np.uint8)], axis=2)
    wide = np.asarray(Image.fromarray(faces[3]).resize((48, 40)))        # 40x48
    rows = [("face-0", png(faces[0], "RGB")), ("corrupt", b"\x89PNG\r\n\x1a\nnot a png"),
            ("gray-1", png(gray, "L")),
            ("rgba-2", png(rgba, "RGBA")), ("wide-3", png(wide, "RGB")),
            ("strip", png(np.zeros((8, 40, 3), np.uint8), "RGB"))]
    root.mkdir()
    for k in range(2):
        part = rows[3 * k:3 * k + 3]
        table = make_table({"image_id": np.array([r[0] for r in part], dtype=object),
                            "image": image_column([r[1] for r in part])}, id_column="image_id")
        pq.write_table(table, str(root / f"images-{k}.parquet"))
    return ["face-0", "gray-1", "rgba-2", "wide-3"]


def run(images, out, *extra) -> int:
    return main(["invert", "--images", str(images), "--out", str(out), "--steps", str(STEPS),
                 "--feature-net", "toy", "--batch-size", "2", "--workers", "2",
                 "--device", "cpu", *extra])


def test_outputs_rows_metrics_and_error_records(inverted):
    root, good = inverted
    t = storage.read_table(str(root / "out"))
    assert sorted(t.column("image_id").to_pylist()) == sorted(good)
    assert t.schema.field("w").type.list_size == 128
    for m in ("mse", "psnr", "ssim", "perceptual", "loss"):
        v = np.asarray(t.column(m).to_pylist(), dtype=np.float64)
        assert np.isfinite(v).all(), m
    assert (np.asarray(t.column("steps").to_pylist()) == STEPS).all()
    recon = Image.open(io.BytesIO(t.column("reconstruction")[0]["bytes"].as_py()))
    assert recon.size == (32, 32) and recon.mode == "RGB"
    errors = storage.read_table(str(root / "out" / "_errors"))
    reasons = dict(zip(errors.column("id").to_pylist(), errors.column("reason").to_pylist()))
    assert set(reasons) == {"corrupt", "strip"}
    assert "cannot decode" in reasons["corrupt"] and "aspect" in reasons["strip"]
    manifest = json.loads((root / "out" / "_manifest.json").read_text())
    assert manifest["rows"] == 4 and manifest["errors"] == 2


def test_grayscale_is_replicated_and_the_target_is_the_prepared_input(inverted):
    root, _ = inverted
    t = storage.read_table(str(root / "out"))
    ids = t.column("image_id").to_pylist()
    tgt = {i: np.asarray(Image.open(io.BytesIO(t.column("target")[j]["bytes"].as_py())))
           for j, i in enumerate(ids)}
    g = tgt["gray-1"]
    assert g.shape == (32, 32, 3) and (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
    assert tgt["wide-3"].shape == (32, 32, 3)            # center-cropped 40x40, area-downsampled


def test_stored_noise_reproduces_the_reconstruction(inverted):
    import torch
    from gankit.loading import zoo
    from gankit.images import to_uint8
    from gankit.latent.inversion import reconstruct
    from gankit.data import noise_from_column
    root, _ = inverted
    t = storage.read_table(str(root / "out"))
    G = zoo.load_generator("toy").eval()
    w = np.asarray(t.column("w").to_pylist(), dtype=np.float32)                # [n, w_dim]
    ws = torch.from_numpy(w)[:, None].repeat(1, G.num_ws, 1)
    flat = np.asarray(t.column("noise").to_pylist(), dtype=np.float32)
    noises = [torch.from_numpy(n) for n in noise_from_column(flat, t.schema.field("noise"))]
    img = to_uint8(reconstruct(G, ws, noises))
    stored = np.stack([np.asarray(Image.open(io.BytesIO(r["bytes"])))
                       for r in t.column("reconstruction").to_pylist()])
    assert np.abs(img.astype(int) - stored.astype(int)).max() <= 1


def test_resume_computes_only_the_missing_part_with_the_same_rows(inverted, capsys):
    root, _ = inverted
    out = root / "out"
    before = storage.read_table(str(out)).sort_by("image_id")
    (out / "part-00001.parquet").unlink()
    capsys.readouterr()
    assert run(root / "images", out, "--save-noise", "--keep-target") == 0
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["runs"][-1]["computed"] == [1] and manifest["runs"][-1]["reused"] == [0]
    after = storage.read_table(str(out)).sort_by("image_id")
    assert after.equals(before)                           # deterministic, no duplicates


def test_another_config_is_refused_at_the_same_output(inverted, capsys):
    root, _ = inverted
    assert run(root / "images", root / "out", "--space", "wp") == 2
    assert "space" in capsys.readouterr().err


def test_invert_then_edit(inverted, tmp_path):
    from gankit.latent.boundaries import Boundary
    root, good = inverted
    rng = np.random.default_rng(0)
    normal = rng.normal(size=128).astype(np.float32)
    b_path = tmp_path / "w_smile.npz"
    Boundary("smile", "w", normal / np.linalg.norm(normal), 0.0).save(str(b_path))
    edit_out = tmp_path / "edits"
    assert main(["edit", "--latents", str(root / "out"), "--boundaries", str(b_path),
                 "--strengths", "-2", "2", "--model", "toy", "--classifier", "toy",
                 "--workers", "1", "--device", "cpu", "--out", str(edit_out)]) == 0
    edits = storage.read_table(str(edit_out))
    assert edits.num_rows == 2 * len(good)
    assert set(edits.column("image_id").to_pylist()) == set(good)
    lo = edits.filter(pa.compute.equal(edits["strength"], -2.0))
    hi = edits.filter(pa.compute.equal(edits["strength"], 2.0))
    assert lo.column("image").to_pylist() != hi.column("image").to_pylist()


def test_eval_inversion_figures(tmp_path):
    """Smoke test of the toy-world counterfactual evaluation (2 faces, 2 steps): the figures
    exist, are rates in [0, 1], and the counterfactual renders (ground truth) are
    recognised by the bundled classifier as positive for the target attribute."""
    from gankit.latent.boundaries import Boundary
    rng = np.random.default_rng(1)
    normal = rng.normal(size=128).astype(np.float32)
    b_path = tmp_path / "b.npz"
    Boundary("smile", "w", normal / np.linalg.norm(normal), 0.0).save(str(b_path))
    out = tmp_path / "eval.json"
    assert main(["eval-inversion", "--boundary", str(b_path), "--attribute", "smile",
                 "--n", "2", "--steps", "2", "--out", str(out)]) == 0
    fig = json.loads(out.read_text())
    assert fig["faces"] == 2
    for k in ("flip_rate", "others_kept", "cf_flip_rate", "cf_others_kept"):
        assert 0 <= fig[k] <= 1
    assert fig["cf_flip_rate"] == 1.0
    assert fig["edit_mse"] > 0 and fig["edit_feature"] > 0 and fig["recon_psnr"] > 0


# ----------------------------------------------------------------------------------------
# Modes encode / hybrid with the shipped toy encoder (the actors hold it next to G)


def prepared_targets(t):  # -> [n, 3, H, W] in [-1, 1]
    from gankit.images import from_uint8
    return from_uint8(np.stack([np.asarray(Image.open(io.BytesIO(r["bytes"])))
                                for r in t.column("target").to_pylist()]))


@pytest.fixture(scope="module")
def encoded(inverted, tmp_path_factory):
    """The encoder's W+ of the same images (one job: the encode test checks it, the hybrid
    test refines from it)."""
    root, _ = inverted
    out = tmp_path_factory.mktemp("encode") / "encode"
    assert run(root / "images", out, "--mode", "encode", "--space", "wp", "--keep-target") == 0
    return out


def test_encode_mode_stores_the_encoders_output(inverted, encoded):
    import torch
    from gankit.loading import zoo
    root, good = inverted
    out = encoded
    t = storage.read_table(str(out)).sort_by("image_id")
    assert sorted(t.column("image_id").to_pylist()) == sorted(good)
    assert (np.asarray(t.column("steps").to_pylist()) == 0).all()
    E = zoo.load_encoder("toy")
    with torch.no_grad():
        expected = E(prepared_targets(t)).reshape(t.num_rows, -1).numpy()
    wp = np.asarray(t.column("wp").to_pylist(), dtype=np.float32)
    # batches of 2 in the job vs one batch here: float rounding only
    assert np.allclose(wp, expected, atol=1e-4, rtol=0)
    assert np.isfinite(np.asarray(t.column("psnr").to_pylist(), dtype=np.float64)).all()
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["config"]["mode"] == "encode"


def test_hybrid_mode_refines_the_encoders_output(inverted, encoded, tmp_path):
    root, good = inverted
    enc, hyb = encoded, tmp_path / "hybrid"
    assert run(root / "images", hyb, "--mode", "hybrid", "--space", "wp") == 0
    e = storage.read_table(str(enc)).sort_by("image_id")
    h = storage.read_table(str(hyb)).sort_by("image_id")
    assert (np.asarray(h.column("steps").to_pylist()) == STEPS).all()
    loss_e = np.asarray(e.column("loss").to_pylist())
    loss_h = np.asarray(h.column("loss").to_pylist())
    assert loss_h.mean() < loss_e.mean()          # K steps of refinement lower the loss


def test_bad_mode_combinations_fail_with_one_sentence(inverted, tmp_path, capsys):
    root, _ = inverted
    assert run(root / "images", tmp_path / "x", "--mode", "encode", "--space", "w") == 2
    err = capsys.readouterr().err
    assert "space" in err and "wp" in err
    assert run(root / "images", tmp_path / "y", "--mode", "hybrid", "--model",
               str(tmp_path / "nowhere")) == 2
    assert "encoder" in capsys.readouterr().err
    assert run(root / "images", tmp_path / "z", "--mode", "hybrid", "--encoder",
               str(tmp_path / "no-encoder")) == 2
    assert "no encoder at" in capsys.readouterr().err


def test_eval_inversion_per_mode(tmp_path):
    """eval-inversion with --mode encode / hybrid uses the toy encoder (2 faces)."""
    from gankit.latent.boundaries import Boundary
    normal = np.random.default_rng(1).normal(size=128).astype(np.float32)
    b_path = tmp_path / "b.npz"
    Boundary("smile", "w", normal / np.linalg.norm(normal), 0.0).save(str(b_path))
    figs = {}
    for mode in ("encode", "hybrid"):
        out = tmp_path / f"{mode}.json"
        assert main(["eval-inversion", "--boundary", str(b_path), "--attribute", "smile",
                     "--n", "2", "--steps", "3", "--space", "wp", "--mode", mode,
                     "--out", str(out)]) == 0
        figs[mode] = json.loads(out.read_text())
    assert figs["encode"]["mode"] == "encode" and figs["encode"]["steps"] == 0
    assert figs["hybrid"]["steps"] == 3
    assert figs["hybrid"]["recon_feature"] is not None
    assert main(["eval-inversion", "--boundary", str(b_path), "--attribute", "smile",
                 "--n", "2", "--mode", "encode", "--space", "w"]) == 2
