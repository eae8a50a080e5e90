"""Invert then edit: the edit stage renders an inversion's latents with its stored noise
maps (strength 0 gives back the stored reconstruction) and keeps the real input beside
each edit."""
from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from jobs import storage
from jobs.commands.cli import main

pytestmark = pytest.mark.integration


def decode(cell: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(cell["bytes"]))).astype(int)


def edit(root, out, boundary, *extra) -> int:
    return main(["edit", "--latents", str(root / "out"), "--boundaries", str(boundary),
                 "--strengths", "0", "2", "--model", "toy", "--classifier", "toy",
                 "--workers", "1", "--device", "cpu", "--out", str(out), *extra])


@pytest.fixture(scope="module")
def boundary(tmp_path_factory):
    from gankit.latent.boundaries import Boundary
    normal = np.random.default_rng(0).normal(size=128).astype(np.float32)
    path = tmp_path_factory.mktemp("b") / "w_x.npz"
    Boundary("x", "w", normal / np.linalg.norm(normal), 0.0).save(str(path))
    return path


def by_id(table: pa.Table, column: str) -> dict:
    return dict(zip(table.column("image_id").to_pylist(), table.column(column).to_pylist()))


def test_strength_zero_gives_back_the_reconstruction(inverted, boundary, tmp_path):
    root, good = inverted
    assert edit(root, tmp_path / "e", boundary, "--keep-input") == 0
    edits = storage.read_table(str(tmp_path / "e"))
    zero = edits.filter(pa.compute.equal(edits["strength"], 0.0))
    inv = storage.read_table(str(root / "out"))
    recon, target = by_id(inv, "reconstruction"), by_id(inv, "target")
    assert sorted(zero.column("image_id").to_pylist()) == sorted(good)
    for i, img in by_id(zero, "image").items():
        assert np.abs(decode(img) - decode(recon[i])).max() <= 1, i
    for i, cell in zip(edits.column("image_id").to_pylist(), edits.column("input").to_pylist()):
        assert cell["bytes"] == target[i]["bytes"]      # the real input beside every edit

    # G's const noise instead: further from the reconstruction than the stored maps
    assert edit(root, tmp_path / "c", boundary, "--no-stored-noise") == 0
    const = storage.read_table(str(tmp_path / "c"))
    const = by_id(const.filter(pa.compute.equal(const["strength"], 0.0)), "image")
    gap = lambda imgs: np.mean([np.abs(decode(imgs[i]) - decode(recon[i])).mean() for i in good])
    assert gap(const) > gap(by_id(zero, "image"))
    assert "input" not in storage.read_table(str(tmp_path / "c")).schema.names


def test_keep_input_needs_a_target_column(ray_cluster, boundary, tmp_path, capsys):
    from jobs.stages.sample import SampleConfig, run_sample
    samples = tmp_path / "samples"
    run_sample(SampleConfig(model="toy", count=4, rows_per_part=4, out=str(samples),
                            device="cpu"))
    assert main(["edit", "--latents", str(samples), "--boundaries", str(boundary),
                 "--strengths", "1", "--model", "toy", "--device", "cpu", "--keep-input",
                 "--out", str(tmp_path / "e")]) == 2
    assert "keep_input" in capsys.readouterr().err
