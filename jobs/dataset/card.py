"""The dataset card: README.md with a Hugging Face header, and dataset_info.json."""
from __future__ import annotations


import pyarrow as pa

from jobs.storage import Store
from jobs.dataset.common import CARD, INFO


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
