"""Pluggable feature networks for perceptual distances (inversion loss, metrics).

Every feature net maps images [N, 3, H, W] in [-1, 1] to features [N, ...]; the distance
between two images is the squared L2 norm of the difference of their flattened features,
one number per image (`distance`). Three kinds:

- `LPIPSVGG16`: NVIDIA's TorchScript LPIPS `vgg16.pt` (the file the official projector
  uses). It is called as `vgg16(img, resize_images=False, return_lpips=True)` on images
  scaled to [0, 255] and area-downsampled to 256x256 when larger, as the projector does;
  its features are already normalised so that the squared L2 distance is the LPIPS distance.
- `ScriptedFeatures`: any TorchScript module or torch.export program (`.pt2`) images
  [-1, 1] -> features.
- `ClassifierFeatures`: a classifier's `features()` (the toy world: the bundled classifier's
  penultimate layer stands in for LPIPS).
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

LPIPS_RESOLUTION = 256   # the projector feeds VGG at most 256x256 (area downsampling)


class FeatureNet(nn.Module):
    """Base: subclasses implement `features`; `distance` is the squared L2 per image."""

    def features(self, images: torch.Tensor) -> torch.Tensor:  # [N, 3, H, W] -> [N, ...]
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)

    @staticmethod
    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # features -> [N]
        return (a - b).flatten(1).square().sum(dim=1)


class LPIPSVGG16(FeatureNet):
    def __init__(self, module: torch.jit.ScriptModule):
        super().__init__()
        self.vgg16 = module

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.to(torch.float32) + 1) * (255 / 2)                  # [-1, 1] -> [0, 255]
        if x.shape[2] > LPIPS_RESOLUTION:
            x = F.interpolate(x, size=(LPIPS_RESOLUTION, LPIPS_RESOLUTION), mode="area")
        return self.vgg16(x, resize_images=False, return_lpips=True)


class ScriptedFeatures(FeatureNet):
    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.module(images.to(torch.float32)).flatten(1)        # [N, F]


class ClassifierFeatures(FeatureNet):
    def __init__(self, classifier: nn.Module):
        super().__init__()
        if not hasattr(classifier, "features"):
            raise ValueError("feature net: the classifier has no `features()` method")
        self.classifier = classifier

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(images.to(torch.float32)).flatten(1)


def is_lpips_file(path: str) -> bool:
    return os.path.basename(path).lower().startswith("vgg16")


def load_feature_net(spec: str, device: str = "cpu") -> FeatureNet:
    """'toy' (bundled classifier features), 'lpips:PATH' or a file named vgg16*.pt (NVIDIA's
    LPIPS), 'script:PATH' or any other TorchScript or `.pt2` PATH (a feature extractor)."""
    from gankit.loading import zoo
    kind, path = zoo.parse_spec(spec)
    if kind == "toy":
        return ClassifierFeatures(zoo.load_classifier("toy", device)).eval().requires_grad_(False)
    if not os.path.exists(path):
        raise FileNotFoundError(f"feature net not found: {path}")
    module = zoo.load_program(path, device).eval()
    lpips = kind == "lpips" or (kind in ("file", "entry") and is_lpips_file(path))
    net = LPIPSVGG16(module) if lpips else ScriptedFeatures(module)
    return net.to(device).eval().requires_grad_(False)
