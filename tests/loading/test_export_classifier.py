"""Classifiers and feature nets as torch.export programs (`.pt2`), beside TorchScript: the same
attribute-name sidecar, the same input handling, the same numbers."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gankit.loading import zoo
from gankit.loading.classifier_input import ClassifierInput
from gankit.models.perceptual import ScriptedFeatures, load_feature_net

NAMES = ["smile", "age", "glasses"]
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


class TinyNet(nn.Module):
    """conv -> pool -> linear, with a BatchNorm whose eval statistics differ from a batch's
    (so a program run in training mode would give other logits)."""

    def __init__(self, outputs: int):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, outputs)
        with torch.no_grad():
            self.norm.running_mean.uniform_(-1, 1)
            self.norm.running_var.uniform_(0.5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:          # [N, 3, H, W] -> [N, A]
        return self.head(F.relu(self.norm(self.conv(x))).mean(dim=[2, 3]))


def export(module: nn.Module, path, size: int, sidecar: dict = None) -> str:
    """torch.export with a dynamic batch dimension, saved as `.pt2` (+ `<file>.json`)."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(module.eval(), (torch.randn(2, 3, size, size),),
                                  dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(path))
    if sidecar is not None:
        with open(str(path) + ".json", "w") as f:
            json.dump(sidecar, f)
    return str(path)


@pytest.fixture()
def net():
    torch.manual_seed(0)
    return TinyNet(len(NAMES)).eval()


def images(n: int, size: int) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(n)) * 2 - 1


def test_exported_classifier_matches_the_module_and_torchscript(tmp_path, net):
    pt2 = export(net, tmp_path / "net.pt2", 16, {"attribute_names": NAMES})
    ts = tmp_path / "net.pt"
    torch.jit.script(net).save(str(ts))
    with open(str(ts) + ".json", "w") as f:
        json.dump({"attribute_names": NAMES}, f)
    C, S = zoo.load_classifier(pt2), zoo.load_classifier(str(ts))
    assert isinstance(C, zoo.ScriptedClassifier) and C.attribute_names == NAMES
    assert not C.training                                  # eval() went through the wrapper
    x = images(5, 16)                                      # a batch size it was not traced at
    with torch.no_grad():
        expected = net(x)
        torch.testing.assert_close(C(x), expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(S(x), expected, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(net.train()(x), expected, atol=1e-3)  # the test can tell


def test_exported_classifier_gets_its_declared_input(tmp_path, net):
    path = export(net, tmp_path / "net.pt2", 16,
                  {"attribute_names": NAMES, "input_size": 16, **IMAGENET})
    C = zoo.load_classifier(path)
    assert isinstance(C, ClassifierInput)
    x = images(3, 32)                                      # the generator's size, not 16
    mean = torch.tensor(IMAGENET["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET["std"]).view(1, 3, 1, 1)
    by_hand = (F.interpolate(x, size=(16, 16), mode="bilinear", antialias=True) + 1) / 2
    with torch.no_grad():
        torch.testing.assert_close(C(x), net((by_hand - mean) / std), rtol=1e-5, atol=1e-6)


def test_exported_classifier_without_names_says_where_to_put_them(tmp_path, net):
    path = export(net, tmp_path / "net.pt2", 16)
    with pytest.raises(ValueError, match=r"net\.pt2\.json"):
        zoo.load_classifier(path)
    assert zoo.load_classifier(path, attribute_names=NAMES).attribute_names == NAMES


def test_exported_feature_net(tmp_path):
    torch.manual_seed(1)
    features = TinyNet(32).eval()
    net = load_feature_net(export(features, tmp_path / "features.pt2", 16))
    assert isinstance(net, ScriptedFeatures)
    a, b = images(4, 16), images(6, 16)[:4]
    with torch.no_grad():
        torch.testing.assert_close(net.features(a), features(a), rtol=1e-5, atol=1e-6)
        d = net.distance(net(a), net(b))                               # [4]
        torch.testing.assert_close(d, (features(a) - features(b)).square().sum(1),
                                   rtol=1e-5, atol=1e-6)
        assert torch.all(net.distance(net(a), net(a)) == 0) and torch.all(d > 0)
