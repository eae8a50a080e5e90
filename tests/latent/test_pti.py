"""Pivotal Tuning (gankit.latent.pti) on tiny random generators: each image's change is its own,
its rank-r layout and bytes, determinism, float16 rows that render back to the stored
reconstruction, and the per-sample modulated convolution it runs through; then one
integration test on the toy model with the Ray cluster (invert --mode pti -> edit,
interpolate, resume)."""
from __future__ import annotations

import copy
import io
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from helpers import tiny_generator
from gankit.latent import pti
from gankit.latent.inversion import InversionConfig, invert
from gankit.models import ops
from gankit.models.stylegan2 import LayerDelta, delta_weight, per_sample_conv


FP16_STEP = 4e-3   # float16's spacing at |x| < 4 (the changes' values here are below 3)


def pti_cfg(**kw) -> InversionConfig:
    return InversionConfig(**{"mode": "pti", "steps": 10, "w_avg_samples": 500,
                              "pti_steps": 20, "pti_lr": 1e-2, "pti_stop": 0.0, **kw})


@pytest.fixture(scope="module")
def G():
    return tiny_generator(0, 8).requires_grad_(False)


@pytest.fixture(scope="module")
def targets(G):
    """4 images [4, 3, 8, 8]: G's renders plus noise, so the pivot alone does not fit."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        x = G.synthesis(G.mapping(torch.randn(4, G.z_dim, generator=gen)), noise_mode="const")
    return (x + 0.2 * torch.randn(x.shape, generator=gen)).clamp(-1, 1)


@pytest.fixture(scope="module")
def result(G, targets):
    return invert(G, targets, pti_cfg())


# ----------------------------------------------------------------------------------------
# The per-sample change in the modulated convolution


def layers_of(G) -> dict:
    return dict(pti.modulated_layers(G))


@pytest.mark.parametrize("rank", [1, 3, 0])
def test_each_sample_renders_as_g_with_its_own_weights(G, rank):
    """Sample n through LayerDelta n == a copy of G whose weights and biases are changed by
    that sample's change (rank r: the low-rank path; 0: the full, fused path)."""
    gen = torch.Generator().manual_seed(3)
    n = 3
    ws = G.mapping(torch.randn(n, G.z_dim, generator=gen))
    deltas = {}
    for name, layer in layers_of(G).items():
        o, i, k, _ = layer.weight.shape
        u = 0.3 * torch.randn(n, o, max(rank, 1), generator=gen)
        v = torch.randn(n, max(rank, 1), i, k, k, generator=gen)
        weight = (u, v) if rank else torch.einsum("nor,nrikl->noikl", u, v)
        deltas[name] = LayerDelta(weight, 0.1 * torch.randn(n, o, generator=gen))
    with torch.no_grad():
        out = G.synthesis(ws, noise_mode="const", deltas=deltas)
        plain = G.synthesis(ws, noise_mode="const")
        for s in range(n):
            H = copy.deepcopy(G)
            for name, d in deltas.items():
                layer = H.synthesis.get_submodule(name)
                w = d.weight if torch.is_tensor(d.weight) else \
                    torch.einsum("nor,nrikl->noikl", *d.weight)
                layer.weight += w[s]
                layer.bias += d.bias[s]
            ref = H.synthesis(ws[s:s + 1], noise_mode="const")
            assert torch.allclose(out[s:s + 1], ref, atol=1e-5, rtol=0), s
    assert (out - plain).abs().max() > 1e-2           # the changes do change the images


@pytest.mark.parametrize("up,k", [(1, 3), (2, 3), (1, 1)])
@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_per_sample_conv_is_each_samples_own_convolution(up, k, chunk):
    """Values and V's gradient of per_sample_conv (chunks of samples, diagonal blocks kept)
    == sample n convolved alone with its V_n, whatever the chunk size."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(5, 4, 6, 6, generator=gen)                      # [N, I, H, W]
    v = torch.randn(5, 2, 4, k, k, generator=gen).requires_grad_(True)
    f = ops.setup_filter([1, 3, 3, 1])
    h = per_sample_conv(x, v, f, up, k // 2, chunk)                 # [N, r, H', W']
    g = torch.randn(h.shape, generator=gen)
    (grad,) = torch.autograd.grad((h * g).sum(), v)
    for n in range(5):
        vn = v[n].detach().requires_grad_(True)
        ref = ops.conv2d_resample(x[n:n + 1], vn, f=f, up=up, padding=k // 2)
        (ref_grad,) = torch.autograd.grad((ref * g[n:n + 1]).sum(), vn)
        assert torch.allclose(h[n:n + 1], ref, atol=1e-5, rtol=0), n
        assert torch.allclose(grad[n], ref_grad, atol=1e-4, rtol=0), n


def test_a_zero_change_is_g_itself(G):
    ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(4)))
    layout = pti.delta_layout(G, 2)
    zero = pti.initial_deltas(G, layout, pti_gens(2), "cpu")     # U = 0, V random
    with torch.no_grad():
        assert torch.allclose(pti.render(G, ws, zero), G.synthesis(ws, noise_mode="const"),
                              atol=1e-6, rtol=0)


def pti_gens(n: int) -> list:
    from gankit.latent.inversion import image_generators
    return image_generators(0, range(n), stream=1)


# ----------------------------------------------------------------------------------------
# Tuning: isolation, determinism, what it improves


def test_image_k_does_not_depend_on_the_rest_of_its_batch(G, targets, result):
    """Image 0's pivot, change and reconstruction are the same when the other images of
    its batch are replaced, and the same as a batch of one."""
    other = torch.cat([targets[:1], targets[1:].flip(0) * -0.5])
    swapped = invert(G, other, pti_cfg())
    single = invert(G, targets[:1], pti_cfg(), indices=[0])
    for res in (swapped, single):   # batched kernels may round differently in the last
        a, b = result.deltas.take([0]).tensors(), res.deltas.take([0]).tensors()  # fp32 bit,
        assert all(torch.allclose(x, y, atol=FP16_STEP, rtol=0) for x, y in zip(a, b))  # and
        assert torch.allclose(result.reconstruction[0], res.reconstruction[0], atol=1e-4)
        # the stored float16 then one step apart: FP16_STEP; mixing moves them by > 1e-2
    # while the replaced images did change (the comparison is not vacuous)
    assert (result.reconstruction[1] - swapped.reconstruction[1]).abs().max() > 1e-2


def test_deterministic(G, targets, result):
    again = invert(G, targets, pti_cfg())
    assert np.array_equal(again.deltas.to_flat(), result.deltas.to_flat())
    assert torch.equal(again.reconstruction, result.reconstruction)
    assert not np.array_equal(invert(G, targets, pti_cfg(seed=1)).deltas.to_flat(),
                              result.deltas.to_flat())      # the seed draws V


def test_tuning_improves_on_the_pivot(result):
    assert (result.psnr > result.pivot_psnr + 1).all()
    assert (result.pti_steps == 20).all() and (result.steps == 10).all()


def test_early_stop_per_image(G, targets):
    """pti_stop at the median start distance: some images stop at once, the others tune."""
    from gankit.models.perceptual import ScriptedFeatures
    net = ScriptedFeatures(torch.nn.Flatten())              # features = pixels
    start = invert(G, targets, pti_cfg(mse_weight=0.0, pti_steps=0), feature_net=net)
    stop = float(start.perceptual.median())
    res = invert(G, targets, pti_cfg(mse_weight=0.0, pti_stop=stop), feature_net=net)
    early = start.perceptual <= stop
    assert early.any() and (~early).any()
    assert (res.pti_steps[early] == 0).all() and (res.pti_steps[~early] > 0).all()
    # the stopped images leave the batch's forward: a tuning image's result is its own
    k = int((~early).nonzero()[0])
    alone = invert(G, targets[k:k + 1], pti_cfg(mse_weight=0.0, pti_stop=stop),
                   feature_net=net, indices=[k])
    assert alone.pti_steps[0] == res.pti_steps[k]
    assert all(torch.allclose(a, b, atol=FP16_STEP, rtol=0) for a, b in zip(
        alone.deltas.tensors(), res.deltas.take([k]).tensors()))


def test_locality_regulariser_keeps_the_pivots_neighbourhood(G, targets):
    """With the regulariser, latents at the radius from the pivot render closer to G's own
    images than without it."""
    cfg = pti_cfg(pti_radius=3.0)
    plain = invert(G, targets, cfg)
    local = invert(G, targets, pti_cfg(pti_radius=3.0, pti_locality=10.0))
    gen = torch.Generator().manual_seed(9)
    with torch.no_grad():
        w = G.mapping(torch.randn(4, G.z_dim, generator=gen))
        d = w - plain.ws
        moved = plain.ws + 3.0 * d / d.flatten(1).norm(dim=1).reshape(-1, 1, 1)
        ref = G.synthesis(moved, noise_mode="const")
        gap = lambda res: (pti.render(G, moved, res.deltas) - ref).square().mean()  # noqa
        assert gap(local) < gap(plain)


def test_full_rank_tunes_the_same_layers(G, targets):
    res = invert(G, targets[:1], pti_cfg(pti_rank=0))
    assert all(s.rank == 0 for s in res.deltas.layout.layers)
    assert res.psnr[0] > res.pivot_psnr[0]


def test_stylegan3_is_refused_in_one_sentence():
    from test_stylegan3 import tiny_sg3
    with pytest.raises(ValueError, match="StyleGAN2's modulated convolutions"):
        pti.modulated_layers(tiny_sg3())


# ----------------------------------------------------------------------------------------
# The stored change: layout, bytes, float16 rows


def test_rank_r_layout_shapes_and_bytes(G):
    for rank in (1, 2, 4, 0):
        layout = pti.delta_layout(G, rank)
        expected = 0
        for spec, (name, layer) in zip(layout.layers, pti.modulated_layers(G)):
            o, i, k, _ = layer.weight.shape
            assert spec.name == name and (spec.out_channels, spec.in_channels) == (o, i)
            r = min(rank, o, i * k * k) if rank else 0
            assert spec.rank == r
            expected += (r * (o + i * k * k) if r else o * i * k * k) + o   # U, V | full; bias
        assert layout.size == expected and layout.nbytes == 2 * expected
        deltas = pti.initial_deltas(G, layout, pti_gens(3), "cpu")
        flat = deltas.to_flat()
        assert flat.dtype == np.float16 and flat.shape == (3, layout.size)


def test_the_default_rank_is_small_next_to_the_generator(G):
    from gankit.loading import zoo
    toy = zoo.load_generator("toy")
    layout = pti.delta_layout(toy, InversionConfig().pti_rank)
    assert layout.nbytes <= 0.01 * pti.generator_bytes(toy)
    assert pti.delta_layout(toy, 16).nbytes > 0.01 * pti.generator_bytes(toy)


def test_float16_rows_round_trip_through_parquet(result, tmp_path):
    field = pti.delta_field(result.deltas.layout)
    table = pa.Table.from_arrays([pti.delta_column(result.deltas)], schema=pa.schema([field]))
    pq.write_table(table, str(tmp_path / "t.parquet"))
    back = pq.read_table(str(tmp_path / "t.parquet"))
    assert back.schema.field(pti.DELTA_COLUMN).type.value_type == pa.float16()
    assert pti.layout_of(back.schema.field(pti.DELTA_COLUMN)) == result.deltas.layout
    got = pti.read_deltas(back)
    for a, b in zip(got.tensors(), result.deltas.tensors()):
        assert torch.equal(a, b)                    # the result holds the float16 values


def test_a_stored_row_renders_its_reconstruction(G, result, tmp_path):
    """What `gankit edit` does with a PTI row at strength 0 (jobs.stages.rendering.render_and_label
    with the row's change): the stored reconstruction, to the 8-bit level."""
    from gankit.images import to_uint8
    from jobs.stages.rendering import render_and_label
    table = pa.table({"w": pa.FixedSizeListArray.from_arrays(
        pa.array(result.ws[:, 0].numpy().ravel()), G.w_dim)})
    table = table.append_column(pti.delta_field(result.deltas.layout),
                                pti.delta_column(result.deltas))
    pq.write_table(table, str(tmp_path / "row.parquet"))
    back = pq.read_table(str(tmp_path / "row.parquet"))
    w = torch.from_numpy(np.asarray(back.column("w").to_pylist(), dtype=np.float32))
    ws = w[:, None].repeat(1, G.num_ws, 1)
    u8, _ = render_and_label(G, None, ws, deltas=pti.read_deltas(back).layers)
    assert np.array_equal(u8, to_uint8(result.reconstruction))
    u8_plain, _ = render_and_label(G, None, ws)
    assert not np.array_equal(u8_plain, u8)


def test_a_layout_of_another_generator_is_refused(result):
    other = tiny_generator(0, 16)
    with pytest.raises(ValueError, match="tuned on a generator whose layer"):
        pti.check_layout(result.deltas.layout, other)


def test_lerp_of_two_changes_is_exact_in_weight_space(result):
    a, b = result.deltas.take([0]), result.deltas.take([1])
    mid = a.lerp(b, 0.25)
    for name in a.layers:
        wa, wb, wm = (delta_weight(d.layers[name].weight) for d in (a, b, mid))
        assert torch.allclose(wm, 0.75 * wa + 0.25 * wb, atol=1e-6)
    assert mid.layout.rank == 2 * a.layout.rank


def test_bytes_figures_for_ffhq_config_f():
    """The FFHQ-1024 config-f layout, built on the meta device (nothing allocated)."""
    from gankit.models.stylegan2 import Generator, GeneratorConfig
    with torch.device("meta"):
        G = Generator(GeneratorConfig())
    layout = pti.delta_layout(G, InversionConfig().pti_rank)
    assert len(layout.layers) == 9 * 2 - 1 + 9            # 17 convolutions + 9 ToRGB
    assert layout.nbytes <= 0.01 * pti.generator_bytes(G)
    assert math.isclose(pti.generator_bytes(G) / 4, sum(p.numel() for p in G.parameters())
                        + sum(b.numel() for b in G.buffers()))


# ----------------------------------------------------------------------------------------
# The job: gankit invert --mode pti on the toy model, then edit and interpolate its rows


def run_pti(images, out, *extra) -> int:
    from test_jobs_invert import run
    return run(images, out, "--mode", "pti", "--pti-pivot", "hybrid", "--pti-steps", "6",
               "--pti-rank", "1", "--pti-lr", "3e-3", "--pti-stop", "0", "--keep-target",
               "--perceptual-weight", "1e-3", *extra)


def decode(cell: dict) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(cell["bytes"]))).astype(int)


@pytest.mark.integration
def test_invert_pti_then_edit_interpolate_and_resume(ray_cluster, tmp_path):
    from test_jobs_invert import write_inputs
    from gankit.latent.boundaries import Boundary
    from jobs import storage
    from jobs.commands.cli import main
    good = write_inputs(tmp_path / "images")
    out = tmp_path / "out"
    assert run_pti(tmp_path / "images", out) == 0
    t = storage.read_table(str(out)).sort_by("image_id")
    assert t.column("image_id").to_pylist() == sorted(good)
    field = t.schema.field(pti.DELTA_COLUMN)
    layout = pti.layout_of(field)
    assert field.type.value_type == pa.float16() and field.type.list_size == layout.size
    assert layout.rank == 1 and json.loads(field.metadata[pti.PIVOT_KEY]) == {
        "mode": "hybrid", "space": "w", "steps": 4}
    assert (np.asarray(t.column("pti_steps").to_pylist()) == 6).all()
    assert np.mean(t.column("psnr")) > np.mean(t.column("pivot_psnr"))    # tuning helps
    assert "noise" not in t.schema.names
    errors = storage.read_table(str(out / "_errors"))          # bad inputs, as every stage
    assert set(errors.column("id").to_pylist()) == {"corrupt", "strip"}

    # edit: strength 0 renders each row through its own change = its reconstruction
    normal = np.random.default_rng(0).normal(size=128).astype(np.float32)
    Boundary("x", "w", normal / np.linalg.norm(normal), 0.0).save(str(tmp_path / "b.npz"))
    assert main(["edit", "--latents", str(out), "--boundaries", str(tmp_path / "b.npz"),
                 "--strengths", "0", "2", "--model", "toy", "--classifier", "toy",
                 "--workers", "1", "--device", "cpu", "--micro-batch", "3",
                 "--out", str(tmp_path / "e")]) == 0
    edits = storage.read_table(str(tmp_path / "e"))
    recon = dict(zip(t.column("image_id").to_pylist(), t.column("reconstruction").to_pylist()))
    zero = edits.filter(pa.compute.equal(edits["strength"], 0.0))
    assert sorted(zero.column("image_id").to_pylist()) == sorted(good)
    for i, img in zip(zero.column("image_id").to_pylist(), zero.column("image").to_pylist()):
        assert np.abs(decode(img) - decode(recon[i])).max() <= 1, i
    moved = edits.filter(pa.compute.equal(edits["strength"], 2.0))
    assert moved.column("image").to_pylist() != zero.column("image").to_pylist()

    # interpolate: the pivots and the changes lerped; the ends are the reconstructions
    from jobs.stages.interpolate import InterpolateConfig, run_interpolate
    doc = run_interpolate(InterpolateConfig(latents=str(out), ids=good[:2], steps=3,
                                            animation="none", out=str(tmp_path / "i")))
    assert doc["pti"] and (tmp_path / "i" / "interpolate.png").exists()

    # resume: a lost part is computed again, equal to the first run's
    (out / "part-00001.parquet").unlink()
    assert run_pti(tmp_path / "images", out) == 0
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["runs"][-1]["computed"] == [1]
    assert storage.read_table(str(out)).sort_by("image_id").equals(t)
    # another rank is another job: refused at the same output, naming the field
    assert run_pti(tmp_path / "images", out, "--pti-rank", "2") == 2


def test_pti_interpolation_ends_are_the_sources(result, G):
    from jobs.stages.interpolate import path_deltas, render
    from gankit.images import to_uint8
    deltas = result.deltas.take([0, 1])
    x = result.ws[:2, 0].numpy()
    path = np.stack([x[0], 0.5 * (x[0] + x[1]), x[1]])
    images = render(G, path, "w", path_deltas(deltas, 3))
    assert np.array_equal(images[0], to_uint8(result.reconstruction[:1])[0])
    assert np.abs(images[2].astype(int) - to_uint8(result.reconstruction[1:2])[0]).max() <= 1


def test_save_noise_is_refused_with_mode_pti(tmp_path, capsys):
    from jobs.commands.cli import main
    assert main(["invert", "--images", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--mode", "pti", "--save-noise"]) == 2
    assert "save_noise" in capsys.readouterr().err


def test_eval_inversion_pti(tmp_path):
    """eval-inversion --mode pti: the toy world's figures carry the change's rank, bytes and
    pivot, and the reconstruction beats its pivot."""
    from gankit.latent.boundaries import Boundary
    from jobs.commands.cli import main
    normal = np.random.default_rng(1).normal(size=128).astype(np.float32)
    Boundary("smile", "w", normal / np.linalg.norm(normal), 0.0).save(str(tmp_path / "b.npz"))
    assert main(["eval-inversion", "--boundary", str(tmp_path / "b.npz"), "--attribute",
                 "smile", "--n", "2", "--steps", "3", "--mode", "pti", "--pti-pivot",
                 "hybrid", "--pti-steps", "5", "--pti-lr", "3e-3", "--pti-rank", "1",
                 "--out", str(tmp_path / "e.json")]) == 0
    fig = json.loads((tmp_path / "e.json").read_text())
    assert fig["mode"] == "pti" and fig["pti_rank"] == 1 and fig["pti_steps"] == 5
    assert fig["delta_bytes"] > 0 and fig["recon_psnr"] > fig["pivot_psnr"]
    from gankit.report.inversion import InversionSection     # the report's inversion rows
    html = InversionSection([fig]).html({}, {})
    assert "PTI change" in html and fig["tuned"] in html


# ----------------------------------------------------------------------------------------
# The hybrid's 'fast' schedule, and the outputs written before it


def test_the_fast_schedule_is_the_hybrids_only():
    from gankit.latent.inversion import FAST_SCHEDULE, optimizer, scheduled
    fast = scheduled(InversionConfig(mode="hybrid"))
    assert fast.lr == InversionConfig.hybrid_lr and fast.betas == FAST_SCHEDULE["betas"]
    p = [torch.zeros(1, requires_grad=True)]
    assert isinstance(optimizer(fast, p), torch.optim.Adamax)
    for cfg in (InversionConfig(mode="hybrid", hybrid_schedule="nvidia"), InversionConfig()):
        assert scheduled(cfg) is cfg and type(optimizer(cfg, p)) is torch.optim.Adam


def test_the_fast_hybrid_changes_the_outputs(G, targets):
    from gankit.latent.inversion import learning_rate
    init = G.mapping(torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(2)))
    cfg = dict(mode="hybrid", space="wp", steps=10, w_avg_samples=500)
    fast = invert(G, targets, InversionConfig(**cfg), init_ws=init)
    old = invert(G, targets, InversionConfig(hybrid_schedule="nvidia", **cfg), init_ws=init)
    assert (fast.ws - old.ws).abs().max() > 1e-3
    # 'nvidia' is the optimize mode's schedule: NVIDIA's lr at step 0 is 0 (ramp-up)
    assert learning_rate(InversionConfig(**cfg), 0) == 0.0


def test_hybrid_outputs_written_before_resume_with_nvidia_or_are_refused(tmp_path):
    """The job's identity: the fast schedule adds its keys; 'nvidia' (the hybrid's schedule
    before) adds none, so a hybrid output written before resumes with it, and without it
    is refused in one sentence naming the option."""
    from jobs import storage
    from jobs.stages.invert import InvertConfig
    from jobs.storage.manifest import MANIFEST, check_identity
    cfg = dict(images="in", out="out", mode="hybrid", space="wp")
    old = InvertConfig(**cfg, hybrid_schedule="nvidia").identity("fp32")
    assert "hybrid_schedule" not in old and "hybrid_lr" not in old
    assert "hybrid_schedule" not in InvertConfig(images="in", out="o").identity("fp32")
    store = storage.open_store(str(tmp_path / "o"), None, create=True)
    store.write_json(MANIFEST, {"job": "invert", "identity": old, "parts": [{"index": 0}]})
    assert check_identity(store, "invert", old) is not None       # resumes
    with pytest.raises(ValueError, match="hybrid_schedule"):
        check_identity(store, "invert", InvertConfig(**cfg).identity("fp32"))
    fast = InvertConfig(**cfg).identity("fp32")
    store.write_json(MANIFEST, {"job": "invert", "identity": fast, "parts": [{"index": 0}]})
    with pytest.raises(ValueError, match="hybrid_schedule"):       # lbfgs: other latents
        check_identity(store, "invert", InvertConfig(**cfg, hybrid_schedule="lbfgs")
                       .identity("fp32"))
