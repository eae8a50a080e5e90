"""(a) The labeled synthetic dataset: sample, filter and assemble, card (see the package's
docstring)."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pyarrow as pa

from gankit.dataset_filters import decide_rule, filter_stats, keep_mask, labels, probabilities
from jobs import config, options, runtime, storage
from jobs.config import option, override, public_config, require
from jobs.options import ActorOptions, ClassifierOptions, ImageOptions, StorageOptions
from jobs.runtime import PartWorker
from jobs.stages.dataset.card import fmt, schema_rows, write_card
from jobs.stages.dataset.common import (SHARED, cpu_actors, finished, hf_metadata, logit_matrix,
                                        part_plan, sample_source, scan_logits, stage_precision,
                                        with_paths)
from jobs.stages.sample import SampleConfig, SampleOptions, run_sample
from jobs.storage import PartSpec, Store

log = logging.getLogger("gankit")


@dataclass
class FilterOptions:
    """Which sampled rows the labeled dataset keeps (gankit.dataset_filters)."""
    samples: Optional[str] = option(None, "reuse this sample dataset (image and logit_ "
                                          "columns) instead of sampling one", identity=True)
    min_confidence: Optional[float] = option(None, "keep rows whose every probability is "
                                                   ">= C or <= 1 - C", identity=True)
    confidence_attributes: Optional[list] = option(None, "attributes --min-confidence looks "
                                                         "at (default: all)", identity=True)
    balance: Optional[str] = option(None, "equal positives and negatives for ATTR",
                                    metavar="ATTR", identity=True)


@dataclass
class DatasetConfig(FilterOptions, SampleOptions, ActorOptions, ImageOptions, ClassifierOptions,
                    StorageOptions):
    """The sample stage's options (SampleOptions, handed on as they are), the filters, the
    card: `sample_config` is the sample job it runs."""
    out: str = option("", "output URL: samples/, data/, README.md, dataset_info.json",
                      required=True)
    space: str = override(SampleConfig, "space", "w")
    classifier: str = override(SampleOptions, "classifier", "toy",
                               help="attribute classifier (a logit per attribute)")
    seed: int = override(SampleOptions, "seed", 0, help="row i draws z from (seed, i); also "
                                                        "the balance key")
    license: str = option("other", "the card's license field: the generator's weights and "
                                   "their data decide what it may be")

    def validate(self) -> None:
        require(bool(self.out), "out", "must be an output URL (a local path or s3://...)")
        require(bool(self.classifier), "classifier", "must name a classifier (labels need one)")
        require(self.min_confidence is None or 0.5 <= self.min_confidence < 1,
                "min_confidence", f"must be in [0.5, 1) (got {self.min_confidence})")
        require(self.confidence_attributes is None or len(self.confidence_attributes) > 0,
                "confidence_attributes", "must list attributes or be null (all)")
        self.sample_config("-").validate()

    def sample_config(self, out: str) -> SampleConfig:
        return SampleConfig(**options.values(self, SampleOptions, *SHARED), space=self.space,
                            images=True, out=out)

    def identity(self) -> dict:
        return dict(config.identity_of(self, only=(FilterOptions,)), kind="labeled")


def labeled_schema(samples: pa.Schema, names: list) -> pa.Schema:
    """Output schema of (a): ids, provenance, image, latents, logit/prob/label per attribute."""
    latent = [samples.field(n) for n in ("class", "z", "w", "wp") if n in samples.names]
    fields = [samples.field("sample_id"), pa.field("seed", pa.int64()),
              pa.field("model", pa.string()), samples.field("image"), *latent]
    for a in names:
        fields += [pa.field(f"logit_{a}", pa.float32()), pa.field(f"prob_{a}", pa.float32()),
                   pa.field(f"label_{a}", pa.int8())]
    meta = {k: v for k, v in (storage.strip_part_metadata(samples).metadata or {}).items()}
    meta.update({b"gankit.job": b"dataset", b"gankit.attributes": json.dumps(names).encode()})
    meta.update(hf_metadata(["image"], tuple(names)))
    return pa.schema(fields, metadata=meta)


class Filterer(PartWorker):
    """Applies the filter rule to one samples part and writes the labeled rows."""

    job = "dataset"

    def __init__(self, src: Store, inputs: dict, schema: pa.Schema, names: list, rule: dict,
                 seed: int, model: str, batch_size: int, out):
        super().__init__(out)
        self.src, self.inputs = src, {int(k): v for k, v in inputs.items()}
        self.schema, self.names, self.rule = schema, names, rule
        self.seed, self.model, self.batch_size = seed, model, batch_size

    def write_part(self, spec: PartSpec, part: runtime.PartContext) -> None:
        pf = storage.open_parquet(self.src, self.inputs[spec.index])
        with part.writer(self.schema) as w:
            for batch in pf.iter_batches(batch_size=self.batch_size):
                w.write(self.rows(pa.Table.from_batches([batch])))
            w.commit({"index": spec.index, "start": spec.start, "stop": spec.stop, "errors": 0})
        pf.close()

    def rows(self, t: pa.Table) -> pa.Table:
        ids = t.column("sample_id").to_numpy()                            # [n]
        probs = probabilities(logit_matrix(t, self.names))                # [n, A]
        keep = keep_mask(ids, probs, self.rule)[1]
        t, ids, probs = t.filter(pa.array(keep)), ids[keep], probs[keep]
        n = len(ids)
        cols = {"sample_id": t.column("sample_id"), "seed": pa.array(np.full(n, self.seed)),
                "model": pa.array([self.model] * n, pa.string()),
                "image": with_paths(t.column("image"), [f"{i:09d}" for i in ids])}
        for j, a in enumerate(self.names):
            cols[f"prob_{a}"] = pa.array(probs[:, j])
            cols[f"label_{a}"] = pa.array(labels(probs[:, j]))
        return pa.Table.from_arrays([cols[f.name] if f.name in cols else t.column(f.name)
                                     for f in self.schema], schema=self.schema)


def labeled_card(cfg: DatasetConfig, stats: dict, sample_ident: dict) -> str:
    rs, rf = stats["rates_sampled"], stats["rates"]
    rates = "\n".join(f"| {a} | {fmt(rs[a]['positive_rate'])} | {rf[a]['positives']} | "
                      f"{rf[a]['negatives']} | {fmt(rf[a]['positive_rate'])} | "
                      f"{fmt(rf[a]['mean_probability'])} |" for a in rs)
    conf = (f"every probability of {', '.join(cfg.confidence_attributes or rs)} >= "
            f"{cfg.min_confidence} or <= {1 - cfg.min_confidence:.6g}"
            if cfg.min_confidence is not None else "none")
    return (f"# Labeled synthetic dataset ({sample_ident.get('model')})\n\n"
            f"Generated by `gankit dataset`: {stats['rows']} rows.\n\n"
            "## How it was generated\n\n"
            f"- generator: `{sample_ident.get('model')}`, seed {sample_ident.get('seed')} "
            f"(row i draws z from a generator seeded by (seed, i)), latent space "
            f"`{sample_ident.get('space')}`, truncation psi {sample_ident.get('truncation')}"
            f" (cutoff {sample_ident.get('truncation_cutoff')})\n"
            f"- classifier: `{sample_ident.get('classifier')}`, run on the stored 8-bit PNG; "
            "prob = sigmoid(logit), label = prob >= 0.5\n"
            f"- filter min_confidence: {conf}\n"
            f"- filter balance: {cfg.balance or 'none'}"
            f"{' (deterministic subsample of the majority class)' if cfg.balance else ''}\n\n"
            "## Rows\n\n| step | rows |\n| --- | --- |\n"
            f"| sampled | {stats['sampled']} |\n"
            f"| removed by min_confidence | {stats['removed_by_min_confidence']} |\n"
            f"| removed by balance | {stats['removed_by_balance']} |\n"
            f"| in the dataset | {stats['rows']} |\n\n"
            "## Attribute rates\n\n| attribute | positive rate (sampled) | positives | "
            "negatives | positive rate | mean probability |\n"
            "| --- | --- | --- | --- | --- | --- |\n" + rates + "\n")


def check_attributes(cfg: DatasetConfig, names: list) -> None:
    for a in (cfg.confidence_attributes or []) + ([cfg.balance] if cfg.balance else []):
        require(a in names, "balance" if a == cfg.balance else "confidence_attributes",
                f"has {a!r}, not an attribute of the classifier ({', '.join(names)})")


def run_dataset(cfg: DatasetConfig) -> dict:
    """Sample, filter and write the labeled dataset under `cfg.out`; returns dataset_info."""
    cfg.validate()
    out = storage.open_store(cfg.out, cfg.storage, create=True)
    if cfg.samples:
        src = storage.open_store(cfg.samples, cfg.storage, must_exist=True)
        sample_ident = (storage.read_manifest(src) or {}).get("identity", {})
    else:
        src = out.child("samples")
        sample_ident = cfg.sample_config("").identity(stage_precision(cfg))
    identity = dict(cfg.identity(), sample=sample_ident)    # what the rows depend on
    done = finished(out, identity)
    if done is not None:
        log.info(f"[dataset] {cfg.out} is complete ({done['stats']['rows']} rows); nothing to do")
        return done
    if not cfg.samples:
        run_sample(cfg.sample_config(f"{out.url}/samples"))
    schema, names, sample_ident = sample_source(src, src.url, ("sample_id", "image"))
    check_attributes(cfg, names)
    ids, logits = scan_logits(src, names)
    probs = probabilities(logits)
    rule = decide_rule(ids, probs, names, cfg.seed, cfg.min_confidence,
                       cfg.confidence_attributes, cfg.balance)
    stats = filter_stats(ids, probs, names, rule)
    if cfg.balance and stats["rows"] == 0:
        log.warning(f"[dataset] warning: balance {cfg.balance!r} keeps no rows (one class is empty)")
    parts, plan = part_plan(src)
    kwargs = {"src": src, "inputs": {str(k): v for k, v in parts.items()},
              "schema": labeled_schema(schema, names), "names": names, "rule": rule,
              "seed": int(sample_ident.get("seed", cfg.seed)),
              "model": str(sample_ident.get("model", cfg.model)), "batch_size": cfg.batch_size}
    manifest = runtime.run_parts("dataset", out.child("data"), plan, Filterer, kwargs,
                                 identity, public_config(cfg), cpu_actors(cfg, len(plan)))
    assert manifest["rows"] == stats["rows"], (manifest["rows"], stats["rows"])
    info = {"kind": "labeled", "identity": json.loads(json.dumps(identity, default=str)),
            "config": public_config(cfg), "attributes": names, "rule": rule, "stats": stats,
            "schema": schema_rows(kwargs["schema"]), "rows": stats["rows"],
            "license": cfg.license, "task": "image-classification",
            "pretty_name": f"labeled synthetic faces of {sample_ident.get('model')}"}
    write_card(out, info, labeled_card(cfg, stats, sample_ident))
    log.info(f"[dataset] wrote {stats['rows']} of {stats['sampled']} rows and the card to {cfg.out}")
    return info
