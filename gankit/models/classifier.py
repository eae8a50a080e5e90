"""The toy-world attribute classifier: a small CNN, one logit per named attribute.

It follows the classifier contract of DESIGN.md: images [N, 3, H, W] in [-1, 1] -> logits
[N, A], with `attribute_names` giving the order. `features()` exposes the penultimate layer,
the feature space used for distances in the toy world (Frechet distance, perceptual path
length, inversion loss) where real faces would use LPIPS/Inception features.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from gankit.models.config import WidthsConfig


@dataclass
class ClassifierConfig(WidthsConfig):
    attribute_names: list = field(default_factory=list)  # one logit per name, in this order
    resolution: int = 32          # input resolution; other sizes are resized (area/bilinear)
    widths: tuple = (32, 64, 128)  # channels of the conv stages; each stage halves H and W
    feature_dim: int = 128         # width of the penultimate (feature) layer


def conv_stage(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 convs with batch norm and ReLU, then 2x2 average pooling."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
        nn.AvgPool2d(2))


class AttributeClassifier(nn.Module):
    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        assert cfg.attribute_names, "a classifier needs at least one attribute name"
        self.cfg = cfg
        self.attribute_names = list(cfg.attribute_names)
        self.resolution = cfg.resolution
        chans = (3,) + tuple(cfg.widths)
        self.stages = nn.Sequential(*[conv_stage(a, b) for a, b in zip(chans[:-1], chans[1:])])
        self.fc = nn.Linear(chans[-1], cfg.feature_dim)
        self.head = nn.Linear(cfg.feature_dim, len(self.attribute_names))

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] == self.resolution:
            return images
        mode = "area" if images.shape[-1] > self.resolution else "bilinear"
        return F.interpolate(images, size=(self.resolution, self.resolution), mode=mode)

    def features(self, images: torch.Tensor) -> torch.Tensor:  # [N, 3, H, W] -> [N, F]
        x = self.stages(self.resize(images.to(torch.float32)))      # [N, C, H/8, W/8]
        x = x.mean(dim=[2, 3])                                       # global average pool
        return F.relu(self.fc(x))

    def forward(self, images: torch.Tensor) -> torch.Tensor:        # -> logits [N, A]
        return self.head(self.features(images))


def save_classifier(model: AttributeClassifier, path: str) -> None:
    """Native format: `<path>` (safetensors weights) + `<path>.json` (config)."""
    import json

    from safetensors.torch import save_file
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, path)
    with open(path + ".json", "w") as f:
        json.dump({"format": "gankit.classifier", "version": 1, "config": model.cfg.to_dict()}, f,
                  indent=2)


def load_classifier_file(path: str, device: str = "cpu") -> AttributeClassifier:
    import json

    from safetensors.torch import load_file
    with open(path + ".json") as f:
        meta = json.load(f)
    if meta.get("format") != "gankit.classifier":
        raise ValueError(f"{path}.json is not a gankit classifier config")
    model = AttributeClassifier(ClassifierConfig.from_dict(meta["config"]))
    model.load_state_dict(load_file(path, device="cpu"))
    return model.to(device).eval()
