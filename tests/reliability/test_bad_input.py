"""The bad-input matrix (docs/security.md, "Bad input: what each case gets"): each bad row
becomes an error record naming its id and reason while every good row is still written; each
bad dataset or file fails with one sentence before any work. Real Ray, real Parquet files."""
import io
import re
import struct
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from jobs import storage
from jobs.config import ConfigError

pytestmark = pytest.mark.integration

R = 8   # the tiny models' resolution


def chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_header_claiming(w: int, h: int) -> bytes:
    """A ~100-byte PNG whose header declares w x h RGB pixels (a decompression bomb)."""
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * (1 + 3 * w))) + chunk(b"IEND", b""))


def pil_bytes(arr: np.ndarray, fmt: str = "PNG", mode=None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format=fmt)
    return buf.getvalue()


def test_decode_refuses_bombs_before_decoding_and_keeps_16_bit_high_bytes():
    from gankit.images import decode_image
    for side in (30000, 10000):      # 10000^2 only makes Pillow warn, then allocate 300 MB
        with pytest.raises(ValueError, match=r"decompression bomb"):
            decode_image(png_header_claiming(side, side))
    gray16 = (np.arange(R * R).reshape(R, R) * 1000).astype(np.uint16)
    got = decode_image(pil_bytes(gray16))
    assert np.array_equal(got, np.repeat((gray16 >> 8).astype(np.uint8)[..., None], 3, 2))


@pytest.fixture(scope="module")
def label_run(ray_cluster, model_files, tmp_path_factory):
    """One label job over every kind of image, in two input shards."""
    from jobs.stages.label import LabelConfig, run_label
    rng = np.random.default_rng(0)
    rgb = [rng.integers(0, 256, (R, R, 3), dtype=np.uint8) for _ in range(4)]
    gray = rng.integers(0, 256, (R, R), dtype=np.uint8)
    rgba = np.concatenate([rgb[1], np.full((R, R, 1), 255, np.uint8)], axis=2)  # opaque
    gray16 = (gray.astype(np.uint16) << 8) | 0x7F       # high byte == gray
    good_png = pil_bytes(rgb[0])
    cases = [  # (image_id, bytes, expected: None = good row, else a reason fragment)
        ("rgb", good_png, None),
        ("truncated_png", good_png[:len(good_png) // 2], "cannot decode image"),
        ("zero_bytes", b"", "no image bytes"),
        ("null_image", None, "no image bytes"),
        ("bomb", png_header_claiming(30000, 30000), "decompression bomb"),
        ("gray", pil_bytes(gray), None),
        ("gray_as_rgb", pil_bytes(np.repeat(gray[..., None], 3, 2)), None),
        ("rgba", pil_bytes(rgba), None),
        ("rgba_as_rgb", pil_bytes(rgb[1]), None),
        ("gray16", pil_bytes(gray16), None),
        ("truncated_jpeg", pil_bytes(rgb[2], "JPEG")[:60], "cannot decode image"),
        ("jpeg", pil_bytes(rgb[3], "JPEG"), None),
        ("wrong_size", pil_bytes(np.zeros((2 * R, 2 * R, 3), np.uint8)), "image is 16x16"),
        ("not_an_image", b"GIF89a but no", "cannot decode image"),
    ]
    src = tmp_path_factory.mktemp("bad") / "images"
    src.mkdir()
    schema = pa.schema([("image_id", pa.string()), ("score", pa.float32()),
                        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())]))])
    rows = [{"image_id": i, "score": float(k), "image": None if b is None else
             {"bytes": b, "path": f"{i}.png"}} for k, (i, b, _) in enumerate(cases)]
    pq.write_table(pa.Table.from_pylist(rows[:7], schema=schema), src / "a.parquet")
    pq.write_table(pa.Table.from_pylist(rows[7:], schema=schema), src / "b.parquet")
    out = src.parent / "labeled"
    manifest = run_label(LabelConfig(images=str(src), out=str(out), resolution=R,
                                     classifier=model_files["classifier"], micro_batch=4,
                                     batch_size=4, workers=2, device="cpu"))
    return cases, out, manifest


def test_every_bad_image_is_an_error_record_and_every_good_row_is_written(label_run):
    cases, out, manifest = label_run
    good = [i for i, _, why in cases if why is None]
    bad = {i: why for i, _, why in cases if why is not None}
    assert manifest["status"] == "complete"
    assert manifest["rows"] == len(good) and manifest["errors"] == len(bad)
    labeled = storage.read_table(str(out))
    assert labeled.column("image_id").to_pylist() == good      # order kept, none lost
    assert labeled.column("score").to_pylist() == [float(k) for k, (i, _, w) in
                                                    enumerate(cases) if w is None]
    logits = np.stack([labeled.column(c).to_numpy() for c in labeled.column_names
                       if c.startswith("logit_")], axis=1)
    assert np.isfinite(logits).all()
    errors = storage.read_table(storage.open_store(str(out)).child("_errors"))
    assert sorted(errors.column("id").to_pylist()) == sorted(bad)
    for e in errors.to_pylist():
        assert e["stage"] == "label" and bad[e["id"]] in e["reason"], e
    # modes are converted by the documented rule: same pixels -> same logits
    at = {i: logits[k] for k, i in enumerate(good)}
    np.testing.assert_allclose(at["gray"], at["gray_as_rgb"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(at["gray16"], at["gray_as_rgb"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(at["rgba"], at["rgba_as_rgb"], rtol=0, atol=1e-5)


def mixed_files(src, R):
    """Four input files: good, extra column + int32 score, image column of strings, junk."""
    rng = np.random.default_rng(1)
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    good = [pil_bytes(rng.integers(0, 256, (R, R, 3), dtype=np.uint8)) for _ in range(4)]
    src.mkdir()
    pq.write_table(pa.table({"image_id": ["a0", "a1"], "score": pa.array([1, 2], pa.int64()),
                             "image": pa.array([{"bytes": b, "path": None} for b in good[:2]],
                                               image_type)}), src / "a.parquet")
    pq.write_table(pa.table({"image_id": ["b0", "b1"], "score": pa.array([3, 4], pa.int32()),
                             "extra": [0.5, 0.25],
                             "image": pa.array([{"bytes": b, "path": None} for b in good[2:]],
                                               image_type)}), src / "b.parquet")
    pq.write_table(pa.table({"image_id": ["c0", "c1", "c2"], "score": [5, 6, 7],
                             "image": ["c0.png", "c1.png", "c2.png"]}), src / "c.parquet")
    (src / "d.parquet").write_bytes(b"not parquet at all")


def test_a_bad_input_file_becomes_error_records_and_other_files_are_written(
        ray_cluster, model_files, tmp_path):
    """Files of one dataset that differ: extra columns and a castable type are read; an
    image column of strings and a junk file become error records (ids where readable)."""
    from jobs.stages.label import LabelConfig, run_label
    src = tmp_path / "mixed"
    mixed_files(src, R)
    out = tmp_path / "labeled"
    manifest = run_label(LabelConfig(images=str(src), out=str(out), resolution=R,
                                     classifier=model_files["classifier"], device="cpu",
                                     workers=1))
    assert manifest["status"] == "complete" and manifest["rows"] == 4
    assert manifest["errors"] == 4                         # c0, c1, c2 and the junk file
    labeled = storage.read_table(str(out))
    assert labeled.column("image_id").to_pylist() == ["a0", "a1", "b0", "b1"]
    assert labeled.column("score").to_pylist() == [1, 2, 3, 4]
    assert "extra" not in labeled.column_names
    errors = storage.read_table(storage.open_store(str(out)).child("_errors")).to_pylist()
    by_id = {e["id"]: e["reason"] for e in errors}
    assert sorted(by_id) == ["c0", "c1", "c2", "d.parquet"]
    assert "c.parquet column 'image' is string, not an image struct" in by_id["c0"]
    assert "d.parquet is not a readable Parquet file" in by_id["d.parquet"]


def test_invert_takes_int64_image_ids(ray_cluster, model_files, tmp_path):
    from jobs.stages.invert import InvertConfig, run_invert
    from gankit.images import encode_image
    src = tmp_path / "ids"
    src.mkdir()
    rng = np.random.default_rng(2)
    imgs = [encode_image(rng.integers(0, 256, (R, R, 3), dtype=np.uint8), "png")
            for _ in range(2)]
    pq.write_table(pa.table({"image_id": pa.array([7, 8], pa.int64()),
                             "image": [{"bytes": b, "path": None} for b in imgs]}),
                   src / "a.parquet")
    out = tmp_path / "inverted"
    manifest = run_invert(InvertConfig(images=str(src), out=str(out), model=model_files["model"],
                                       mode="optimize", steps=2, device="cpu", workers=1))
    assert manifest["rows"] == 2 and manifest["errors"] == 0
    assert storage.read_table(str(out)).column("image_id").to_pylist() == ["7", "8"]


def test_label_dataset_level_problems_are_one_sentence(ray_cluster, model_files, tmp_path):
    from jobs.stages.label import LabelConfig, run_label
    src = tmp_path / "src"
    src.mkdir()
    empty = pa.table({"image_id": pa.array([], pa.string()),
                      "image": pa.array([], pa.struct([("bytes", pa.binary()),
                                                       ("path", pa.string())]))})
    pq.write_table(empty, src / "a.parquet")
    base = dict(images=str(src), classifier=model_files["classifier"], device="cpu")
    # an empty dataset with a given resolution: a complete, empty output
    manifest = run_label(LabelConfig(out=str(tmp_path / "o1"), resolution=R, **base))
    assert manifest["status"] == "complete" and manifest["rows"] == 0
    assert storage.dataset_rows(storage.open_store(str(tmp_path / "o1")))[0] == 0
    # ... without one, the size cannot be learned from it
    with pytest.raises(ValueError, match=r"no decodable square image in column 'image'"):
        run_label(LabelConfig(out=str(tmp_path / "o2"), **base))
    with pytest.raises(ConfigError, match=r"^image_column 'img' is not a column of .*"
                                          r"\(columns: image_id, image\)$"):
        run_label(LabelConfig(out=str(tmp_path / "o3"), image_column="img", **base))
    pq.write_table(pa.table({"image": empty.column("image")}), src / "a.parquet")
    with pytest.raises(ConfigError, match=r"^id_column is needed: .* has neither 'sample_id' "
                                          r"nor 'image_id'"):
        run_label(LabelConfig(out=str(tmp_path / "o4"), resolution=R, **base))
    with pytest.raises(FileNotFoundError, match=r"no Parquet files and no image files at"):
        run_label(LabelConfig(out=str(tmp_path / "o5"), resolution=R,
                              **dict(base, images=str(tmp_path / "nothing-here"))))
    assert not any((tmp_path / f"o{k}" / storage.MANIFEST).exists() for k in (2, 3, 4, 5))


# ----------------------------------------------------------------------------------------
# edit


@pytest.fixture(scope="module")
def latents(ray_cluster, model_files, tmp_path_factory):
    from jobs.stages.sample import SampleConfig, run_sample
    out = tmp_path_factory.mktemp("edit-in") / "sampled"
    run_sample(SampleConfig(model=model_files["model"], count=12, seed=2, space="w",
                            rows_per_part=6, micro_batch=4, out=str(out), device="cpu",
                            workers=1))
    return out


def unit(dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


def edit_cfg(model_files, latents, out, boundaries, **kw):
    from jobs.stages.edit import EditConfig
    return EditConfig(latents=str(latents), out=str(out), boundaries=boundaries,
                      strengths=[-1.0, 1.0], model=model_files["model"], classifier=None,
                      micro_batch=4, batch_size=8, workers=1, device="cpu", **kw)


def test_boundary_of_another_generator_is_refused_naming_it(latents, model_files, tmp_path):
    from gankit.latent.boundaries import Boundary
    from jobs.stages.edit import run_edit
    wrong = tmp_path / "w512.npz"
    Boundary("smile", "w", unit(512), 0.0).save(wrong)
    with pytest.raises(ConfigError, match=rf"^boundaries has '{wrong}', a 512-dim 'w' "
                                          rf"boundary, but the latents of {latents} are "
                                          rf"16-dim there$"):
        run_edit(edit_cfg(model_files, latents, tmp_path / "o", [str(wrong)]))
    zb = tmp_path / "z.npz"
    Boundary("smile", "z", unit(16), 0.0).save(zb)
    no_z = tmp_path / "no_z"
    storage.write_table_part(storage.open_store(str(no_z), create=True),
                             storage.part_name(0),
                             storage.read_table(str(latents)).drop_columns(["z"]), {})
    with pytest.raises(ConfigError, match=r"a Z boundary, but .* has no z column"):
        run_edit(edit_cfg(model_files, no_z, tmp_path / "o2", [str(zb)]))
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(Exception) as e:
        run_edit(edit_cfg(model_files, latents, tmp_path / "o3", [str(garbage)]))
    assert "garbage.npz" in str(e.value) or "zip" in str(e.value).lower(), str(e.value)
    for o in ("o", "o2", "o3"):          # refused before any file was written
        assert not (tmp_path / o).exists() or not list((tmp_path / o).iterdir())


def test_nan_and_inf_latents_become_error_records(latents, model_files, tmp_path):
    from gankit.latent.boundaries import Boundary
    from jobs.stages.edit import run_edit
    t = storage.read_table(str(latents))
    w = np.stack(t.column("w").to_numpy(zero_copy_only=False)).copy()
    w[3, 0], w[7, 5] = np.nan, np.inf
    from gankit.data import latent_column
    bad = t.set_column(t.column_names.index("w"), "w", latent_column(w)).drop_columns(["z"])
    src = tmp_path / "nan"
    storage.write_table_part(storage.open_store(str(src), create=True),
                             storage.part_name(0), bad, {})
    b = tmp_path / "w.npz"
    Boundary("smile", "w", unit(16), 0.0).save(b)
    manifest = run_edit(edit_cfg(model_files, src, tmp_path / "o", [str(b)]))
    edited = storage.read_table(str(tmp_path / "o"))
    assert sorted(set(edited.column("sample_id").to_pylist())) == \
        [i for i in range(12) if i not in (3, 7)]
    assert manifest["errors"] == 2


def test_a_yaml_alias_bomb_is_refused_with_one_sentence(tmp_path):
    """Nine levels of nine aliases under `storage:` stand for 9^9 values; safe_load builds
    them as shared references, which validation and fsspec would expand (and hang)."""
    from jobs.stages.pipeline import load_config
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("root: /tmp/r\nstorage:\n" + "\n".join("  " + ln for ln in lines) + "\n")
    with pytest.raises(ValueError, match=r"bomb\.yaml expands to more than 100,000 values"):
        load_config(str(path))


def test_train_classifier_makes_its_output_folder_before_training(tmp_path):
    """`--out DIR/x.safetensors` with a missing DIR used to train, then lose the result."""
    from jobs.commands.cli import main
    out = tmp_path / "new" / "folder" / "c.safetensors"
    assert main(["train-classifier", "--out", str(out), "--images", "64", "--steps", "2"]) == 0
    assert out.exists() and out.with_name("c.safetensors.json").exists()
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    assert main(["train-classifier", "--out", str(blocked / "c.safetensors"), "--images", "64",
                 "--steps", "2"]) == 2


def test_file_extension_follows_the_bytes():
    import numpy as np
    from gankit.images import encode_image, file_extension
    img = np.zeros((8, 8, 3), np.uint8)
    assert [file_extension(encode_image(img, f)) for f in ("png", "jpeg", "webp")] == \
        ["png", "jpg", "webp"]
    assert file_extension(b"GIF89a") == "bin" and file_extension(b"") == "bin"


def test_exif_orientation_is_applied_and_32_bit_pixels_are_refused():
    """A phone photo stored sideways with an orientation tag decodes upright; 32-bit integer
    or float TIFFs used to be clipped into garbage and are now refused (an error record)."""
    import io

    import numpy as np
    from PIL import Image

    from gankit.images import decode_image
    upright = np.zeros((4, 6, 3), np.uint8)
    upright[0, :, 0] = 255                                   # a red top row
    stored = np.rot90(upright, k=1)                          # as the sensor wrote it
    exif = Image.Exif()
    exif[0x0112] = 6                                         # "rotate 90 CW to view"
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(stored)).save(buf, format="PNG", exif=exif)
    assert np.array_equal(decode_image(buf.getvalue()), upright)
    for arr, word in ((np.full((4, 4), 70000, np.int32), "integers"),
                      (np.full((4, 4), 0.5, np.float32), "floats")):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="TIFF")
        with pytest.raises(ValueError, match=rf"32-bit {word}"):
            decode_image(buf.getvalue())


def test_damaged_files_are_named_in_one_sentence(ray_cluster, model_files, tmp_path):
    """A 0-byte or junk .parquet among the inputs, a corrupted _manifest.json or
    boundaries.json: each error names the file and says what to do (was pyarrow's or json's
    message alone)."""
    from jobs.stages.edit import EditConfig, run_edit
    from jobs.stages.label import LabelConfig, run_label
    from jobs.stages.sample import SampleConfig, run_sample
    src = tmp_path / "images"
    src.mkdir()
    pq.write_table(pa.table({"image_id": ["a"], "image": [{"bytes": pil_bytes(
        np.zeros((R, R, 3), np.uint8)), "path": None}]}), src / "a.parquet")
    for k, junk in enumerate((b"", b"not parquet at all")):   # beside a good file: an error
        (src / "b.parquet").write_bytes(junk)                   # record naming it
        labels = tmp_path / f"labels{k}"
        manifest = run_label(LabelConfig(images=str(src), out=str(labels),
                                         classifier=model_files["classifier"], device="cpu"))
        assert manifest["rows"] == 1 and manifest["errors"] == 1
        error = storage.read_table(storage.open_store(str(labels)).child("_errors"))
        assert re.search(r"b\.parquet is not a readable Parquet file .*remove or replace it",
                         error.column("reason")[0].as_py())
    (src / "a.parquet").write_bytes(b"")                        # no usable file: one sentence
    with pytest.raises(ValueError, match=r"a\.parquet is not a readable Parquet file .*"
                                         r"remove or replace it"):
        run_label(LabelConfig(images=str(src), out=str(tmp_path / "labels"),
                              classifier=model_files["classifier"], device="cpu"))
    out = tmp_path / "samples"
    cfg = SampleConfig(model=model_files["model"], count=8, rows_per_part=8, out=str(out),
                       device="cpu", workers=1)
    run_sample(cfg)
    (out / storage.MANIFEST).write_text('{"job": "sample", "ident')
    with pytest.raises(ValueError, match=r"samples/_manifest\.json is damaged .*not valid JSON"):
        run_sample(cfg)
    index = tmp_path / "fit"
    index.mkdir()
    (index / "boundaries.json").write_bytes(b"\x00\x01")
    with pytest.raises(ValueError, match=r"fit/boundaries\.json is damaged"):
        run_edit(EditConfig(latents=str(out), index=str(index), out=str(tmp_path / "e"),
                            model=model_files["model"], classifier=None, device="cpu"))


@pytest.mark.parametrize("change, message", [
    ({"synthesis": {"channel_base": 2 ** 27, "channel_max": 2 ** 17}, "img_resolution": 1024},
     r"about 2\.\de\+12 parameters \([\d,]+ GiB in fp32\)"),
    ({"img_resolution": 2 ** 30}, r"img_resolution must be a power of two from 4 to 16384"),
    ({"synthesis": {"channel_base": -64}}, r"synthesis\.channel_base must be a positive integer"),
    ({"z_dim": "16"}, r"z_dim must be a positive integer, got '16'"),
])
def test_absurd_native_configs_are_refused_before_allocating(tmp_path, change, message):
    """A native config.json is data: absurd sizes used to allocate (or divide by zero)."""
    import json

    from helpers import tiny_generator
    from gankit.loading.checkpoints import CheckpointError, load_generator, save_generator
    folder = tmp_path / "g"
    save_generator(tiny_generator(), folder)
    meta = json.loads((folder / "config.json").read_text())
    for key, value in change.items():
        if isinstance(value, dict):
            meta["config"][key].update(value)
        else:
            meta["config"][key] = value
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=rf"{folder}: its generator config is not usable: "
                                              rf".*{message}"):
        load_generator(folder)


def test_a_safetensors_file_with_a_lying_header_is_one_sentence(tmp_path, capsys):
    """The header length claims 10^12 bytes: was a SafetensorError traceback."""
    import struct

    from helpers import tiny_generator
    from gankit.loading.checkpoints import save_generator
    from jobs.commands.cli import main
    folder = tmp_path / "g"
    save_generator(tiny_generator(), folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(struct.pack("<Q", 10 ** 12) + weights.read_bytes()[8:])
    assert main(["inspect", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{weights}: unreadable safetensors file" in err[0]


def test_cli_version_inspect_toy_and_a_closed_pipe(capsys):
    """`gankit --version`; `gankit inspect toy` like `--model toy` elsewhere; and
    `gankit inspect ... | head` ends without a BrokenPipeError traceback (#19)."""
    import subprocess
    import sys

    from jobs.commands.cli import main
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("gankit ")
    assert main(["inspect", "toy"]) == 0
    assert "resolution: 32" in capsys.readouterr().out
    reader = subprocess.Popen([sys.executable, "-m", "jobs.commands.cli", "inspect", "toy",
                               "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader.stdout.close()                                  # the reader left at once
    err = reader.stderr.read().decode()
    assert reader.wait(timeout=120) == 0 and "Traceback" not in err and "Broken" not in err


def test_a_recursion_bomb_pickle_is_one_sentence(tmp_path):
    """An NVIDIA-structured pickle whose mapping network nests 1500 modules deep: the
    loader's walk would exceed Python's recursion limit; it is refused naming the file."""
    import sys
    import threading

    import nvidia_fixture as nf
    from helpers import tiny_generator
    from gankit.loading.checkpoints import CheckpointError, load_generator
    snap = nf.snapshot(tiny_generator())
    node = snap["G_ema"].child("mapping")
    for _ in range(1500):
        node.state["_modules"]["deep"] = node = nf.module_record("FullyConnectedLayer", "")
    written, limit, stack = {}, sys.getrecursionlimit(), threading.stack_size()
    sys.setrecursionlimit(100_000)            # pickling the bomb needs a deep stack itself
    threading.stack_size(512 << 20)
    try:
        t = threading.Thread(target=lambda: written.update(b=nf.dumps(snap)))
        t.start()
        t.join()
    finally:
        sys.setrecursionlimit(limit)
        threading.stack_size(stack)
    path = tmp_path / "deep.pkl"
    path.write_bytes(written["b"])
    with pytest.raises(CheckpointError, match=r"deep\.pkl: its objects are nested too deeply"):
        load_generator(path)


def test_variable_length_latents_are_one_sentence(tmp_path, capsys):
    from jobs.commands.cli import main
    src = tmp_path / "latents"
    src.mkdir()
    w = pa.array([[0.1] * 16, [0.2] * 15], pa.list_(pa.float64()))
    pq.write_table(pa.table({"sample_id": [0, 1], "w": w,
                             "logit_a": pa.array([1.0, -1.0], pa.float32())}),
                   src / "part-00000.parquet")
    assert main(["fit", "--samples", str(src), "--out", str(tmp_path / "fit"),
                 "--spaces", "w"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "column 'w' is list<element: double>, but latents are read " \
        "from fixed-size lists of floats" in err, err


def test_a_model_no_actor_can_load_is_named_in_one_sentence(ray_cluster, tmp_path, capsys):
    """The actors fail in their constructor (the driver checks only that the file exists):
    the command line quotes the loader's sentence, not Ray's empty SystemException."""
    import pickle
    from jobs.commands.cli import main
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(pickle.dumps([1, 2, 3]))
    assert main(["sample", "--model", str(junk), "--count", "2", "--device", "cpu",
                 "--workers", "1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "CheckpointError: " in err and "junk.pkl: not a generator checkpoint (a list)" in err
