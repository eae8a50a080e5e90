"""Encoder checkpoints from the field (pSp, e4e, ReStyle) and ArcFace's IR-SE50, on small
random-weight files written in their layouts by tests/field_fixture.py."""
import pickle

import pytest
import torch
import torch.nn.functional as F

from gankit.faces.identity_arcface import (arcface_embeddings, arcface_input, arcface_similarity,
                                           load_arcface)
from gankit.loading import zoo
from gankit.loading.checkpoints import inspect_checkpoint, load_generator
from gankit.loading.field_encoders import (EncoderCheckpointError, load_field_encoder,
                                           read_checkpoint)
from gankit.loading.safe_pickle import UnsafePickleError

import field_fixture as ff
import nvidia_fixture as nf

FAMILIES = list(ff.FAMILIES)


@pytest.fixture(scope="module")
def G32():
    return ff.decoder(32)


@pytest.fixture(scope="module")
def files(tmp_path_factory, G32):
    root = tmp_path_factory.mktemp("field")
    return {fam: ff.write_encoder_checkpoint(root / f"{fam}.pt", fam, G=G32) for fam in FAMILIES}


def images(n=2, side=32, seed=0):
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def raw_offsets(family, G, x):
    """The fixture's own network (same seed) on the resized input: encoder(x), no average."""
    kind, input_nc, _ = ff.FAMILIES[family]
    net = ff.encoder_network(kind, G.num_ws, input_nc, w_dim=G.w_dim)
    with torch.no_grad():
        return net(x)


# ----------------------------------------------------------------------------------------
# Layouts, shapes, W+


@pytest.mark.parametrize("family", FAMILIES)
def test_each_layout_gives_wplus_of_its_generator(files, G32, family):
    G = load_generator(files[family])
    E = zoo.load_encoder(str(files[family]), generator=G)
    assert E.family == family and (E.num_ws, E.w_dim) == (G32.num_ws, G32.w_dim) == (8, 64)
    with torch.no_grad():
        w = E(images(3))
    assert w.shape == (3, 8, 64) and torch.isfinite(w).all()
    # the decoder in the file is the generator: same images as the one written
    with torch.no_grad():
        assert torch.allclose(G.synthesis(w, noise_mode="const"),
                              G32.synthesis(w, noise_mode="const"), atol=1e-5)
    assert torch.allclose(G.mapping.w_avg, G32.mapping.w_avg)
    info = inspect_checkpoint(files[family])
    assert info["format"] == "encoder-checkpoint" and info["num_ws"] == 8


@pytest.mark.parametrize("family", ["psp", "e4e"])
def test_wplus_is_encoder_output_plus_latent_avg(files, G32, family):
    E = load_field_encoder(files[family])
    x = images(2)
    with torch.no_grad():
        w = E(x)
    x256 = F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False, antialias=True)
    expected = raw_offsets(family, G32, x256) + G32.mapping.w_avg
    torch.testing.assert_close(w, expected, rtol=0, atol=1e-5)


def test_psp_without_start_from_latent_avg_adds_nothing(tmp_path, G32):
    path = ff.write_encoder_checkpoint(tmp_path / "p.pt", "psp", G=G32,
                                       start_from_latent_avg=False)
    assert "latent_avg" not in torch.load(path, weights_only=True)
    x = images(2, side=256)
    with torch.no_grad():
        w = load_field_encoder(path)(x)
    torch.testing.assert_close(w, raw_offsets("psp", G32, x), rtol=0, atol=0)
    # the generator's w_avg is then estimated, as for a rosinality file without latent_avg
    assert load_generator(path).mapping.w_avg.abs().sum() > 0


def test_e4e_is_one_w0_plus_a_delta_per_layer(G32):
    net = ff.encoder_network("Encoder4Editing", 8, 3, w_dim=64)
    x = images(2, side=256)
    with torch.no_grad():
        full = net(x)
        net.progressive_stage = 0              # e4e's first training stage: w0 alone
        w0 = net(x)
        net.progressive_stage = 3
        three = net(x)
    assert torch.equal(w0, w0[:, :1].expand_as(w0))
    assert torch.equal(full[:, 0], w0[:, 0]) and not torch.allclose(full[:, 1], w0[:, 1])
    assert torch.equal(three[:, :4], full[:, :4]) and torch.equal(three[:, 4:], w0[:, 4:])


@pytest.mark.parametrize("family", ["restyle_psp", "restyle_e4e"])
def test_restyle_iterates_from_the_average_image(files, G32, family):
    G = load_generator(files[family])
    E = load_field_encoder(files[family], generator=G)
    assert E.iterations == 3                   # the checkpoint's n_iters_per_batch
    x = images(2, side=256)
    kind, _, _ = ff.FAMILIES[family]
    net = ff.encoder_network(kind, 8, 6, w_dim=64)
    avg = G32.mapping.w_avg.repeat(8, 1)[None].expand(2, -1, -1)
    with torch.no_grad():
        y = F.adaptive_avg_pool2d(G32.synthesis(avg[:1], noise_mode="const"), 256)
        y = y.expand(2, -1, -1, -1)
        w = avg
        steps = []
        for _ in range(3):
            w = net(torch.cat([x, y], 1)) + w
            y = F.adaptive_avg_pool2d(G32.synthesis(w, noise_mode="const"), 256)
            steps.append(w)
        ours = [E(x, iterations=n) for n in (1, 2, 3)]
    for a, b in zip(ours, steps):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert not torch.allclose(ours[0], ours[2])
    # the option: N set at load time
    E5 = zoo.load_encoder(str(files[family]), generator=G, iterations=5)
    assert E5.iterations == 5


def test_restyle_needs_a_generator_and_one_pass_encoders_take_no_iterations(files, G32):
    with pytest.raises(EncoderCheckpointError, match="needs the generator"):
        load_field_encoder(files["restyle_e4e"])
    with pytest.raises(EncoderCheckpointError, match="iterations are ReStyle's"):
        load_field_encoder(files["e4e"], iterations=3)
    with pytest.raises(ValueError, match="iterations are ReStyle's"):
        zoo.load_encoder("toy", iterations=3)


def test_written_keys_are_the_fields(files):
    """A few facts of their layouts, checked on the file (not through gankit's networks)."""
    e4e = torch.load(files["e4e"], weights_only=True)
    sd = e4e["state_dict"]
    for key in ("encoder.input_layer.0.weight", "encoder.input_layer.2.weight",
                "encoder.body.0.res_layer.5.fc1.weight", "encoder.body.3.shortcut_layer.0.weight",
                "encoder.body.3.shortcut_layer.1.running_var", "encoder.body.23.res_layer.4.bias",
                "encoder.styles.0.convs.6.weight", "encoder.styles.7.convs.10.weight",
                "encoder.styles.0.linear.weight", "encoder.latlayer1.weight",
                "encoder.latlayer2.bias", "decoder.style.1.weight", "decoder.to_rgbs.2.bias"):
        assert key in sd, key
    assert "encoder.body.24.res_layer.0.weight" not in sd            # IR-SE50: 24 units
    assert "encoder.styles.0.convs.8.weight" not in sd               # coarse: 16 -> 1, 4 convs
    assert "encoder.body.0.shortcut_layer.0.weight" not in sd        # 64 -> 64: subsampling
    assert e4e["latent_avg"].shape == (8, 64) and e4e["opts"]["stylegan_size"] == 32
    restyle = torch.load(files["restyle_psp"], weights_only=True)["state_dict"]
    assert restyle["encoder.input_layer.0.weight"].shape[1] == 6
    assert "encoder.latlayer1.weight" not in restyle
    assert "encoder.styles.7.convs.6.weight" in restyle                  # all read 16x16


def test_training_snapshot_and_resnet_trunk(tmp_path, G32):
    snap = ff.write_encoder_checkpoint(tmp_path / "iteration_20000.pt", "e4e", G=G32,
                                       snapshot=True)
    assert {"optimizer", "global_step", "discriminator_state_dict"} <= set(
        torch.load(snap, weights_only=True))
    assert load_field_encoder(snap).num_ws == 8
    path = ff.write_encoder_checkpoint(tmp_path / "cars.pt", "restyle_psp", G=G32,
                                       encoder_type="ResNetBackboneEncoder")
    sd = torch.load(path, weights_only=True)["state_dict"]
    assert {"encoder.conv1.weight", "encoder.relu.weight", "encoder.body.3.downsample.0.weight",
            "encoder.body.15.bn2.running_mean"} <= set(sd)
    E = load_field_encoder(path, generator=load_generator(path))
    with torch.no_grad():
        assert E(images(1)).shape == (1, 8, 64)


# ----------------------------------------------------------------------------------------
# Refusals: one sentence each


def test_mismatched_generator_is_refused_in_one_sentence(files):
    G64 = ff.decoder(64)
    for family in ("e4e", "restyle_psp"):
        with pytest.raises(EncoderCheckpointError) as e:
            zoo.load_encoder(str(files[family]), generator=G64)
        msg = str(e.value)
        assert "gives W+ [8, 64] for a 32 px generator" in msg and "[10, 64] at 64 px" in msg
        assert msg.count(". ") == 0 and "\n" not in msg


def test_hostile_checkpoints_run_nothing(tmp_path):
    marker = tmp_path / "pwned"
    zipped = tmp_path / "evil.pt"
    torch.save({"state_dict": {"encoder.x": nf.hostile_payload("os.system", marker)},
                "opts": {}}, zipped)
    legacy = tmp_path / "evil_legacy.pt"
    legacy.write_bytes(pickle.dumps({"state_dict": {}, "opts": nf.hostile_payload("eval", marker)}))
    for path in (zipped, legacy):
        with pytest.raises(UnsafePickleError) as e:
            load_field_encoder(path)
        assert "\n" not in str(e.value)
        with pytest.raises(UnsafePickleError):
            load_arcface(path)
    assert not marker.exists()


def test_bad_files_name_what_is_wrong(tmp_path, G32):
    ck = ff.checkpoint_dict("psp", G=G32)
    ck["opts"]["encoder_type"] = "BackboneEncoderUsingLastLayerIntoW"
    torch.save(ck, tmp_path / "w.pt")
    with pytest.raises(EncoderCheckpointError, match="encoder_type 'BackboneEncoderUsingLast"):
        read_checkpoint(tmp_path / "w.pt")
    ck = ff.checkpoint_dict("e4e", G=G32)
    ck["state_dict"]["encoder.latlayer2.weight"] = torch.zeros(3)
    torch.save(ck, tmp_path / "shape.pt")
    with pytest.raises(EncoderCheckpointError, match=r"'encoder.latlayer2.weight' has shape \[3\]"):
        load_field_encoder(tmp_path / "shape.pt")
    ck = ff.checkpoint_dict("e4e", G=G32)
    del ck["state_dict"]["encoder.body.5.res_layer.0.running_mean"]
    torch.save(ck, tmp_path / "missing.pt")
    with pytest.raises(EncoderCheckpointError, match="missing key 'encoder.body.5.res_layer.0"):
        load_field_encoder(tmp_path / "missing.pt")
    ck = ff.checkpoint_dict("restyle_e4e", G=G32)
    del ck["latent_avg"]
    torch.save(ck, tmp_path / "noavg.pt")
    with pytest.raises(EncoderCheckpointError, match="has none"):
        read_checkpoint(tmp_path / "noavg.pt")
    ck = ff.checkpoint_dict("e4e", G=G32, with_decoder=False)
    ck["opts"]["stylegan_size"] = 1024
    torch.save(ck, tmp_path / "nodecoder.pt")
    with pytest.raises(EncoderCheckpointError, match="gives 8 styles but its generator is 1024 px"):
        read_checkpoint(tmp_path / "nodecoder.pt")
    with pytest.raises(Exception, match="without a decoder"):
        load_generator(tmp_path / "nodecoder.pt")


# ----------------------------------------------------------------------------------------
# ArcFace


@pytest.mark.parametrize("legacy", [False, True])
def test_arcface_embeddings_are_the_backbones(tmp_path, legacy):
    path = ff.write_arcface(tmp_path / "model_ir_se50.pth", legacy=legacy)
    net = load_arcface(path)
    ref = ff.arcface_network()
    x = images(3, side=256)
    with torch.no_grad():
        expected = ref(F.adaptive_avg_pool2d(x[:, :, 35:223, 32:220], 112))
    emb = arcface_embeddings(net, x)
    assert emb.shape == (3, 512)
    torch.testing.assert_close(emb, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    # a 1024 px image is pooled to 256 first (their face_pool), then cropped
    big = F.interpolate(x, scale_factor=4, mode="nearest")
    torch.testing.assert_close(arcface_input(big), arcface_input(x), rtol=0, atol=1e-6)
    sim = arcface_similarity(net, x, x.flip(0))
    assert sim.shape == (3,) and torch.allclose(sim[1], torch.tensor(1.0))


def test_arcface_refuses_other_files(tmp_path, files):
    with pytest.raises(EncoderCheckpointError, match="not an ArcFace state dict"):
        load_arcface(files["e4e"])
    sd = ff.arcface_network().state_dict()
    sd["output_layer.3.weight"] = sd["output_layer.3.weight"][:, :10]
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(EncoderCheckpointError, match="'output_layer.3.weight' has shape"):
        load_arcface(tmp_path / "bad.pth")


# ----------------------------------------------------------------------------------------
# gankit invert with a field encoder, on the session's Ray cluster (slow)


def invert(images, out, *extra) -> int:
    from jobs.commands.cli import main
    return main(["invert", "--images", str(images), "--out", str(out), "--batch-size", "2",
                 "--workers", "2", "--device", "cpu", "--space", "wp", *extra])


@pytest.fixture(scope="module")
def photo_rows(tmp_path_factory):
    from test_jobs_invert import write_inputs
    root = tmp_path_factory.mktemp("field-invert")
    return root / "images", write_inputs(root / "images")


def test_invert_encode_with_an_e4e_checkpoint(ray_cluster, photo_rows, files, tmp_path):
    """`--model e4e.pt` alone: the file's decoder is G, its encoder gives W+."""
    import numpy as np
    from test_jobs_invert import prepared_targets

    from jobs import storage
    images, good = photo_rows
    path = str(files["e4e"])
    assert invert(images, tmp_path / "out", "--mode", "encode", "--model", path,
                  "--keep-target") == 0
    manifest = storage.read_manifest(storage.Store(str(tmp_path / "out")))
    assert manifest["identity"]["encoder"] == path
    t = storage.read_table(str(tmp_path / "out")).sort_by("image_id")
    assert sorted(t.column("image_id").to_pylist()) == sorted(good)
    assert t.schema.field("wp").type.list_size == 8 * 64
    E = load_field_encoder(path)
    with torch.no_grad():
        expected = E(prepared_targets(t)).reshape(t.num_rows, -1).numpy()
    wp = np.asarray(t.column("wp").to_pylist(), dtype=np.float32)
    assert np.allclose(wp, expected, atol=1e-4, rtol=0)      # batches of 2 vs one batch


def test_invert_hybrid_with_restyle_and_a_mismatched_pair(ray_cluster, photo_rows, files,
                                                          tmp_path, capsys):
    import json

    import numpy as np

    from jobs import storage
    images, good = photo_rows
    path = str(files["restyle_e4e"])
    assert invert(images, tmp_path / "h", "--mode", "hybrid", "--model", path, "--encoder",
                  path, "--encoder-iterations", "2", "--steps", "2") == 0
    t = storage.read_table(str(tmp_path / "h"))
    assert t.num_rows == len(good) and (np.asarray(t.column("steps").to_pylist()) == 2).all()
    manifest = json.loads((tmp_path / "h" / "_manifest.json").read_text())
    assert manifest["config"]["encoder_iterations"] == 2
    # the toy generator takes W+ [8, 128] at 32 px: the 64-wide e4e encoder is refused
    assert invert(images, tmp_path / "x", "--mode", "encode", "--model", "toy", "--encoder",
                  str(files["e4e"])) != 0
    assert "gives W+ [8, 64] for a 32 px generator, but the generator takes [8, 128]" in \
        capsys.readouterr().err
