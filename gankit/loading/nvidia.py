"""NVIDIA's generator pickles (`network-snapshot-*.pkl`), read by gankit.loading.safe_pickle:
nothing in the file runs. `network=` picks 'G_ema' or 'G'.

- stylegan2-ada-pytorch and the stylegan3 repository's StyleGAN2 (config 'stylegan2'): the
  config comes from the Generator's `_init_kwargs`, in either layout: stylegan2-ada-pytorch's
  `synthesis_kwargs={...}` and the stylegan3 repository's flattened synthesis kwargs (each
  with its own defaults: conv_clamp None vs 256, w_avg_beta 0.995 vs 0.998).
- stylegan3's StyleGAN3 (configs T and R, `training.networks_stylegan3`), recognised by their
  `synthesis.input` (Fourier features), loaded as gankit.models.stylegan3.Generator.
A pickle holding any other network (a custom class, StyleGAN-XL) is refused naming its class.
"""
from __future__ import annotations

import numpy as np

from gankit.loading import safe_pickle
from gankit.loading.formats import NETWORKS, Checkpoint, CheckpointError, UnsupportedCheckpointError
from gankit.loading.safe_pickle import PersistentObject
from gankit.models import stylegan3 as sg3
from gankit.models.stylegan2 import GeneratorConfig, MappingConfig, SynthesisConfig

# Defaults of the two Generator codebases (their constructor defaults, which apply to
# kwargs a training run did not pass).
_TOP = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
_SYN_DEFAULTS = {
    "ada": dict(channel_base=32768, channel_max=512, num_fp16_res=0, conv_clamp=None,
                architecture="skip", resample_filter=[1, 3, 3, 1], use_noise=True,
                activation="lrelu", kernel_size=3),
    "stylegan3-repo": dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256,
                           architecture="skip", resample_filter=[1, 3, 3, 1], use_noise=True,
                           activation="lrelu", kernel_size=3),
}
_W_AVG_BETA = {"ada": 0.995, "stylegan3-repo": 0.998}
_SYN_IGNORED = ("fp16_channels_last", "fused_modconv_default")  # speed/memory only
_MAPPING_KEYS = ("num_layers", "embed_features", "layer_features", "activation",
                 "lr_multiplier", "w_avg_beta")
# The module classes of NVIDIA's generators, by the bare class names its pickles store;
# anything else inside a Generator (a custom class, StyleGAN-XL's) is a network gankit
# does not know.
_NVIDIA_CLASSES = {
    "stylegan2": {"Generator", "MappingNetwork", "SynthesisNetwork", "SynthesisBlock",
                  "SynthesisLayer", "ToRGBLayer", "FullyConnectedLayer", "Conv2dLayer"},
    "stylegan3": {"Generator", "MappingNetwork", "SynthesisNetwork", "SynthesisInput",
                  "SynthesisLayer", "FullyConnectedLayer"},
}
_KNOWN = "NVIDIA's StyleGAN2 and StyleGAN3 generators are what gankit loads"


def from_nvidia(snapshot: dict, network: str, source: str) -> Checkpoint:
    net = snapshot.get(network)
    if not isinstance(net, PersistentObject):
        have = [k for k in NETWORKS if isinstance(snapshot.get(k), PersistentObject)]
        raise CheckpointError(f"{source}: has no network {network!r} (it has {have})")
    if net.class_name.rsplit(".", 1)[-1] != "Generator":
        raise UnsupportedCheckpointError(f"{source}: {network} is a {net.class_name}, not a "
                                         f"Generator; {_KNOWN}")
    try:
        tensors = net.state_dict()
    except ValueError as e:
        raise CheckpointError(f"{source}: {network} has malformed module state ({e})") from None
    notes = {"class_name": net.class_name}
    if _nvidia_kind(net, network, source) == "stylegan3":
        return Checkpoint("nvidia-pickle", stylegan3_config(net, source), tensors,
                           notes=dict(notes, layout="stylegan3"))
    cfg, layout = nvidia_config(net, source)
    return Checkpoint("nvidia-pickle", cfg, tensors, notes=dict(notes, layout=layout))


def _module_classes(obj: object, prefix: str = "") -> dict:
    """{dotted path: class name} of every submodule (state_dict() has refused cycles)."""
    out = {}
    for name, child in ((safe_pickle.module_state(obj) or {}).get("_modules") or {}).items():
        if child is None:
            continue
        out[prefix + name] = (child.class_name if isinstance(child, PersistentObject)
                              else getattr(child, "qualified_name", type(child).__name__))
        out.update(_module_classes(child, f"{prefix}{name}."))
    return out


def _nvidia_kind(net: PersistentObject, network: str, source: str) -> str:
    """'stylegan3' (a SynthesisInput at synthesis.input) or 'stylegan2'; a Generator holding
    a module class neither has is refused, naming the class."""
    classes = _module_classes(net)
    kind = "stylegan3" if classes.get("synthesis.input") == "SynthesisInput" else "stylegan2"
    odd = [(path, cls) for path, cls in classes.items() if cls not in _NVIDIA_CLASSES[kind]]
    if odd:
        path, cls = odd[0]
        raise UnsupportedCheckpointError(f"{source}: {network} holds a {cls} at {path!r}, a "
                                         f"network gankit does not know; {_KNOWN}")
    return kind


# NVIDIA's stylegan3 train.py passes the synthesis kwargs flattened into the Generator's.
_SG3_SYNTHESIS_KEYS = tuple(sg3.SynthesisConfig.__dataclass_fields__)
_SG3_MAPPING_KEYS = ("num_layers", "lr_multiplier", "w_avg_beta")


def stylegan3_config(net: PersistentObject, source: str = "pickle") -> sg3.GeneratorConfig:
    """sg3.GeneratorConfig from an NVIDIA StyleGAN3 Generator's init kwargs."""
    kwargs = {k: _plain(v) for k, v in _init_kwargs(net, source).items()}
    missing = [k for k in _TOP if k not in kwargs]
    if missing:
        raise CheckpointError(f"{source}: Generator init kwargs lack {missing[0]!r}")
    mapping = {k: _plain(v) for k, v in dict(kwargs.pop("mapping_kwargs", None) or {}).items()}
    top = {k: int(kwargs.pop(k)) for k in _TOP}
    for given, known, what in ((kwargs, _SG3_SYNTHESIS_KEYS, "synthesis"),
                               (mapping, _SG3_MAPPING_KEYS, "mapping")):
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise CheckpointError(f"{source}: unsupported StyleGAN3 {what} kwarg {unknown[0]!r}")
    mapping = dict(dict(num_layers=2, w_avg_beta=0.998), **mapping)  # NVIDIA's SG3 defaults
    return sg3.GeneratorConfig(**top, mapping=MappingConfig(**mapping),
                               synthesis=sg3.SynthesisConfig(**kwargs))


def nvidia_config(net: PersistentObject, source: str = "pickle") -> "tuple[GeneratorConfig, str]":
    """GeneratorConfig from an NVIDIA Generator's `_init_args`/`_init_kwargs`, and the layout."""
    kwargs = _init_kwargs(net, source)
    layout = _layout(kwargs, net.module_src)
    missing = [k for k in _TOP if k not in kwargs]
    if missing:
        raise CheckpointError(f"{source}: Generator init kwargs lack {missing[0]!r}")
    mapping = dict(kwargs.pop("mapping_kwargs", None) or {})
    top = {k: kwargs.pop(k) for k in _TOP}
    syn = dict(kwargs.pop("synthesis_kwargs", None) or {}) if layout == "ada" else kwargs
    if layout == "ada" and kwargs:
        raise CheckpointError(f"{source}: unknown Generator init kwarg {sorted(kwargs)[0]!r}")
    return GeneratorConfig(
        z_dim=int(top["z_dim"]), c_dim=int(top["c_dim"]), w_dim=int(top["w_dim"]),
        img_resolution=int(top["img_resolution"]), img_channels=int(top["img_channels"]),
        mapping=_mapping_config(mapping, layout, source),
        synthesis=_synthesis_config(syn, layout, source)), layout


def _init_kwargs(net: PersistentObject, source: str) -> dict:
    names = _TOP + ("mapping_kwargs", "synthesis_kwargs")
    args, given = net.state.get("_init_args") or (), net.state.get("_init_kwargs") or {}
    if not isinstance(args, (tuple, list)) or not isinstance(given, dict):
        raise CheckpointError(f"{source}: Generator _init_args/_init_kwargs are malformed")
    if len(args) > len(names):
        raise CheckpointError(f"{source}: Generator has {len(args)} positional init args")
    kwargs = dict(zip(names, args))
    for k, v in given.items():
        if k in kwargs:
            raise CheckpointError(f"{source}: Generator init arg {k!r} given twice")
        kwargs[k] = v
    return kwargs


def _layout(kwargs: dict, module_src: str) -> str:
    """'ada': synthesis kwargs nested in `synthesis_kwargs`; 'stylegan3-repo': flattened."""
    flat = [k for k in kwargs if k not in _TOP + ("mapping_kwargs", "synthesis_kwargs")]
    if "synthesis_kwargs" in kwargs:
        return "ada"
    if flat or "fused_modconv_default" in module_src:  # source text read as data only
        return "stylegan3-repo"
    return "ada"


def _plain(v: object) -> object:
    """numpy scalars (as kwargs may hold) -> Python values, so configs stay JSON-friendly."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _mapping_config(mapping: dict, layout: str, source: str) -> MappingConfig:
    mapping = {k: _plain(v) for k, v in mapping.items()}
    unknown = sorted(set(mapping) - set(_MAPPING_KEYS))
    if unknown:
        raise CheckpointError(f"{source}: unsupported mapping kwarg {unknown[0]!r}")
    mapping.setdefault("w_avg_beta", _W_AVG_BETA[layout])
    return MappingConfig(**mapping)


def _synthesis_config(syn: dict, layout: str, source: str) -> SynthesisConfig:
    s = dict(_SYN_DEFAULTS[layout])
    for k, v in syn.items():
        if k in _SYN_IGNORED:
            continue
        if k not in s:
            raise CheckpointError(f"{source}: unsupported synthesis kwarg {k!r}")
        s[k] = _plain(v)
    if s.pop("activation") != "lrelu" or s.pop("kernel_size") != 3:
        raise CheckpointError(f"{source}: only lrelu 3x3 synthesis layers are supported")
    s["resample_filter"] = tuple(float(t) if not float(t).is_integer() else int(t)
                                 for t in s["resample_filter"])
    return SynthesisConfig(**s)
