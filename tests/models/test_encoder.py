"""The W+ encoder (gankit.models.encoder), its training on synthetic pairs
(gankit.train.encoder) and the encode / hybrid inversion modes.

Unit tests run on a tiny random 8px generator; the integration tests use the bundled toy
generator with the shipped toy encoder (gankit/assets/toy_encoder)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import tiny_generator
from gankit.models.encoder import (EncoderConfig, WPlusEncoder, check_compatible, load_encoder,
                                   new_encoder, save_encoder)
from gankit.train.encoder import (EncoderTrainConfig, PairPool, generate_pairs,
                                  pairs_from_table, train_encoder)


@pytest.fixture(scope="module")
def G():
    return tiny_generator(0, 8).requires_grad_(False)


def tiny_cfg(**kw) -> EncoderTrainConfig:
    return EncoderTrainConfig(**{"steps": 40, "batch_size": 16, "pool_size": 64, "refresh": 8,
                                 "image_batch": 8, "lr": 2e-3, "checkpoint_every": 1000, **kw})


# ----------------------------------------------------------------------------------------
# The model and its native format


def test_shapes_and_offset_from_w_avg(G):
    torch.manual_seed(0)
    E = new_encoder(G)
    x = torch.rand(5, 3, 8, 8) * 2 - 1
    out = E(x)
    assert out.shape == (5, G.num_ws, G.w_dim)
    assert torch.equal(E.w_avg, G.mapping.w_avg)
    with torch.no_grad():                       # the prediction is an offset from w_avg
        E.w_avg += 1.5
    assert torch.allclose(E(x), out + 1.5, atol=1e-6)
    assert E(torch.rand(2, 3, 16, 16)).shape == (2, G.num_ws, G.w_dim)  # resized input


def test_save_load_round_trip_is_bit_identical(G, tmp_path):
    torch.manual_seed(1)
    E = new_encoder(G)
    save_encoder(E, tmp_path / "enc")
    assert sorted(p.name for p in (tmp_path / "enc").iterdir()) == ["config.json",
                                                                    "model.safetensors"]
    E2 = load_encoder(tmp_path / "enc")
    for (k, a), (k2, b) in zip(E.state_dict().items(), E2.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    x = torch.rand(3, 3, 8, 8) * 2 - 1
    assert torch.equal(E.eval()(x), E2(x))
    assert E2.cfg == E.cfg


def test_load_refuses_other_files(G, tmp_path):
    save_encoder(new_encoder(G), tmp_path / "enc")
    cfg = json.loads((tmp_path / "enc" / "config.json").read_text())
    (tmp_path / "enc" / "config.json").write_text(json.dumps(dict(cfg, format="gankit.generator")))
    with pytest.raises(ValueError, match="format"):
        load_encoder(tmp_path / "enc")
    with pytest.raises(FileNotFoundError, match="not an encoder directory"):
        load_encoder(tmp_path / "missing")
    with pytest.raises(ValueError, match="widths"):
        WPlusEncoder(EncoderConfig(resolution=8, num_ws=4, w_dim=16, widths=(8, 8, 8)))


def test_check_compatible_refuses_another_generator(G):
    other = tiny_generator(0, 32)               # more ws
    with pytest.raises(ValueError, match="trained for this generator"):
        check_compatible(new_encoder(G), other)


# ----------------------------------------------------------------------------------------
# Pairs and training


def test_pairs_depend_on_their_id_only_and_mix_styles(G):
    cfg = tiny_cfg(style_mixing=1.0)
    x, ws = generate_pairs(G, np.arange(8, 16), cfg)
    x2, ws2 = generate_pairs(G, np.arange(8, 16), cfg)
    assert torch.equal(ws, ws2) and torch.equal(x, x2)
    assert x.shape == (8, 3, 8, 8) and ws.shape == (8, G.num_ws, G.w_dim)
    # mixing on: every pair has two distinct w's across its layers
    assert all((w[0] - w[-1]).abs().max() > 0 for w in ws)
    _, plain = generate_pairs(G, np.arange(8, 16), tiny_cfg(style_mixing=0.0))
    assert torch.equal(plain, plain[:, :1].expand_as(plain))


def test_pool_after_s_steps_is_rebuilt_from_s(G):
    """The resume contract: the pool at step s is a function of s only."""
    cfg = tiny_cfg()
    live = PairPool(G, cfg)
    live.fill(0)
    for s in range(11):
        live.advance(s)
    rebuilt = PairPool(G, cfg)
    rebuilt.fill(11)
    assert torch.equal(live.ws, rebuilt.ws) and torch.equal(live.images, rebuilt.images)


def held_out_losses(E, G, cfg) -> tuple:
    x, ws = generate_pairs(G, np.arange(10_000, 10_064), cfg)
    with torch.no_grad():
        pred = E(x)
        pixel = (G.synthesis(pred, noise_mode="const") - x).square().mean()
    return float((pred - ws).square().mean()), float(pixel)


def test_a_few_steps_reduce_latent_and_pixel_loss(G, tmp_path):
    cfg = tiny_cfg(steps=80)
    torch.manual_seed(cfg.seed)
    before = held_out_losses(new_encoder(G).eval(), G, cfg)
    E, log = train_encoder(G, cfg, str(tmp_path / "run"), progress=False)
    after = held_out_losses(E, G, cfg)
    assert after[0] < 0.8 * before[0] and after[1] < 0.8 * before[1], (before, after)
    assert log[-1]["step"] == 80 and log[-1]["pairs_seen"] == 64 + 8 * 80


def test_resume_is_exact(G, tmp_path):
    cfg = tiny_cfg(steps=20, image_every=2)
    straight, log = train_encoder(G, cfg, str(tmp_path / "a"), progress=False)
    train_encoder(G, cfg, str(tmp_path / "b"), progress=False, stop_after=9)
    resumed, log2 = train_encoder(G, cfg, str(tmp_path / "b"), progress=False)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert log == log2


def test_pairs_from_a_samples_table(G, tmp_path):
    from gankit.data import image_column, latent_column
    from gankit.images import encode_png, from_uint8, to_uint8
    import pyarrow as pa
    x, ws = generate_pairs(G, np.arange(6), tiny_cfg())
    table = pa.table({"image": image_column([encode_png(a) for a in to_uint8(x)]),
                      "wp": latent_column(ws.reshape(6, -1).numpy())})
    images, wp = pairs_from_table(table, G.num_ws, G.w_dim)
    assert torch.equal(wp, ws)
    assert torch.equal(images, from_uint8(to_uint8(x)))        # the stored 8-bit images
    E, _ = train_encoder(G, tiny_cfg(steps=3, refresh=0), str(tmp_path / "run"),
                         fixed_pairs=(images, wp), progress=False)
    assert E(images).shape == (6, G.num_ws, G.w_dim)
    with pytest.raises(ValueError, match="wp"):
        pairs_from_table(table.drop(["wp"]), G.num_ws, G.w_dim)


# ----------------------------------------------------------------------------------------
# The shipped toy encoder on the toy generator


@pytest.fixture(scope="module")
def toy():
    from gankit.loading import zoo
    from gankit.models.perceptual import load_feature_net
    torch.set_num_threads(1)
    return (zoo.load_generator("toy").eval(), zoo.load_encoder("toy"),
            load_feature_net("toy"))


def test_toy_encoder_beats_w_avg_on_generated_and_rendered_faces(toy):
    from gankit.toy import toyfaces
    from gankit.images import from_uint8
    from gankit.train.encoder import encode_quality
    G, E, net = toy
    x, _ = generate_pairs(G, np.arange(32), EncoderTrainConfig(seed=4242))
    gen = encode_quality(E, G, x, net)
    # generated faces: the encoder was trained for exactly these (other seeds)
    assert gen["encode_psnr"] > gen["w_avg_psnr"] + 3, gen
    assert gen["encode_feature"] < 0.5 * gen["w_avg_feature"], gen
    renders = from_uint8(toyfaces.render(toyfaces.sample_factors(32, seed=5), 32))
    real = encode_quality(E, G, renders, net)
    assert real["encode_psnr"] > real["w_avg_psnr"] + 1, real
    assert real["encode_feature"] < real["w_avg_feature"], real


def test_hybrid_refines_encode_and_starts_exactly_at_it(toy):
    from gankit.toy import toyfaces
    from gankit.images import from_uint8
    from gankit.latent.inversion import InversionConfig, invert
    G, E, net = toy
    x = from_uint8(toyfaces.render(toyfaces.sample_factors(6, seed=9), 32))
    with torch.no_grad():
        init = E(x)
    cfg = dict(space="wp", w_avg_samples=2000, perceptual_weight=1e-3)
    enc = invert(G, x, InversionConfig(mode="encode", steps=50, **cfg), feature_net=net,
                 init_ws=init)
    assert torch.equal(enc.ws, init) and (enc.steps == 0).all() and enc.noises is None
    zero = invert(G, x, InversionConfig(mode="hybrid", steps=0, **cfg), feature_net=net,
                  init_ws=init)
    assert torch.equal(zero.reconstruction, enc.reconstruction)   # K = 0 is encode
    hyb = invert(G, x, InversionConfig(mode="hybrid", steps=40, **cfg), feature_net=net,
                 init_ws=init)
    assert (hyb.steps == 40).all()
    assert (hyb.loss < enc.loss).all(), (hyb.loss, enc.loss)      # every image improves
    assert hyb.psnr.mean() > enc.psnr.mean() + 0.5, (hyb.psnr, enc.psnr)
    assert hyb.perceptual.mean() < 0.5 * enc.perceptual.mean()
    with pytest.raises(ValueError, match="needs space 'wp'"):
        invert(G, x, InversionConfig(mode="encode", space="w"), init_ws=init)


# ----------------------------------------------------------------------------------------
# The command line: pairs from a `gankit sample` dataset, then invert with the new encoder


def test_train_encoder_from_samples_then_hybrid_invert(ray_cluster, model_files, tmp_path):
    from gankit.data import image_column, make_table
    from gankit.images import encode_png, to_uint8
    from jobs import storage
    from jobs.commands.cli import main
    import pyarrow.parquet as pq
    m = model_files["model"]
    assert main(["sample", "--model", m, "--count", "48", "--space", "wp", "--images",
                 "--out", str(tmp_path / "samples"), "--workers", "1", "--device", "cpu"]) == 0
    assert main(["train-encoder", "--model", m, "--samples", str(tmp_path / "samples"),
                 "--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "enc"),
                 "--steps", "6", "--batch-size", "8", "--feature-net", "none",
                 "--device", "cpu"]) == 0
    E = load_encoder(tmp_path / "enc")
    meta = json.loads((tmp_path / "enc" / "config.json").read_text())
    assert meta["source"]["samples"] == str(tmp_path / "samples")
    assert meta["source"]["figures"]["pairs_seen"] == 48          # the fixed pool
    G = tiny_generator()
    x, _ = generate_pairs(G, np.arange(4), tiny_cfg())
    (tmp_path / "images").mkdir()
    pq.write_table(make_table({"image_id": np.array([f"i{k}" for k in range(4)], dtype=object),
                               "image": image_column([encode_png(a) for a in to_uint8(x)])},
                              id_column="image_id"), str(tmp_path / "images" / "a.parquet"))
    assert main(["invert", "--model", m, "--encoder", str(tmp_path / "enc"), "--mode", "hybrid",
                 "--space", "wp", "--steps", "3", "--images", str(tmp_path / "images"),
                 "--out", str(tmp_path / "inv"), "--workers", "1", "--device", "cpu"]) == 0
    t = storage.read_table(str(tmp_path / "inv"))
    assert t.num_rows == 4 and t.schema.field("wp").type.list_size == E.num_ws * E.w_dim
