"""`gankit directions import`: published direction files (written here in their projects'
layouts by tests/direction_files.py) into boundary indexes, refused when they are too wide
or hostile, and edits along them equal to the published formulas:

    e4e apply_interfacegan      w' = w + factor * direction
    e4e editings/ganspace.py    coord = sum((w[0] - mean) * comp_k) / std_k
                                w'[start:end] = w[start:end] + (t - coord) * comp_k * std_k
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle

import numpy as np
import pyarrow as pa
import pytest
import torch

from direction_files import (random_direction, random_ganspace, write_e4e_pt,
                             write_ganspace_pt, write_interfacegan_npy)
from gankit.latent.boundaries import Boundary
from gankit.data import latent_column, latents_from_column, wplus_column
from gankit.latent.editing import edit
from gankit.loading.published import import_boundaries
from jobs import storage
from jobs.storage.boundary_index import load_boundary, resolve_boundaries
from jobs.config import ConfigError
from jobs.stages.directions_import import DirectionImportConfig, run_import

D = 16           # the tiny generator's z_dim and w_dim (tests/helpers.py)


def interfacegan_reference(w: np.ndarray, direction: np.ndarray, t: float) -> np.ndarray:
    """e4e's apply_interfacegan: latent + factor * direction ([1, D] broadcast)."""
    return w + t * direction


def ganspace_reference(wp: np.ndarray, pca: dict, k: int, start: int, end: int,
                       t: float) -> np.ndarray:
    """e4e's editings/ganspace.py edit / get_delta, restated in numpy, sample by sample."""
    mean, comp, std = (pca[key].numpy().astype(np.float64) for key in ("mean", "comp", "std"))
    out = wp.astype(np.float64)
    for i in range(len(wp)):
        centered = wp[i] - mean                                           # [L, D]
        coord = np.sum(centered[0].reshape(-1) * comp[k].reshape(-1)) / std[k]
        delta = (t - coord) * comp[k] * std[k]                            # [1, D]
        out[i, start:end] += np.repeat(delta, end - start, axis=0)
    return out


@pytest.fixture
def files(tmp_path):
    """One file of each kind at width D, and what was written into them."""
    v_npy = random_direction(D, seed=1)                                   # unit, as InterFaceGAN
    v_pt = random_direction(D, seed=2, norm=2.5)                          # a length of its own
    pca = random_ganspace(D, components=5, seed=3)
    paths = {"npy": tmp_path / "stylegan_ffhq_smile_w_boundary.npy", "pt": tmp_path / "age.pt",
             "pca": tmp_path / "ffhq_pca.pt"}
    write_interfacegan_npy(paths["npy"], v_npy)
    write_e4e_pt(paths["pt"], v_pt)
    write_ganspace_pt(paths["pca"], pca)
    return {"paths": paths, "npy": v_npy, "pt": v_pt, "pca": pca}


def do_import(path, name: str, out, **kw) -> dict:
    return run_import(DirectionImportConfig(file=str(path), name=name, out=str(out), **kw))


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# ----------------------------------------------------------------------------------------
# Importing


def test_each_kind_imports_into_a_new_index(files, tmp_path):
    out = tmp_path / "index"
    do_import(files["paths"]["npy"], "smile", out)
    do_import(files["paths"]["pt"], "age", out, space="z")
    index = do_import(files["paths"]["pca"], "pca", out, components=3)
    assert [e["name"] for e in index["boundaries"]] == [
        "w/smile", "z/age", "w/pca_0", "w/pca_1", "w/pca_2"]
    on_disk = json.loads((out / "boundaries.json").read_text())
    assert on_disk == json.loads(json.dumps(index)) and on_disk["attributes"] == []
    found = dict(resolve_boundaries([], str(out), {}))          # every one, by its name
    for name, key, kind, space in (("w/smile", "npy", "interfacegan", "w"),
                                   ("z/age", "pt", "tensor", "z")):
        b, v = found[name], files[key].reshape(-1)
        assert b.space == space and b.source["kind"] == kind
        assert b.source["sha256"] == sha256(files["paths"][key])
        assert b.source["file"] == str(files["paths"][key])
        np.testing.assert_allclose(b.scale * b.normal, v, atol=1e-6)     # keeps its length
        assert b.scale == pytest.approx(float(np.linalg.norm(v)), rel=1e-6)
    pca = {k: v.numpy() for k, v in files["pca"].items()}
    for k in range(3):
        b = found[f"w/pca_{k}"]
        np.testing.assert_allclose(b.normal, pca["comp"][k, 0], atol=1e-6)
        np.testing.assert_allclose(b.center, pca["mean"][0], atol=1e-6)
        assert b.scale == pytest.approx(float(pca["std"][k]))
        assert b.source["std"] == pytest.approx(float(pca["std"][k]))
        assert b.source["component"] == k and b.anchor_layer == 0
        assert b.intercept == pytest.approx(-float(pca["mean"][0] @ b.normal), abs=1e-6)
        entry = index["boundaries"][2 + k]
        assert entry["source"]["kind"] == "ganspace" and entry["attribute"] == f"pca_{k}"


def test_reimport_is_idempotent_and_a_taken_name_is_refused(files, tmp_path):
    out = tmp_path / "index"
    first = do_import(files["paths"]["pt"], "age", out)
    assert do_import(files["paths"]["pt"], "age", out) == first        # same file: no change
    with pytest.raises(ConfigError, match=r"^name w/age is already in .*, imported from "
                                          r".*age\.pt: choose another --name, or --replace$"):
        do_import(files["paths"]["npy"], "age", out)
    again = do_import(files["paths"]["npy"], "age", out, replace=True)
    assert [e["name"] for e in again["boundaries"]] == ["w/age"]
    assert again["boundaries"][0]["source"]["kind"] == "interfacegan"


def samples_dataset(root, n: int = 600, seed: int = 0) -> str:
    """A labelled sample dataset (z, w, two logits) as `gankit sample` lays it out."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, D)).astype(np.float32)
    w = rng.standard_normal((n, D)).astype(np.float32)
    table = pa.table({"sample_id": pa.array(np.arange(n)), "z": latent_column(z),
                      "w": latent_column(w),
                      "logit_smile": pa.array(w[:, 0] + z[:, 0] + 0.1 * rng.standard_normal(n)),
                      "logit_age": pa.array(w[:, 1] - z[:, 1] + 0.1 * rng.standard_normal(n))})
    src = storage.open_store(str(root), create=True)
    storage.write_table_part(src, storage.part_name(0), table, {"index": 0})
    return src.url


def test_import_extends_a_fit_index_and_a_refit_keeps_it(files, tmp_path):
    from jobs.stages.fit import FitConfig, run_fit
    samples, fit = samples_dataset(tmp_path / "samples"), tmp_path / "fit"
    fitted = run_fit(FitConfig(samples=samples, out=str(fit), spaces=["z", "w"],
                               fraction=0.25, conditions=[["smile", ["age"]]]))
    before = {e["path"]: (fit / e["path"]).read_bytes() for e in fitted["boundaries"]}
    do_import(files["paths"]["npy"], "smile_ifg", fit)
    index = do_import(files["paths"]["pca"], "pca", fit, components=2)
    names = [e["name"] for e in index["boundaries"]]
    assert names == [e["name"] for e in fitted["boundaries"]] + ["w/smile_ifg", "w/pca_0",
                                                                 "w/pca_1"]
    assert index["boundaries"][:len(fitted["boundaries"])] == json.loads(
        json.dumps(fitted["boundaries"]))                                  # nothing lost
    assert {k: v for k, v in index.items() if k != "boundaries"} == \
        {k: v for k, v in json.loads(json.dumps(fitted)).items() if k != "boundaries"}
    assert all((fit / p).read_bytes() == data for p, data in before.items())
    with pytest.raises(ConfigError, match=r"^name w/smile is a fitted boundary of .*: "
                                          r"choose another --name$"):
        do_import(files["paths"]["pt"], "smile", fit, replace=True)
    # a refit with other settings rewrites the index, and keeps the imports
    refit = run_fit(FitConfig(samples=samples, out=str(fit), spaces=["w"], fraction=0.2))
    assert [e["name"] for e in refit["boundaries"]] == ["w/smile", "w/age", "w/smile_ifg",
                                                        "w/pca_0", "w/pca_1"]
    assert load_boundary(str(fit / "boundaries/w/pca_1.npz")).source["component"] == 1


def test_a_direction_of_another_width_is_refused(files, model_files, tmp_path):
    from gankit.loading import zoo
    from jobs.stages.edit import check_widths
    wide = tmp_path / "wide.pt"
    write_e4e_pt(wide, random_direction(D + 4))
    out = tmp_path / "index"
    with pytest.raises(ConfigError, match=rf"^file is refused: w/age is {D + 4} wide, but "
                                          rf".*tiny_g's W is {D} wide: it was published for "
                                          rf"another generator$"):
        do_import(wide, "age", out, model=model_files["model"])
    assert not out.exists() or not (out / "boundaries.json").exists()     # nothing written
    do_import(files["paths"]["pt"], "age", out, model=model_files["model"])  # D wide: fine
    # at edit time: the actor checks the generator it loaded
    do_import(wide, "wide", out)
    G = zoo.load_generator(model_files["model"])
    bs = resolve_boundaries(["w/age", "w/wide"], str(out), {})
    check_widths(bs[:1], G, "tiny")
    with pytest.raises(ConfigError, match=rf"^boundaries has w/wide is {D + 4} wide, but "
                                          rf"tiny's W is {D} wide"):
        check_widths(bs, G, "tiny")
    # ... and the edit job's driver, against the latents, before any actor starts
    from jobs.stages.edit import EditConfig, run_edit
    latents = tmp_path / "latents"
    table = pa.table({"sample_id": pa.array(np.arange(4)),
                      "w": latent_column(np.zeros((4, D), np.float32))})
    storage.write_table_part(storage.open_store(str(latents), create=True),
                             storage.part_name(0), table, {"index": 0})
    with pytest.raises(ConfigError, match=rf"has 'w/wide', a {D + 4}-dim 'w' boundary, but "
                                          rf"the latents of .* are {D}-dim"):
        run_edit(EditConfig(latents=str(latents), index=str(out), boundaries=["w/wide"],
                            out=str(tmp_path / "e"), model=model_files["model"],
                            classifier=""))


class Boom:
    """Pickles as a call of os.system: a file that would run a command when unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def hostile_files(tmp_path) -> dict:
    marker = tmp_path / "ran"
    paths = {}
    paths["pickle"] = tmp_path / "plain.pt"
    paths["pickle"].write_bytes(pickle.dumps(Boom(marker), protocol=2))
    paths["torch_zip"] = tmp_path / "zip.pt"
    torch.save({"mean": Boom(marker), "comp": torch.zeros(2, 1, D), "std": torch.ones(2)},
               str(paths["torch_zip"]))
    paths["npy_object"] = tmp_path / "object.npy"
    np.save(str(paths["npy_object"]), np.array([Boom(marker)], dtype=object),
            allow_pickle=True)
    paths["placeholder"] = tmp_path / "network.pt"     # an NVIDIA class: inert, still refused
    paths["placeholder"].write_bytes(b"ctraining.networks\nGenerator\n)R.")
    paths["list"] = tmp_path / "list.pt"
    torch.save([torch.zeros(1, D)], str(paths["list"]))
    return paths


@pytest.mark.parametrize("kind,message", [
    ("pickle", r"refusing to load global 'posix\.system'.*nothing from the file was run"),
    ("torch_zip", r"torch\.load\(weights_only=True\) refused the file"),
    ("npy_object", r"is not a numeric \.npy array .*allow_pickle=False"),
    ("placeholder", r"the file is a Generator, not a tensor of numbers"),
    ("list", r"the file is a list, not a tensor of numbers"),
])
def test_hostile_or_foreign_files_are_refused_and_nothing_runs(tmp_path, kind, message):
    path = hostile_files(tmp_path)[kind]
    with pytest.raises(ConfigError, match=r"^file is refused: .*" + message) as e:
        do_import(path, "x", tmp_path / "index")
    assert "\n" not in str(e.value)                                     # one sentence
    assert not (tmp_path / "ran").exists()
    assert not (tmp_path / "index" / "boundaries.json").exists()


def test_bad_layouts_are_refused_in_one_sentence(tmp_path):
    bad = tmp_path / "bad.pt"
    pca = random_ganspace(D, 3)
    write_ganspace_pt(bad, dict(pca, comp=pca["comp"] * 2))             # not unit components
    with pytest.raises(ConfigError, match="GANSpace component 0 has norm 2 and std"):
        do_import(bad, "p", tmp_path / "i")
    write_ganspace_pt(bad, dict(pca, std=torch.ones(4)))
    with pytest.raises(ConfigError, match=r"GANSpace needs mean \[1, D\], comp \[K, 1, D\], "
                                          r"std \[K\]; got mean \[1, 16\], comp \[3, 1, 16\], "
                                          r"std \[4\]"):
        do_import(bad, "p", tmp_path / "i")
    write_ganspace_pt(bad, {"mean": pca["mean"], "components": pca["comp"]})
    with pytest.raises(ConfigError, match=r"holds a dict with keys \['components', 'mean'\]"):
        do_import(bad, "p", tmp_path / "i")
    write_e4e_pt(bad, np.zeros((1, D), np.float32))
    with pytest.raises(ConfigError, match="the direction is zero"):
        do_import(bad, "p", tmp_path / "i")
    write_e4e_pt(bad, random_direction(D))
    with pytest.raises(ConfigError, match=r"name '\.\./x' must be letters"):
        do_import(bad, "../x", tmp_path / "i")
    with pytest.raises(ConfigError, match=r"is a GANSpace PCA of W .*import it with space 'w'"):
        write_ganspace_pt(bad, pca)
        do_import(bad, "p", tmp_path / "i", space="z")


# ----------------------------------------------------------------------------------------
# Editing along imported directions equals the published formulas


def imported(path, name: str, space: str = "w") -> dict:
    return dict(import_boundaries(open(path, "rb").read(), str(path), name, space))


def test_shift_along_a_direction_is_e4e_apply_interfacegan(files):
    rng = np.random.default_rng(5)
    w = rng.standard_normal((6, D)).astype(np.float32)                     # [N, D]
    wp = rng.standard_normal((6, 4, D)).astype(np.float32)                 # [N, L, D]
    t = np.array([-3.0, -1.0, 0.0, 0.5, 2.0, 3.0])
    for key, name in (("npy", "smile"), ("pt", "age")):
        b = imported(files["paths"][key], name)[f"w/{name}"]
        v = files[key]                                                      # [1, D]
        got = edit(w, b, t, "shift")
        assert np.abs(got - interfacegan_reference(w, v, t[:, None])).max() <= 1e-5
        got = edit(torch.from_numpy(wp), b, torch.from_numpy(t), "shift").numpy()
        assert np.abs(got - interfacegan_reference(wp, v[None], t[:, None, None])).max() <= 1e-5


def test_a_w_plus_direction_keeps_its_layers(tmp_path):
    rng = np.random.default_rng(6)
    same = np.repeat(random_direction(D, 7)[:, None], 4, axis=1)           # e4e's pose.pt
    differ = rng.standard_normal((1, 4, D)).astype(np.float32)
    write_e4e_pt(tmp_path / "pose.pt", same)
    write_e4e_pt(tmp_path / "wp.pt", differ)
    pose = imported(tmp_path / "pose.pt", "pose")["w/pose"]
    assert pose.space == "w" and pose.dim == D                              # one w direction
    b = imported(tmp_path / "wp.pt", "mix")["wp0-4/mix"]
    assert b.space == "wp" and b.layers == (0, 4)
    wp = rng.standard_normal((3, 4, D)).astype(np.float32)
    for direction, boundary in ((same, pose), (differ, b)):
        got = edit(wp, boundary, 1.5, "shift")
        assert np.abs(got - interfacegan_reference(wp, direction, 1.5)).max() <= 1e-5


@pytest.mark.parametrize("k,start,end", [(0, 0, 4), (2, 1, 3), (4, 2, 4)])
def test_to_distance_along_a_component_is_e4e_ganspace(files, k, start, end):
    b = imported(files["paths"]["pca"], "pca")[f"w/pca_{k}"]
    rng = np.random.default_rng(k)
    wp = rng.standard_normal((5, 4, D)).astype(np.float32)               # layers all differ
    for t in (-2.0, 0.0, 1.5):
        got = edit(wp, b, t, "to_distance", (start, end))
        want = ganspace_reference(wp, files["pca"], k, start, end, t)
        assert np.abs(got - want).max() <= 1e-5
        assert np.array_equal(got[:, :start], wp[:, :start])            # other layers untouched
    # on one w per row the measure is that w's: the component coordinate lands on t
    w = rng.standard_normal((5, D)).astype(np.float32)
    moved = edit(w, b, 1.5, "to_distance")
    coord = (moved - b.center) @ b.normal / b.scale
    np.testing.assert_allclose(coord, 1.5, atol=1e-5)


def test_older_boundary_files_still_load_and_imported_ones_say_their_version(tmp_path):
    plain = Boundary(attribute="a", space="w", normal=np.eye(D)[0], intercept=0.5)
    plain.save(str(tmp_path / "a.npz"))
    with np.load(tmp_path / "a.npz") as f:
        assert int(f["format_version"]) == 1 and "scale" not in f.files  # as before
    assert Boundary.load(str(tmp_path / "a.npz")).scale == 1.0
    b = imported(_npy(tmp_path), "n")["w/n"]
    b.save(str(tmp_path / "b.npz"))
    with np.load(tmp_path / "b.npz") as f:
        assert int(f["format_version"]) == 2
    again = Boundary.load(str(tmp_path / "b.npz"))
    assert (again.scale, again.source, again.anchor_layer) == (b.scale, b.source, None)


def _npy(tmp_path):
    path = tmp_path / "n.npy"
    write_interfacegan_npy(path, random_direction(D, 9, norm=3.0))
    return path


# ----------------------------------------------------------------------------------------
# The edit job's kept latents (driver decision, no Ray)


def test_keep_latent_writes_w_only_when_every_edit_is_one_w():
    from jobs.stages.edit import EditConfig, edit_schema, kept_latent
    from gankit.data import wplus_field
    w_in = pa.schema([("sample_id", pa.int64()), ("w", pa.list_(pa.float32(), D))])
    wp_in = pa.schema([("sample_id", pa.int64()), wplus_field("wp", 4, D)])
    z_in = pa.schema([("sample_id", pa.int64()), ("z", pa.list_(pa.float32(), D))])
    wb = [("w/a", Boundary(attribute="a", space="w", normal=np.eye(D)[0], intercept=0))]
    zb = [("z/a", Boundary(attribute="a", space="z", normal=np.eye(D)[0], intercept=0))]
    cfg = lambda **kw: EditConfig(**{"latents": "l", "out": "o", "boundaries": ["x"],  # noqa: E731
                                     "keep_latent": True, **kw})
    assert kept_latent(cfg(), w_in, wb, (1.0, None)) == "w"
    assert kept_latent(cfg(), wp_in, wb, (1.0, None)) == "wp"
    assert kept_latent(cfg(layers=[1, 3]), w_in, wb, (1.0, None)) == "wp"
    assert kept_latent(cfg(layers=[1, 3]), z_in, zb, (1.0, None)) == "w"   # layers: W only
    assert kept_latent(cfg(), z_in, zb, (0.7, 2)) == "wp"                  # cut-off mapping
    assert kept_latent(cfg(), z_in, zb, (0.7, None)) == "w"
    assert kept_latent(cfg(keep_latent=False), w_in, wb, (1.0, None)) is None
    schema = edit_schema([], False, latent=("wp", 4, D))
    assert schema.field("wp").type == pa.list_(pa.float32(), 4 * D)
    assert json.loads(schema.field("wp").metadata[b"shape"]) == [4, D]


# ----------------------------------------------------------------------------------------
# Integration: gankit edit on the toy model, latents kept, rescored by the report


TOY_W, TOY_WS = 128, 8


def toy_latents(root, column: str, n: int = 4) -> tuple:
    """A latents dataset of toy w's ([N, 128]) or W+ codes whose layers all differ."""
    from gankit.loading import zoo
    G = zoo.load_generator("toy")
    torch.manual_seed(0)
    with torch.no_grad():
        ws = torch.stack([G.mapping(torch.randn(n, G.z_dim), None)[:, 0]
                          for _ in range(TOY_WS)], 1).numpy()               # [N, 8, 128]
    if column == "w":
        values, table = ws[:, 0], pa.table({"sample_id": pa.array(np.arange(n)),
                                            "w": latent_column(ws[:, 0])})
    else:
        field, col = wplus_column(ws, "wp")
        values = ws
        table = pa.Table.from_arrays([pa.array(np.arange(n)), col], schema=pa.schema(
            [pa.field("sample_id", pa.int64()), field]))
    storage.write_table_part(storage.open_store(str(root), create=True),
                             storage.part_name(0), table, {"index": 0})
    return str(root), values


def edited(url: str, column: str) -> tuple:
    t = storage.read_table(url)
    shape = (-1, TOY_WS, TOY_W) if column == "wp" else (-1, TOY_W)
    return (t.column("sample_id").to_numpy(), t.column("boundary").to_pylist(),
            t.column("strength").to_numpy().astype(np.float64),
            latents_from_column(t.column(column)).reshape(shape), t)


def test_gankit_edit_on_toy_along_imported_directions(ray_cluster, tmp_path):
    from jobs.commands.cli import main
    from jobs.stages.report import ReportConfig, run_report
    index = tmp_path / "index"
    smile, old = random_direction(TOY_W, 11, norm=2.5), random_direction(TOY_W, 12)
    pca = random_ganspace(TOY_W, 3, seed=13)
    write_e4e_pt(tmp_path / "smile.pt", smile)
    write_interfacegan_npy(tmp_path / "old.npy", old)
    write_ganspace_pt(tmp_path / "pca.pt", pca)
    for f, name in (("smile.pt", "smile"), ("old.npy", "old"), ("pca.pt", "pca")):
        assert main(["directions", "import", str(tmp_path / f), "--name", name, "--space",
                     "w", "--out", str(index), "--model", "toy"]) == 0
    common = ["--model", "toy", "--workers", "1", "--device", "cpu", "--micro-batch", "4",
              "--keep-latent"]
    # shift along the e4e and InterFaceGAN directions, from one w per row: column `w`
    lat_w, w = toy_latents(tmp_path / "lat_w", "w")
    assert main(["edit", "--latents", lat_w, "--index", str(index), "--boundaries", "w/smile",
                 "w/old", "--strengths", "-3", "0", "3", "--out", str(tmp_path / "e1"),
                 *common]) == 0
    ids, names, t, got, table = edited(str(tmp_path / "e1"), "w")
    assert "wp" not in table.column_names and len(ids) == 4 * 2 * 3
    direction = {"w/smile": smile, "w/old": old}
    want = np.stack([interfacegan_reference(w[i], direction[n][0], s)
                     for i, n, s in zip(ids, names, t)])
    assert np.abs(got - want).max() <= 1e-5
    report = run_report(ReportConfig(fit=str(index), edits=str(tmp_path / "e1"),
                                     out=str(tmp_path / "r"), model="toy", classifier="toy"))
    assert report["rescoring"]["plain"]["boundaries"] == ["w/smile", "w/old"]
    assert set(report["edits"]["plain"]) == {"smile", "old"}
    # to_distance along a GANSpace component on layers 2..4 of W+ codes: column `wp`
    lat_wp, wp = toy_latents(tmp_path / "lat_wp", "wp")
    assert main(["edit", "--latents", lat_wp, "--index", str(index), "--boundaries", "w/pca_1",
                 "--mode", "to_distance", "--layers", "2-5", "--strengths", "-2", "1.5",
                 "--classifier", "", "--out", str(tmp_path / "e2"), *common]) == 0
    ids, _, t, got, _ = edited(str(tmp_path / "e2"), "wp")
    want = np.stack([ganspace_reference(wp[i:i + 1], pca, 1, 2, 5, s)[0]
                     for i, s in zip(ids, t)])
    assert np.abs(got - want).max() <= 1e-5
    assert not np.allclose(got, wp[ids])                                 # it did move


def test_the_command_line_import_and_its_one_sentence_errors(files, tmp_path, capsys):
    from jobs.commands.cli import main
    out = tmp_path / "index"
    assert main(["directions", "import", str(files["paths"]["pca"]), "--name", "pca",
                 "--out", str(out), "--components", "2"]) == 0
    assert [e["name"] for e in json.loads((out / "boundaries.json").read_text())[
        "boundaries"]] == ["w/pca_0", "w/pca_1"]
    capsys.readouterr()
    evil = hostile_files(tmp_path)["pickle"]
    assert main(["directions", "import", str(evil), "--name", "x", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gankit directions: error: file is refused: ") and \
        err.count("\n") == 1
    assert not (tmp_path / "ran").exists()
    assert main(["directions", "--method", "pca"]) == 2     # SeFa / PCA still need --out
    assert capsys.readouterr().err.startswith("gankit directions: error: out must be ")
