"""Resolve model specs to loaded models: the bundled toy world, files, or entry points.

Generators: 'toy' (bundled), any checkpoint path gankit.loading.checkpoints reads, an entry
point, or 'script:PATH', a z -> image model as a TorchScript file or a `.pt2` program (the prefix
says "code, not a checkpoint": a rosinality checkpoint is a `.pt` too). An entry point whose model
has no `mapping` / `synthesis`, and every 'script:' model, is a plain z -> image generator
(gankit.models.plain.ZImageGenerator: `z_dim`, optional `c_dim`, forward(z, c)); a sidecar
`PATH.json` may give `z_dim` and `c_dim` when the file does not carry them.
Classifiers: 'toy' (bundled), a TorchScript file (`.pt`/`.pth`/`.ts`), a `torch.export`
program (`.pt2`, what torch recommends since 2.13 deprecates TorchScript), a native gankit
classifier (`.safetensors` + `.json`), or a Python entry point 'package.module:factory'.
Encoders: 'toy' (the bundled W+ encoder of the toy generator), a native encoder directory,
or a pSp / e4e / ReStyle checkpoint file (gankit.loading.field_encoders).
Every classifier maps images [N, 3, H, W] in [-1, 1] to logits [N, A] and has
`attribute_names`. One that declares an input size or a normalisation (sidecar `<file>.json`,
attributes of an entry point's model, or the caller's `input_spec`) comes wrapped in
gankit.loading.classifier_input.ClassifierInput, which resizes and normalises on the device.
"""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from gankit.loading.classifier_input import (merge_input_specs, model_input_spec,
                                             sidecar_input_spec, validate_input_spec,
                                             with_input_spec)

ASSETS = Path(__file__).parent.parent / "assets"
TOY_GENERATOR = ASSETS / "toy_generator"  # native format: config.json + model.safetensors
TOY_CLASSIFIER = ASSETS / "toy_classifier.safetensors"
TOY_ENCODER = ASSETS / "toy_encoder"      # native format: config.json + model.safetensors


def entry_point(spec: str):
    """The zero-argument callable named by 'package.module:factory' (code, by design: the
    user names what to import, as with a TorchScript file)."""
    module_name, factory = spec.split(":", 1)
    return getattr(importlib.import_module(module_name), factory)


FEATURE_KINDS = ("lpips", "script")     # feature nets: 'lpips:PATH', 'script:PATH'
TOY_FILES = {"generator": TOY_GENERATOR, "classifier": TOY_CLASSIFIER, "encoder": TOY_ENCODER}


def parse_spec(spec: str) -> tuple:
    """The model-spec grammar, in one place: -> (kind, value) with kind 'toy', 'entry'
    ('package.module:factory'), 'lpips' / 'script' (a feature net's 'KIND:PATH') or 'file'."""
    if spec == "toy":
        return "toy", spec
    kind, _, rest = spec.partition(":")
    if kind in FEATURE_KINDS and rest:
        return kind, rest
    if is_entry_point(spec):
        return "entry", spec
    return "file", spec


def is_entry_point(spec: str) -> bool:
    return ":" in spec and not os.path.exists(spec) and "://" not in spec


def missing(spec: str, kind: str) -> Optional[str]:
    """Why the model `spec` names cannot be there (a missing file), else None; entry points
    are checked when imported."""
    form, value = parse_spec(spec)
    if form == "toy":
        path = TOY_FILES.get(kind, TOY_CLASSIFIER)
        return None if path.exists() else f"the bundled toy {kind} is missing at {path}"
    if form != "entry" and not os.path.exists(value):
        return f"no {kind} at {value}"
    return None


def load_generator(spec: str, device: str = "cpu") -> nn.Module:
    """'toy', a checkpoint path, 'script:PATH' (a z -> image program), or an entry point
    'package.module:factory' returning a module with StyleGAN's interface (z_dim, w_dim,
    num_ws, img_resolution, mapping, synthesis; gankit.models.null:null_1024) or the plain
    z -> image contract. Plain models come wrapped (ZImageGenerator, `has_w` False)."""
    from gankit.loading.checkpoints import load_generator as load_checkpoint
    form, value = parse_spec(spec)
    if form == "script":
        return load_plain_program(value, device)
    if form == "entry":
        model = entry_point(spec)().to(device)
        if hasattr(model, "mapping") and hasattr(model, "synthesis"):
            return model
        from gankit.models.plain import ZImageGenerator
        return ZImageGenerator(model.eval(), spec)
    path = str(TOY_GENERATOR) if spec == "toy" else spec
    if spec == "toy" and not TOY_GENERATOR.exists():
        raise FileNotFoundError(f"the bundled toy generator is missing at {TOY_GENERATOR}")
    return load_checkpoint(path, device=device)


def load_plain_program(path: str, device: str) -> nn.Module:
    """A TorchScript / .pt2 z -> image generator, with `z_dim` / `c_dim` from the module or
    from its sidecar `<path>.json` (which wins: an exported program keeps no attributes)."""
    from gankit.models.plain import ZImageGenerator
    if not os.path.exists(path):
        raise FileNotFoundError(f"generator not found: {path}")
    sidecar, dims = path + ".json", {}
    if os.path.exists(sidecar):
        with open(sidecar) as f:
            dims = {k: v for k, v in json.load(f).items() if k in ("z_dim", "c_dim")}
    return ZImageGenerator(load_program(path, device).eval(), f"script:{path}", **dims)


EXPORTED_SUFFIX = ".pt2"    # torch.export.save's files; any other model file is TorchScript


class ExportedModule(nn.Module):
    """A torch.export program as a module. Its graph was captured once, in the mode it was
    exported in, so train()/eval() only set the flag here (the program's own module refuses
    them)."""

    def __init__(self, program: nn.Module):
        super().__init__()
        self.program = program

    def train(self, mode: bool = True) -> "ExportedModule":
        self.training = mode
        return self

    def forward(self, *args, **kwargs):
        return self.program(*args, **kwargs)


def load_program(path: str, device: str = "cpu") -> nn.Module:
    """A TorchScript file or a torch.export program (`.pt2`) as a module on `device`. Both
    are code: loading a `.pt2` unpickles parts of it as torch.export.load does, so it runs
    what the file asks for (docs/security.md). Export with a dynamic batch dimension."""
    if not path.endswith(EXPORTED_SUFFIX):
        return torch.jit.load(path, map_location=device)
    program = torch.export.load(path)
    if torch.device(device).type != "cpu":       # saved on whatever device it was exported on
        from torch.export.passes import move_to_device_pass
        program = move_to_device_pass(program, device)
    return ExportedModule(program.module())


class ScriptedClassifier(nn.Module):
    """Adapter giving a TorchScript module or a torch.export program the classifier contract."""

    def __init__(self, module: nn.Module, attribute_names: list):
        super().__init__()
        self.module = module
        self.attribute_names = list(attribute_names)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.module(images)
        if logits.ndim != 2 or logits.shape[1] != len(self.attribute_names):
            raise ValueError(f"classifier returned shape {list(logits.shape)}, expected "
                             f"[N, {len(self.attribute_names)}] for {self.attribute_names}")
        return logits


def scripted_attribute_names(module, path: str, names=None) -> list:
    """Names given by the caller, else the module's `attribute_names`, else `<path>.json`."""
    if names:
        return list(names)
    if hasattr(module, "attribute_names"):
        return list(module.attribute_names)
    sidecar = path + ".json"
    if os.path.exists(sidecar):
        with open(sidecar) as f:
            return list(json.load(f)["attribute_names"])
    raise ValueError(f"{path}: no attribute names: give them, set `attribute_names` on the "
                     f"scripted module, or write {sidecar} with an 'attribute_names' list")


def load_classifier(spec: str, device: str = "cpu", attribute_names=None,
                    input_spec: dict = None) -> nn.Module:
    """A classifier by spec; `input_spec` ({input_size, mean, std}, any of them) wins key by key
    over what the model declares. Raises ValueError on a bad or unknown input key."""
    override = validate_input_spec(input_spec or {}, "classifier_input")  # before any loading
    model, declared = load_classifier_model(spec, device, attribute_names)
    return with_input_spec(model, merge_input_specs(declared, override)).to(device).eval()


def load_classifier_model(spec: str, device: str, attribute_names=None) -> tuple:
    """(the classifier as it is, the input spec it declares)."""
    from gankit.models.classifier import load_classifier_file
    if spec == "toy":
        if not TOY_CLASSIFIER.exists():
            raise FileNotFoundError(f"the bundled toy classifier is missing at {TOY_CLASSIFIER}")
        return load_classifier_file(str(TOY_CLASSIFIER), device), {}
    if spec.endswith(".safetensors"):     # native: the model resizes to its own resolution
        return load_classifier_file(spec, device), {}
    if is_entry_point(spec):
        model = entry_point(spec)()
        if not hasattr(model, "attribute_names"):
            raise ValueError(f"{spec}: the factory's model has no `attribute_names`")
        return model.to(device).eval(), model_input_spec(model, f"the model of {spec}")
    if not os.path.exists(spec):
        raise FileNotFoundError(f"classifier not found: {spec}")
    module = load_program(spec, device)
    names = scripted_attribute_names(module, spec, attribute_names)
    return ScriptedClassifier(module, names).to(device).eval(), sidecar_input_spec(spec)


def load_encoder(spec: str, device: str = "cpu", generator: Optional[nn.Module] = None,
                 iterations: Optional[int] = None) -> nn.Module:
    """A W+ encoder: 'toy' (bundled, for the toy generator), a native encoder directory, or
    a pSp / e4e / ReStyle checkpoint file (gankit.loading.field_encoders). `generator`: checked
    against the encoder (one sentence when they disagree); ReStyle renders its iterations
    with it. `iterations`: ReStyle's N (default: the checkpoint's n_iters_per_batch)."""
    from gankit.models.encoder import check_compatible
    from gankit.models.encoder import load_encoder as load_dir
    if spec == "toy" and not TOY_ENCODER.exists():
        raise FileNotFoundError(f"the bundled toy encoder is missing at {TOY_ENCODER}")
    if spec != "toy" and os.path.isfile(spec):
        from gankit.loading.field_encoders import load_field_encoder
        return load_field_encoder(spec, device, generator, iterations)
    if iterations is not None:
        raise ValueError(f"encoder {spec}: iterations are ReStyle's; this encoder runs once")
    E = load_dir(TOY_ENCODER if spec == "toy" else spec, device=device)
    if generator is not None:
        check_compatible(E, generator)
    return E
