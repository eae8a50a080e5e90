"""`gankit metrics` on the session's Ray cluster: sharded PPL equals the one-process
computation path for path, parts resume, separability reads a sample dataset, and the
report picks both up."""
import json
import os

import numpy as np
import pytest

from gankit.latent import metrics
from gankit.models.perceptual import load_feature_net
from gankit.loading.zoo import load_generator
from jobs import storage
from jobs.stages.metrics import MetricsConfig, run_metrics, sample_latents
from jobs.config import ConfigError
from jobs.stages.sample import SampleConfig, run_sample

pytestmark = pytest.mark.integration


def ppl_cfg(model_files, out, **kw) -> MetricsConfig:
    base = dict(out=str(out), model=model_files["model"], feature_net=model_files["classifier"],
                ppl_paths=100, micro_batch=8, rows_per_part=32, workers=2, device="cpu")
    base.update(kw)
    return MetricsConfig(**base)


@pytest.fixture(scope="module")
def sharded(ray_cluster, model_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("metrics") / "m"
    return out, run_metrics(ppl_cfg(model_files, out))


def one_process_distances(model_files, space: str) -> np.ndarray:
    """The same paths in this process, on one thread like the actors: d / eps^2 magnifies
    float32 rounding 1e8 times, so a different reduction order would show at 1e-2."""
    import torch
    G = load_generator(model_files["model"]).eval()
    net = load_feature_net(model_files["classifier"])
    cfg = metrics.PPLConfig(n=100, space=space, batch_size=8, seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return metrics.ppl_distances(G, lambda a, b: net.distance(net(a), net(b)), cfg)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("space", ["z", "w"])
def test_sharded_ppl_equals_one_process(sharded, model_files, space):
    out, result = sharded
    parts = storage.open_store(str(out / f"ppl_{space}")).list_parts()
    assert len(parts) == 4                                   # 100 paths / 32 per part
    table = storage.read_table(str(out / f"ppl_{space}"))
    assert table.column("path").to_pylist() == list(range(100))
    expected = one_process_distances(model_files, space)
    np.testing.assert_array_equal(table.column("distance").to_numpy(), expected)
    summary = result["ppl"][space]
    assert summary["n"] == 100 and summary["space"] == space
    assert summary["mean"] == pytest.approx(expected.mean(), rel=1e-12)
    assert summary["mean_filtered"] <= summary["mean"] or expected.max() == expected.min()
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["ppl"][space]["mean"] == pytest.approx(summary["mean"], rel=1e-12)
    assert on_disk["separability"] is None


def test_shard_boundaries_do_not_matter_in_the_library(model_files):
    """rows= shards of the paths concatenate to the whole (same micro-batches)."""
    G = load_generator(model_files["model"]).eval()
    net = load_feature_net(model_files["classifier"])
    dist = lambda a, b: net.distance(net(a), net(b))
    cfg = metrics.PPLConfig(n=40, space="w", batch_size=8, seed=3)
    whole = metrics.ppl_distances(G, dist, cfg)
    shards = [metrics.ppl_distances(G, dist, cfg, range(s, min(s + 16, 40))) for s in (0, 16, 32)]
    np.testing.assert_array_equal(np.concatenate(shards), whole)
    with pytest.raises(ValueError, match="contiguous range"):
        metrics.ppl_distances(G, dist, cfg, range(30, 50))


def test_lost_part_is_recomputed_and_equal(sharded, model_files, tmp_path):
    out, result = sharded
    store = storage.open_store(str(out / "ppl_w"))
    os.remove(store.list_parts()[2])
    again = run_metrics(ppl_cfg(model_files, out, workers=1, ppl_spaces=["w"]))
    assert len(store.list_parts()) == 4
    assert again["ppl"]["w"] == result["ppl"]["w"]


def test_rows_per_part_must_align_with_micro_batches(model_files, tmp_path):
    with pytest.raises(ConfigError, match="rows_per_part"):
        run_metrics(ppl_cfg(model_files, tmp_path / "x", rows_per_part=30))
    with pytest.raises(ConfigError, match="samples"):
        run_metrics(MetricsConfig(out=str(tmp_path / "y")))


def test_separability_from_a_sample_dataset(ray_cluster, model_files, tmp_path):
    samples = str(tmp_path / "samples")
    run_sample(SampleConfig(model=model_files["model"], classifier=model_files["classifier"],
                            count=120, seed=5, space="w", rows_per_part=60, micro_batch=8,
                            out=samples, device="cpu"))
    result = run_metrics(MetricsConfig(out=str(tmp_path / "m"), samples=samples, seed=1))
    z, w, logits, names = sample_latents(samples, None)
    assert z.shape == (120, 16) and w.shape == (120, 16) and logits.shape == (120, 3)
    for space, x in (("z", z), ("w", w)):
        expected = metrics.linear_separability(x, logits, 0.5, 1, names)
        assert result["separability"][space]["score"] == pytest.approx(expected["score"])
    assert result["ppl"] is None
    z_only = str(tmp_path / "z_only")
    run_sample(SampleConfig(model=model_files["model"], classifier=model_files["classifier"],
                            count=20, space="z", rows_per_part=20, out=z_only, device="cpu"))
    with pytest.raises(ValueError, match="needs z, w and logit"):
        run_metrics(MetricsConfig(out=str(tmp_path / "m2"), samples=z_only))


def test_report_takes_the_metrics(sharded, toy_fit, tmp_path):
    from helpers import make_tiny_report   # the session's toy samples + W fit
    out, result = sharded
    report = make_tiny_report(toy_fit, out=str(tmp_path / "r"), metrics=str(out))
    on_disk = json.loads((out / "metrics.json").read_text())["ppl"]
    assert on_disk and report["ppl"] == on_disk
    assert report["separability"] is None
    assert "Separability and path length" in (tmp_path / "r" / "report.html").read_text()


def test_ppl_identity_keeps_older_outputs_apart(model_files, tmp_path):
    """Older outputs used const noise and no crop: they match only --noise const."""
    old = ppl_cfg(model_files, tmp_path, noise="const").ppl_identity("z")
    assert "noise" not in old and "crop" not in old
    assert ppl_cfg(model_files, tmp_path).ppl_identity("z")["noise"] == "random"
    assert ppl_cfg(model_files, tmp_path, crop=True).ppl_identity("z")["crop"] is True
    assert ppl_cfg(model_files, tmp_path, crop=True).ppl_config("z").crop
