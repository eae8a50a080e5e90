"""`gankit dataset`: dataset products, built by chaining the existing stages.

(a) Labeled synthetic dataset (DatasetConfig, run_dataset):

    sample (images + classifier)  ->  <out>/samples/      every row (the sample stage labels
                                                           the stored 8-bit PNG, exactly what
                                                           `gankit label` would compute)
    filter + assemble (part job)  ->  <out>/data/part-k   the rows of samples part k that pass
                                                           the filters, with prob_/label_ columns
    card                          ->  <out>/README.md     how it was generated, rates, schema
                                      <out>/dataset_info.json   the same facts as JSON

(b) Paired edit dataset (PairsConfig, run_pairs), the InterFaceGAN -> pix2pixHD route:

    sample (wp + classifier)      ->  <out>/samples/
    edit (keep_original)          ->  <out>/edits/        gankit.editing along fitted boundaries
    assemble (part job)           ->  <out>/data/part-k   (original, edited) pairs + probabilities
                                                           before and after, one row per
                                                           (sample, boundary, strength)
    card                          ->  <out>/README.md, <out>/dataset_info.json

Both load as-is: `datasets.load_dataset(<out>)` (the card's `configs` points at data/*.parquet),
`load_dataset("parquet", data_files="<out>/data/*.parquet")`, `pandas.read_parquet("<out>/data")`.
Image columns are struct<bytes, path> PNG with `huggingface` schema metadata declaring them
`Image` features. Every stage is resumable, and a rerun of a finished dataset computes nothing;
once complete, data/ is self-contained and samples/ and edits/ may be deleted.

Filters of (a), in this order:
    min_confidence c   keep rows whose probability is >= c or <= 1 - c for every attribute
                       of `confidence_attributes` (default: all)
    balance a          keep as many positives (prob_a >= 0.5) as negatives: every row of the
                       minority class, and the majority-class rows with the smallest
                       (mix64(seed, sample_id), sample_id) keys, a deterministic subsample
The driver decides the rule from the logit columns alone (N x A float32 in memory) and the
workers apply the same pure function (`keep_mask`) part by part; counts go in the card.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pyarrow as pa

from gankit.editing import MODES as EDIT_MODES
from gankit.latents import SPACES
from jobs import config, options, runtime, storage
from jobs.config import ConfigError, layer_span, option, public_config, require
from jobs.options import ActorOptions, ClassifierOptions, ImageOptions, StorageOptions
from jobs.runtime import PartWorker
from jobs.storage import PartSpec, PartWriter, Store

CARD, INFO = "README.md", "dataset_info.json"
HF_IMAGE = {"_type": "Image"}          # the `datasets` Image feature (struct<bytes, path>)


SHARED = (ActorOptions, ImageOptions, ClassifierOptions, StorageOptions)


def shared_options(cfg) -> dict:
    """The shared options a dataset config hands on to its sample and edit stages."""
    return options.values(cfg, *SHARED)


def stage_precision(cfg) -> str:
    """The precision the stages will record, as this driver resolves it (for the card)."""
    from gankit import precision as numerics
    return numerics.resolve(cfg.precision, runtime.resolve_device(cfg.device))


@dataclass
class DatasetConfig(ActorOptions, ImageOptions, ClassifierOptions, StorageOptions):
    out: str = option("", "output URL: samples/, data/, README.md, dataset_info.json",
                      required=True)
    model: str = option("toy", "generator: 'toy', a checkpoint path or package.module:factory")
    classifier: str = option("toy", "attribute classifier (a logit per attribute)")
    count: int = option(1000, "rows sampled (before filters)", required=True)
    seed: int = option(0, "row i draws z from (seed, i); also the balance key")
    space: str = option("w", "(labeled) latents stored beside z", choices=SPACES)
    truncation: float = option(1.0, "truncation psi (1 = none)")
    truncation_cutoff: Optional[int] = option(None, "truncate only the first N W+ layers "
                                                    "(default: all)")
    samples: Optional[str] = option(None, "(labeled) reuse this sample dataset (image and "
                                          "logit_ columns) instead of sampling one")
    min_confidence: Optional[float] = option(None, "(labeled) keep rows whose every "
                                                   "probability is >= C or <= 1 - C")
    confidence_attributes: Optional[list] = option(None, "(labeled) attributes "
                                                         "--min-confidence looks at (default: "
                                                         "all)")
    balance: Optional[str] = option(None, "(labeled) equal positives and negatives for ATTR",
                                    metavar="ATTR")
    rows_per_part: int = option(1000, "sample rows per part (data part k <- samples part k)")
    micro_batch: int = option(16, "rows per model call (rows depend on it)")
    batch_size: int = option(256, "rows per actor step and Parquet row group (a memory knob)")

    def validate(self) -> None:
        require(bool(self.out), "out", "must be an output URL (a local path or s3://...)")
        require(bool(self.classifier), "classifier", "must name a classifier (labels need one)")
        require(self.min_confidence is None or 0.5 <= self.min_confidence < 1,
                "min_confidence", f"must be in [0.5, 1) (got {self.min_confidence})")
        require(self.confidence_attributes is None or len(self.confidence_attributes) > 0,
                "confidence_attributes", "must list attributes or be null (all)")
        self.sample_config("-").validate()

    def sample_config(self, out: str):
        from jobs.sample import SampleConfig
        return SampleConfig(model=self.model, count=self.count, seed=self.seed,
                            space=self.space, truncation=self.truncation,
                            truncation_cutoff=self.truncation_cutoff, images=True,
                            classifier=self.classifier, out=out,
                            rows_per_part=self.rows_per_part, micro_batch=self.micro_batch,
                            batch_size=self.batch_size, **shared_options(self))

    def identity(self) -> dict:
        keys = ("min_confidence", "confidence_attributes", "balance")
        return dict({k: getattr(self, k) for k in keys}, kind="labeled", samples=self.samples)


# ----------------------------------------------------------------------------------------
# Filters: pure functions of (ids, logits), shared by the driver and the workers


def probabilities(logits: np.ndarray) -> np.ndarray:
    """logits [N, A] -> sigmoid [N, A] float32 (computed in float64, then rounded once)."""
    return (1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))).astype(np.float32)


def labels(probs: np.ndarray) -> np.ndarray:
    """prob >= 0.5 -> 1, else 0 (int8); from the float32 prob so the two never disagree."""
    return (probs >= 0.5).astype(np.int8)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: uint64 [N] -> uint64 [N], a fixed well-mixed permutation."""
    x = np.asarray(x).astype(np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def balance_keys(seed: int, ids: np.ndarray) -> np.ndarray:
    """The subsampling key of each row: depends on (seed, sample_id) only. [N] uint64."""
    return mix64(mix64(np.full(len(ids), seed, dtype=np.uint64)) ^ ids.astype(np.uint64))


def confident(probs: np.ndarray, cols: list, c: Optional[float]) -> np.ndarray:
    """[N] bool: every prob in `cols` is >= c or <= 1 - c (all True when c is None)."""
    if c is None:
        return np.ones(len(probs), dtype=bool)
    p = probs[:, cols]
    return ((p >= c) | (p <= 1.0 - c)).all(axis=1)


def under_cap(keys: np.ndarray, ids: np.ndarray, cap) -> np.ndarray:
    """[N] bool: (key, id) <= cap; cap None keeps all, [] keeps none."""
    if cap is None:
        return np.ones(len(ids), dtype=bool)
    if len(cap) == 0:
        return np.zeros(len(ids), dtype=bool)
    k, i = np.uint64(cap[0]), int(cap[1])
    return (keys < k) | ((keys == k) & (ids <= i))


def keep_mask(ids: np.ndarray, probs: np.ndarray, rule: dict) -> tuple:
    """(passes min_confidence [N], kept [N]) under `rule` (see decide_rule)."""
    conf = confident(probs, rule["confidence_cols"], rule["min_confidence"])
    if rule["balance_col"] is None:
        return conf, conf
    y = labels(probs[:, rule["balance_col"]])                          # [N] 0/1
    keys = balance_keys(rule["seed"], ids)
    keep = conf.copy()
    for cls in (0, 1):
        sel = y == cls
        keep[sel] &= under_cap(keys[sel], ids[sel], rule["caps"][str(cls)])
    return conf, keep


def majority_cap(keys: np.ndarray, ids: np.ndarray, k: int) -> list:
    """The k-th smallest (key, id) of a class, as [key, id]; [] when k == 0."""
    if k == 0:
        return []
    order = np.lexsort((ids, keys))                                    # by key, then id
    j = order[k - 1]
    return [int(keys[j]), int(ids[j])]


def decide_rule(cfg: DatasetConfig, ids: np.ndarray, probs: np.ndarray, names: list) -> dict:
    """The filter rule (JSON-able) for these rows: which columns, and the balance caps."""
    conf_names = cfg.confidence_attributes or names
    rule = {"min_confidence": cfg.min_confidence, "seed": cfg.seed,
            "confidence_cols": [names.index(a) for a in conf_names],
            "balance_col": names.index(cfg.balance) if cfg.balance else None,
            "caps": {"0": None, "1": None}}
    if cfg.balance:
        conf = confident(probs, rule["confidence_cols"], cfg.min_confidence)
        y = labels(probs[conf, rule["balance_col"]])
        ids_c, keys = ids[conf], balance_keys(cfg.seed, ids[conf])
        n = [int((y == 0).sum()), int((y == 1).sum())]
        big = int(n[1] > n[0])
        sel = y == big
        rule["caps"][str(big)] = majority_cap(keys[sel], ids_c[sel], n[1 - big])
    return rule


def attribute_rates(probs: np.ndarray, names: list) -> dict:
    """{attr: {positives, negatives, positive_rate, mean_probability}} of rows probs [N, A]."""
    y = labels(probs)
    out = {}
    for j, a in enumerate(names):
        pos = int(y[:, j].sum())
        out[a] = {"positives": pos, "negatives": int(len(y) - pos),
                  "positive_rate": pos / len(y) if len(y) else None,
                  "mean_probability": float(probs[:, j].mean()) if len(y) else None}
    return out


def filter_stats(ids, probs, names, rule) -> dict:
    """Row counts through the filters and attribute rates before and after."""
    conf, keep = keep_mask(ids, probs, rule)
    return {"sampled": int(len(ids)), "removed_by_min_confidence": int((~conf).sum()),
            "removed_by_balance": int((conf & ~keep).sum()), "rows": int(keep.sum()),
            "rates_sampled": attribute_rates(probs, names),
            "rates": attribute_rates(probs[keep], names)}


# ----------------------------------------------------------------------------------------
# Schemas


def hf_metadata(image_columns: list) -> dict:
    """Schema metadata telling `datasets` which struct<bytes, path> columns are Images (the
    other columns' features it infers from the Arrow types)."""
    return {b"huggingface": json.dumps({"info": {"features": {
        c: HF_IMAGE for c in image_columns}}}).encode()}


def labeled_schema(samples: pa.Schema, names: list) -> pa.Schema:
    """Output schema of (a): ids, provenance, image, latents, logit/prob/label per attribute."""
    latent = [samples.field(n) for n in ("z", "w", "wp") if n in samples.names]
    fields = [samples.field("sample_id"), pa.field("seed", pa.int64()),
              pa.field("model", pa.string()), samples.field("image"), *latent]
    for a in names:
        fields += [pa.field(f"logit_{a}", pa.float32()), pa.field(f"prob_{a}", pa.float32()),
                   pa.field(f"label_{a}", pa.int8())]
    meta = {k: v for k, v in (storage.strip_part_metadata(samples).metadata or {}).items()}
    meta.update({b"gankit.job": b"dataset", b"gankit.attributes": json.dumps(names).encode()})
    meta.update(hf_metadata(["image"]))
    return pa.schema(fields, metadata=meta)


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


def logit_matrix(table: pa.Table, names: list) -> np.ndarray:
    """logit_<a> columns -> [N, A] float32."""
    if not names:
        return np.zeros((table.num_rows, 0), dtype=np.float32)
    return np.stack([table.column(f"logit_{a}").to_numpy() for a in names], axis=1)


def with_paths(images: pa.Array, stems: list) -> pa.Array:
    """Image structs with their `path` set to `stem.<extension of the bytes' format>` (file
    names for export tools)."""
    from gankit.data import image_bytes, image_column
    from gankit.images import file_extension
    data = image_bytes(images)
    return image_column(data, [f"{s}.{file_extension(b)}" for s, b in zip(stems, data)])


# ----------------------------------------------------------------------------------------
# Part workers (CPU actors: no model, part k of the output <- part k of the input)


class Filterer(PartWorker):
    """Applies the filter rule to one samples part and writes the labeled rows."""

    job = "dataset"

    def __init__(self, src: Store, inputs: dict, schema: pa.Schema, names: list, rule: dict,
                 seed: int, model: str, batch_size: int, out):
        super().__init__(out)
        self.src, self.inputs = src, {int(k): v for k, v in inputs.items()}
        self.schema, self.names, self.rule = schema, names, rule
        self.seed, self.model, self.batch_size = seed, model, batch_size

    def write_part(self, spec: PartSpec) -> dict:
        pf = storage.open_parquet(self.src, self.inputs[spec.index])
        with PartWriter(self.out, storage.part_name(spec.index), self.schema) as w:
            for batch in pf.iter_batches(batch_size=self.batch_size):
                w.write(self.rows(pa.Table.from_batches([batch])))
            w.commit({"index": spec.index, "start": spec.start, "stop": spec.stop, "errors": 0})
        pf.close()
        return {"rows": w.rows, "errors": 0}

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

    def write_part(self, spec: PartSpec) -> dict:
        edits_path, samples_path = self.inputs[spec.index]
        ids, z, probs = self.before(samples_path)
        pf = storage.open_parquet(self.edits, edits_path)
        with PartWriter(self.out, storage.part_name(spec.index), self.schema) as w:
            for batch in pf.iter_batches(batch_size=self.batch_size):
                w.write(self.rows(pa.Table.from_batches([batch]), ids, z, probs))
            w.commit({"index": spec.index, "start": spec.start, "stop": spec.stop, "errors": 0})
        pf.close()
        return {"rows": w.rows, "errors": 0}

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


# ----------------------------------------------------------------------------------------
# Driver helpers


def finished(out: Store, identity: dict) -> Optional[dict]:
    """dataset_info.json of a complete earlier run with this identity, else None."""
    manifest = storage.read_manifest(out.child("data")) or {}
    if manifest.get("status") != "complete" or not out.exists(INFO):
        return None
    info = out.read_json(INFO)
    same = json.loads(json.dumps(identity, default=str)) == info.get("identity")
    return info if same and manifest.get("identity") == info.get("identity") else None


def sample_source(src: Store, url: str, need: tuple) -> tuple:
    """(schema, attribute names, sample identity) of a sample dataset holding `need`."""
    from gankit.data import attribute_names
    _, schema, _ = storage.dataset_rows(src)
    if schema is None:
        raise FileNotFoundError(f"no committed parts at {url}")
    names = attribute_names(schema)
    missing = [c for c in need if c not in schema.names]
    if missing or not names:
        raise ConfigError("samples", f"{url} lacks {missing or 'logit_<attr> columns'}: sample "
                          f"it with images and a classifier (gankit sample --images --classifier)")
    ident = (storage.read_manifest(src) or {}).get("identity", {})
    return schema, names, ident


def scan_logits(src: Store, names: list) -> tuple:
    """(sample_id [N] int64, logits [N, A] float32), streamed from the logit columns only."""
    ids, logits = [], []
    for t in storage.iter_tables(src, ["sample_id"] + [f"logit_{a}" for a in names]):
        ids.append(t.column("sample_id").to_numpy())
        logits.append(logit_matrix(t, names))
    return np.concatenate(ids), np.concatenate(logits)


def part_plan(src: Store) -> tuple:
    """({index: path}, [PartSpec]) of a dataset's committed parts (row offsets from footers)."""
    parts, plan, start = src.list_parts(), [], 0
    for k, path in parts.items():
        n = storage.part_footer(src, path)[1]
        plan.append(PartSpec(k, start, start + n))
        start += n
    return parts, plan


def cpu_actors(cfg, n_parts: int) -> runtime.ActorPlan:
    runtime.ensure_ray()      # with --samples no sample stage has started Ray
    plan = runtime.plan_actors(cfg.workers, "cpu", max(1, n_parts), 1)
    return dataclasses.replace(plan, attempts=cfg.part_attempts)


def schema_rows(schema: pa.Schema) -> list:
    """[(column, type, meaning)] for the card."""
    meaning = {"sample_id": "row id: z drawn from a generator seeded by (seed, sample_id)",
               "seed": "the job's seed", "model": "generator the row was sampled from",
               "image": "PNG, struct<bytes, path> (a `datasets` Image)",
               "original": "PNG of the unedited sample (a `datasets` Image)",
               "edited": "PNG of the edited sample (a `datasets` Image)",
               "z": "latent z", "w": "latent w (after mapping and truncation)",
               "wp": "W+ latents, flattened [num_ws * w_dim]",
               "boundary": "boundary name (space/attribute from `gankit fit`)",
               "attribute": "attribute the boundary edits",
               "strength": "signed distance moved along the boundary normal"}
    prefixes = {"logit_": "classifier logit", "prob_before_": "probability before the edit",
                "prob_after_": "probability after the edit", "prob_": "sigmoid(logit)",
                "label_": "label: 1 if prob >= 0.5 else 0"}
    rows = []
    for f in schema:
        text = meaning.get(f.name) or next((f"{f.name[len(p):]}: {m}" for p, m in
                                            prefixes.items() if f.name.startswith(p)), "")
        rows.append((f.name, str(f.type), text))
    return rows


def write_card(out: Store, info: dict, body: str) -> None:
    """README.md (YAML front matter for the Hub loader + `body`) and dataset_info.json."""
    front = ("---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n"
             "    path: data/*.parquet\ntags:\n- synthetic\n- gankit\n---\n")
    schema = "\n".join(f"| `{n}` | `{t}` | {m} |" for n, t, m in info["schema"])
    loading = ("## Loading\n\n```python\nfrom datasets import load_dataset\n"
               f"ds = load_dataset(\"parquet\", data_files=\"{out.url}/data/*.parquet\", "
               "split=\"train\")\n\nimport pandas as pd\n"
               f"df = pd.read_parquet(\"{out.url}/data\")\n```\n")
    text = (front + body + "\n## Schema\n\n| column | type | meaning |\n| --- | --- | --- |\n"
            + schema + "\n\n" + loading)
    out.write_json(INFO, info)
    out.write_bytes(CARD, text.encode())


def fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


# ----------------------------------------------------------------------------------------
# (a) the labeled dataset


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
        print(f"[dataset] {cfg.out} is complete ({done['stats']['rows']} rows); nothing to do")
        return done
    if not cfg.samples:
        from jobs.sample import run_sample
        run_sample(cfg.sample_config(f"{out.url}/samples"))
    schema, names, sample_ident = sample_source(src, src.url, ("sample_id", "image"))
    check_attributes(cfg, names)
    ids, logits = scan_logits(src, names)
    probs = probabilities(logits)
    rule = decide_rule(cfg, ids, probs, names)
    stats = filter_stats(ids, probs, names, rule)
    if cfg.balance and stats["rows"] == 0:
        print(f"[dataset] warning: balance {cfg.balance!r} keeps no rows (one class is empty)")
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
            "schema": schema_rows(kwargs["schema"])}
    write_card(out, info, labeled_card(cfg, stats, sample_ident))
    print(f"[dataset] wrote {stats['rows']} of {stats['sampled']} rows and the card to {cfg.out}")
    return info


# ----------------------------------------------------------------------------------------
# (b) the paired edit dataset


@dataclass
class PairsConfig(ActorOptions, ImageOptions, ClassifierOptions, StorageOptions):
    out: str = option("", "output URL: samples/, edits/, data/, README.md", required=True)
    index: Optional[str] = option(None, "(pairs) `gankit fit` output URL holding "
                                        "boundaries.json")
    boundaries: list = option([], "(pairs) names in the index (w/smile) or .npz paths")
    strengths: list[float] = option([-3.0, 3.0], "(pairs) edit strengths, for every boundary")
    mode: str = option("shift", "(pairs) shift: move by t; to_distance: move to t",
                       choices=EDIT_MODES)
    layers: Optional[list] = option(None, "(pairs) W+ layers [start, stop) a w boundary edits",
                                    parse=layer_span, one_word=True, metavar="START-STOP")
    model: str = option("toy", "generator (the one the boundaries were fitted on)")
    classifier: str = option("toy", "classifier: probabilities before and after")
    count: int = option(100, "samples; rows = count x boundaries x strengths")
    seed: int = option(0, "row i draws z from (seed, i)")
    truncation: float = option(1.0, "truncation psi (1 = none)")
    truncation_cutoff: Optional[int] = option(None, "truncate only the first N W+ layers")
    rows_per_part: int = option(250, "samples per part")
    micro_batch: int = option(16, "rows per model call (rows depend on it)")
    batch_size: int = option(256, "rows per actor step and Parquet row group")

    def validate(self) -> None:
        require(bool(self.classifier), "classifier", "must name a classifier (probabilities)")
        self.sample_config("-").validate()
        self.edit_config("-", "-").validate()

    def sample_config(self, out: str):
        from jobs.sample import SampleConfig
        # W+ codes as sampled, so edits start from exactly the original's ws (also under a
        # truncation cutoff, which a stored w could not reproduce)
        return SampleConfig(model=self.model, count=self.count, seed=self.seed, space="wp",
                            truncation=self.truncation, truncation_cutoff=self.truncation_cutoff,
                            images=False, classifier=self.classifier, out=out,
                            rows_per_part=self.rows_per_part, micro_batch=self.micro_batch,
                            batch_size=self.batch_size, **shared_options(self))

    def edit_config(self, latents: str, out: str):
        from jobs.edit import EditConfig
        return EditConfig(latents=latents, out=out, boundaries=list(self.boundaries),
                          index=self.index, strengths=list(self.strengths), mode=self.mode,
                          layers=self.layers, keep_original=True, model=self.model,
                          classifier=self.classifier, micro_batch=self.micro_batch,
                          batch_size=self.batch_size, **shared_options(self))


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
    from jobs.boundary_index import fingerprint, resolve_boundaries
    from jobs.edit import run_edit
    from jobs.sample import run_sample
    cfg.validate()
    out = storage.open_store(cfg.out, cfg.storage, create=True)
    edit_cfg = cfg.edit_config(f"{out.url}/samples", f"{out.url}/edits")
    boundaries = resolve_boundaries(edit_cfg.boundaries, edit_cfg.index, edit_cfg.storage)
    identity = {"kind": "pairs", "sample": cfg.sample_config("").identity(stage_precision(cfg)),
                "boundaries": [n for n, _ in boundaries], "geometry": fingerprint(boundaries),
                "strengths": list(cfg.strengths), "mode": cfg.mode, "layers": cfg.layers}
    done = finished(out, identity)
    if done is not None:
        print(f"[dataset] {cfg.out} is complete ({done['rows']} pairs); nothing to do")
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
            "edits": stats, "schema": schema_rows(kwargs["schema"])}
    write_card(out, info, pairs_card(cfg, manifest["rows"], stats, sample_ident))
    print(f"[dataset] wrote {manifest['rows']} pairs and the card to {cfg.out}")
    return info


# ----------------------------------------------------------------------------------------
# Command line


def register(subparsers) -> None:
    p = subparsers.add_parser("dataset", help="labeled synthetic dataset, or (--pairs) paired "
                              "edit dataset, with a dataset card",
                              formatter_class=config.HelpFormatter)
    p.add_argument("--pairs", action="store_true", help="write the paired edit dataset")
    config.add_flags(p, DatasetConfig, unset=("count", "rows_per_part"))
    config.add_flags(p, PairsConfig, skip={f.name for f in dataclasses.fields(DatasetConfig)})
    p.set_defaults(func=cmd_dataset)


def cmd_dataset(args) -> None:
    """Flags left unset take the chosen product's defaults (count, rows per part)."""
    if args.pairs:
        run_pairs(config.from_args(PairsConfig, args))
    else:
        run_dataset(config.from_args(DatasetConfig, args))


__all__ = ["DatasetConfig", "PairsConfig", "run_dataset", "run_pairs", "keep_mask",
           "decide_rule", "probabilities", "labels"]
