"""Classifiers that declare their input (gankit.loading.classifier_input, zoo.load_classifier):
resize + ImageNet normalisation from a sidecar, an entry point's attributes, or the caller."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gankit.loading import zoo
from gankit.loading.classifier_input import ClassifierInput, validate_input_spec
from gankit.models.classifier import AttributeClassifier
from helpers import tiny_generator

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
NAMES = ["smile", "age"]


class ExpectsSize(nn.Module):
    """A backbone that only takes size x size: logits from per-channel mean and std, so they
    move with both the resize and the normalisation."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size
        self.head = nn.Linear(6, len(NAMES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:              # [N, 3, S, S] -> [N, A]
        if x.shape[2] != self.size or x.shape[3] != self.size:
            raise ValueError("wrong input size")
        return self.head(torch.cat([x.mean(dim=[2, 3]), x.std(dim=[2, 3])], dim=1))


class Probe(nn.Module):
    """Reports what it was given: [mean, H, W] per image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:              # [N, 3, H, W] -> [N, 3]
        n = x.shape[0]
        h = torch.full([n], float(x.shape[2]))
        w = torch.full([n], float(x.shape[3]))
        return torch.stack([x.mean(dim=[1, 2, 3]), h, w], dim=1)


PROBE_NAMES = ["mean", "height", "width"]


def save_scripted(module: nn.Module, path, sidecar: dict) -> str:
    torch.jit.script(module).save(str(path))
    with open(str(path) + ".json", "w") as f:
        json.dump(sidecar, f)
    return str(path)


@pytest.fixture(scope="module")
def images():
    """4 images [4, 3, 32, 32] in [-1, 1] from a tiny random generator."""
    G = tiny_generator(seed=1, resolution=32)
    torch.manual_seed(0)
    with torch.no_grad():
        return G(torch.randn(4, G.z_dim)).clamp(-1, 1)


def by_hand(images, size: int, antialias: bool) -> torch.Tensor:
    x = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                      antialias=antialias)
    mean = torch.tensor(IMAGENET["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET["std"]).view(1, 3, 1, 1)
    return ((x + 1) / 2 - mean) / std


@pytest.mark.parametrize("size, antialias", [(224, False), (16, True)])  # upscale, downscale
def test_sidecar_size_and_imagenet_normalisation(tmp_path, images, size, antialias):
    torch.manual_seed(2)
    path = save_scripted(ExpectsSize(size), tmp_path / "net.pt",
                         {"attribute_names": NAMES, "input_size": size, **IMAGENET})
    C = zoo.load_classifier(path)
    assert isinstance(C, ClassifierInput) and C.attribute_names == NAMES
    with torch.no_grad():
        logits = C(images)                                          # [4, 2]
        expected = torch.jit.load(path)(by_hand(images, size, antialias))
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-6)
    with pytest.raises(Exception, match="wrong input size"):        # the module does check
        torch.jit.load(path)(images)
    if antialias:   # the antialiased downscale is not plain bilinear
        plain = torch.jit.load(path)(by_hand(images, size, antialias=False))
        assert not torch.allclose(logits, plain, atol=1e-4)


def test_without_input_keys_the_classifier_gets_raw_images(tmp_path, images):
    path = save_scripted(Probe(), tmp_path / "probe.pt", {"attribute_names": PROBE_NAMES})
    C = zoo.load_classifier(path)
    assert isinstance(C, zoo.ScriptedClassifier)                     # unwrapped, as before
    out = C(images)                                                  # [4, 3]
    assert torch.equal(out[:, 0], images.mean(dim=[1, 2, 3]))
    assert out[:, 1:].tolist() == [[32.0, 32.0]] * 4


def test_override_wins_over_the_sidecar_key_by_key(tmp_path, images):
    path = save_scripted(Probe(), tmp_path / "probe.pt",
                         {"attribute_names": PROBE_NAMES, "input_size": 8, **IMAGENET})
    C = zoo.load_classifier(path, input_spec={"input_size": [12, 20],
                                              "mean": [0.5] * 3, "std": [0.5] * 3})
    out = C(images)
    assert out[:, 1:].tolist() == [[12.0, 20.0]] * 4                 # size from the override
    # mean = std = 0.5 undoes the [0, 1] mapping: the probe sees [-1, 1] again, resized
    resized = F.interpolate(images, size=(12, 20), mode="bilinear", antialias=True)
    torch.testing.assert_close(out[:, 0], resized.mean(dim=[1, 2, 3]))
    size_only = zoo.load_classifier(path, input_spec={"input_size": 16})
    assert size_only.input_spec["mean"] == tuple(IMAGENET["mean"])  # kept from the sidecar


@pytest.mark.parametrize("bad, key", [
    ({"std": [0.2, 0.0, 0.2], "mean": [0, 0, 0]}, "std"),
    ({"std": [0.2, -1, 0.2], "mean": [0, 0, 0]}, "std"),
    ({"mean": [0.5, 0.5], "std": [1, 1, 1]}, "mean"),
    ({"mean": [0.5] * 3}, "mean"),                                   # without std
    ({"input_size": 0}, "input_size"),
    ({"input_size": [224, 224, 3]}, "input_size"),
    ({"input_sise": 224}, "input_sise"),                             # unknown key
])
def test_bad_override_names_the_key(tmp_path, bad, key):
    path = save_scripted(Probe(), tmp_path / "probe.pt", {"attribute_names": PROBE_NAMES})
    with pytest.raises(ValueError, match=key) as err:
        zoo.load_classifier(path, input_spec=bad)
    assert "classifier_input" in str(err.value)


def test_bad_sidecar_names_the_sidecar(tmp_path):
    path = save_scripted(Probe(), tmp_path / "probe.pt",
                         {"attribute_names": PROBE_NAMES, "mean": [0, 0, 0], "std": [1, 0, 1]})
    with pytest.raises(ValueError, match=r"std in .*probe\.pt\.json"):
        zoo.load_classifier(path)


def test_validate_input_spec_normalises():
    assert validate_input_spec({}, "x") == {}
    assert validate_input_spec({"input_size": 224, "mean": None, "std": None}, "x") == {
        "input_size": (224, 224)}
    spec = validate_input_spec({"input_size": [256, 192], **IMAGENET}, "x")
    assert spec == {"input_size": (256, 192), "mean": (0.485, 0.456, 0.406),
                    "std": (0.229, 0.224, 0.225)}


def test_toy_classifier_is_returned_unwrapped():
    C = zoo.load_classifier("toy")
    assert type(C) is AttributeClassifier and hasattr(C, "features")


class DeclaresInput(nn.Module):
    """An entry point's model with ImageNet-style input attributes and a feature layer."""
    input_size = 16
    mean = torch.tensor(IMAGENET["mean"])
    std = IMAGENET["std"]

    def __init__(self):
        super().__init__()
        self.attribute_names = NAMES
        self.net = ExpectsSize(16)

    def features(self, x: torch.Tensor) -> torch.Tensor:            # [N, 3, 16, 16] -> [N, 3]
        assert x.shape[-1] == 16
        return x.mean(dim=[2, 3])

    def forward(self, x: torch.Tensor) -> torch.Tensor:             # -> [N, A]
        return self.net(x)


def factory() -> nn.Module:
    torch.manual_seed(3)
    return DeclaresInput()


def test_entry_point_declares_its_input(images):
    C = zoo.load_classifier(f"{__name__}:factory")
    assert isinstance(C, ClassifierInput) and C.attribute_names == NAMES
    with torch.no_grad():
        expected = factory()(by_hand(images, 16, antialias=True))
        torch.testing.assert_close(C(images), expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(C.features(images),
                                   by_hand(images, 16, antialias=True).mean(dim=[2, 3]))


def test_features_absent_stays_absent(tmp_path):
    path = save_scripted(Probe(), tmp_path / "probe.pt",
                         {"attribute_names": PROBE_NAMES, "input_size": 8})
    assert not hasattr(zoo.load_classifier(path), "features")
