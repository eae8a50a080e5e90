"""Real scale on the CPU: image formats and downscales, codec threads beside the model,
precision in the jobs, classifier input specs through a job, and the one-sentence errors
(unknown format, a precision the device cannot run, a GPU out of memory)."""
import json
import threading

import numpy as np
import pyarrow as pa
import pytest
import torch

from jobs import storage
from jobs.runtime.cpu_pool import CpuPool, StepWriter, gather
from jobs.runtime import PartWorker
from jobs.config import ConfigError, config_from_dict
from jobs.stages.sample import SampleConfig, run_sample

MAGIC = {"png": b"\x89PNG", "jpeg": b"\xff\xd8\xff", "webp": b"RIFF"}


def sample_cfg(model_files, out, **kw) -> SampleConfig:
    base = dict(model=model_files["model"], classifier=model_files["classifier"], count=40,
                seed=3, images=True, rows_per_part=20, micro_batch=8, batch_size=8,
                out=str(out), device="cpu", workers=1)
    base.update(kw)
    return SampleConfig(**base)


# ----------------------------------------------------------------------------------------
# Unit: the CPU pool


class ListWriter:
    """A PartWriter stand-in that records row groups (with the thread that wrote them)."""

    def __init__(self):
        self.tables, self.threads = [], set()

    def write(self, table):
        self.tables.append(table)
        self.threads.add(threading.current_thread().name)


def test_step_writer_keeps_step_order_and_writes_off_the_caller_thread():
    pool, sink = CpuPool(3), ListWriter()
    with StepWriter(sink, depth=2) as steps:
        for k in range(7):
            futures = pool.map_chunks(lambda xs: [x * 10 for x in xs], list(range(k, k + 5)))
            steps.put(lambda f=futures: pa.table({"v": gather(f)}))
        steps.finish()
    pool.close()
    assert [t.column("v").to_pylist() for t in sink.tables] == \
        [[x * 10 for x in range(k, k + 5)] for k in range(7)]
    assert sink.threads and threading.current_thread().name not in sink.threads


def test_step_writer_reraises_the_first_error():
    def bad():
        raise ValueError("row group 2 is broken")
    with pytest.raises(ValueError, match="row group 2 is broken"):
        with StepWriter(ListWriter()) as steps:
            steps.put(lambda: pa.table({"v": [1]}))
            steps.put(bad)
            steps.finish()


def test_pool_encodes_every_format_in_row_order():
    from gankit.images import decode_image
    ramp = np.linspace(0, 150, 16)                         # smooth images, as photos are
    u8 = np.stack([np.stack(np.broadcast_arrays(ramp[:, None] + 20 * k, ramp[None, :],
                                                np.full((16, 16), 40 * k)), -1)
                   for k in range(5)]).astype(np.uint8)     # [5, 16, 16, 3]
    pool = CpuPool(2)
    for fmt in MAGIC:
        data = gather(pool.encode(u8, fmt, 90))
        assert [d[:len(MAGIC[fmt])] for d in data] == [MAGIC[fmt]] * 5
        back = np.stack([decode_image(d) for d in data]).astype(int)
        err = np.abs(back - u8).mean(axis=(1, 2, 3))
        assert (err == 0).all() if fmt == "png" else (err < 6).all()
        if fmt != "png":          # each image decodes closest to its own source: row order
            assert np.argmin(np.abs(back[:, None] - u8[None]).mean(axis=(2, 3, 4)), 1).tolist() \
                == list(range(5))
    pool.close()


# ----------------------------------------------------------------------------------------
# Unit: config errors and the out-of-memory sentence


def test_unknown_image_format_and_bad_quality_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"image_format must be one of png, jpeg, webp"):
        config_from_dict(SampleConfig, {"out": str(tmp_path), "image_format": "gif"})
    with pytest.raises(ConfigError, match=r"image_quality must be in 1..100"):
        config_from_dict(SampleConfig, {"out": str(tmp_path), "image_quality": 0})
    with pytest.raises(ConfigError, match=r"precision must be one of"):
        config_from_dict(SampleConfig, {"out": str(tmp_path), "precision": "fp8"})
    with pytest.raises(ConfigError, match=r"classifier_input .*std"):
        config_from_dict(SampleConfig, {"out": str(tmp_path),
                                        "classifier_input": {"mean": [0, 0, 0], "std": [1, 0, 1]}})


def test_flags_reach_the_config():
    from jobs.commands.cli import build_parser
    args = build_parser().parse_args(
        ["sample", "--count", "5", "--out", "o", "--precision", "bf16", "--image-format",
         "webp", "--image-quality", "80", "--image-size", "16", "--cpus-per-worker", "3",
         "--classifier-input", '{"input_size": 224}'])
    assert (args.precision, args.image_format, args.image_quality, args.image_size,
            args.cpus_per_worker, args.classifier_input) == \
        ("bf16", "webp", 80, 16, 3, {"input_size": 224})
    for command in (["edit", "--latents", "l", "--boundaries", "b", "--out", "o"],
                    ["invert", "--images", "i", "--out", "o"],
                    ["dataset", "--count", "5", "--out", "o"]):
        args = build_parser().parse_args(command + ["--image-format", "jpeg", "--precision",
                                                    "fp16", "--cpus-per-worker", "2"])
        assert (args.image_format, args.precision, args.cpus_per_worker) == ("jpeg", "fp16", 2)


class OomWorker(PartWorker):
    """A stand-in for a GPU stage: model calls on more than 4 rows run out of memory."""

    def __init__(self, micro_batch: int, out):
        super().__init__(out)
        self.cfg = type("Cfg", (), {"micro_batch": micro_batch})()

    def fits(self, m: int) -> bool:
        if m > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return True

    def write_part(self, spec, part):
        self.fits(self.cfg.micro_batch)


def test_out_of_memory_names_micro_batch_and_the_size_that_fit(tmp_path):
    from jobs.runtime import PartFailed
    batch = {"index": np.array([3]), "start": np.array([0]), "stop": np.array([10]),
             "run": np.array(["run"]), "attempts": np.array([3])}
    with pytest.raises(PartFailed) as e:
        OomWorker(32, storage.open_store(str(tmp_path), create=True))(batch)
    msg = str(e.value)
    assert "part 00003" in msg and "micro_batch=32" in msg
    assert "micro_batch=4 fits: rerun with --micro-batch 4" in msg


# ----------------------------------------------------------------------------------------
# Integration: the jobs on the session's Ray cluster


@pytest.mark.integration
def test_codec_threads_do_not_change_a_byte(ray_cluster, model_files, tmp_path):
    one = run_sample(sample_cfg(model_files, tmp_path / "one", cpus_per_worker=1))
    two = run_sample(sample_cfg(model_files, tmp_path / "two", cpus_per_worker=2))
    assert one["rows"] == two["rows"] == 40
    a, b = (storage.read_table(str(tmp_path / d)).sort_by("sample_id") for d in ("one", "two"))
    assert a.equals(b)


@pytest.mark.integration
@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_lossy_formats_and_downscale_then_label_reads_them(ray_cluster, model_files,
                                                           tmp_path, fmt):
    """32 px generator stored as 16 px JPEG/WebP; the label stage relabels them within the
    codec's noise (the sample job classified the same 16 px pixels before coding)."""
    from gankit.images import decode_image
    from jobs.stages.label import LabelConfig, run_label
    model = model_files["model32"]
    out = tmp_path / "samples"
    run_sample(sample_cfg(model_files, out, model=model, image_format=fmt, image_quality=90,
                          image_size=16))
    t = storage.read_table(str(out)).sort_by("sample_id")
    data = [r["bytes"] for r in t.column("image").to_pylist()]
    assert all(d.startswith(MAGIC[fmt]) for d in data)
    assert decode_image(data[0]).shape == (16, 16, 3)
    manifest = storage.read_manifest(storage.Store(str(out)))
    assert manifest["identity"]["image_format"] == fmt and manifest["identity"]["image_size"] == 16
    run_label(LabelConfig(images=str(out), out=str(tmp_path / "labels"),
                          classifier=model_files["classifier"], device="cpu", micro_batch=8,
                          workers=1, cpus_per_worker=2))
    relabeled = storage.read_table(str(tmp_path / "labels")).sort_by("sample_id")
    assert relabeled.num_rows == 40
    before = np.array(t.column("logit_smile").to_pylist())
    after = np.array(relabeled.column("logit_smile").to_pylist())
    assert np.corrcoef(before, after)[0, 1] > 0.9
    assert not np.array_equal(before, after)         # lossy: not the same pixels


@pytest.mark.integration
def test_png_downscale_is_antialiased_and_labels_match_relabeling(ray_cluster, model_files,
                                                                  tmp_path):
    from gankit.loading import zoo
    from gankit.images import decode_image, downscale, quantize
    from gankit.latent.latents import sample_z
    from jobs.stages.label import LabelConfig, run_label
    out = tmp_path / "samples"
    run_sample(sample_cfg(model_files, out, model=model_files["model32"], image_size=8,
                          space="wp"))
    t = storage.read_table(str(out)).sort_by("sample_id")
    G = zoo.load_generator(model_files["model32"]).eval()
    with torch.no_grad():
        img = G(torch.from_numpy(sample_z(3, np.arange(8), G.z_dim)), noise_mode="const")
    want = quantize(downscale(img, 8)).numpy()
    got = np.stack([decode_image(r["bytes"]) for r in t.column("image").to_pylist()[:8]])
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1      # kernel rounding only
    run_label(LabelConfig(images=str(out), out=str(tmp_path / "labels"),
                          classifier=model_files["classifier"], device="cpu", micro_batch=8,
                          workers=1))
    relabeled = storage.read_table(str(tmp_path / "labels")).sort_by("sample_id")
    for a in ("smile", "age", "glasses"):
        assert relabeled.column(f"logit_{a}").equals(t.column(f"logit_{a}"))


@pytest.mark.integration
def test_a_precision_the_cpu_cannot_run_fails_before_any_work(ray_cluster, model_files,
                                                              tmp_path):
    with pytest.raises(ConfigError, match=r"precision cannot run here: .*fp16.*CUDA"):
        run_sample(sample_cfg(model_files, tmp_path / "o", precision="fp16"))
    assert storage.Store(str(tmp_path / "o")).list_parts() == {}


@pytest.mark.integration
def test_bf16_joins_the_identity_and_stays_close_to_fp32(ray_cluster, model_files, tmp_path):
    from gankit import precision as numerics
    try:
        numerics.check("bf16", "cpu")
    except ValueError as e:
        pytest.skip(str(e))
    run_sample(sample_cfg(model_files, tmp_path / "fp32", model=model_files["model32"]))
    run_sample(sample_cfg(model_files, tmp_path / "bf16", model=model_files["model32"],
                          precision="bf16"))
    ident = storage.read_manifest(storage.Store(str(tmp_path / "bf16")))["identity"]
    assert ident["precision"] == "bf16"
    assert "precision" not in storage.read_manifest(storage.Store(str(tmp_path / "fp32")))["identity"]
    with pytest.raises(ValueError, match="precision"):           # no mixing in one location
        run_sample(sample_cfg(model_files, tmp_path / "bf16", model=model_files["model32"]))
    a, b = (storage.read_table(str(tmp_path / d)).sort_by("sample_id") for d in ("fp32", "bf16"))
    assert a.column("z").equals(b.column("z"))                  # z never depends on precision
    from gankit.images import decode_image
    ia = np.stack([decode_image(r["bytes"]) for r in a.column("image").to_pylist()]).astype(int)
    ib = np.stack([decode_image(r["bytes"]) for r in b.column("image").to_pylist()]).astype(int)
    assert 0 < np.abs(ia - ib).mean() < 8                       # 8-bit levels


@pytest.mark.integration
def test_classifier_that_wants_224_imagenet_input_through_the_sample_job(
        ray_cluster, model_files, tmp_path):
    """A TorchScript classifier refusing anything but 224 x 224 ImageNet-normalised input,
    fed by a 32 px generator: gankit resizes and normalises on the device."""
    from gankit.loading import zoo
    from gankit.images import decode_image, from_uint8

    class Wants224(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.shape[2] != 224 or x.shape[3] != 224:
                raise ValueError("expected 224 x 224 input")
            return torch.stack([x.mean(dim=[1, 2, 3]), x.std(dim=[1, 2, 3])], dim=1)

    path = tmp_path / "wants224.pt"
    torch.jit.script(Wants224()).save(str(path))
    path.with_name("wants224.pt.json").write_text(json.dumps(
        {"attribute_names": ["mean", "std"], "input_size": 224,
         "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}))
    out = tmp_path / "samples"
    run_sample(sample_cfg(model_files, out, model=model_files["model32"],
                          classifier=str(path)))
    t = storage.read_table(str(out)).sort_by("sample_id")
    u8 = np.stack([decode_image(r["bytes"]) for r in t.column("image").to_pylist()])
    with torch.no_grad():
        want = zoo.load_classifier(str(path))(from_uint8(u8)).numpy()
    got = np.stack([t.column("logit_mean").to_numpy(), t.column("logit_std").to_numpy()], 1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert abs(got[:, 0].mean()) < 3 and got[:, 1].min() > 0    # normalised, not [-1, 1]


def test_pipeline_config_carries_the_shared_options_to_every_model_stage(tmp_path):
    from jobs.stages.pipeline import load_config, stage_configs
    path = tmp_path / "run.yaml"
    path.write_text("root: /tmp/r\nprecision: bf16\ncpus_per_worker: 3\nstages: [sample, fit, "
                    "invert, edit]\nsample: {images: true, image_format: jpeg, image_size: 16}"
                    "\ninvert: {images: /tmp/faces}\nedit: {image_format: webp}\n")
    configs = stage_configs(load_config(str(path)))
    for stage in ("sample", "invert", "edit"):
        assert (configs[stage].precision, configs[stage].cpus_per_worker) == ("bf16", 3)
    assert (configs["sample"].image_format, configs["sample"].image_size) == ("jpeg", 16)
    assert configs["edit"].image_format == "webp"
    path.write_text("root: /tmp/r\nsample: {image_format: gif}\n")
    with pytest.raises(ConfigError, match=r"sample\.image_format must be one of png, jpeg, webp"):
        load_config(str(path))

