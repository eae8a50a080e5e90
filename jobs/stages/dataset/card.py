"""The dataset card: README.md with a Hugging Face header, and dataset_info.json."""
from __future__ import annotations

import pyarrow as pa

from jobs.stages.dataset.common import CARD, INFO
from jobs.storage import Store


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


LIMITATIONS = (
    "## Limitations\n\n"
    "- Every image is generated: the dataset shows what the generator draws, with its "
    "biases and its gaps (attribute combinations it rarely or never draws), not the world.\n"
    "- Labels are a classifier's, not ground truth: `prob_` is its sigmoid output and "
    "`label_` thresholds it at 0.5; near 0.5 the label is a guess (`min_confidence` filters "
    "such rows).\n"
    "- The images' license follows the generator's weights and their training data: check "
    "them before you publish or train on this dataset.\n")


def front_matter(info: dict) -> str:
    """The Hugging Face card header: license, task, size and the loader's data files."""
    rows = info.get("rows") or 0
    size = next(name for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"),
                                         (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                                         (float("inf"), "n>1M")) if rows < limit)
    return ("---\n"
            f"license: {info.get('license', 'other')}\n"
            f"pretty_name: {info.get('pretty_name', 'gankit synthetic dataset')}\n"
            f"size_categories:\n- {size}\n"
            f"task_categories:\n- {info.get('task', 'image-classification')}\n"
            "tags:\n- synthetic\n- gan\n- gankit\n"
            "configs:\n- config_name: default\n  data_files:\n  - split: train\n"
            "    path: data/*.parquet\n---\n")


def write_card(out: Store, info: dict, body: str) -> None:
    """README.md (a Hugging Face dataset card: header, `body`, schema, loading, limitations)
    and dataset_info.json. Paths in the card are relative to the dataset's folder, so the
    card stays true wherever the folder is copied or uploaded."""
    schema = "\n".join(f"| `{n}` | `{t}` | {m} |" for n, t, m in info["schema"])
    loading = ("## Loading\n\nFrom this folder (or its copy on the Hub: pass the repository "
               "id instead of the path):\n\n```python\nfrom datasets import load_dataset\n"
               "ds = load_dataset(\"path/to/this/folder\", split=\"train\")\n\n"
               "import pandas as pd\ndf = pd.read_parquet(\"path/to/this/folder/data\")\n```\n")
    text = (front_matter(info) + body + "\n## Schema\n\n| column | type | meaning |\n"
            "| --- | --- | --- |\n" + schema + "\n\n" + loading + "\n" + LIMITATIONS)
    out.write_json(INFO, info)
    out.write_bytes(CARD, text.encode())


def fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"
