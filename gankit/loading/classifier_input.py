"""What a classifier wants as input: its size and its normalisation.

Generators make images [N, 3, H, W] in [-1, 1] at their own resolution; many classifiers
(ImageNet-style backbones) want another size and images normalised with a per-channel mean
and std over [0, 1]. An input spec says so:

- `input_size`: an int (square) or [H, W];
- `mean`, `std`: 3 numbers each (std > 0), both or neither, applied to images in [0, 1].

Specs come from the sidecar `<file>.json` of a TorchScript classifier, from attributes of an
entry point's model, and from the caller (a job's `classifier_input`), which wins key by key.
An empty spec means the classifier takes [-1, 1] at the generator's size, unwrapped.
"""
from __future__ import annotations

import json
import math
import numbers
import os

import torch
import torch.nn.functional as F
from torch import nn

INPUT_KEYS = ("input_size", "mean", "std")


def positive_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def as_size(value, where: str) -> tuple:
    """An int or [H, W] of positive ints -> (H, W)."""
    if positive_int(value):
        return (int(value), int(value))
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(map(positive_int, value)):
        return (int(value[0]), int(value[1]))
    raise ValueError(f"input_size in {where} must be a positive int or [H, W] of positive "
                     f"ints, got {value!r}")


def as_triple(key: str, value, where: str) -> tuple:
    """3 finite numbers (one per RGB channel) -> a tuple of floats; std must be > 0."""
    if hasattr(value, "tolist"):          # a tensor or array set on an entry point's model
        value = value.tolist()
    ok = (isinstance(value, (list, tuple)) and len(value) == 3
          and all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                  for v in value))
    if not ok:
        raise ValueError(f"{key} in {where} must be 3 finite numbers (R, G, B), got {value!r}")
    if key == "std" and min(value) <= 0:
        raise ValueError(f"std in {where} must be > 0 for every channel, got {list(value)!r}")
    return tuple(float(v) for v in value)


def validate_input_spec(d: dict, where: str) -> dict:
    """Checked and normalised copy of an input spec: {'input_size': (H, W), 'mean': (3,),
    'std': (3,)}, keys absent (or None) left out. `where` names the source in errors.
    Raises ValueError on an unknown key, a bad value, or mean without std (or std without
    mean): a normalisation is a pair, so one source gives both or neither."""
    if not isinstance(d, dict):
        raise ValueError(f"{where} must be a mapping of {', '.join(INPUT_KEYS)}, got {d!r}")
    unknown = sorted(set(d) - set(INPUT_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(str, unknown))} in {where}: expected "
                         f"{', '.join(INPUT_KEYS)}")
    given = {k: v for k, v in d.items() if v is not None}
    if ("mean" in given) != ("std" in given):
        have, lack = ("mean", "std") if "mean" in given else ("std", "mean")
        raise ValueError(f"{have} in {where} comes without {lack}: give both or neither")
    spec = {}
    if "input_size" in given:
        spec["input_size"] = as_size(given["input_size"], where)
    for key in ("mean", "std"):
        if key in given:
            spec[key] = as_triple(key, given[key], where)
    return spec


def sidecar_input_spec(path: str) -> dict:
    """The input keys of a TorchScript file's sidecar `<path>.json` (other keys, such as
    attribute_names, are not ours); {} without a sidecar."""
    sidecar = path + ".json"
    if not os.path.exists(sidecar):
        return {}
    with open(sidecar) as f:
        meta = json.load(f)
    if not isinstance(meta, dict):
        raise ValueError(f"{sidecar} must hold a JSON object")
    return validate_input_spec({k: meta[k] for k in INPUT_KEYS if k in meta}, sidecar)


def model_input_spec(model: nn.Module, where: str) -> dict:
    """The `input_size`/`mean`/`std` attributes an entry point's model declares."""
    return validate_input_spec({k: getattr(model, k) for k in INPUT_KEYS if hasattr(model, k)},
                               where)


def merge_input_specs(*specs: dict) -> dict:
    """Validated specs, later ones winning key by key (the caller's override comes last)."""
    merged = {}
    for spec in specs:
        merged.update(spec)
    return merged


class ClassifierInput(nn.Module):
    """A classifier behind its declared input: resize to `input_size` on the images' device,
    then, with mean/std, [-1, 1] -> [0, 1] -> (x - mean) / std."""

    def __init__(self, classifier: nn.Module, spec: dict):
        super().__init__()
        self.classifier = classifier
        self.attribute_names = list(classifier.attribute_names)
        self.input_spec = dict(spec)
        self.input_size = spec.get("input_size")           # (H, W) or None: keep the size
        self.normalise = "mean" in spec
        if self.normalise:                                  # buffers: they follow .to(device)
            self.register_buffer("mean", torch.tensor(spec["mean"]).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(spec["std"]).view(1, 3, 1, 1))

    def resize(self, images: torch.Tensor) -> torch.Tensor:  # [N, 3, H, W] -> [N, 3, h, w]
        if self.input_size is None or tuple(images.shape[-2:]) == self.input_size:
            return images
        h, w = self.input_size
        # antialiasing low-passes before a downscale (no aliasing of fine texture); on an
        # upscale it is plain bilinear
        shrink = h < images.shape[-2] or w < images.shape[-1]
        return F.interpolate(images, size=(h, w), mode="bilinear", align_corners=False,
                             antialias=shrink)

    def adapt(self, images: torch.Tensor) -> torch.Tensor:   # [N, 3, H, W] in [-1, 1]
        x = self.resize(images)                              # [N, 3, h, w]
        if self.normalise:
            x = ((x + 1) / 2 - self.mean) / self.std         # [-1, 1] -> [0, 1] -> standardised
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # -> logits [N, A]
        return self.classifier(self.adapt(images))

    @property
    def features(self):
        """The wrapped model's `features()` behind the same input; absent when it has none,
        so `hasattr(classifier, 'features')` answers as it would unwrapped."""
        if not hasattr(self.classifier, "features"):
            raise AttributeError("the wrapped classifier has no `features()`")
        return lambda images: self.classifier.features(self.adapt(images))  # -> [N, F]


def with_input_spec(classifier: nn.Module, spec: dict) -> nn.Module:
    """The classifier itself when the spec is empty (today's input, bit-identical), else
    wrapped in ClassifierInput."""
    if not spec:
        return classifier
    return ClassifierInput(classifier, spec)
