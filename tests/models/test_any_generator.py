"""Generators users bring: plain z -> image models (TorchScript 'script:PATH' files and entry
points) and class-conditional StyleGAN2 (c_dim > 0), through sample -> fit (Z) -> edit (Z)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gankit.loading import zoo
from gankit.latent.latents import sample_classes, sample_z
from gankit.models.plain import ClassConditioned, ZImageGenerator, one_hot
from jobs.config import ConfigError
from zimage_generator import TinyDCGAN

C_DIM = 4


def tiny_conditional_generator():
    from dataclasses import replace

    from gankit.models.stylegan2 import Generator
    from helpers import tiny_generator_config
    torch.manual_seed(1)
    return Generator(replace(tiny_generator_config(), c_dim=C_DIM)).eval()


@pytest.fixture(scope="module")
def generators(tmp_path_factory):
    """{'cond': a conditional StyleGAN2 checkpoint, 'plain': a scripted conditional DCGAN,
    'bad': a scripted DCGAN whose pixels reach +-50}."""
    from gankit.loading.checkpoints import save_generator
    root = tmp_path_factory.mktemp("any-g")
    save_generator(tiny_conditional_generator(), root / "cond_g")
    torch.manual_seed(0)
    torch.jit.script(TinyDCGAN(c_dim=C_DIM).eval()).save(str(root / "plain.pt"))
    torch.jit.script(TinyDCGAN(scale=50.0).eval()).save(str(root / "bad.pt"))
    return {"cond": str(root / "cond_g"), "plain": f"script:{root / 'plain.pt'}",
            "bad": f"script:{root / 'bad.pt'}"}


def rows(url):
    from jobs import storage
    return storage.read_table(str(url)).sort_by("sample_id")


def sample(model: str, out, **kw) -> dict:
    from jobs.stages.sample import SampleConfig, run_sample
    base = dict(model=model, count=24, seed=5, space="z", rows_per_part=8, micro_batch=4,
                out=str(out), device="cpu", workers=1)
    return run_sample(SampleConfig(**dict(base, **kw)))


# ----------------------------------------------------------------------------------------
# Library: the adapter, the class draw, the class-bound generator


def test_plain_adapter_probes_and_renders_through_mapping_and_synthesis():
    torch.manual_seed(0)
    module = TinyDCGAN(c_dim=C_DIM).eval()
    G = ZImageGenerator(module, "tiny")
    assert (G.z_dim, G.c_dim, G.img_resolution, G.has_w, G.num_ws) == (8, C_DIM, 8, False, 1)
    z = torch.randn(3, 8)
    c = one_hot([0, 3, 1], C_DIM)
    with torch.no_grad():
        assert torch.equal(G.synthesis(G.mapping(z, c)), module(z, c))
    with pytest.raises(ValueError, match="truncation"):
        G.mapping(z, c, truncation_psi=0.7)


@pytest.mark.parametrize("module, words", [
    (TinyDCGAN(scale=3.0), "pixels up to"),
    (torch.nn.Sequential(), None),
])
def test_a_model_breaking_the_contract_fails_on_its_first_batch(module, words, tmp_path):
    if words is None:       # a model returning [N, 3, 4, 8]: not square
        class Wide(torch.nn.Module):
            z_dim = 8

            def forward(self, z, c):
                return torch.zeros(len(z), 3, 4, 8)
        module, words = Wide(), "shape \\[2, 3, 4, 8\\]"
    with pytest.raises(ValueError, match=words) as info:
        ZImageGenerator(module, "my-model")
    assert str(info.value).startswith("my-model: ") and "\n" not in str(info.value)


def test_script_prefix_loads_a_torchscript_generator(generators):
    G = zoo.load_generator(generators["plain"])
    assert isinstance(G, ZImageGenerator) and (G.z_dim, G.c_dim) == (8, C_DIM)
    with pytest.raises(ValueError, match="script:.*bad.pt: the z -> image model returned "
                                         "pixels up to"):
        zoo.load_generator(generators["bad"])


def test_entry_point_without_mapping_is_wrapped_and_a_stylegan_one_is_not():
    G = zoo.load_generator("zimage_generator:conditional_factory")
    assert isinstance(G, ZImageGenerator) and G.c_dim == C_DIM
    null = zoo.load_generator("gankit.models.null:null_1024")
    assert not isinstance(null, ZImageGenerator) and hasattr(null, "mapping")


def test_classes_depend_on_seed_and_row_only_and_leave_z_alone():
    full = sample_classes(3, range(200), [1, 4, 7])
    assert set(full.tolist()) == {1, 4, 7}
    assert np.array_equal(sample_classes(3, range(50, 120), [1, 4, 7]), full[50:120])
    assert np.array_equal(sample_classes(3, [150, 2], [1, 4, 7]), full[[150, 2]])
    assert not np.array_equal(sample_classes(4, range(200), [1, 4, 7]), full)
    assert np.array_equal(sample_classes(3, range(5), [2]), np.full(5, 2))
    # uniform over 10 classes: each near 1/10 of 5000 rows (binomial sd ~21)
    counts = np.bincount(sample_classes(0, range(5000), list(range(10))), minlength=10)
    assert np.all(np.abs(counts - 500) < 110), counts
    assert np.array_equal(sample_z(3, range(4), 8), sample_z(3, range(4), 8))


def test_class_bound_generator_maps_with_its_class():
    G = tiny_conditional_generator()
    bound = ClassConditioned(G, 2)
    z = torch.randn(5, G.z_dim)
    with torch.no_grad():
        expected = G.mapping(z, one_hot([2] * 5, C_DIM))
        other = G.mapping(z, one_hot([0] * 5, C_DIM))
        assert torch.equal(bound.mapping(z, None), expected)
        assert not torch.allclose(expected, other)
    assert bound.c_dim == 0 and bound.mapping.w_avg.shape == (G.w_dim,)
    with pytest.raises(ValueError, match="class 4 is out of range"):
        ClassConditioned(G, 4)


# ----------------------------------------------------------------------------------------
# Jobs on the session's Ray cluster


def test_out_of_range_class_and_missing_class_are_config_errors(generators, tmp_path):
    with pytest.raises(ConfigError, match="^class index 4 is out of range"):
        sample(generators["cond"], tmp_path / "a", classes=[1, 4])
    with pytest.raises(ConfigError, match="^class must be given"):
        sample(generators["plain"], tmp_path / "b")
    with pytest.raises(ConfigError, match="^class must be 'uniform'"):
        sample(generators["cond"], tmp_path / "c", classes="some")
    with pytest.raises(ConfigError, match="^space must be 'z'"):
        sample(generators["plain"], tmp_path / "d", classes="uniform", space="w")
    with pytest.raises(ValueError, match="bad.pt: the z -> image model returned pixels"):
        sample(generators["bad"], tmp_path / "e")


def test_class_flag_word():
    from jobs.stages.conditioning import parse_classes
    assert parse_classes("uniform") == "uniform"
    assert parse_classes("3") == [3] and parse_classes("1,4,7") == [1, 4, 7]
    with pytest.raises(ConfigError, match="^class must be"):
        parse_classes("cats")


def test_class_column_is_deterministic_per_row_across_part_sizes(ray_cluster, generators,
                                                                tmp_path):
    sample(generators["cond"], tmp_path / "a", classes="uniform", space="w")
    a = rows(tmp_path / "a")
    sample(generators["cond"], tmp_path / "b", classes="uniform", space="w", rows_per_part=5,
           micro_batch=4, workers=2)
    b = rows(tmp_path / "b")
    assert a.column("class").to_pylist() == b.column("class").to_pylist()
    assert a.column("class").to_pylist() == sample_classes(5, range(24), range(C_DIM)).tolist()
    assert a.column("z").equals(b.column("z")) and a.column("w").equals(b.column("w"))
    # the stored w is the mapping of (z, the row's class)
    G = tiny_conditional_generator()
    from gankit.data import latents_from_column
    z = torch.from_numpy(latents_from_column(a.column("z")).copy())
    with torch.no_grad():
        w = G.mapping(z, one_hot(a.column("class").to_numpy(), C_DIM))[:, 0]
    assert np.allclose(latents_from_column(a.column("w")), w.numpy(), atol=1e-5)


@pytest.mark.parametrize("kind", ["plain", "cond"])
def test_sample_fit_edit_in_z(ray_cluster, generators, model_files, tmp_path, kind):
    """sample (class uniform, images, classifier) -> fit in Z -> edit in Z: strength 0
    renders each row's own sample image again, which needs its class."""
    from gankit.images import decode_image
    from jobs.stages.edit import EditConfig, run_edit
    from jobs.stages.fit import FitConfig, run_fit
    model, space = generators[kind], "z"
    sample(model, tmp_path / "s", count=40, classes="uniform", images=True, space=space,
           classifier=model_files["classifier"])
    s = rows(tmp_path / "s")
    assert "class" in s.column_names and "w" not in s.column_names
    index = run_fit(FitConfig(samples=str(tmp_path / "s"), out=str(tmp_path / "f"),
                              spaces=["z"], attributes=["smile"], fraction=0.25))
    assert [b["space"] for b in index["boundaries"]] == ["z"]
    run_edit(EditConfig(latents=str(tmp_path / "s"), index=str(tmp_path / "f"),
                        boundaries=["z/smile"], strengths=[-2.0, 0.0, 2.0],
                        out=str(tmp_path / "e"), model=model,
                        classifier=model_files["classifier"], micro_batch=4, device="cpu",
                        workers=1))
    e = rows(tmp_path / "e")
    assert len(e) == 3 * len(s)
    still = e.filter(pc_equal(e, "strength", 0.0))
    moved = e.filter(pc_equal(e, "strength", 2.0))
    for i in range(len(s)):
        original = decode_image(s.column("image")[i]["bytes"].as_py())
        assert np.array_equal(decode_image(still.column("image")[i]["bytes"].as_py()), original)
    assert not np.array_equal(moved.column("logit_smile").to_numpy(),
                              still.column("logit_smile").to_numpy())
    from jobs.stages.report import ReportConfig, run_report       # the report reads them as well
    report = run_report(ReportConfig(fit=str(tmp_path / "f"), edits=str(tmp_path / "e"),
                                     samples=str(tmp_path / "s"), out=str(tmp_path / "r"),
                                     model=model, classifier=model_files["classifier"]))
    assert 0 <= report["edits"]["plain"]["smile"]["flip_rate"] <= 1
    assert (tmp_path / "r" / "report.html").exists()


def pc_equal(t, name, value):
    import pyarrow.compute as pc
    return pc.equal(t.column(name), value)


def test_edit_refuses_w_boundaries_for_a_plain_generator(ray_cluster, generators, tmp_path):
    from gankit.latent.boundaries import Boundary
    from jobs.stages.edit import EditConfig, run_edit
    sample(generators["plain"], tmp_path / "s", count=8, classes=[0])
    path = tmp_path / "w_x.npz"
    Boundary(attribute="x", space="w", normal=np.ones(8 + C_DIM) / np.sqrt(12),
             intercept=0.0).save(str(path))
    with pytest.raises(ConfigError, match="^boundaries has .*a W / W\\+ boundary, but "
                                          "script:.* is a plain z -> image generator"):
        run_edit(EditConfig(latents=str(tmp_path / "s"), boundaries=[str(path)],
                            out=str(tmp_path / "e"), model=generators["plain"],
                            classifier="", device="cpu"))


def test_invert_with_a_class_binds_it_and_checks_it(generators):
    from jobs.stages.invert import InvertConfig, with_class
    G = zoo.load_generator(generators["cond"])
    bound = with_class(G, InvertConfig(images="x", out="y", model="m", class_index=3))
    assert isinstance(bound, ClassConditioned) and bound.label == 3
    with pytest.raises(ConfigError, match="^class index 7 is out of range for m"):
        with_class(G, InvertConfig(images="x", out="y", model="m", class_index=7))
    with pytest.raises(ConfigError, match="^class must be given"):
        with_class(G, InvertConfig(images="x", out="y", model="m"))
    with pytest.raises(ConfigError, match="^model must have a W to invert into"):
        with_class(zoo.load_generator(generators["plain"]),
                   InvertConfig(images="x", out="y", model="m", class_index=0))


def test_labeled_dataset_carries_the_class_column(ray_cluster, generators, model_files,
                                                  tmp_path):
    from jobs.stages.dataset import DatasetConfig, run_dataset
    run_dataset(DatasetConfig(out=str(tmp_path / "d"), model=generators["cond"],
                              classifier=model_files["classifier"], count=12, seed=5,
                              classes=[0, 2], rows_per_part=6, micro_batch=4, device="cpu",
                              workers=1))
    t = rows(tmp_path / "d" / "data")
    assert t.column("class").to_pylist() == \
        sample_classes(5, t.column("sample_id").to_numpy(), [0, 2]).tolist()


def test_paired_dataset_of_a_conditional_generator(ray_cluster, generators, model_files,
                                                   tmp_path):
    """`gankit dataset --pairs --class 1`: every sample (and so every pair) is class 1."""
    from jobs.stages.dataset import PairsConfig, run_pairs
    from jobs.stages.fit import FitConfig, run_fit
    sample(generators["cond"], tmp_path / "s", count=40, classes="uniform", space="w",
           classifier=model_files["classifier"])
    run_fit(FitConfig(samples=str(tmp_path / "s"), out=str(tmp_path / "f"), spaces=["w"],
                      attributes=["smile"], fraction=0.25))
    manifest = run_pairs(PairsConfig(out=str(tmp_path / "p"), index=str(tmp_path / "f"),
                                     boundaries=["w/smile"], strengths=[2.0],
                                     model=generators["cond"],
                                     classifier=model_files["classifier"], count=6,
                                     classes=[1], rows_per_part=3, micro_batch=4,
                                     device="cpu", workers=1))
    assert manifest["rows"] == 6
    assert set(rows(tmp_path / "p" / "samples").column("class").to_pylist()) == {1}
