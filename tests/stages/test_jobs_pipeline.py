"""label, fit, edit and the pipeline driver on the session's Ray cluster, with tiny models:
bad image rows become error records, boundaries and edits land where the index says, a
rerun of a finished pipeline computes nothing, and bad configs fail with one sentence."""
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs import storage
from jobs.runtime import plan_actors
from jobs.config import ConfigError, config_from_dict, require

pytestmark = pytest.mark.integration


def logits(table: pa.Table, attrs) -> np.ndarray:
    return np.stack([table.column(f"logit_{a}").to_numpy() for a in attrs], axis=1)


# ----------------------------------------------------------------------------------------
# label


def test_label_turns_bad_rows_into_error_records(ray_cluster, model_files, tmp_path):
    from gankit.images import encode_png
    from jobs.stages.label import LabelConfig, run_label
    from jobs.stages.sample import SampleConfig, run_sample
    from helpers import ATTRIBUTES
    ref = tmp_path / "sampled"
    run_sample(SampleConfig(model=model_files["model"], classifier=model_files["classifier"],
                            count=40, seed=3, space="z", images=True, rows_per_part=20,
                            micro_batch=8,
                            out=str(ref), device="cpu"))
    sampled = storage.read_table(str(ref))
    # an image dataset as plain Parquet shards: row 5 corrupt, row 12 the wrong size
    images = sampled.select(["sample_id", "z", "image"]).to_pylist()
    images[5]["image"] = {"bytes": b"\x89PNG but not really", "path": None}
    images[12]["image"] = {"bytes": encode_png(np.zeros((16, 16, 3), np.uint8)), "path": None}
    src = tmp_path / "images"
    src.mkdir()
    schema = sampled.select(["sample_id", "z", "image"]).schema
    for k in range(2):
        pq.write_table(pa.Table.from_pylist(images[20 * k:20 * k + 20], schema=schema),
                       src / f"shard-{k}.parquet")

    out = tmp_path / "labeled"
    manifest = run_label(LabelConfig(images=str(src), out=str(out),
                                     classifier=model_files["classifier"], micro_batch=8,
                                     batch_size=16, workers=2, device="cpu"))
    assert manifest["rows"] == 38 and manifest["errors"] == 2
    labeled = storage.read_table(str(out)).sort_by("sample_id")
    good = [i for i in range(40) if i not in (5, 12)]
    assert labeled.column("sample_id").to_pylist() == good
    assert labeled.column_names == ["sample_id", "z"] + [f"logit_{a}" for a in ATTRIBUTES]
    assert labeled.column("z").equals(sampled.column("z").take(good))
    # the sample job labels the stored 8-bit image, so relabeling reproduces its logits
    np.testing.assert_allclose(logits(labeled, ATTRIBUTES),
                               logits(sampled.take(good), ATTRIBUTES), rtol=0, atol=1e-5)
    errors = pq.read_table(out / "_errors" / "part-00000.parquet").to_pylist()
    assert [(e["id"], e["stage"]) for e in errors] == [("5", "label"), ("12", "label")]
    assert "cannot decode image" in errors[0]["reason"]
    assert errors[1]["reason"] == "image is 16x16, expected 8x8"
    assert not (out / "_errors" / "part-00001.parquet").exists()


# ----------------------------------------------------------------------------------------
# the pipeline: sample -> fit -> edit


def write_config(path, model_files, root, **sections) -> str:
    cfg = {"root": str(root), "stages": ["sample", "fit", "edit"],
           "model": model_files["model"], "classifier": model_files["classifier"],
           "device": "cpu", "workers": 2,
           "sample": {"count": 400, "seed": 1, "space": "wp", "truncation": 0.8,
                      "rows_per_part": 100, "micro_batch": 8},
           "fit": {"spaces": ["z", "w", "wp"], "wp_layers": [[0, 2]], "fraction": 0.1,
                   "conditions": [["smile", ["age"]], ["age", ["smile", "glasses"]]]},
           "edit": {"boundaries": ["w/smile", "w/smile__cond_age", "z/age", "wp0-2/glasses"],
                    "strengths": [-2.0, 0.0, 2.0], "count": 6, "keep_original": True,
                    "micro_batch": 8}}
    cfg.update(sections)
    import yaml
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.fixture(scope="module")
def pipeline_run(ray_cluster, model_files, tmp_path_factory):
    from jobs.stages.pipeline import load_config, run_pipeline
    tmp = tmp_path_factory.mktemp("pipeline")
    path = write_config(tmp / "run.yaml", model_files, tmp / "root")
    return tmp / "root", run_pipeline(load_config(path)), path


def test_fit_writes_every_boundary_and_the_index(pipeline_run):
    from gankit.latent.boundaries import Boundary
    root, results, _ = pipeline_run
    index = json.loads((root / "fit" / "boundaries.json").read_text())
    assert index == results["fit"]
    names = [e["name"] for e in index["boundaries"]]
    for space in ("z", "w", "wp0-2"):
        for a in ("smile", "age", "glasses"):
            assert f"{space}/{a}" in names
        assert f"{space}/smile__cond_age" in names
        assert f"{space}/age__cond_smile+glasses" in names
    assert len(names) == 15 and index["num_samples"] == 400
    for e in index["boundaries"]:
        assert (root / "fit" / e["path"]).exists()
        assert 0.5 <= e["val_accuracy"] <= 1 and e["n_train"] > 0
    entry = {e["name"]: e for e in index["boundaries"]}
    assert entry["wp0-2/smile"]["layers"] == [0, 2]
    assert entry["w/age__cond_smile+glasses"]["conditions"] == ["smile", "glasses"]
    cond = Boundary.load(root / "fit" / "boundaries/w/smile__cond_age.npz")
    age = Boundary.load(root / "fit" / "boundaries/w/age.npz")
    assert cond.dim == 16 and abs(float(cond.normal @ age.normal)) < 1e-5


def test_edit_rows_and_rescoring(pipeline_run):
    from gankit.images import decode_image
    from helpers import ATTRIBUTES
    root, results, _ = pipeline_run
    edits = storage.read_table(str(root / "edits"))
    assert results["edit"]["rows"] == edits.num_rows == 6 * 4 * 3
    assert edits.column_names == ["sample_id", "boundary", "strength", "image"] + \
        [f"logit_{a}" for a in ATTRIBUTES] + ["original"]
    first = edits.slice(0, 12).to_pydict()
    assert first["sample_id"] == [0] * 12
    assert first["boundary"] == [b for b in ["w/smile", "w/smile__cond_age", "z/age",
                                             "wp0-2/glasses"] for _ in range(3)]
    assert first["strength"] == [-2.0, 0.0, 2.0] * 4
    assert decode_image(first["image"][0]["bytes"]).shape == (8, 8, 3)
    # strength 0 renders the sample itself: same image as `original`, same logits as sampled
    samples = storage.read_table(str(root / "samples")).sort_by("sample_id").slice(0, 6)
    zero = edits.filter(pa.compute.equal(edits.column("strength"), 0.0))
    assert all(r["image"] == r["original"] for r in zero.select(["image", "original"]).to_pylist())
    for name in ("w/smile", "z/age"):
        rows = zero.filter(pa.compute.equal(zero.column("boundary"), name))
        np.testing.assert_allclose(logits(rows, ATTRIBUTES), logits(samples, ATTRIBUTES),
                                   rtol=0, atol=1e-5)
    # moving along smile changes the smile logit far more than at strength 0
    smile = edits.filter(pa.compute.equal(edits.column("boundary"), "w/smile")).to_pydict()
    by = {(i, t): l for i, t, l in zip(smile["sample_id"], smile["strength"], smile["logit_smile"])}
    assert np.mean([by[(i, 2.0)] - by[(i, -2.0)] for i in range(6)]) > 0


def test_rerunning_a_finished_pipeline_computes_nothing(pipeline_run, capsys):
    from jobs.stages.pipeline import load_config, run_pipeline
    root, results, path = pipeline_run
    again = run_pipeline(load_config(path))
    assert again["sample"]["runs"][-1]["computed"] == []
    assert again["edit"]["runs"][-1]["computed"] == []
    assert again["fit"] == results["fit"]
    assert "nothing to do" in capsys.readouterr().err


@pytest.mark.parametrize("change, message", [
    ({"rot": "x"}, "rot is not a known field (known: root, stages, model"),
    ({"sample": {"space": "q"}}, "sample.space must be one of z, w, wp (got 'q')"),
    ({"sample": {"count": "ten"}}, "sample.count must be an integer (got 'ten')"),
    ({"sample": {"out": "/elsewhere"}}, "sample.out is set by the pipeline from root"),
    ({"fit": {"fraction": 0.9}}, "fit.fraction must be in (0, 0.5] (got 0.9)"),
    ({"fit": {"selection": "best"}}, "fit.selection must be one of extremes, threshold"),
    ({"edit": {"mode": "teleport"}}, "edit.mode must be one of shift, to_distance"),
    ({"stages": ["sample", "paint"]}, "stages must be one of sample, fit, heldout, align, invert, edit, paste_back, report"),
    ({"stages": ["sample", "heldout", "invert"]}, "stages can hold heldout or invert, not both"),
    ({"stages": ["invert", "edit"]}, "invert.images must be the URL of an image dataset"),
])
def test_bad_pipeline_config_fails_with_one_sentence(model_files, tmp_path, capsys, change,
                                                     message):
    from jobs.commands.cli import main
    path = write_config(tmp_path / "bad.yaml", model_files, tmp_path / "root", **change)
    assert main(["run", path]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"gankit run: error: {message}") and "\n" not in err
    assert not (tmp_path / "root").exists()          # failed before anything ran


def test_fit_names_unknown_attributes_and_missing_columns(pipeline_run, tmp_path):
    from jobs.stages.fit import FitConfig, run_fit
    root, _, _ = pipeline_run
    samples = str(root / "samples")
    with pytest.raises(ValueError, match=r"attributes has 'beard', not a logit column"):
        run_fit(FitConfig(samples=samples, out=str(tmp_path / "f"), attributes=["beard"]))
    with pytest.raises(ValueError, match=r"wp_layers range \[2, 9\] exceeds the 4 W\+ layers"):
        run_fit(FitConfig(samples=samples, out=str(tmp_path / "f"), spaces=["wp"],
                          wp_layers=[[2, 9]]))


def test_fit_and_edit_commands(pipeline_run, model_files, tmp_path, capsys):
    from jobs.commands.cli import main
    root, _, _ = pipeline_run
    fit_out, edit_out = tmp_path / "fit", tmp_path / "edits"
    assert main(["fit", "--samples", str(root / "samples"), "--out", str(fit_out),
                 "--spaces", "w", "wp", "--wp-layers", "1-3", "--fraction", "0.1",
                 "--condition", "smile:age,glasses"]) == 0
    index = json.loads((fit_out / "boundaries.json").read_text())
    assert {e["name"] for e in index["boundaries"]} >= {"w/smile__cond_age+glasses",
                                                        "wp1-3/smile__cond_age+glasses"}
    assert main(["edit", "--latents", str(root / "samples"), "--index", str(fit_out),
                 "--boundaries", "wp1-3/age", "--strengths", "-1", "1", "--count", "3",
                 "--model", model_files["model"], "--classifier", model_files["classifier"],
                 "--workers", "1", "--device", "cpu", "--out", str(edit_out)]) == 0
    edits = storage.read_table(str(edit_out))
    assert edits.num_rows == 6 and set(edits.column("boundary").to_pylist()) == {"wp1-3/age"}
    # every sample, labelled logit > 0: not the extremes fit again (the selection is part of
    # its identity); the tiny classifier never says yes, which the fit names in one sentence
    table = storage.read_table(str(root / "samples"))
    assert (table.column("logit_smile").to_numpy() <= 0).all()
    assert main(["fit", "--samples", str(root / "samples"), "--out", str(fit_out),
                 "--spaces", "w", "--selection", "threshold", "--attributes", "smile"]) == 2
    assert ("smile: selection 'threshold' needs >= 2 samples on each side of 0; got 0 above"
            in capsys.readouterr().err)


# ----------------------------------------------------------------------------------------
# runtime: actor planning and typed configs


def test_gpu_actors_one_per_gpu_when_the_cluster_has_gpus():
    plan = plan_actors(0, "auto", 10, resources=(16, 2, 8))
    # cpus_per_worker 0 (auto): the GPU node's 8 CPUs per GPU, one left to Ray Data
    assert (plan.workers, plan.num_gpus, plan.num_cpus, plan.device) == (2, 1, 7, "cuda")
    assert plan_actors(0, "auto", 10, cpus_per_worker=3, resources=(16, 2, 8)).num_cpus == 3
    assert plan_actors(0, "auto", 10, resources=(2, 2, 1)).num_cpus == 1  # never below 1
    assert plan_actors(5, "auto", 10, resources=(16, 2, 8)).workers == 2  # capped by GPUs
    assert plan_actors(0, "auto", 1, resources=(16, 2, 8)).workers == 1   # capped by parts


def test_cpu_actors_leave_a_cpu_free():
    plan = plan_actors(0, "auto", 10, resources=(4, 0, 0))
    assert (plan.workers, plan.num_gpus, plan.num_cpus, plan.device) == (3, 0, 1, "cpu")
    assert plan_actors(8, "cpu", 10, resources=(4, 0, 0)).workers == 3
    assert plan_actors(0, "cpu", 10, resources=(16, 2, 8)).num_gpus == 0     # GPUs not wanted
    assert plan_actors(0, "auto", 10, cpus_per_worker=2, resources=(8, 0, 0)).workers == 3
    assert plan_actors(0, "auto", 10, resources=(1, 0, 0)).workers == 1
    with pytest.raises(ConfigError, match="device is 'cuda' but the Ray cluster has no GPUs"):
        plan_actors(0, "cuda", 10, resources=(4, 0, 0))


@pytest.mark.slow
def test_gpus_are_detected_from_the_cluster():
    """A separate driver with fake GPUs (ray.init(num_gpus=2)): the plan asks for GPU actors."""
    code = textwrap.dedent("""
        import ray
        from jobs.runtime import plan_actors
        ray.init(num_cpus=4, num_gpus=2, include_dashboard=False)
        p = plan_actors(0, "auto", 8)
        print("PLAN", p.workers, p.num_gpus, p.device, p.num_cpus)
        ray.shutdown()
    """)
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=180)
    assert "PLAN 2 1 cuda 1" in out.stdout, out.stderr[-2000:]   # 4 CPUs / 2 GPUs - 1


@dataclass
class Toy:
    name: str = "x"                       # a string
    count: int = 1                        # an integer
    psi: float = 1.0                      # a number
    cutoff: Optional[int] = None          # an integer or null
    items: list = field(default_factory=list)

    def validate(self):
        require(self.count >= 1, "count", f"must be >= 1 (got {self.count})")


def test_config_from_dict_names_the_field():
    cfg = config_from_dict(Toy, {"count": 3, "psi": 1, "items": [1]})
    assert cfg.psi == 1.0 and isinstance(cfg.psi, float)
    with pytest.raises(ConfigError, match=r"^job.cont is not a known field \(known: name, count"):
        config_from_dict(Toy, {"cont": 3}, "job")
    with pytest.raises(ConfigError, match=r"^job.cutoff must be an integer or null \(got 'a'\)$"):
        config_from_dict(Toy, {"cutoff": "a"}, "job")
    with pytest.raises(ConfigError, match=r"^count must be >= 1 \(got 0\)$"):
        config_from_dict(Toy, {"count": 0})
    with pytest.raises(ConfigError, match=r"^job.count must be an integer \(got True\)$"):
        config_from_dict(Toy, {"count": True}, "job")
