"""The local runner (issue #28): the same job gives byte-identical part files whether its
parts run on Ray actors or in the driver's process, for every part stage; `auto` picks the
local runner only where one worker is all the job would get; a local job resumes and
records its errors like an actor pool's."""
from __future__ import annotations

import filecmp
import io
import os
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from jobs import storage
from jobs.runtime.cluster import choose_runner

pytestmark = pytest.mark.integration


def same_parts(a, b) -> list:
    """The part files (and error parts) of two outputs, checked byte for byte."""
    names = sorted(n for n in os.listdir(a) if n.startswith("part-"))
    assert names and names == sorted(n for n in os.listdir(b) if n.startswith("part-"))
    for name in names:
        assert filecmp.cmp(os.path.join(a, name), os.path.join(b, name), shallow=False), name
    errors = [os.path.join(d, storage.ERRORS_DIR) for d in (a, b)]
    if os.path.isdir(errors[0]):
        assert sorted(os.listdir(errors[0])) == sorted(os.listdir(errors[1]))
    return names


def both(run, make_cfg, tmp_path, name: str) -> tuple:
    """Run one job with each runner into tmp_path/name-{local,ray}; their manifests."""
    return tuple(run(make_cfg(str(tmp_path / f"{name}-{r}"), r)) for r in ("local", "ray"))


@pytest.fixture(scope="module")
def samples(ray_cluster, model_files, tmp_path_factory):
    from jobs.stages.sample import SampleConfig, run_sample
    root = tmp_path_factory.mktemp("runners")
    made = both(run_sample, lambda out, r: SampleConfig(
        model=model_files["model"], classifier=model_files["classifier"], count=40, seed=3,
        space="wp", images=True, rows_per_part=16, micro_batch=8, out=out, device="cpu",
        runner=r), root, "samples")
    assert made[0]["rows"] == made[1]["rows"] == 40
    return root


def test_sample(samples):
    assert len(same_parts(samples / "samples-local", samples / "samples-ray")) == 3


def test_label(samples, model_files, tmp_path):
    from jobs.stages.label import LabelConfig, run_label
    both(run_label, lambda out, r: LabelConfig(
        images=str(samples / "samples-local"), classifier=model_files["classifier"], out=out,
        device="cpu", runner=r), tmp_path, "labels")
    same_parts(tmp_path / "labels-local", tmp_path / "labels-ray")


def test_edit_and_dataset(samples, model_files, tmp_path):
    from gankit.latent.boundaries import Boundary
    from jobs.stages.dataset.labeled import DatasetConfig, run_dataset
    from jobs.stages.edit import EditConfig, run_edit
    normal = np.random.default_rng(0).standard_normal(16)
    Boundary("smile", "w", normal / np.linalg.norm(normal), 0.0).save(tmp_path / "smile.npz")
    both(run_edit, lambda out, r: EditConfig(
        latents=str(samples / "samples-local"), boundaries=[str(tmp_path / "smile.npz")],
        strengths=[-2.0, 2.0], model=model_files["model"],
        classifier=model_files["classifier"], out=out, device="cpu", runner=r), tmp_path,
        "edits")
    same_parts(tmp_path / "edits-local", tmp_path / "edits-ray")
    both(run_dataset, lambda out, r: DatasetConfig(
        samples=str(samples / "samples-local"), count=40, out=out, model=model_files["model"],
        classifier=model_files["classifier"], device="cpu", runner=r), tmp_path, "dataset")
    same_parts(tmp_path / "dataset-local" / "data", tmp_path / "dataset-ray" / "data")


def random_pngs(folder, n: int, side: int = 32) -> None:
    """n random RGB PNGs `k.png` in a new folder."""
    folder.mkdir()
    for k in range(n):
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(k).integers(0, 255, (side, side, 3), np.uint8)) \
            .save(buf, format="PNG")
        (folder / f"{k}.png").write_bytes(buf.getvalue())


def test_invert_with_a_bad_image(samples, tmp_path):
    from jobs.stages.invert import InvertConfig, run_invert
    folder = tmp_path / "faces"
    random_pngs(folder, 3)
    (folder / "junk.png").write_bytes(b"no image here")
    made = both(run_invert, lambda out, r: InvertConfig(
        images=str(folder), out=out, model="toy", steps=3, batch_size=2, device="cpu",
        runner=r), tmp_path, "inverted")
    assert made[0]["errors"] == made[1]["errors"] == 1
    same_parts(tmp_path / "inverted-local", tmp_path / "inverted-ray")


def test_align(ray_cluster, tmp_path):
    pytest.importorskip("dlib", reason="dlib is not installed: pip install 'gankit[faces]'")
    from jobs.stages.align import AlignConfig, run_align
    from test_faces import skimage_photo
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "astro.png").write_bytes(skimage_photo("astronaut.png"))
    both(run_align, lambda out, r: AlignConfig(images=str(photos), out=out, resolution=32,
                                               runner=r), tmp_path, "aligned")
    same_parts(tmp_path / "aligned-local", tmp_path / "aligned-ray")


def test_metrics_path_lengths(ray_cluster, model_files, tmp_path):
    from jobs.stages.metrics import MetricsConfig, run_metrics
    both(run_metrics, lambda out, r: MetricsConfig(
        model=model_files["model"], ppl_paths=24, ppl_spaces=["w"], rows_per_part=8, micro_batch=8,
        feature_net="toy", out=out, device="cpu", runner=r), tmp_path, "metrics")
    same_parts(tmp_path / "metrics-local" / "ppl_w", tmp_path / "metrics-ray" / "ppl_w")


def test_a_local_job_resumes_only_its_missing_parts(samples):
    from jobs.stages.sample import SampleConfig, run_sample
    out = samples / "samples-local"
    kept = os.path.getmtime(out / "part-00000.parquet")
    os.remove(out / "part-00002.parquet")
    manifest = run_sample(SampleConfig(**{**storage.read_manifest(storage.Store(str(out)))[
        "config"], "runner": "local"}))
    assert manifest["runs"][-1]["reused"] == [0, 1] and manifest["runs"][-1]["computed"] == [2]
    assert os.path.getmtime(out / "part-00000.parquet") == kept
    same_parts(out, samples / "samples-ray")


@pytest.mark.parametrize("workers, parts, env, want", [
    (0, 1, {}, "local"), (1, 50, {}, "local"), (2, 50, {}, "ray"),
    (0, 1, {"RAY_ADDRESS": "10.0.0.1:6379"}, "ray"),
    (0, 1, {"GANKIT_FAULT_POISON_PART": "3"}, "ray")])
def test_auto_picks_local_only_where_one_worker_is_all_the_job_gets(monkeypatch, workers,
                                                                     parts, env, want):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)     # this machine: one CPU actor's worth
    cfg = SimpleNamespace(runner="auto", workers=workers, cpus_per_worker=0)
    assert choose_runner(cfg, parts, "cpu") == want
    assert choose_runner(SimpleNamespace(runner="ray", workers=0, cpus_per_worker=0), 1,
                         "cpu") == "ray"
