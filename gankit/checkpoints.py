"""Generator checkpoints: one loader for every format, one native format to write.

Native format (written by `save_generator`, read back bit-identically): a directory
    <dir>/config.json        {"format": "gankit.generator", "format_version": 1,
                              "model": "stylegan2" or "stylegan3", "config": its to_dict(),
                              "source": {...where it was converted from...}}
    <dir>/model.safetensors  the Generator's state_dict, fp32, NVIDIA's key names
`load_generator` accepts the directory or either file inside it.

Importers, chosen by the file's content (not its name):
- NVIDIA stylegan2-ada-pytorch / stylegan3-repo StyleGAN2 pickles (`network-snapshot-*.pkl`),
  read by gankit.safe_pickle: nothing in the file runs. `network=` picks 'G_ema' or 'G'.
  The config comes from the Generator's `_init_kwargs`; both layouts are understood:
  stylegan2-ada-pytorch's `synthesis_kwargs={...}` and the stylegan3 repository's flattened
  synthesis kwargs (each with its own defaults: conv_clamp None vs 256, w_avg_beta 0.995 vs
  0.998).
- NVIDIA stylegan3 StyleGAN3 pickles (configs T and R, `training.networks_stylegan3`), recognised
  by their `synthesis.input` (Fourier features) and loaded as gankit.models.stylegan3.Generator.
  A pickle holding any other network (a custom class, StyleGAN-XL) is refused naming its class.
- rosinality/stylegan2-pytorch `.pt` files (`{'g_ema': state_dict, 'latent_avg': w}` from
  convert_weight.py, or train.py's `{'g', 'd', 'g_ema', 'args', ...}`), read with
  `torch.load(weights_only=True)`. Architecture, sizes and channels are inferred from shapes;
  the blur kernels are checked; `latent_avg` becomes `mapping.w_avg` (estimated from 4096
  seeded samples, like rosinality's `mean_latent`, when the file has none).
- pSp / e4e / ReStyle encoder checkpoints (gankit.field_encoders): their `decoder.*` keys
  are a rosinality Generator, read as above, with one row of the file's `latent_avg` as
  w_avg; so `--model e4e_ffhq_encode.pt` gives the generator the encoder was trained with.

Importing is a name- and shape-checked copy: every key of our state_dict is filled exactly
once, and a missing, unexpected or misshapen key is an error naming it.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors
from safetensors.torch import save as safetensors_bytes

from gankit import atomic
from gankit import safe_pickle
from gankit.models import ops
from gankit.models import stylegan3 as sg3
from gankit.models.stylegan2 import Generator, GeneratorConfig, MappingConfig, SynthesisConfig
from gankit.safe_pickle import PersistentObject, UnsafePickleError

__all__ = ["CheckpointError", "UnsupportedCheckpointError", "UnsafePickleError",
           "save_generator", "load_generator", "convert_checkpoint", "inspect_checkpoint",
           "detect_format"]

FORMAT_NAME = "gankit.generator"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
NETWORKS = ("G_ema", "G")
PathLike = Union[str, os.PathLike]


class CheckpointError(ValueError):
    """The file is not a usable generator checkpoint (message names the file and the key)."""


class UnsupportedCheckpointError(CheckpointError, NotImplementedError):
    """A kind of checkpoint gankit cannot load (another network, another blur kernel)."""


# The generator class of each `model` name of the native format's config.json.
MODELS = {"stylegan2": (Generator, GeneratorConfig), "stylegan3": (sg3.Generator, sg3.GeneratorConfig)}


def _model_name(cfg) -> str:
    return "stylegan3" if isinstance(cfg, sg3.GeneratorConfig) else "stylegan2"


@dataclass
class _Checkpoint:
    fmt: str                                  # 'gankit', 'nvidia-pickle', 'rosinality'
    cfg: GeneratorConfig
    tensors: dict                             # our key -> tensor
    derived: tuple = ()                       # our keys computed here, not read from the file
    notes: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------
# Public API


def save_generator(G: Generator, path: PathLike, source: Optional[dict] = None) -> Path:
    """Write `G` in the native format to directory `path` (created; its two files replaced
    atomically). Returns the directory."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{out}: exists and is not a directory; the native format is a directory")
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in G.state_dict().items()}
    meta = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION)}
    atomic.write_bytes(out / WEIGHTS_FILE, safetensors_bytes(tensors, metadata=meta))
    config = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "model": _model_name(G.cfg),
              "config": G.cfg.to_dict(), "source": source or {}}
    atomic.write_bytes(out / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
    return out


def load_generator(path: PathLike, network: str = "G_ema", device: Union[str, torch.device] = "cpu"
                   ) -> Generator:
    """Load any supported checkpoint as a Generator in eval mode with frozen parameters.

    `network` picks 'G_ema' (default) or 'G' in files holding both (NVIDIA pickles,
    rosinality train.py checkpoints); a native directory holds one generator.
    """
    return _build(_read_bounded(path, network), str(path)).to(device)


def convert_checkpoint(src: PathLike, dst: PathLike, network: str = "G_ema",
                       transform: Optional[tuple] = None) -> Path:
    """Read any supported checkpoint and write it in the native format. `transform`
    ((tx, ty), angle in degrees), StyleGAN3 only: every image the written model renders is
    moved and rotated so (NVIDIA's gen_images.py --translate / --rotate); stored with it."""
    ck = _read_bounded(src, network)
    G = _build(ck, str(src))
    if transform is not None:
        if not hasattr(G.synthesis, "set_transform"):
            raise CheckpointError(f"{src}: --translate / --rotate need a StyleGAN3 generator "
                                  f"(its Fourier input is what they move)")
        G.synthesis.set_transform(*transform)
    source = {"format": ck.fmt, "file": Path(src).name, "network": network, **ck.notes}
    if transform is not None:
        source["transform"] = {"translate": list(transform[0]), "angle": transform[1]}
    return save_generator(G, dst, source=source)


def inspect_checkpoint(path: PathLike, network: str = "G_ema") -> dict:
    """Architecture summary of a checkpoint (reads the file, builds nothing but shapes)."""
    ck = _read_bounded(path, network)
    cfg = ck.cfg
    if isinstance(cfg, sg3.GeneratorConfig):
        return _inspect_stylegan3(ck, path, network)
    with torch.device("meta"):  # shapes only: no memory, no copy
        G = Generator(cfg)
    resolutions = [2 ** i for i in range(2, int(math.log2(cfg.img_resolution)) + 1)]
    return {
        "path": str(path), "format": ck.fmt, "network": network, "model": "stylegan2",
        "resolution": cfg.img_resolution, "img_channels": cfg.img_channels,
        "num_ws": G.num_ws, "w_dim": cfg.w_dim, "z_dim": cfg.z_dim, "c_dim": cfg.c_dim,
        "channels": {res: cfg.channels(res) for res in resolutions},
        "architecture": cfg.synthesis.architecture, "mapping_layers": cfg.mapping.num_layers,
        "conv_clamp": cfg.synthesis.conv_clamp, "num_fp16_res": cfg.synthesis.num_fp16_res,
        "num_params": sum(p.numel() for p in G.parameters()),
        "config": cfg.to_dict(), "notes": dict(ck.notes),
    }


def _inspect_stylegan3(ck: _Checkpoint, path: PathLike, network: str) -> dict:
    """inspect_checkpoint's summary of a StyleGAN3 generator; channels per layer name."""
    cfg, s = ck.cfg, ck.cfg.synthesis
    with torch.device("meta"):
        G = sg3.Generator(cfg)
    return {
        "path": str(path), "format": ck.fmt, "network": network, "model": "stylegan3",
        "resolution": cfg.img_resolution, "img_channels": cfg.img_channels,
        "num_ws": G.num_ws, "w_dim": cfg.w_dim, "z_dim": cfg.z_dim, "c_dim": cfg.c_dim,
        "channels": {name: l.out_channels for name, l in zip(G.synthesis.layer_names,
                                                              G.synthesis.layers())},
        "architecture": "stylegan3-r" if s.use_radial_filters else "stylegan3-t",
        "mapping_layers": cfg.mapping.num_layers,
        "conv_clamp": s.conv_clamp, "num_fp16_res": s.num_fp16_res,
        "num_params": sum(p.numel() for p in G.parameters()),
        "config": cfg.to_dict(), "notes": dict(ck.notes),
    }


def detect_format(path: PathLike) -> str:
    """'gankit' (directory, config.json or .safetensors), 'torch-zip', or 'pickle'."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such checkpoint file or directory")
    if p.is_dir():
        return "gankit"
    with open(p, "rb") as f:
        head = f.read(16)
    if head.startswith(safe_pickle.ZIP_MAGIC):
        return "torch-zip"
    if head.startswith(b"\x80"):
        return "pickle"
    if head.lstrip().startswith(b"{") or head[8:9] == b"{":  # JSON, or safetensors header
        return "gankit"
    raise CheckpointError(f"{p}: not a recognised checkpoint (neither a gankit directory, "
                          f"a pickle, nor a torch archive)")


# ----------------------------------------------------------------------------------------
# Reading and building


def _read_bounded(path: PathLike, network: str) -> _Checkpoint:
    """_read, with objects nested past Python's recursion limit refused in one sentence."""
    try:
        return _read(path, network)
    except RecursionError:
        raise CheckpointError(f"{path}: its objects are nested too deeply for a checkpoint "
                              f"(a recursion bomb?)") from None


def _read(path: PathLike, network: str) -> _Checkpoint:
    if network not in NETWORKS:
        raise CheckpointError(f"network must be one of {NETWORKS}, got {network!r}")
    fmt, source = detect_format(path), str(path)
    if fmt == "gankit":
        return _read_native(Path(path))
    obj = _load_object(source, fmt)
    if isinstance(obj, dict) and any(isinstance(obj.get(k), PersistentObject) for k in NETWORKS):
        return _from_nvidia(obj, network, source)
    from gankit.field_encoders import is_encoder_checkpoint
    if is_encoder_checkpoint(obj):
        return _from_encoder_checkpoint(obj, network, source)
    return _from_rosinality(obj, network, source)  # a legacy (non-zip) torch.save file


def _load_object(source: str, fmt: str) -> object:
    """Unpickle with the allow-list (or torch.load weights_only); corrupt files get one sentence."""
    try:
        if fmt == "torch-zip":
            return safe_pickle.torch_load(source, source)
        return safe_pickle.load(source)
    except UnsafePickleError:
        raise
    except (EOFError, pickle.UnpicklingError, RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(f"{source}: unreadable {fmt} file ({type(e).__name__}: {e})") from None


def _build(ck: _Checkpoint, source: str) -> Generator:
    try:
        ck.cfg.validate()
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{source}: its generator config is not usable: {e}") from None
    G = MODELS[_model_name(ck.cfg)][0](ck.cfg)
    _fill(G, ck.tensors, source, ck.derived)
    if "mapping.w_avg" in ck.derived:
        _estimate_w_avg(G)
    return G.eval().requires_grad_(False)


def _fill(G: Generator, tensors: dict, source: str, derived: tuple = ()) -> None:
    """Copy `tensors` into G: every key of G.state_dict() exactly once, shapes checked.
    Keys in `derived` keep the values G computed itself (filters) or get them afterwards."""
    ours = G.state_dict()
    extra = sorted(set(tensors) - set(ours))
    missing = sorted(set(ours) - set(tensors) - set(derived))
    if extra:
        raise CheckpointError(f"{source}: unexpected key {extra[0]!r}{_more(extra)} for a "
                              f"generator of this configuration")
    if missing:
        raise CheckpointError(f"{source}: missing key {missing[0]!r}{_more(missing)}")
    with torch.no_grad():
        for name, dst in ours.items():
            if name in derived:
                continue
            src = tensors[name]
            if tuple(src.shape) != tuple(dst.shape):
                raise CheckpointError(f"{source}: key {name!r} has shape {list(src.shape)}, "
                                      f"expected {list(dst.shape)}")
            if not src.is_floating_point():
                raise CheckpointError(f"{source}: key {name!r} has dtype {src.dtype}, expected floats")
            dst.copy_(src)


def _more(keys: list) -> str:
    return f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""


@torch.no_grad()
def _estimate_w_avg(G: Generator, n: int = 4096, seed: int = 0) -> None:
    """Mean of mapping(z) over `n` seeded z, as rosinality's `mean_latent` computes it."""
    z = torch.randn([n, G.z_dim], generator=torch.Generator().manual_seed(seed))
    G.mapping.w_avg.copy_(G.mapping(z, None)[:, 0].mean(dim=0))


# ----------------------------------------------------------------------------------------
# Native format


def _read_native(path: Path) -> _Checkpoint:
    folder = path if path.is_dir() else path.parent
    cfg_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for p in (cfg_path, weights_path):
        if not p.is_file():
            raise CheckpointError(f"{folder}: a gankit checkpoint needs {CONFIG_FILE} and "
                                  f"{WEIGHTS_FILE}, and {p.name} is missing")
    try:
        meta = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{cfg_path}: 'format' must be {FORMAT_NAME!r}")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{cfg_path}: format_version {meta['format_version']} is newer "
                              f"than this gankit reads ({FORMAT_VERSION})")
    model = meta.get("model", "stylegan2")
    if model not in MODELS:
        raise CheckpointError(f"{cfg_path}: 'model' must be one of {sorted(MODELS)}, got {model!r}")
    try:
        cfg = MODELS[model][1].from_dict(meta["config"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{cfg_path}: invalid generator config ({e})") from None
    try:
        tensors = load_safetensors(str(weights_path))
    except (SafetensorError, OSError, ValueError) as e:   # a lying header, a truncated file
        raise CheckpointError(f"{weights_path}: unreadable safetensors file ({e})") from None
    return _Checkpoint("gankit", cfg, tensors, notes={"source": meta.get("source", {})})


# ----------------------------------------------------------------------------------------
# NVIDIA pickles

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


def _from_nvidia(snapshot: dict, network: str, source: str) -> _Checkpoint:
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
        return _Checkpoint("nvidia-pickle", stylegan3_config(net, source), tensors,
                           notes=dict(notes, layout="stylegan3"))
    cfg, layout = nvidia_config(net, source)
    return _Checkpoint("nvidia-pickle", cfg, tensors, notes=dict(notes, layout=layout))


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


# ----------------------------------------------------------------------------------------
# rosinality/stylegan2-pytorch

_ROS_NETWORK = {"G_ema": "g_ema", "G": "g"}
_ROS_CONV = {"conv.weight": "weight", "conv.modulation.weight": "affine.weight",
             "conv.modulation.bias": "affine.bias", "noise.weight": "noise_strength",
             "activate.bias": "bias"}
_ROS_TORGB = {"conv.weight": "weight", "conv.modulation.weight": "affine.weight",
              "conv.modulation.bias": "affine.bias", "bias": "bias"}
_ROS_FILTER = (1, 3, 3, 1)  # rosinality's blur_kernel default; checked against the file


def _from_rosinality(obj: object, network: str, source: str) -> _Checkpoint:
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source}: not a generator checkpoint (a {type(obj).__name__})")
    latent_avg = None
    if "style.1.weight" in obj:      # a bare generator state dict
        sd = obj
    elif "g_ema" in obj or "g" in obj:
        key = _ROS_NETWORK[network]
        if key not in obj:
            raise CheckpointError(f"{source}: has no {key!r} state dict for network {network!r}")
        sd = obj[key]
        latent_avg = obj.get("latent_avg") if key == "g_ema" else None
    else:
        raise CheckpointError(f"{source}: not a recognised checkpoint (keys {sorted(obj)[:6]})")
    if not isinstance(sd, dict) or "style.1.weight" not in sd:
        raise CheckpointError(f"{source}: the generator state dict has no 'style.1.weight'")
    cfg = rosinality_config(sd, source)
    tensors = _rosinality_tensors(sd, cfg, source)
    derived = tuple(_filter_keys(cfg))
    if latent_avg is not None:
        tensors["mapping.w_avg"] = torch.as_tensor(latent_avg).reshape(-1)
        notes = {"w_avg": "latent_avg from the file"}
    else:
        derived += ("mapping.w_avg",)
        notes = {"w_avg": "estimated: mean of mapping(z) over 4096 z drawn with seed 0"}
    return _Checkpoint("rosinality", cfg, tensors, derived, notes)


def _from_encoder_checkpoint(obj: dict, network: str, source: str) -> _Checkpoint:
    """The decoder of a pSp / e4e / ReStyle checkpoint (gankit.field_encoders): a rosinality
    Generator under `decoder.*`, its mean w the file's latent_avg (one row of it)."""
    from gankit.field_encoders import prefixed
    if network != "G_ema":
        raise CheckpointError(f"{source}: an encoder checkpoint holds one generator (its "
                              f"decoder); use network 'G_ema'")
    sd = prefixed(obj["state_dict"], "decoder.")
    if not sd:
        raise CheckpointError(f"{source}: an encoder checkpoint without a decoder: give the "
                              f"generator it was trained with as the model")
    avg = obj.get("latent_avg")
    if isinstance(avg, torch.Tensor) and avg.ndim == 2:    # [n_styles, w_dim]: w_avg repeated
        avg = avg[0]
    ck = _from_rosinality({"g_ema": sd, "latent_avg": avg}, "G_ema", source)
    ck.fmt = "encoder-checkpoint"
    ck.notes["decoder_of"] = str((obj.get("opts") or {}).get("encoder_type", "an encoder"))
    return ck


def rosinality_config(sd: dict, source: str = "checkpoint") -> GeneratorConfig:
    """Infer size, style_dim, n_mlp and channels from a rosinality Generator state dict."""
    n_mlp = 0
    while f"style.{n_mlp + 1}.weight" in sd:
        n_mlp += 1
    n_convs = len([k for k in sd if re.fullmatch(r"convs\.\d+\.conv\.weight", k)])
    if n_convs % 2 or "input.input" not in sd or "to_rgb1.conv.weight" not in sd:
        raise CheckpointError(f"{source}: incomplete rosinality generator (input.input, "
                              f"to_rgb1 and pairs of convs are required)")
    style_dim = sd["style.1.weight"].shape[1]
    w_dim = sd[f"style.{n_mlp}.weight"].shape[0]
    channels = {4: int(sd["input.input"].shape[1])}
    for i in range(n_convs // 2):
        channels[8 * 2 ** i] = int(sd[f"convs.{2 * i}.conv.weight"].shape[1])
    resolution = max(channels)
    base, cmax = _channel_base_max(channels, source)
    return GeneratorConfig(
        z_dim=int(style_dim), c_dim=0, w_dim=int(w_dim), img_resolution=resolution,
        img_channels=int(sd["to_rgb1.conv.weight"].shape[1]),
        mapping=MappingConfig(num_layers=n_mlp, lr_multiplier=0.01),  # rosinality's lr_mlp
        synthesis=SynthesisConfig(channel_base=base, channel_max=cmax, num_fp16_res=0,
                                  conv_clamp=None, architecture="skip",
                                  resample_filter=_ROS_FILTER, use_noise=True))


def _channel_base_max(channels: dict, source: str) -> "tuple[int, int]":
    """channel_base, channel_max with min(base // res, max) == channels[res] for every res.

    rosinality's table {4..32: 512, 64: 256*cm, ..., 1024: 16*cm} is expressible for
    channel_multiplier 1 or 2 (base 16384*cm, max 512); cm=4 grows from 32 to 64 px and is not.
    """
    cmax = max(channels.values())
    below = [(res, ch) for res, ch in sorted(channels.items()) if ch < cmax]
    base = below[0][0] * below[0][1] if below else cmax * max(channels)
    if any(min(base // res, cmax) != ch for res, ch in channels.items()):
        raise CheckpointError(f"{source}: channel counts {channels} cannot be written as "
                              f"min(channel_base // res, channel_max)")
    return base, cmax


def _noise_layer_names(cfg: GeneratorConfig) -> list:
    names = ["synthesis.b4.conv1"]
    for i in range(3, int(math.log2(cfg.img_resolution)) + 1):
        names += [f"synthesis.b{2 ** i}.conv0", f"synthesis.b{2 ** i}.conv1"]
    return names


def _filter_keys(cfg: GeneratorConfig) -> list:
    """Our resample_filter buffers: constants of the architecture, absent from rosinality."""
    keys = ["synthesis.b4.resample_filter", "synthesis.b4.conv1.resample_filter"]
    for i in range(3, int(math.log2(cfg.img_resolution)) + 1):
        keys += [f"synthesis.b{2 ** i}.{m}resample_filter" for m in ("", "conv0.", "conv1.")]
    return keys


def _rosinality_tensors(sd: dict, cfg: GeneratorConfig, source: str) -> dict:
    """Translate every rosinality key to ours (each target exactly once); kernels are checked."""
    noise_layers = _noise_layer_names(cfg)
    out = {}
    for key, t in sd.items():
        target = _rosinality_key(key, noise_layers, source)
        if target is None:
            _check_kernel(key, t, source)
            continue
        if target in out:
            raise CheckpointError(f"{source}: key {key!r} maps onto {target!r} a second time")
        out[target] = _rosinality_reshape(target, t)
    return out


def _rosinality_key(key: str, noise_layers: list, source: str) -> Optional[str]:
    """Our name for a rosinality key; None for the blur/upsample kernels (checked, not kept)."""
    m = re.fullmatch(r"style\.(\d+)\.(weight|bias)", key)
    if m and int(m[1]) >= 1:
        return f"mapping.fc{int(m[1]) - 1}.{m[2]}"
    if key == "input.input":
        return "synthesis.b4.const"
    if key.startswith("conv1.") and key[6:] in _ROS_CONV:
        return f"synthesis.b4.conv1.{_ROS_CONV[key[6:]]}"
    if key.startswith("to_rgb1.") and key[8:] in _ROS_TORGB:
        return f"synthesis.b4.torgb.{_ROS_TORGB[key[8:]]}"
    m = re.fullmatch(r"convs\.(\d+)\.(.+)", key)
    if m and m[2] == "conv.blur.kernel":
        return None
    if m and m[2] in _ROS_CONV:
        k = int(m[1])
        return f"synthesis.b{8 * 2 ** (k // 2)}.conv{k % 2}.{_ROS_CONV[m[2]]}"
    m = re.fullmatch(r"to_rgbs\.(\d+)\.(.+)", key)
    if m and m[2] == "upsample.kernel":
        return None
    if m and m[2] in _ROS_TORGB:
        return f"synthesis.b{8 * 2 ** int(m[1])}.torgb.{_ROS_TORGB[m[2]]}"
    m = re.fullmatch(r"noises\.noise_(\d+)", key)
    if m and int(m[1]) < len(noise_layers):
        return f"{noise_layers[int(m[1])]}.noise_const"
    raise CheckpointError(f"{source}: unexpected rosinality key {key!r}")


def _rosinality_reshape(target: str, t: torch.Tensor) -> torch.Tensor:
    """rosinality keeps singleton dims that ours drop: conv weight [1,O,I,k,k], const
    [1,C,4,4], noise [1,1,r,r], noise weight [1], to_rgb bias [1,3,1,1]. A tensor of the
    wrong size is passed on unchanged, for _fill to report with its key."""
    if target.endswith("torgb.bias"):
        return t.flatten()
    if target.endswith("noise_strength"):
        return t.reshape(()) if t.numel() == 1 else t
    ndim = {"const": 3, "noise_const": 2, "weight": 2 if ".affine." in target else 4}.get(
        target.rsplit(".", 1)[-1])
    while ndim is not None and not target.startswith("mapping.") and t.ndim > ndim and t.shape[0] == 1:
        t = t[0]
    return t


def _check_kernel(key: str, t: torch.Tensor, source: str) -> None:
    """rosinality stores its FIR kernel times factor^2 = 4; ours is the normalized filter."""
    expected = ops.setup_filter(_ROS_FILTER) * 4
    if tuple(t.shape) != tuple(expected.shape) or not torch.allclose(t.float(), expected):
        raise UnsupportedCheckpointError(f"{source}: {key!r} is not the [1,3,3,1] blur kernel; "
                                         f"other kernels are not supported")
