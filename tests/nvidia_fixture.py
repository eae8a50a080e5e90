"""Test-only writer of NVIDIA-structured pickles, built from gankit Generators with no NVIDIA code.

The bytes follow NVIDIA's `network-snapshot-*.pkl` (torch_utils/persistence.py, training_loop.py):
a dict `{training_set_kwargs, G, D, G_ema, augment_pipe}` pickled with protocol 4, where every
network and every submodule is a persistent object whose reduce is
`torch_utils.persistence._reconstruct_persistent_obj(meta)`,
`meta = {type: 'class', version: 6, module_src: <source text>, class_name: 'Generator', state}`.
NVIDIA stores the bare class name (`orig_class.__name__`); the module is known only through
`module_src`. `state` is the module's `__dict__`: `_parameters`, `_buffers`, `_modules` (children
are persistent objects too), the torch hook dicts, plain attributes (NVIDIA's gains are numpy
floats, so numpy globals appear), `_init_args` and `_init_kwargs` (nested kwargs are
`dnnlib.util.EasyDict`). Tensors go through torch's own reduce, so the file names
`torch._utils._rebuild_parameter`, `torch._utils._rebuild_tensor_v2` and
`torch.storage._load_from_bytes`, as NVIDIA's files do.

To get the names `torch_utils.persistence._reconstruct_persistent_obj` and `dnnlib.util.EasyDict`
into the pickle, stand-ins are registered in sys.modules only while pickling (`nvidia_names`).

Also: StyleGAN3-structured pickles, and hostile pickles for the security tests.
"""
from __future__ import annotations

import builtins
import contextlib
import os
import pickle
import subprocess
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from gankit.models.stylegan2 import Discriminator, Generator, GeneratorConfig

STANDIN_MODULES = ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")

# Source texts stored in `module_src` (NVIDIA stores the whole file; a loader must never run it).
ADA_SRC = ('"""Stand-in for stylegan2-ada-pytorch training/networks.py."""\n'
           "class Generator(torch.nn.Module):\n"
           "    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels,\n"
           "                 mapping_kwargs={}, synthesis_kwargs={}): ...\n")
SG3_REPO_SG2_SRC = ('"""Stand-in for stylegan3 training/networks_stylegan2.py."""\n'
                    "class SynthesisBlock(torch.nn.Module):\n"
                    "    def __init__(self, ..., fused_modconv_default=True, **layer_kwargs): ...\n"
                    "class Generator(torch.nn.Module):\n"
                    "    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels,\n"
                    "                 mapping_kwargs={}, **synthesis_kwargs): ...\n")
SG3_SRC = ('"""Stand-in for stylegan3 training/networks_stylegan3.py."""\n'
           "class SynthesisInput(torch.nn.Module): ...\n"
           "class Generator(torch.nn.Module): ...\n")
AUGMENT_SRC = '"""Stand-in for training/augment.py."""\nclass AugmentPipe(torch.nn.Module): ...\n'
SOURCES = {"ada": ADA_SRC, "stylegan3-repo": SG3_REPO_SG2_SRC}
W_AVG_BETA = {"ada": 0.995, "stylegan3-repo": 0.998}   # MappingNetwork defaults per codebase
CONV_CLAMP = {"ada": None, "stylegan3-repo": 256}      # SynthesisBlock defaults per codebase
NUM_FP16_RES = {"ada": 0, "stylegan3-repo": 4}         # SynthesisNetwork defaults per codebase


# ----------------------------------------------------------------------------------------
# Stand-ins for NVIDIA's globals (present in sys.modules only inside `nvidia_names`)


def _reconstruct_persistent_obj(meta):
    raise RuntimeError("stand-in for NVIDIA's torch_utils.persistence: a loader must not call it")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


class EasyDict(dict):
    """Same shape as dnnlib.util.EasyDict: attribute access to keys."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value


EasyDict.__module__ = "dnnlib.util"


@contextlib.contextmanager
def nvidia_names():
    """Register stand-in modules so pickle can name NVIDIA's globals; restore afterwards."""
    saved = {name: sys.modules.get(name) for name in STANDIN_MODULES}
    mods = {name: types.ModuleType(name) for name in STANDIN_MODULES}
    mods["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    mods["torch_utils"].persistence = mods["torch_utils.persistence"]
    mods["dnnlib.util"].EasyDict = EasyDict
    mods["dnnlib"].util, mods["dnnlib"].EasyDict = mods["dnnlib.util"], EasyDict
    sys.modules.update(mods)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


# ----------------------------------------------------------------------------------------
# Persistent records


class Persistent:
    """Pickles exactly as an NVIDIA persistent object does."""

    def __init__(self, class_name: str, module_src: str, state: dict):
        self.class_name, self.module_src, self.state = class_name, module_src, state

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.module_src,
                    class_name=self.class_name, state=self.state)
        return (_reconstruct_persistent_obj, (meta,), None, None, None)

    def child(self, dotted: str) -> "Persistent":
        node = self
        for part in dotted.split("."):
            node = node.state["_modules"][part]
        return node


def module_record(class_name: str, src: str, params=None, buffers=None, modules=None,
                  attrs=None, init_kwargs=None) -> Persistent:
    """A torch nn.Module's __dict__ as NVIDIA's pickles hold it."""
    state = {"training": False,
             "_parameters": OrderedDict(params or {}), "_buffers": OrderedDict(buffers or {}),
             "_non_persistent_buffers_set": set(),
             "_backward_pre_hooks": OrderedDict(), "_backward_hooks": OrderedDict(),
             "_is_full_backward_hook": None, "_forward_hooks": OrderedDict(),
             "_forward_hooks_with_kwargs": OrderedDict(), "_forward_hooks_always_called": OrderedDict(),
             "_forward_pre_hooks": OrderedDict(), "_forward_pre_hooks_with_kwargs": OrderedDict(),
             "_state_dict_hooks": OrderedDict(), "_state_dict_pre_hooks": OrderedDict(),
             "_load_state_dict_pre_hooks": OrderedDict(), "_load_state_dict_post_hooks": OrderedDict(),
             "_modules": OrderedDict(modules or {})}
    state.update(attrs or {})
    state["_init_args"] = ()
    state["_init_kwargs"] = dict(init_kwargs or {})
    return Persistent(class_name, src, state)


def _plain_attrs(m: nn.Module) -> dict:
    """Simple attributes; floats become numpy float64 as NVIDIA's np.sqrt-based gains are."""
    out = {}
    for k, v in vars(m).items():
        if k.startswith("_") or k == "training":
            continue
        if isinstance(v, float):
            out[k] = np.float64(v)
        elif isinstance(v, (bool, int, str, type(None))) or (
                isinstance(v, list) and all(isinstance(x, int) for x in v)):
            out[k] = v
    return out


def persistent_module(m: nn.Module, src: str, init_kwargs=None, inner_kwargs: str = "plausible"
                      ) -> Persistent:
    """Record of `m` and, recursively, its children (NVIDIA class names equal ours)."""
    params = {k: nn.Parameter(v.detach().clone(), requires_grad=False) if v is not None else None
              for k, v in m._parameters.items()}   # NVIDIA keeps None entries (no bias, identity filter)
    buffers = {k: v.detach().clone() if v is not None else None for k, v in m._buffers.items()}
    children = {k: persistent_module(c, src, None, inner_kwargs) for k, c in m._modules.items()}
    attrs = _plain_attrs(m)
    if init_kwargs is None:  # inner modules: the loader must not depend on these
        init_kwargs = ({k: v for k, v in attrs.items() if not isinstance(v, np.floating)}
                       if inner_kwargs == "plausible" else {"not_a_real_kwarg": "ignored"})
    return module_record(type(m).__name__, src, params, buffers, children, attrs, init_kwargs)


def generator_init_kwargs(cfg: GeneratorConfig, layout: str) -> dict:
    """The Generator's `_init_kwargs` as each codebase's train.py produces it."""
    m, s = cfg.mapping, cfg.synthesis
    mapping = EasyDict(num_layers=m.num_layers)
    for key, default in (("embed_features", None), ("layer_features", None), ("activation", "lrelu"),
                         ("lr_multiplier", 0.01), ("w_avg_beta", W_AVG_BETA[layout])):
        if getattr(m, key) != default:
            mapping[key] = getattr(m, key)
    syn = EasyDict(channel_base=s.channel_base, channel_max=s.channel_max,
                   num_fp16_res=s.num_fp16_res, conv_clamp=s.conv_clamp)
    if s.architecture != "skip":
        syn.architecture = s.architecture
    if tuple(s.resample_filter) != (1, 3, 3, 1):
        syn.resample_filter = list(s.resample_filter)
    if not s.use_noise:
        syn.use_noise = False
    top = dict(z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, img_resolution=cfg.img_resolution,
               img_channels=cfg.img_channels, mapping_kwargs=mapping)
    if layout == "ada":
        top["synthesis_kwargs"] = syn
    else:  # stylegan3 repository: synthesis kwargs flattened into the Generator's own
        top.update(syn, fused_modconv_default="inference_only")
    return top


def augment_pipe_record() -> Persistent:
    kwargs = dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1,
                  brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
    return module_record("AugmentPipe", AUGMENT_SRC, buffers={"p": torch.tensor(0.125)},
                         attrs={"xflip": np.float64(1.0), "xint_max": np.float64(0.125)},
                         init_kwargs=kwargs)


def snapshot(G_ema: Generator, G: Optional[Generator] = None, layout: str = "ada",
             with_D: bool = True, inner_kwargs: str = "plausible",
             module_src: Optional[str] = None) -> dict:
    """The dict NVIDIA's training loop pickles, made of records (mutable, for tests)."""
    src = module_src if module_src is not None else SOURCES[layout]
    kwargs = generator_init_kwargs(G_ema.cfg, layout)
    data = {"training_set_kwargs": dict(
        class_name="training.dataset.ImageFolderDataset", path="/data/tiny.zip",
        use_labels=G_ema.c_dim > 0, max_size=1000, xflip=False,
        resolution=G_ema.img_resolution, random_seed=0)}
    data["G"] = persistent_module(G if G is not None else G_ema, src, dict(kwargs), inner_kwargs)
    data["D"] = _discriminator_record(G_ema, src) if with_D else None
    data["G_ema"] = persistent_module(G_ema, src, dict(kwargs), inner_kwargs)
    data["augment_pipe"] = augment_pipe_record()
    return data


def _discriminator_record(G: Generator, src: str) -> Persistent:
    s = G.cfg.synthesis
    torch.manual_seed(1)
    D = Discriminator(G.c_dim, G.img_resolution, G.img_channels, channel_base=s.channel_base,
                      channel_max=s.channel_max)
    kwargs = dict(c_dim=G.c_dim, img_resolution=G.img_resolution, img_channels=G.img_channels,
                  architecture="resnet", channel_base=s.channel_base, channel_max=s.channel_max,
                  num_fp16_res=0, conv_clamp=None, block_kwargs=EasyDict(),
                  mapping_kwargs=EasyDict(), epilogue_kwargs=EasyDict(mbstd_group_size=4))
    return persistent_module(D, src, kwargs)


def dumps(obj) -> bytes:
    """Pickle with NVIDIA's names resolvable (protocol 4, Python 3.8's default NVIDIA used)."""
    with nvidia_names():
        return pickle.dumps(obj, protocol=4)


def write_pickle(path, obj) -> Path:
    path = Path(path)
    path.write_bytes(dumps(obj))
    return path


def write_nvidia_pickle(path, G_ema: Generator, **kw) -> Path:
    return write_pickle(path, snapshot(G_ema, **kw))


# ----------------------------------------------------------------------------------------
# StyleGAN3


def stylegan3_init_kwargs(cfg) -> dict:
    """The StyleGAN3 Generator's `_init_kwargs` as NVIDIA's train.py passes them: mapping
    kwargs nested, synthesis kwargs flattened, and only the ones a config sets (T: none
    beyond sizes and magnitude_ema_beta; R: conv_kernel=1, use_radial_filters=True)."""
    from gankit.models.stylegan3 import SynthesisConfig
    defaults = SynthesisConfig()
    kwargs = dict(z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim,
                  img_resolution=cfg.img_resolution, img_channels=cfg.img_channels,
                  mapping_kwargs=EasyDict(num_layers=cfg.mapping.num_layers),
                  channel_base=cfg.synthesis.channel_base, channel_max=cfg.synthesis.channel_max,
                  magnitude_ema_beta=cfg.synthesis.magnitude_ema_beta)
    for key in defaults.__dataclass_fields__:
        if key not in kwargs and getattr(cfg.synthesis, key) != getattr(defaults, key):
            kwargs[key] = getattr(cfg.synthesis, key)
    return kwargs


def _stylegan3_arrays(record: Persistent, module: nn.Module) -> None:
    """NVIDIA's StyleGAN3 modules keep sizes as numpy int arrays [2] (np.broadcast_to)."""
    if hasattr(module, "spec"):  # a SynthesisLayer
        for key in ("in_size", "out_size"):
            record.state[key] = np.broadcast_to(np.asarray(getattr(module.spec, key)), [2])
        for key in ("in_cutoff", "out_cutoff", "in_half_width", "out_half_width"):
            record.state[key] = np.float64(getattr(module.spec, key))
    elif hasattr(module, "freqs"):  # the SynthesisInput
        record.state["size"] = np.broadcast_to(np.asarray(module.size), [2])


def stylegan3_snapshot(G_ema, G=None, module_src: str = SG3_SRC, top_class: str = "Generator"
                       ) -> dict:
    """The dict NVIDIA's stylegan3 training loop pickles, for a gankit StyleGAN3 Generator:
    the same module tree and class names (Generator, MappingNetwork, SynthesisNetwork,
    SynthesisInput, SynthesisLayer, FullyConnectedLayer), None for identity filters."""
    kwargs = stylegan3_init_kwargs(G_ema.cfg)
    records = {}
    for key, net in (("G", G if G is not None else G_ema), ("G_ema", G_ema)):
        records[key] = persistent_module(net, module_src, dict(kwargs))
        records[key].class_name = top_class
        for name, module in net.named_modules():
            if name:
                _stylegan3_arrays(records[key].child(name), module)
        records[key].state["layer_names"] = list(net.synthesis.layer_names)
    return {"training_set_kwargs": {"resolution": G_ema.img_resolution}, "G": records["G"],
            "D": None, "G_ema": records["G_ema"], "augment_pipe": augment_pipe_record()}


# ----------------------------------------------------------------------------------------
# Hostile pickles


class Call:
    """Pickles as a call of `fn(*args)` (then BUILD with `state`): what a malicious file does."""

    def __init__(self, fn, *args, state=None):
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self):
        return (self.fn, self.args) if self.state is None else (self.fn, self.args, self.state)


def hostile_payload(kind: str, marker: Path) -> Call:
    """An object whose unpickling would create `marker`."""
    cmd = f"touch {marker}"
    code = f"__import__('os').system({cmd!r})"
    payloads = {
        "os.system": lambda: Call(os.system, cmd),
        "eval": lambda: Call(builtins.eval, code),
        "exec": lambda: Call(builtins.exec, code),
        "subprocess": lambda: Call(subprocess.call, ["touch", str(marker)]),
        "storage": lambda: Call(torch.storage._load_from_bytes,
                                pickle.dumps(Call(os.system, cmd), protocol=2)),
    }
    return payloads[kind]()


def write_hostile_pickle(path, marker: Path, kind: str = "os.system") -> Path:
    """A snapshot-shaped dict whose G_ema is a hostile payload."""
    return write_pickle(path, {"training_set_kwargs": {}, "G_ema": hostile_payload(kind, marker)})
