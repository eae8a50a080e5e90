"""Training loops on tiny configs: they learn, they resume exactly, metrics are right."""
import numpy as np
import pytest
import torch

from gankit.latent.metrics import frechet_distance
from gankit.models.classifier import (AttributeClassifier, ClassifierConfig, load_classifier_file,
                                      save_classifier)
from gankit.models.stylegan2 import GeneratorConfig, MappingConfig, SynthesisConfig
from gankit.train.classifier import ClassifierTrainConfig, predict_logits, train_classifier
from gankit.train.gan import (GanTrainConfig, GanTrainer, load_training_state, moment_distance,
                              moments, save_training_state)


def tiny_gan_config(**kw) -> GanTrainConfig:
    g = GeneratorConfig(z_dim=8, w_dim=8, img_resolution=8,
                        mapping=MappingConfig(num_layers=2),
                        synthesis=SynthesisConfig(channel_base=64, channel_max=8))
    return GanTrainConfig(generator=g, d_channel_base=64, d_channel_max=8, batch_size=4,
                          r1_interval=2, **kw)


def test_gan_steps_update_networks_and_ema():
    trainer = GanTrainer(tiny_gan_config(pl_weight=2.0, pl_interval=2))
    g0 = [p.detach().clone() for p in trainer.G.parameters()]
    ema0 = [p.detach().clone() for p in trainer.G_ema.parameters()]
    reals = torch.rand(4, 3, 8, 8) * 2 - 1
    for _ in range(3):
        stats = trainer.step(reals)
    assert np.isfinite(float(stats["loss_G"])) and np.isfinite(float(stats["loss_D"]))
    assert any(not torch.equal(a, b) for a, b in zip(g0, trainer.G.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(ema0, trainer.G_ema.parameters()))
    assert trainer.nimg == 12 and trainer.pl_mean > 0
    assert trainer.G.mapping.w_avg.abs().sum() > 0  # tracked during training


def test_gan_resume_is_exact(tmp_path):
    reals = torch.rand(4, 3, 8, 8) * 2 - 1
    a = GanTrainer(tiny_gan_config())
    for _ in range(2):
        a.step(reals)
    path = str(tmp_path / "training.pt")
    save_training_state(a, path)
    a.step(reals)
    # a fresh process: different init, everything (RNG included) must come from the file
    b = GanTrainer(tiny_gan_config(seed=99))
    load_training_state(b, path)
    b.step(reals)
    for pa, pb in zip(a.G_ema.state_dict().values(), b.G_ema.state_dict().values()):
        assert torch.equal(pa, pb)
    assert a.nimg == b.nimg == 12


def tiny_classifier(names=("bright", "red")) -> AttributeClassifier:
    torch.manual_seed(0)
    return AttributeClassifier(ClassifierConfig(attribute_names=list(names), resolution=8,
                                                widths=(4,), feature_dim=8)).eval()


def test_linear_attr_term_fits_head_and_resumes_exactly(tmp_path):
    cfg = tiny_gan_config(linear_attr_weight=1.0, attr_interval=1)
    with pytest.raises(ValueError, match="need an attribute classifier"):
        GanTrainer(cfg)
    reals = torch.rand(4, 3, 8, 8) * 2 - 1
    a = GanTrainer(cfg, tiny_classifier())
    head0 = a.attr_head.weight.detach().clone()                        # [A, w_dim]
    a.step(reals)
    assert a.attr_head.weight.shape == (2, 8) and not torch.equal(head0, a.attr_head.weight)
    path = str(tmp_path / "training.pt")
    save_training_state(a, path)
    a.step(reals)
    b = GanTrainer(tiny_gan_config(linear_attr_weight=1.0, attr_interval=1, seed=5),
                   tiny_classifier())
    load_training_state(b, path)
    b.step(reals)
    assert torch.equal(a.attr_head.weight, b.attr_head.weight)
    for pa, pb in zip(a.G_ema.state_dict().values(), b.G_ema.state_dict().values()):
        assert torch.equal(pa, pb)


def test_moment_distance_is_squared_gap_of_mean_and_covariance():
    prob = torch.rand(50, 3)
    mean, cov = moments(prob)
    assert torch.allclose(cov, torch.from_numpy(np.cov(prob.numpy().T)).float(), atol=1e-6)
    assert float(moment_distance(prob, mean, cov)) == pytest.approx(0, abs=1e-10)
    # a shift moves only the mean: 3 attributes * 0.1^2
    assert float(moment_distance(prob + 0.1, mean, cov)) == pytest.approx(0.03, rel=1e-4)
    # a scale by 2 moves the mean by mean and the covariance by 3 cov
    expect = float(mean.square().sum() + (3 * cov).square().sum())
    assert float(moment_distance(prob * 2, mean, cov)) == pytest.approx(expect, rel=1e-4)


class ChannelMeans(torch.nn.Module):
    """A classifier that can be checked by eye: logit = 4 * mean of the red / green channel."""
    attribute_names = ["red", "green"]

    def forward(self, x):                                       # [n, 3, H, W] -> [n, 2]
        return 4 * x[:, :2].mean(dim=(2, 3))


def test_attr_moment_term_pulls_generated_moments_towards_the_reals():
    C = ChannelMeans()
    reals = torch.zeros(64, 3, 8, 8)
    reals[:, 0] = 0.5                                           # all reddish: p(red) = 0.88
    reals[:32, 1] = -0.5                                        # half green: p(green) 0.12 / 0.88
    reals[32:, 1] = 0.5
    cfg = tiny_gan_config(attr_moment_weight=10.0, attr_interval=1)
    with pytest.raises(ValueError, match="needs reals"):
        GanTrainer(cfg, C)
    t = GanTrainer(cfg, C, attr_reals=reals)
    mean, cov = t.attr_target
    assert torch.allclose(mean, torch.tensor([0.881, 0.5]), atol=1e-3) and float(cov[1, 1]) > 0.14

    def gap() -> float:
        with torch.no_grad():
            z = torch.randn(256, 8, generator=torch.Generator().manual_seed(1))
            return float(moment_distance(torch.sigmoid(C(t.G(z, noise_mode="const"))), mean, cov))
    before = gap()
    for _ in range(40):
        t.g_attr()
    assert before > 0.05 and gap() < 0.5 * before


def test_both_attr_terms_resume_exactly(tmp_path):
    reals = torch.rand(4, 3, 8, 8) * 2 - 1
    cfg = dict(linear_attr_weight=1.0, attr_moment_weight=10.0, attr_interval=1)
    a = GanTrainer(tiny_gan_config(**cfg), tiny_classifier(), attr_reals=reals)
    a.step(reals)
    path = str(tmp_path / "training.pt")
    save_training_state(a, path)
    a.step(reals)
    b = GanTrainer(tiny_gan_config(seed=3, **cfg), tiny_classifier(), attr_reals=reals)
    load_training_state(b, path)
    b.step(reals)
    for pa, pb in zip(a.G_ema.state_dict().values(), b.G_ema.state_dict().values()):
        assert torch.equal(pa, pb)


def test_state_without_head_resumes_with_linear_attr_term(tmp_path):
    plain = GanTrainer(tiny_gan_config())
    path = str(tmp_path / "training.pt")
    save_training_state(plain, path)
    t = GanTrainer(tiny_gan_config(linear_attr_weight=1.0), tiny_classifier())
    load_training_state(t, path)
    assert torch.equal(t.G.mapping.w_avg, plain.G.mapping.w_avg) and t.attr_head is not None


def test_classifier_learns_a_visible_attribute(tmp_path):
    rng = np.random.default_rng(0)
    bright = rng.random(400) < 0.5
    images = np.where(bright[:, None, None, None], 200, 60).astype(np.uint8)
    images = np.broadcast_to(images, (400, 16, 16, 3)).copy()
    images += rng.integers(0, 20, images.shape, dtype=np.uint8)
    cfg = ClassifierTrainConfig(steps=60, batch_size=32, seed=0)
    model = train_classifier(images, bright[:, None], ["bright"], cfg,
                             ClassifierConfig(["bright"], resolution=16, widths=(8, 8), feature_dim=8),
                             progress=False)
    acc = ((predict_logits(model, images)[:, 0] > 0) == bright).mean()
    assert acc > 0.95
    path = str(tmp_path / "clf.safetensors")
    save_classifier(model, path)
    again = load_classifier_file(path)
    assert again.attribute_names == ["bright"]
    assert np.allclose(predict_logits(again, images[:8]), predict_logits(model, images[:8]), atol=1e-5)


def test_classifier_features_and_resize():
    model = AttributeClassifier(ClassifierConfig(["a", "b", "c"], resolution=16, widths=(4, 8),
                                                 feature_dim=6)).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert model(x).shape == (2, 3) and model.features(x).shape == (2, 6)


def test_frechet_distance():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20000, 4))
    b = rng.normal(size=(20000, 4))
    assert frechet_distance(a, b) == pytest.approx(0, abs=0.01)
    shift = np.array([1.0, 2.0, 0, 0])
    assert frechet_distance(a, b + shift) == pytest.approx(5.0, abs=0.05)
    # scaling one axis by 2: Tr(S_a + S_b - 2 sqrt(S_a S_b)) = 1 + 4 - 4 = 1 on that axis
    assert frechet_distance(a, b * np.array([2.0, 1, 1, 1])) == pytest.approx(1.0, abs=0.05)


def test_train_gan_command_with_attr_terms_resumes_and_exports(tmp_path):
    """`gankit train-gan --linear-attr-weight --attr-moment-weight`: the toy generator and
    classifier, two steps, a checkpoint that carries the head, and an exported G_ema that loads."""
    from gankit.loading.checkpoints import load_generator
    from jobs.commands.cli import main
    run, out = str(tmp_path / "run"), str(tmp_path / "G")
    argv = ["train-gan", "--run-dir", run, "--images", "32", "--kimg", "0.016", "--batch-size", "8",
            "--device", "cpu", "--linear-attr-weight", "1", "--attr-moment-weight", "10",
            "--export", out]
    assert main(argv) == 0
    state = torch.load(f"{run}/training.pt", map_location="cpu", weights_only=True)["state"]
    assert state["nimg"] == 16 and state["attr_head"]["weight"].shape == (7, 128)
    assert main(argv[:6] + ["0.024"] + argv[7:]) == 0                   # resumes to 24 images
    state = torch.load(f"{run}/training.pt", map_location="cpu", weights_only=True)["state"]
    assert state["nimg"] == 24
    assert load_generator(out).img_resolution == 32
