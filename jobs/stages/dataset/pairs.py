"""(b) The paired edit dataset: sample, edit, assemble pairs, card (see the package's
docstring)."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from gankit.dataset_filters import probabilities
from jobs import config, options, runtime, storage
from jobs.config import option, override, public_config, require
from jobs.options import (ActorOptions, BatchOptions, ClassifierOptions, ImageOptions, ModelOptions,
                          StorageOptions)
from jobs.runtime import PartWorker
from jobs.stages.dataset.card import fmt, schema_rows, write_card
from jobs.stages.dataset.common import (SHARED, cpu_actors, finished, hf_metadata, logit_matrix,
                                        part_plan, sample_source, stage_precision, with_paths)
from jobs.stages.edit import EditConfig, EditOptions, run_edit
from jobs.stages.sample import SampleConfig, SampleOptions, run_sample
from jobs.storage import PartSpec, Store
from jobs.storage.boundary_index import fingerprint, resolve_boundaries

log = logging.getLogger("gankit")


@dataclass
class PairsConfig(EditOptions, SampleOptions, ActorOptions, ImageOptions, ClassifierOptions,
                  StorageOptions):
    """The sample and edit stages' options (SampleOptions, EditOptions, handed on as they
    are) and the card: `sample_config` and `edit_config` are the jobs it runs."""
    out: str = option("", "output URL: samples/, edits/, data/, README.md", required=True)
    boundaries: list = override(EditOptions, "boundaries", [], required=False,
                                help="names in the index (w/smile) or .npz paths")
    strengths: list[float] = override(EditOptions, "strengths", [-3.0, 3.0])
    classifier: str = override(SampleOptions, "classifier", "toy",
                               help="classifier: probabilities before and after")
    count: int = override(SampleOptions, "count", 100, required=False,
                          help="samples; rows = count x boundaries x strengths")
    rows_per_part: int = override(SampleOptions, "rows_per_part", 250, help="samples per part")
    license: str = option("other", "the card's license field: the generator's weights and "
                                   "their data decide what it may be")

    def validate(self) -> None:
        require(bool(self.classifier), "classifier", "must name a classifier (probabilities)")
        self.sample_config("-").validate()
        self.edit_config("-", "-").validate()

    def sample_config(self, out: str) -> SampleConfig:
        # W+ codes as sampled, so edits start from exactly the original's ws (also under a
        # truncation cutoff, which a stored w could not reproduce)
        return SampleConfig(**options.values(self, SampleOptions, *SHARED), space="wp",
                            images=False, out=out)

    def edit_config(self, latents: str, out: str) -> EditConfig:
        """The edits of the samples: their truncation is the sample job's (its manifest)."""
        return EditConfig(**options.values(self, EditOptions, ModelOptions, BatchOptions,
                                           *SHARED),
                          latents=latents, out=out, keep_original=True,
                          classifier=self.classifier)

    def identity(self, boundaries: list, precision: str) -> dict:
        """What the pairs depend on: the samples' identity and the edits' geometry."""
        return {"kind": "pairs", "sample": self.sample_config("").identity(precision),
                "boundaries": [n for n, _ in boundaries], "geometry": fingerprint(boundaries),
                **config.identity_of(self, only=(EditOptions,))}


def pairs_schema(samples: pa.Schema, names: list) -> pa.Schema:
    """Output schema of (b): one row per (sample, boundary, strength)."""
    from gankit.data import IMAGE_TYPE
    fields = [pa.field("sample_id", pa.int64()), pa.field("seed", pa.int64()),
              pa.field("model", pa.string()), pa.field("boundary", pa.string()),
              pa.field("attribute", pa.string()), pa.field("strength", pa.float32()),
              pa.field("original", IMAGE_TYPE), pa.field("edited", IMAGE_TYPE),
              samples.field("z")]
    fields += [pa.field(f"prob_before_{a}", pa.float32()) for a in names]
    fields += [pa.field(f"prob_after_{a}", pa.float32()) for a in names]
    meta = {b"gankit.job": b"dataset-pairs", b"gankit.attributes": json.dumps(names).encode()}
    meta.update(hf_metadata(["original", "edited"]))
    return pa.schema(fields, metadata=meta)


class PairAssembler(PartWorker):
    """Joins one edits part with its samples part into (original, edited) pair rows."""

    job = "dataset-pairs"

    def __init__(self, edits: Store, samples: Store, inputs: dict, schema: pa.Schema,
                 names: list, attributes: dict, seed: int, model: str, batch_size: int, out):
        super().__init__(out)
        self.edits, self.samples = edits, samples
        self.inputs = {int(k): v for k, v in inputs.items()}              # {k: (edits, samples)}
        self.schema, self.names, self.attributes = schema, names, attributes
        self.seed, self.model, self.batch_size = seed, model, batch_size

    def before(self, path: str) -> tuple:
        """(ids [m], z column, probs [m, A]) of one samples part."""
        cols = ["sample_id", "z"] + [f"logit_{a}" for a in self.names]
        t = storage.open_parquet(self.samples, path).read(columns=cols)
        return t.column("sample_id").to_numpy(), t.column("z"), \
            probabilities(logit_matrix(t, self.names))

    def write_part(self, spec: PartSpec, part: runtime.PartContext) -> None:
        edits_path, samples_path = self.inputs[spec.index]
        ids, z, probs = self.before(samples_path)
        pf = storage.open_parquet(self.edits, edits_path)
        with part.writer(self.schema) as w:
            for batch in pf.iter_batches(batch_size=self.batch_size):
                w.write(self.rows(pa.Table.from_batches([batch]), ids, z, probs))
            w.commit({"index": spec.index, "start": spec.start, "stop": spec.stop, "errors": 0})
        pf.close()

    def rows(self, e: pa.Table, ids, z, probs) -> pa.Table:
        eid = e.column("sample_id").to_numpy()                            # [n]
        pos = np.searchsorted(ids, eid)                                   # ids ascend in a part
        assert (ids[np.minimum(pos, len(ids) - 1)] == eid).all(), "edit rows without samples"
        names = e.column("boundary").to_pylist()
        t = e.column("strength").to_numpy()
        tag = [f"{i:09d}_{b.replace('/', '-')}_{s:+.3f}" for i, b, s in zip(eid, names, t)]
        after = probabilities(logit_matrix(e, self.names))
        n = len(eid)
        cols = {"sample_id": e.column("sample_id"), "seed": pa.array(np.full(n, self.seed)),
                "model": pa.array([self.model] * n, pa.string()),
                "boundary": e.column("boundary"),
                "attribute": pa.array([self.attributes[b] for b in names], pa.string()),
                "strength": e.column("strength"),
                "original": with_paths(e.column("original"), [f"{i:09d}" for i in eid]),
                "edited": with_paths(e.column("image"), list(tag)),
                "z": z.take(pa.array(pos))}
        for j, a in enumerate(self.names):
            cols[f"prob_before_{a}"] = pa.array(probs[pos, j])
            cols[f"prob_after_{a}"] = pa.array(after[:, j])
        return pa.Table.from_arrays([cols[f.name] for f in self.schema], schema=self.schema)


def pair_stats(data: Store, names: list) -> list:
    """Per (boundary, strength): rows, the edited attribute's mean probability before and
    after, and the share of rows whose label flipped; read back from the written pairs."""
    groups = {}
    for t in storage.iter_tables(data, ["boundary", "attribute", "strength"] +
                                 [f"prob_{w}_{a}" for w in ("before", "after") for a in names]):
        for r in t.to_pylist():
            a = r["attribute"]
            g = groups.setdefault((r["boundary"], r["strength"]), {"attribute": a, "b": [], "a": []})
            g["b"].append(r.get(f"prob_before_{a}", np.nan))
            g["a"].append(r.get(f"prob_after_{a}", np.nan))
    out = []
    for (b, s), g in sorted(groups.items()):
        pb, pa_ = np.asarray(g["b"], np.float64), np.asarray(g["a"], np.float64)
        out.append({"boundary": b, "attribute": g["attribute"], "strength": float(s),
                    "rows": len(pb), "mean_prob_before": float(pb.mean()),
                    "mean_prob_after": float(pa_.mean()),
                    "flipped": float(((pb >= 0.5) != (pa_ >= 0.5)).mean())})
    return out


def pairs_card(cfg: PairsConfig, rows: int, stats: list, sample_ident: dict) -> str:
    table = "\n".join(f"| {s['boundary']} | {s['attribute']} | {s['strength']:+g} | {s['rows']} | "
                      f"{fmt(s['mean_prob_before'])} | {fmt(s['mean_prob_after'])} | "
                      f"{fmt(s['flipped'])} |" for s in stats)
    return (f"# Paired edit dataset ({cfg.model})\n\n"
            f"Generated by `gankit dataset --pairs`: {rows} (original, edited) pairs for "
            "training image-to-image models (InterFaceGAN's pix2pixHD route).\n\n"
            "## How it was generated\n\n"
            f"- generator: `{cfg.model}`, seed {cfg.seed}, {cfg.count} samples (row i draws z "
            f"from (seed, i)), truncation psi {sample_ident.get('truncation')}\n"
            f"- boundaries: {', '.join(f'`{b}`' for b in cfg.boundaries)} from "
            f"`{cfg.index}`; strengths {', '.join(f'{t:+g}' for t in cfg.strengths)} "
            f"(mode `{cfg.mode}`{', layers ' + str(cfg.layers) if cfg.layers else ''})\n"
            f"- classifier: `{cfg.classifier}`; prob = sigmoid(logit) before and after the edit\n"
            "\n## Edits\n\n| boundary | attribute | strength | rows | mean prob before | "
            "mean prob after | label flipped |\n| --- | --- | --- | --- | --- | --- | --- |\n"
            + table + "\n")


def pairs_inputs(edits: Store, samples: Store) -> tuple:
    """({k: (edits path, samples path)}, plan): pair part k <- edits part k, samples part k."""
    e_parts, plan = part_plan(edits)
    s_parts = samples.list_parts()
    return {str(k): (v, s_parts[k]) for k, v in e_parts.items()}, plan


def run_pairs(cfg: PairsConfig) -> dict:
    """Sample, edit along each boundary at each strength and assemble the pairs under
    `cfg.out`; returns dataset_info."""
    cfg.validate()
    out = storage.open_store(cfg.out, cfg.storage, create=True)
    edit_cfg = cfg.edit_config(f"{out.url}/samples", f"{out.url}/edits")
    boundaries = resolve_boundaries(edit_cfg.boundaries, edit_cfg.index, edit_cfg.storage)
    identity = cfg.identity(boundaries, stage_precision(cfg))
    done = finished(out, identity)
    if done is not None:
        log.info(f"[dataset] {cfg.out} is complete ({done['rows']} pairs); nothing to do")
        return done
    run_sample(cfg.sample_config(f"{out.url}/samples"))
    run_edit(edit_cfg)
    samples, edits = out.child("samples"), out.child("edits")
    schema, names, sample_ident = sample_source(samples, samples.url, ("sample_id", "z"))
    inputs, plan = pairs_inputs(edits, samples)
    kwargs = {"edits": edits, "samples": samples, "inputs": inputs,
              "schema": pairs_schema(schema, names), "names": names,
              "attributes": {n: b.attribute for n, b in boundaries}, "seed": cfg.seed,
              "model": cfg.model, "batch_size": cfg.batch_size}
    manifest = runtime.run_parts("dataset-pairs", out.child("data"), plan, PairAssembler,
                                 kwargs, identity, public_config(cfg),
                                 cpu_actors(cfg, len(plan)))
    stats = pair_stats(out.child("data"), names)
    info = {"kind": "pairs", "identity": json.loads(json.dumps(identity, default=str)),
            "config": public_config(cfg), "attributes": names, "rows": manifest["rows"],
            "edits": stats, "schema": schema_rows(kwargs["schema"]),
            "license": cfg.license, "task": "image-to-image",
            "pretty_name": f"paired edits of {sample_ident.get('model')}"}
    write_card(out, info, pairs_card(cfg, manifest["rows"], stats, sample_ident))
    log.info(f"[dataset] wrote {manifest['rows']} pairs and the card to {cfg.out}")
    return info
