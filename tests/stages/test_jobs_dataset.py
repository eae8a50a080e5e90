"""`gankit dataset` on the bundled toy model and the session's Ray cluster: the labeled
dataset's schema and card match its rows, the filters enforce their rules and account for
every dropped row, runs are deterministic and resumable, and the paired edit dataset's pairs
are identical at strength 0 and differ elsewhere. No figure of the toy model is assumed."""
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs import storage

pytestmark = pytest.mark.integration

COUNT, PER_PART = 48, 16


def data(out):
    return storage.read_table(os.path.join(str(out), "data")).sort_by("sample_id")


def probs_of(table, names) -> np.ndarray:
    return np.stack([table.column(f"prob_{a}").to_numpy() for a in names], axis=1)


def base_config(out, **kw):
    from jobs.stages.dataset import DatasetConfig
    cfg = dict(out=str(out), model="toy", classifier="toy", count=COUNT, seed=5,
               rows_per_part=PER_PART, workers=1, device="cpu")
    return DatasetConfig(**dict(cfg, **kw))


@pytest.fixture(scope="module")
def labeled(ray_cluster, tmp_path_factory):
    """An unfiltered labeled dataset: (out dir, info)."""
    from jobs.stages.dataset import run_dataset
    out = tmp_path_factory.mktemp("labeled")
    return out, run_dataset(base_config(out))


# ----------------------------------------------------------------------------------------
# (a) the labeled dataset


def test_labeled_rows_schema_and_card(labeled):
    from gankit.loading import zoo
    from gankit.images import decode_image
    out, info = labeled
    names = info["attributes"]
    t = data(out)
    assert t.num_rows == COUNT and t.column("sample_id").to_pylist() == list(range(COUNT))
    G = zoo.load_generator("toy")
    assert t.column_names[:6] == ["sample_id", "seed", "model", "image", "z", "w"]
    assert set(t.column("seed").to_pylist()) == {5} and set(t.column("model").to_pylist()) == {"toy"}
    img = t.column("image").to_pylist()[3]
    assert img["path"] == "000000003.png"
    assert decode_image(img["bytes"]).shape == (G.img_resolution, G.img_resolution, 3)
    for a in names:
        logit = t.column(f"logit_{a}").to_numpy().astype(np.float64)
        np.testing.assert_allclose(t.column(f"prob_{a}").to_numpy(), 1 / (1 + np.exp(-logit)),
                                   rtol=1e-6)
        assert (t.column(f"label_{a}").to_numpy() == (t.column(f"prob_{a}").to_numpy() >= 0.5)).all()
    # Image columns are declared to `datasets` in the schema metadata
    hf = json.loads(pq.read_schema(out / "data" / "part-00000.parquet").metadata[b"huggingface"])
    assert hf["info"]["features"]["image"] == {"_type": "Image"}
    for a in names:                                 # labels are ClassLabels: 0 = not a, 1 = a
        assert hf["info"]["features"][f"label_{a}"] == {"_type": "ClassLabel",
                                                        "names": [f"not {a}", a]}
    # the card and dataset_info reflect the rows actually written
    saved = json.loads((out / "dataset_info.json").read_text())
    assert saved["stats"]["rows"] == saved["stats"]["sampled"] == COUNT
    card = (out / "README.md").read_text()
    header = card.split("---\n")[1]                  # the Hugging Face card's YAML header
    assert "license: other" in header and "path: data/*.parquet" in header
    assert "size_categories:" in header and "task_categories:" in header
    assert str(out) not in card                     # relative paths: true wherever it is copied
    assert "## Limitations" in card
    assert f"| sampled | {COUNT} |" in card and f"| in the dataset | {COUNT} |" in card
    for a in names:
        pos = int(t.column(f"label_{a}").to_numpy().sum())
        assert saved["stats"]["rates"][a]["positives"] == pos
        assert f"| {a} | {pos / COUNT:.3f} | {pos} | {COUNT - pos} |" in card
    for col in t.column_names:
        assert f"| `{col}` |" in card
    # pandas reads the folder as-is (files starting with '_' are ignored)
    import pandas as pd
    assert len(pd.read_parquet(out / "data")) == COUNT


def pick_balance(table, names, c: float) -> str:
    """The attribute with the most balanced classes among confident rows (no model figures
    assumed: whichever it is, the test checks the rule)."""
    p = probs_of(table, names)
    conf = ((p >= c) | (p <= 1 - c)).all(axis=1)
    y = p[conf] >= 0.5
    return names[int(np.argmax(np.minimum(y.sum(0), (~y).sum(0))))]


def test_filters_enforce_their_rules_and_count_every_drop(labeled, tmp_path):
    from jobs.stages.dataset import run_dataset
    src, info = labeled
    names, full = info["attributes"], data(src)
    c = 0.6
    attr = pick_balance(full, names, c)
    got = run_dataset(base_config(tmp_path / "f1", samples=str(src / "samples"),
                                  min_confidence=c, balance=attr))
    t = data(tmp_path / "f1")
    p = probs_of(t, names)
    assert ((p >= c) | (p <= 1 - c)).all()                          # every attribute confident
    y = t.column(f"label_{attr}").to_numpy()
    assert (y == 1).sum() == (y == 0).sum()                         # balanced
    # independently: the confident rows, and all of the minority class kept
    pf = probs_of(full, names)
    conf = ((pf >= c) | (pf <= 1 - c)).all(axis=1)
    yf = pf[conf, names.index(attr)] >= 0.5
    assert t.num_rows == 2 * min(yf.sum(), (~yf).sum())
    minority = yf if yf.sum() <= (~yf).sum() else ~yf
    kept = set(t.column("sample_id").to_pylist())
    assert set(full.column("sample_id").to_numpy()[conf][minority]) <= kept
    # kept rows are the sampled rows, unchanged
    assert t.column("image").equals(full.take(t.column("sample_id")).column("image"))
    s = got["stats"]
    assert s["removed_by_min_confidence"] == int((~conf).sum())
    assert s["sampled"] - s["removed_by_min_confidence"] - s["removed_by_balance"] == t.num_rows
    card = (tmp_path / "f1" / "README.md").read_text()
    assert f"| removed by min_confidence | {s['removed_by_min_confidence']} |" in card
    assert f"| removed by balance | {s['removed_by_balance']} |" in card
    assert f"filter balance: {attr}" in card

    # deterministic: a second run into another location writes the same rows and card
    run_dataset(base_config(tmp_path / "f2", samples=str(src / "samples"),
                            min_confidence=c, balance=attr, batch_size=7))
    assert data(tmp_path / "f2").equals(t)
    assert (tmp_path / "f2" / "README.md").read_text() == card.replace(
        str(tmp_path / "f1"), str(tmp_path / "f2"))

    # resumable: a lost part is recomputed alone; a finished dataset is left as it is
    os.remove(tmp_path / "f2" / "data" / "part-00001.parquet")
    os.remove(tmp_path / "f2" / "dataset_info.json")
    run_dataset(base_config(tmp_path / "f2", samples=str(src / "samples"),
                            min_confidence=c, balance=attr, batch_size=7))
    manifest = json.loads((tmp_path / "f2" / "data" / "_manifest.json").read_text())
    assert manifest["runs"][-1]["computed"] == [1] and data(tmp_path / "f2").equals(t)
    before = os.path.getmtime(tmp_path / "f2" / "data" / "part-00000.parquet")
    assert run_dataset(base_config(tmp_path / "f2", samples=str(src / "samples"),
                                   min_confidence=c, balance=attr))["stats"] == s
    assert os.path.getmtime(tmp_path / "f2" / "data" / "part-00000.parquet") == before


def test_sampling_does_not_depend_on_workers_or_batch_size(labeled, tmp_path):
    from jobs.stages.dataset import run_dataset
    out, _ = labeled
    run_dataset(base_config(tmp_path / "again", workers=2, batch_size=8))
    assert data(tmp_path / "again").equals(data(out))


def test_bad_filter_config_names_the_field(labeled, tmp_path):
    from jobs.stages.dataset import run_dataset
    from jobs.config import ConfigError
    src, _ = labeled
    with pytest.raises(ConfigError, match="min_confidence"):
        run_dataset(base_config(tmp_path / "x", min_confidence=0.3))
    with pytest.raises(ConfigError, match="balance"):
        run_dataset(base_config(tmp_path / "y", samples=str(src / "samples"),
                                balance="no_such_attribute"))


# ----------------------------------------------------------------------------------------
# (b) the paired edit dataset


def test_pairs_identical_at_zero_and_edited_elsewhere(labeled, tmp_path):
    from jobs.stages.dataset import PairsConfig, run_pairs
    from jobs.stages.fit import FitConfig, run_fit
    src, info = labeled
    names = info["attributes"]
    rates = info["stats"]["rates"]
    attr = min(names, key=lambda a: abs(rates[a]["positive_rate"] - 0.5))
    run_fit(FitConfig(samples=str(src / "samples"), out=str(tmp_path / "fit"), spaces=["w"],
                      attributes=[attr], count=8, val_fraction=0.25))
    n, strengths = 8, [0.0, 3.0]
    got = run_pairs(PairsConfig(out=str(tmp_path / "pairs"), index=str(tmp_path / "fit"),
                                boundaries=[f"w/{attr}"], strengths=strengths, count=n,
                                seed=5, rows_per_part=4, workers=1, device="cpu"))
    t = data(tmp_path / "pairs")
    assert t.num_rows == got["rows"] == n * len(strengths)
    assert t.column_names[:9] == ["sample_id", "seed", "model", "boundary", "attribute",
                                  "strength", "original", "edited", "z"]
    assert set(t.column("attribute").to_pylist()) == {attr}
    # the same seed draws the same z as the labeled dataset
    assert t.column("z").to_pylist()[0] == data(src).column("z").to_pylist()[t["sample_id"][0].as_py()]
    rows = t.to_pylist()
    for r in rows:
        same = r["original"]["bytes"] == r["edited"]["bytes"]
        assert same == (r["strength"] == 0.0), (r["sample_id"], r["strength"])
        if r["strength"] == 0.0:
            for a in names:
                assert abs(r[f"prob_before_{a}"] - r[f"prob_after_{a}"]) < 1e-4
    # prob_after is the rescoring of the edited image by the edit stage (its logits), and
    # the card's per-edit means are those of the rows written (no model figure assumed)
    edits = storage.read_table(str(tmp_path / "pairs" / "edits")).sort_by(
        [("sample_id", "ascending"), ("strength", "ascending")])
    for a in names:
        logit = edits.column(f"logit_{a}").to_numpy().astype(np.float64)
        np.testing.assert_allclose(t.sort_by([("sample_id", "ascending"), ("strength", "ascending")])
                                   .column(f"prob_after_{a}").to_numpy(),
                                   1 / (1 + np.exp(-logit)), rtol=1e-6)
    edit3 = [e for e in got["edits"] if e["strength"] == 3.0][0]
    after3 = [r[f"prob_after_{attr}"] for r in rows if r["strength"] == 3.0]
    assert edit3["rows"] == n and abs(edit3["mean_prob_after"] - np.mean(after3)) < 1e-6
    hf = json.loads(pq.read_schema(tmp_path / "pairs" / "data" / "part-00000.parquet")
                    .metadata[b"huggingface"])
    assert hf["info"]["features"] == {"original": {"_type": "Image"}, "edited": {"_type": "Image"}}
    card = (tmp_path / "pairs" / "README.md").read_text()
    assert f"| w/{attr} | {attr} | +3 | {n} |" in card and "path: data/*.parquet" in card


def test_dataset_from_samples_starts_ray_itself_and_names_files_by_format(labeled, tmp_path):
    """`gankit dataset --samples URL` in a fresh process used to fail with "Ray has not been
    started yet" (no sample stage to start it). JPEG samples get .jpg file names."""
    import subprocess
    import sys
    from jobs.stages.sample import SampleConfig, run_sample
    src = tmp_path / "jpeg_samples"
    run_sample(SampleConfig(model="toy", classifier="toy", count=12, rows_per_part=6,
                            images=True, image_format="jpeg", out=str(src), device="cpu",
                            workers=1))
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    env.pop("RAY_ADDRESS", None)
    out = tmp_path / "from_samples"
    run = subprocess.run([sys.executable, "-m", "jobs.commands.cli", "dataset", "--samples",
                          str(src), "--out", str(out), "--count", "12", "--device", "cpu"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    paths = [r["path"] for r in data(out).column("image").to_pylist()]
    assert len(paths) == 12 and all(p.endswith(".jpg") for p in paths)
