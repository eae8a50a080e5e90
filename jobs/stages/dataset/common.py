"""What both dataset products share: file names, the options handed on to their stages,
the sample source, the part plan and CPU actors."""
from __future__ import annotations

import json
from typing import Optional

import numpy as np
import pyarrow as pa

from jobs import runtime, storage
from jobs.config import ConfigError
from jobs.options import ActorOptions, ClassifierOptions, ImageOptions, StorageOptions
from jobs.storage import PartSpec, Store

CARD, INFO = "README.md", "dataset_info.json"
HF_IMAGE = {"_type": "Image"}          # the `datasets` Image feature (struct<bytes, path>)


# the option groups a dataset config hands on, as they are, to the stages it runs
SHARED = (ActorOptions, ImageOptions, ClassifierOptions, StorageOptions)


def stage_precision(cfg) -> str:
    """The precision the stages will record, as this driver resolves it (for the card)."""
    from gankit import precision as numerics
    return numerics.resolve(cfg.precision, runtime.resolve_device(cfg.device))


def hf_metadata(image_columns: list, labels: tuple = ()) -> dict:
    """Schema metadata telling `datasets` which struct<bytes, path> columns are Images and
    which label_<a> columns are ClassLabels ('not <a>' = 0, '<a>' = 1); the other columns'
    features it infers from the Arrow types."""
    features = {c: HF_IMAGE for c in image_columns}
    features.update({f"label_{a}": {"_type": "ClassLabel", "names": [f"not {a}", a]}
                     for a in labels})
    return {b"huggingface": json.dumps({"info": {"features": features}}).encode()}


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
    return runtime.actors_for(cfg, max(1, n_parts), device="cpu")
