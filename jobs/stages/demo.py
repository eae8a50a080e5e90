"""`gankit demo --out DIR`: the whole pipeline on the bundled toy model, locally, in minutes.

    1. sample  COUNT rows (seed 0): z, w and the toy classifier's logits (no images stored)
    2. fit     every attribute in Z and W (every sample, labelled logit > 0, 70/30 split;
               `--selection extremes` for InterFaceGAN's top/bottom 2%), plus conditional
               boundaries for the toy world's correlated pairs
    3. sample  HELDOUT fresh rows (seed 1), never seen by the fit
    4. edit    them along every W boundary, plain and conditional, mode 'to_distance' at
               -d, -d/2, 0, d/2, d (d = edit_strength), keeping the original image
    5. invert  INVERSION_FACES toy renders per inversion mode (optimize W, optimize W+,
               encode, hybrid), edited along w/eyeglasses and compared with the renderer's
               counterfactual (`gankit eval-inversion`); DIR/inversion.json
    6. report  report.json, report.html, figures/ (grids, heatmaps; correlation on generated
               samples beside toy renders and their true labels; SeFa and PCA directions;
               inversion quality per mode)

Steps 1-2 run through jobs.stages.pipeline.run_pipeline; its config is written to
DIR/demo_config.yaml (`gankit run DIR/demo_config.yaml` redoes them). Steps 3-4 are what a
pipeline with `stages: [sample, fit, heldout, edit]` does; the demo runs them itself because
it edits along every W boundary in both modes and keeps the originals for the report.
Every step resumes: rerunning the demo over the same DIR recomputes nothing already done.

Edit strength: d = 3 in W signed distance (|n| = 1). What the bundled model gives on this
demo, and which gates it fails and why, is in MODELS.md ("The demo on this model"); the
summary the demo prints says in one line why each failing gate fails.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from gankit.report import pair_failure, pair_passes, render_html
from gankit.report.gates import KNOWN
from jobs.config import option, require
from jobs.stages.report import ReportConfig, run_report

log = logging.getLogger("gankit")

# (target, [conditions]) pairs correlated in the toy world (gankit/toy/toyfaces.py)
PAIRS = [["eyeglasses", ["old"]], ["old", ["eyeglasses"]], ["blond_hair", ["dark_skin"]],
         ["smile", ["yaw"]]]


@dataclass
class DemoConfig:
    """The demo's settings: the flags set the first seven, a caller the rest."""
    out: str = option("demo_out", "output folder (or URL)")
    count: int = option(20000, "training samples for the fit")
    heldout: int = option(240, "held-out samples: fresh ones edited for the report")
    edit_strength: float = option(3.0, "W distance d: edits go to signed distance -d .. d")
    workers: int = option(2, "CPU actors (the Ray cluster gets workers + 2 CPUs)")
    ppl_samples: int = option(400, "PPL paths per space (full sampling; 0 = skip PPL)")
    selection: str = option("threshold", "boundary fit: every sample, labelled logit > 0 "
                                         "(threshold), or InterFaceGAN's top and bottom "
                                         "--fraction (extremes)",
                            choices=("extremes", "threshold"))
    fraction: float = option(0.02, "extremes: the top and bottom share kept", flag=False)
    rows_per_part: int = option(2500, "sample part size (parts are the unit of parallelism)",
                                flag=False)
    seed: int = option(0, "training samples' seed; held-out ones use seed + 1", flag=False)
    pairs: list = option([list(p) for p in PAIRS], "conditional boundaries fitted: "
                         "[target, [conditions]]", flag=False)
    separability_rows: int = option(20000, "sample rows read for the Z / W separability "
                                           "(0 = skip)", flag=False)
    directions: int = option(5, "top SeFa and PCA directions, annotated (0 = skip)",
                             flag=False)
    direction_samples: int = option(16, "samples edited to annotate each direction",
                                    flag=False)
    inversion_faces: int = option(8, "toy renders inverted per mode (0 = skip step 5)",
                                  flag=False)
    inversion_steps: int = option(100, "optimize-mode steps; the hybrid gets half",
                                  flag=False)

    def validate(self) -> None:
        require(self.count >= 100, "count", f"must be >= 100 (got {self.count})")
        require(self.heldout >= 2, "heldout", f"must be >= 2 (got {self.heldout})")
        require(self.edit_strength > 0, "edit_strength", "must be > 0")
        require(self.workers >= 1, "workers", f"must be >= 1 (got {self.workers})")
        require(self.ppl_samples >= 0, "ppl_samples", f"must be >= 0 (got {self.ppl_samples})")
        require(self.directions >= 0, "directions", f"must be >= 0 (got {self.directions})")
        require(self.direction_samples >= 1, "direction_samples", "must be >= 1")
        require(self.inversion_faces >= 0, "inversion_faces", "must be >= 0")
        require(self.inversion_steps >= 2, "inversion_steps", "must be >= 2")


def pipeline_config(cfg: DemoConfig):
    from jobs.stages.pipeline import PipelineConfig
    return PipelineConfig(
        root=cfg.out, stages=["sample", "fit"], model="toy", classifier="toy", device="cpu",
        workers=cfg.workers,
        sample={"count": cfg.count, "seed": cfg.seed, "space": "w",
                "rows_per_part": cfg.rows_per_part, "micro_batch": 16, "batch_size": 500},
        fit={"spaces": ["z", "w"], "selection": cfg.selection, "fraction": cfg.fraction,
             "conditions": cfg.pairs})


def edit_strengths(d: float) -> list:
    return [-d, -d / 2, 0.0, d / 2, d]


def write_config(cfg: DemoConfig, pipe) -> None:
    import dataclasses

    import yaml

    from jobs import storage
    text = ("# gankit demo: steps 1-2 as a pipeline config (`gankit run` this file)\n"
            + yaml.safe_dump(dataclasses.asdict(pipe), sort_keys=False)
            + "# the demo then samples held-out rows and edits them, with these settings:\n"
            + "".join(f"#   {line}\n" for line in yaml.safe_dump(
                {"demo": dataclasses.asdict(cfg)}, sort_keys=False).splitlines()))
    storage.open_store(cfg.out, create=True).write_bytes("demo_config.yaml", text.encode())


def run_heldout_and_edit(cfg: DemoConfig, index: dict) -> None:
    from jobs.stages.edit import EditConfig, run_edit
    from jobs.stages.sample import SampleConfig, run_sample
    root = cfg.out.rstrip("/")
    run_sample(SampleConfig(model="toy", classifier="toy", count=cfg.heldout,
                            seed=cfg.seed + 1, space="w", out=f"{root}/heldout",
                            rows_per_part=-(-cfg.heldout // cfg.workers), device="cpu",
                            workers=cfg.workers))
    names = [e["name"] for e in index["boundaries"] if e["space"] == "w"]
    run_edit(EditConfig(latents=f"{root}/heldout", index=f"{root}/fit", boundaries=names,
                        out=f"{root}/edits", strengths=edit_strengths(cfg.edit_strength),
                        mode="to_distance", keep_original=True, device="cpu",
                        workers=cfg.workers, batch_size=512))


def latent_metrics(cfg: DemoConfig) -> dict:
    """Separability (Z, W) of the demo's own samples and PPL (Z, W); cached in
    DIR/latent_metrics.json for the same settings. (The report stage finds the SeFa and PCA
    directions itself, with their grids.)"""
    from gankit.latent import metrics
    from jobs import storage
    from jobs.stages.metrics import MetricsConfig, separability
    from jobs.stages.rendering import load_models
    root = cfg.out.rstrip("/")
    store = storage.open_store(root)
    key = {"count": cfg.count, "seed": cfg.seed, "ppl_samples": cfg.ppl_samples,
           "separability_rows": cfg.separability_rows}
    if store.exists("latent_metrics.json"):
        cached = store.read_json("latent_metrics.json")
        if cached.get("settings") == key:
            return cached
    out = {"settings": key}
    if cfg.separability_rows:     # the metrics job's step, on the demo's own samples
        out["separability"] = separability(MetricsConfig(
            out=root, samples=f"{root}/samples", separability_rows=cfg.separability_rows,
            seed=cfg.seed))
    if cfg.ppl_samples:
        G, C = load_models("toy", "toy", "cpu")
        dist = metrics.feature_distance(C.features)
        out["ppl"] = {s: metrics.perceptual_path_length(
            G, dist, n=cfg.ppl_samples, space=s, sampling="full", batch_size=100,
            seed=cfg.seed) for s in ("z", "w")}
    store.write_json("latent_metrics.json", out)
    return out


INVERSION_MODES = (("optimize", "w"), ("optimize", "wp"), ("encode", "wp"), ("hybrid", "wp"))
INVERSION = "inversion.json"


def inversion_runs(cfg: DemoConfig, index: dict) -> list:
    """Step 5: eval-inversion per mode on the toy encoder and feature net, along the fitted
    w/eyeglasses boundary; cached in DIR/inversion.json for the same settings."""
    from gankit.latent.inversion import InversionConfig
    from gankit.loading import zoo
    from gankit.models.perceptual import load_feature_net
    from gankit.toy.toy_eval import eval_inversion
    from jobs import storage
    from jobs.stages.rendering import load_models
    from jobs.storage.boundary_index import load_boundary
    root = cfg.out.rstrip("/")
    store = storage.open_store(root)
    key = {"faces": cfg.inversion_faces, "steps": cfg.inversion_steps, "count": cfg.count,
           "seed": cfg.seed, "hybrid_schedule": InversionConfig.hybrid_schedule}
    if store.exists(INVERSION) and all(r.get("settings") == key
                                       for r in store.read_json(INVERSION)):
        return store.read_json(INVERSION)
    entry = next(e for e in index["boundaries"] if e["name"] == "w/eyeglasses")
    boundary = load_boundary(f"{root}/fit/{entry['path']}", {})
    G, C = load_models("toy", "toy", "cpu")
    E, net = zoo.load_encoder("toy"), load_feature_net("toy")
    steps = {"optimize": cfg.inversion_steps, "encode": 0, "hybrid": cfg.inversion_steps // 2}
    runs = [dict(eval_inversion(G, C, boundary, "eyeglasses", InversionConfig(
        space=space, mode=mode, steps=steps[mode], perceptual_weight=1e-3),
        n=cfg.inversion_faces, seed=cfg.seed, feature_net=net, encoder=E), settings=key)
        for mode, space in INVERSION_MODES]
    store.write_json(INVERSION, runs)
    return runs


def summary(report: dict) -> str:
    """Every W boundary's val accuracy and each conditional pair's flip/change rates."""
    known = KNOWN.get(str(report.get("model")), {})
    lines = ["W boundaries (val accuracy / all accuracy):"]
    for b in report["boundaries"]:
        if b["space"] == "w" and not b["conditions"]:
            ok = "ok" if (b["val_accuracy"] or 0) >= 0.9 else "BELOW 0.9"
            lines.append(f"  {b['attribute']:<16} {b['val_accuracy']:.3f} / "
                         f"{b['all_accuracy']:.3f}  {ok}")
    lines.append(f"Plain W edits of {report.get('num_edited')} held-out samples to distance "
                 f"+-{report.get('edit_strength'):g}: the share whose target flips (gate 0.9):")
    for attr, e in (report.get("edits") or {}).get("plain", {}).items():
        verdict = "ok" if e["flip_rate"] >= 0.9 else (f"{_fails(known, 'flip', e['boundary'])}"
                                                      f": flips {e['flip_rate']:.3f} < 0.9 "
                                                      f"of the samples")
        lines.append(f"  {attr:<16} {e['flip_rate']:.3f}  {verdict}")
    lines.append("Conditional pairs (gate: flip >= 0.9, condition changed < 0.1 and less "
                 "than plain):")
    lines.append(f"  {'target | cond':<24} {'flip plain':>10} {'flip cond':>10} "
                 f"{'cond chg plain':>15} {'cond chg cond':>14}  passes at +-")
    for p in report.get("pairs", []):
        fr, cc = p["flip_rate"], p["condition_changed"]
        passing = [f"{s['strength']:g}" for s in p.get("sweep", []) if pair_passes(s)]
        lines.append(f"  {p['target'] + ' | ' + '+'.join(p['conditions']):<24} "
                     f"{fr['plain']:>10.3f} {fr['conditional']:>10.3f} {cc['plain']:>15.3f} "
                     f"{cc['conditional']:>14.3f}  {', '.join(passing) or 'none'}")
        failure = pair_failure(p)
        label = f"{p['target']} | {'+'.join(p['conditions'])}"
        lines.append("    ok" if not failure else f"    {_fails(known, 'pair', label)}: {failure}")
    sep, ppl = report.get("separability") or {}, report.get("ppl") or {}
    if sep or ppl:
        lines.append("Z vs W: separability (lower = more linear) / PPL mean (lower = smoother):")
        for s in ("z", "w"):
            a, b = (sep.get(s) or {}).get("score"), (ppl.get(s) or {}).get("mean")
            lines.append(f"  {s.upper()}  " + (f"{a:10.3f}" if a is not None else "         -")
                         + " / " + (f"{b:.1f}" if b is not None else "-"))
    if report.get("directions"):
        lines.append("SeFa directions: " + ", ".join(d["name"] for d in report["directions"]))
    if report.get("directions_pca"):
        lines.append("PCA directions: " + ", ".join(d["name"] for d in report["directions_pca"]))
    return "\n".join(lines)


def _fails(known: dict, gate: str, item: str) -> str:
    """'FAIL', or 'known (MODELS.md)' for a documented property of the model."""
    return "known (MODELS.md)" if (gate, item) in known else "FAIL"


def run_demo(cfg: DemoConfig) -> dict:
    """Run the demo into cfg.out; returns the report dict (report['summary'] is printed)."""
    from jobs import runtime
    from jobs.stages.pipeline import run_pipeline
    cfg.validate()
    t0 = time.time()
    runtime.ensure_ray(num_cpus=cfg.workers + 2)
    pipe = pipeline_config(cfg)
    write_config(cfg, pipe)
    index = run_pipeline(pipe)["fit"]
    log.info(f"[demo] sampled and fitted in {time.time() - t0:.0f} s")
    run_heldout_and_edit(cfg, index)
    log.info(f"[demo] held-out edits done at {time.time() - t0:.0f} s")
    t1 = time.time()
    latent = latent_metrics(cfg)
    log.info(f"[demo] separability, PPL and directions in {time.time() - t1:.0f} s")
    root = cfg.out.rstrip("/")
    if cfg.inversion_faces:
        t1 = time.time()
        inversion_runs(cfg, index)
        log.info(f"[demo] inversion per mode in {time.time() - t1:.0f} s")
    report = run_report(ReportConfig(fit=f"{root}/fit", edits=f"{root}/edits",
                                     samples=f"{root}/samples", out=f"{root}/report",
                                     edit_strength=cfg.edit_strength,
                                     title="gankit demo: toy StyleGAN2",
                                     latent_metrics=latent, model="toy", classifier="toy",
                                     real="toy", directions=cfg.directions,
                                     direction_samples=cfg.direction_samples,
                                     inversion=[f"{root}/{INVERSION}"]
                                     if cfg.inversion_faces else []))
    report["summary"] = summary(report)
    rewrite_with_summary(root, report)
    print(report["summary"])
    log.info(f"[demo] done in {time.time() - t0:.0f} s; open "
             f"{os.path.join(root, 'report', 'report.html')}")
    return report


def rewrite_with_summary(root: str, report: dict) -> None:
    from jobs import storage
    out = storage.open_store(f"{root}/report")
    figs = {os.path.basename(p)[:-4]: out.read_bytes(p) for p in report["figures"]}
    out.write_json("report.json", report)
    out.write_bytes("report.html", render_html(report, figs).encode())


