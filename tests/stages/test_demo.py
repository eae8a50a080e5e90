"""The demo path, small: toy model -> sample -> fit (Z, W, conditional) -> held-out edits ->
report, joining the session's Ray cluster. Checks report.json's keys and values, and the files.
The demo's parts run in this process (one worker: the local runner), as its stages' parts on
an actor pool are checked by the pipeline test below and the stages' own files: both runners
write byte-identical parts (tests/runtime/test_local_runner.py)."""
import html
import json
import os

import numpy as np
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def demo_run(ray_cluster, tmp_path_factory):
    from jobs.stages.demo import DemoConfig, run_demo
    out = tmp_path_factory.mktemp("demo")
    cfg = DemoConfig(out=str(out), count=1200, heldout=12, rows_per_part=600, workers=1,
                     ppl_samples=20, directions=3, direction_samples=4, inversion_faces=2,
                     inversion_steps=4)
    return out, run_demo(cfg)


def test_report_json_has_the_keys_and_sane_values(demo_run):
    out, returned = demo_run
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["summary"] == returned["summary"]
    attrs = report["attributes"]
    assert len(attrs) == 7 and "eyeglasses" in attrs
    # 7 plain per space + 4 conditional per space
    assert {(b["space"], bool(b["conditions"])) for b in report["boundaries"]} == {
        ("z", False), ("z", True), ("w", False), ("w", True)}
    assert len(report["boundaries"]) == 2 * (7 + 4)
    for b in report["boundaries"]:
        assert 0 <= b["val_accuracy"] <= 1 and 0 <= b["all_accuracy"] <= 1
        assert b["n_train"] > 0 and (out / "fit" / b["path"]).exists()
    for space in ("z", "w"):
        m = np.array(report["cosine"][space]["matrix"])
        assert m.shape == (7, 7) and np.allclose(np.diag(m), 1, atol=1e-5)
    plain, cond = report["rescoring"]["plain"], report["rescoring"]["conditional"]
    assert np.array(plain["matrix"]).shape == (7, 7)         # every W boundary edited
    assert np.array(cond["matrix"]).shape == (4, 7)
    assert np.abs(np.array(plain["matrix"])).max() <= 1
    assert report["num_edited"] == 12 and report["edit_strength"] == 3.0
    for kind in ("plain", "conditional"):
        for e in report["edits"][kind].values():
            assert 0 <= e["flip_rate"] <= 1 and 0 <= e["others_changed"] <= 1
    assert set(report["edits"]["conditional"]) == {"eyeglasses|old", "old|eyeglasses",
                                                  "blond_hair|dark_skin", "smile|yaw"}
    assert len(report["pairs"]) == 4
    for p in report["pairs"]:  # the sweep covers every edited strength; the last is the report's
        assert [s["strength"] for s in p["sweep"]] == [1.5, 3.0]
        assert p["sweep"][-1]["flip_rate"] == p["flip_rate"]
        assert p["sweep"][-1]["condition_changed"] == p["condition_changed"]
    # edits to the other side of a boundary flip the target for most samples
    assert np.mean([e["flip_rate"] for e in report["edits"]["plain"].values()]) > 0.5


def test_report_json_keeps_its_key_tree(demo_run):
    """Every key of the demo's report.json, at every level, as the report wrote it before it
    became section records (tests/report_keys.json)."""
    from report_keys import differences, expected, key_tree
    out, _ = demo_run
    report = json.loads((out / "report" / "report.json").read_text())
    assert differences(key_tree(report), expected("demo")) == []


def test_the_demo_page_fails_only_what_a_user_must_act_on(demo_run):
    """Z against W is a comparison, the toy model's documented properties are 'known' with
    their reason; a FAIL badge names each failing item with why."""
    from gankit.report.document import Report
    from gankit.report.gates import KNOWN
    out, report = demo_run
    page = (out / "report" / "report.html").read_text()
    summary = page[page.index("id='summary'"):page.index("id='contents'")]
    gates = Report.from_json(report).gates()
    assert html.escape("W boundaries more accurate than Z's") in summary
    assert "class='cmp'" in summary
    val = next(g for g in gates if g.kind == "val_accuracy")
    assert all(not name.startswith("z/") for name in val.results)    # Z: compared, not gated
    for g in gates:
        acting = [k for k in g.failing() if k not in g.known]
        assert (g.status() == "fail") == bool(acting and g.comparison is None)
        assert set(g.known) <= {item for _, item in KNOWN["toy"]}
        for item in acting:
            assert f"{item} (" in summary                            # its reason beside it
    assert summary.count("class='fail'") == sum(g.status() == "fail" for g in gates)


def test_report_json_has_separability_ppl_and_directions(demo_run):
    out, _ = demo_run
    report = json.loads((out / "report" / "report.json").read_text())
    attrs = report["attributes"]
    for space in ("z", "w"):
        sep = report["separability"][space]
        assert sep["score"] >= 1 and np.isfinite(sep["score"])
        assert sep["num_samples"] == 1200 and set(sep["entropy"]) == set(attrs)
        ppl = report["ppl"][space]
        assert ppl["mean"] > 0 and ppl["n"] == 20 and ppl["space"] == space
    dirs = report["directions"]
    assert isinstance(dirs, list) and len(dirs) == 3
    for d in dirs:
        assert d["name"] and d["top_attribute"] in attrs and set(d["changes"]) == set(attrs)
    page = (out / "report" / "report.html").read_text()
    assert "Separability and path length (Z vs W)" in page and "Directions (SeFa)" in page
    assert dirs[0]["name"] in page


def test_inversion_per_mode_is_in_the_report(demo_run):
    out, report = demo_run
    runs = report["inversion"]
    assert [(r["mode"], r["space"], r["steps"]) for r in runs] == [
        ("optimize", "w", 4), ("optimize", "wp", 4), ("encode", "wp", 0), ("hybrid", "wp", 2)]
    for r in runs:
        assert r["faces"] == 2 and r["attribute"] == "eyeglasses"
        assert 0 <= r["flip_rate"] <= 1 and r["recon_psnr"] > 0 and r["edit_mse"] > 0
    assert json.loads((out / "inversion.json").read_text())[2]["mode"] == "encode"
    page = (out / "report" / "report.html").read_text()
    assert "Inversion quality" in page and "hybrid" in page


def test_report_files_exist_and_the_page_embeds_them(demo_run):
    out, report = demo_run
    for name in report["figures"]:
        assert (out / "report" / name).read_bytes()[:4] == b"\x89PNG"
    names = {os.path.basename(n) for n in report["figures"]}
    assert {"cosine_w.png", "cosine_z.png", "rescoring_plain.png",
            "rescoring_conditional.png", "correlation.png", "grid_eyeglasses.png"} <= names
    page = (out / "report" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(report["figures"])
    assert "eyeglasses | old" in page
    assert (out / "demo_config.yaml").exists()


def test_demo_config_runs_as_a_pipeline_config(demo_run):
    from jobs.stages.pipeline import load_config
    out, _ = demo_run
    cfg = load_config(str(out / "demo_config.yaml"))
    assert cfg.sample["count"] == 1200 and cfg.fit["conditions"][0] == ["eyeglasses", ["old"]]


def test_pipeline_report_stage_on_mixed_spaces(ray_cluster, model_files, tmp_path):
    """The pipeline calls run_report with its wiring; Z, W and W+ boundaries, shift mode."""
    from helpers import ATTRIBUTES
    from jobs.stages.pipeline import PipelineConfig, run_pipeline
    root = tmp_path / "root"
    cfg = PipelineConfig(
        root=str(root), model=model_files["model"], classifier=model_files["classifier"],
        device="cpu", workers=2,
        sample={"count": 200, "seed": 2, "space": "wp", "rows_per_part": 100, "micro_batch": 8},
        fit={"spaces": ["z", "w", "wp"], "wp_layers": [[0, 2]], "fraction": 0.1,
             "conditions": [["smile", ["age"]]]},
        edit={"boundaries": ["w/smile", "w/smile__cond_age", "z/age", "wp0-2/glasses"],
              "strengths": [-2.0, 0.0, 2.0], "count": 5, "micro_batch": 8},
        report={"grid_samples": 2})
    report = run_pipeline(cfg)["report"]
    saved = json.loads((root / "report" / "report.json").read_text())
    assert saved["edit_strength"] == 2.0 and saved["num_edited"] == 5
    assert saved["rescoring"]["plain"]["boundaries"] == ["z/age", "w/smile", "wp0-2/glasses"]
    assert saved["rescoring"]["plain"]["attributes"] == ATTRIBUTES
    assert np.array(saved["rescoring"]["conditional"]["matrix"]).shape == (1, 3)
    assert [p["target"] for p in saved["pairs"]] == ["smile"]
    assert set(saved["cosine"]) == {"z", "w", "wp0-2"}
    assert report["figures"] == saved["figures"] and "figures/grid_smile.png" in saved["figures"]
    # no latent metrics given: the keys are there, null
    assert saved["separability"] is None and saved["ppl"] is None and saved["directions"] is None
