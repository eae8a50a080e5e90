"""Read NVIDIA StyleGAN pickles without running any code from the file.

An NVIDIA `network-snapshot-*.pkl` (stylegan2-ada-pytorch, stylegan3) is a pickled dict
`{G, D, G_ema, augment_pipe, training_set_kwargs}`. Each network is a "persistent object":
its reduce is `torch_utils.persistence._reconstruct_persistent_obj(meta)` with
`meta = {type: 'class', version: 6, module_src, class_name, state}`, and NVIDIA's loader
exec()s `module_src` to rebuild the class. Here nothing is imported or exec'd:

- the unpickler resolves globals from an allow-list only (`find_class`); any other global
  (`os.system`, `builtins.eval`, `subprocess.Popen`, ...) raises `UnsafePickleError` naming it
  before anything is called;
- a persistent object becomes an inert `PersistentObject` record (class name, the source text
  kept as a string and never executed, and the module's `state`: `_parameters`, `_buffers`,
  `_modules`, `_init_kwargs`, ...);
- `dnnlib.util.EasyDict` becomes `EasyDict`, a plain dict subclass of ours;
- tensors are rebuilt by functions of ours; storages come from
  `torch.load(..., weights_only=True)`, torch's own data-only unpickler;
- any other name under `training.*`, `torch_utils.*` or `dnnlib.*` maps to an inert
  placeholder class that only records its arguments (the real module is never imported).

A torch zip archive (or a legacy `torch.save` file) is handed to
`torch.load(weights_only=True)` instead.

Functions of ours handed to the unpickler are wrapped in `_Guarded`, which refuses the
pickle BUILD opcode: a file cannot patch their defaults or attributes.
"""
from __future__ import annotations

import argparse
import collections
import io
import math
import os
import pickle
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch

ZIP_MAGIC = b"PK\x03\x04"
LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # first object of a legacy (non-zip) torch.save file
PLACEHOLDER_ROOTS = ("training", "torch_utils", "dnnlib")  # NVIDIA's own packages: never imported


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """The file asks for something outside the allow-list; nothing from it was run."""


# ----------------------------------------------------------------------------------------
# Inert records


class EasyDict(dict):
    """Stand-in for `dnnlib.util.EasyDict`: a dict whose keys are also attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setstate__(self, state: Any) -> None:  # BUILD on an instance: only plain data
        if state is not None and not isinstance(state, dict):
            raise UnsafePickleError(f"EasyDict state must be a dict, got {type(state).__name__}")
        self.update(state or {})


@dataclass
class PersistentObject:
    """One NVIDIA persistent network/module, as data. `module_src` is never executed."""

    class_name: str                          # NVIDIA stores the bare class name ('Generator')
    state: dict                              # the nn.Module __dict__ at pickling time
    version: int = 6
    module_src: str = field(default="", repr=False)

    def __setstate__(self, state: Any) -> None:
        raise UnsafePickleError("a persistent object must not carry pickle BUILD state")

    @property
    def init_kwargs(self) -> dict:
        return dict(self.state.get("_init_kwargs") or {})

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args") or ())

    def state_dict(self, prefix: str = "") -> "dict[str, torch.Tensor]":
        """Parameters and persistent buffers of this module and its children, torch-style keys."""
        return module_state_dict(self, prefix)


class Placeholder:
    """Base of the inert classes that stand for NVIDIA classes named by a plain global."""

    qualified_name = "?"
    args: tuple = ()            # class-level defaults: NEWOBJ creates instances without __init__
    kwargs: dict = {}
    state: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<placeholder for {self.qualified_name}>"


_placeholders: dict = {}


def placeholder_class(module: str, name: str) -> type:
    """One inert class per qualified name; constructing it only records the arguments."""
    key = f"{module}.{name}"
    if key not in _placeholders:
        _placeholders[key] = type(name, (Placeholder,), {"qualified_name": key,
                                                         "__module__": __name__})
    return _placeholders[key]


def module_state(obj: Any) -> Optional[dict]:
    """The nn.Module-like state dict of a persistent object or placeholder, else None."""
    state = obj.state if isinstance(obj, (PersistentObject, Placeholder)) else None
    return state if isinstance(state, dict) and "_parameters" in state else None


def module_state_dict(obj: Any, prefix: str = "", _path: tuple = ()) -> "dict[str, torch.Tensor]":
    """Walk `_parameters`, `_buffers` (minus non-persistent ones) and `_modules` recursively."""
    state = module_state(obj)
    if state is None:
        raise ValueError(f"{prefix or 'object'} is not a pickled torch module")
    if any(obj is seen for seen in _path):  # pickle memo references can form cycles
        raise ValueError(f"{prefix} contains itself")
    skip = set(state.get("_non_persistent_buffers_set") or ())
    out = {}
    for group in ("_parameters", "_buffers"):
        for name, t in (state.get(group) or {}).items():
            if t is None or name in skip:
                continue
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"{prefix}{name} is a {type(t).__name__}, not a tensor")
            out[prefix + name] = t
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            out.update(module_state_dict(child, f"{prefix}{name}.", _path + (obj,)))
    return out


# ----------------------------------------------------------------------------------------
# Reconstruction functions (ours), reached through the allow-list


class _Guarded:
    """A callable handed to the unpickler; refuses BUILD so a file cannot patch it."""

    __slots__ = ("_fn", "_name")

    def __init__(self, fn: Callable, name: str):
        self._fn, self._name = fn, name

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)

    def __setstate__(self, state: Any) -> None:
        raise UnsafePickleError(f"the file tries to modify {self._name}")


def _reconstruct_persistent_obj(meta: Any) -> PersistentObject:
    if not isinstance(meta, dict) or not isinstance(meta.get("state"), dict):
        raise UnsafePickleError("persistent object metadata must be a dict with a 'state' dict")
    if meta.get("type") != "class":
        raise UnsafePickleError(f"unsupported persistent object type {meta.get('type')!r}")
    class_name, src = meta.get("class_name"), meta.get("module_src", "")
    if not isinstance(class_name, str) or not isinstance(src, str):
        raise UnsafePickleError("persistent object class_name and module_src must be strings")
    return PersistentObject(class_name, meta["state"], meta.get("version", 6), src)


def _load_from_bytes(b: Any) -> Any:
    """A storage pickled by torch: a legacy torch.save payload, read with weights_only."""
    if not isinstance(b, (bytes, bytearray)):
        raise UnsafePickleError("torch.storage._load_from_bytes expects bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage deprecation notices
        try:
            return torch.load(io.BytesIO(bytes(b)), weights_only=True, map_location="cpu")
        except pickle.UnpicklingError as e:
            raise UnsafePickleError(f"an embedded tensor storage was refused by torch: {e}") from None


def _untyped(storage: Any) -> "tuple[torch.UntypedStorage, torch.dtype]":
    """(bytes, element dtype) of a storage from torch.load; TypedStorage is deprecated."""
    if isinstance(storage, torch.storage.TypedStorage):
        return storage._untyped_storage, storage.dtype
    if isinstance(storage, torch.UntypedStorage):
        return storage, torch.uint8
    raise UnsafePickleError(f"expected a torch storage, got {type(storage).__name__}")


def _check_bounds(numel: int, offset: Any, size: Any, stride: Any) -> None:
    ints = all(isinstance(v, int) for v in (offset, *size, *stride))
    if not ints or len(size) != len(stride) or offset < 0 or min(size, default=0) < 0:
        raise UnsafePickleError(f"malformed tensor geometry {offset}, {size}, {stride}")
    if 0 in size:
        return
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if min(stride, default=0) < 0 or last >= numel:
        raise UnsafePickleError(f"tensor of size {tuple(size)} runs past its storage ({numel})")


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any,
                       requires_grad: Any = False, backward_hooks: Any = None,
                       metadata: Any = None) -> torch.Tensor:
    """Tensor view of a storage; geometry checked here (Tensor.set_ would grow the storage)."""
    size, stride = tuple(size), tuple(stride)
    untyped, dtype = _untyped(storage)
    _check_bounds(untyped.nbytes() // dtype.itemsize, storage_offset, size, stride)
    if backward_hooks or metadata:
        raise UnsafePickleError("tensors with backward hooks or metadata are not supported")
    return torch.empty(0, dtype=dtype).set_(untyped, storage_offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None,
                       state: Any = None) -> torch.Tensor:
    """Parameters come back as plain tensors: the records are data, nothing trains them."""
    if not isinstance(data, torch.Tensor):
        raise UnsafePickleError("a parameter must wrap a tensor")
    if backward_hooks:
        raise UnsafePickleError("parameters with backward hooks are not supported")
    return data


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """copyreg._reconstructor, restricted to our placeholder classes over `object`."""
    if not (isinstance(cls, type) and issubclass(cls, Placeholder)) or base is not object:
        raise UnsafePickleError(f"copyreg._reconstructor refused for {cls!r}")
    return cls.__new__(cls)


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """Protocol-2 pickles spell bytes as _codecs.encode(str, 'latin1')."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError("_codecs.encode is allowed only for latin1 text")
    return text.encode("latin1")


# numpy: NVIDIA's module state holds numpy float64 gains (and StyleGAN3's small int arrays).
# numpy's own dtype/ndarray reconstruction is NOT safe on hostile input: a crafted dtype
# state can hide an object field, and an array built from raw bytes then holds forged
# pointers. So only plain numeric dtypes are rebuilt here, by our code.

_NUMPY_KINDS = "biufc"  # bool, int, uint, float, complex: no objects, strings or structs


class NumpyDType:
    """Stand-in for a pickled numpy.dtype: a plain numeric dtype, byte order from its state."""

    def __init__(self, spec: Any, align: Any = False, copy: Any = True):
        try:
            dtype = np.dtype(spec) if isinstance(spec, str) else None
        except (TypeError, ValueError):
            dtype = None
        if dtype is None or dtype.kind not in _NUMPY_KINDS or dtype.fields is not None:
            raise UnsafePickleError(f"numpy dtype {spec!r} is not a plain numeric dtype")
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) >= 5 and state[2:5] == (None, None, None)):
            raise UnsafePickleError("numpy dtype state with sub-arrays or fields is not supported")
        if state[1] in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(state[1])


def _numpy_dtype_of(value: Any) -> np.dtype:
    if not isinstance(value, NumpyDType):
        raise UnsafePickleError(f"expected a pickled numpy dtype, got {type(value).__name__}")
    return value.dtype


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """numpy's scalar(dtype, bytes) for plain numeric dtypes."""
    dtype = _numpy_dtype_of(dtype)
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise UnsafePickleError(f"numpy scalar of dtype {dtype} needs {dtype.itemsize} bytes")
    return np.frombuffer(data, dtype=dtype)[0]


class NumpyArray(np.ndarray):
    """ndarray rebuilt by our __setstate__: plain numeric dtype, byte count checked."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise UnsafePickleError("malformed numpy array state")
        shape, dtype, fortran, raw = state[-4:]
        dtype = _numpy_dtype_of(dtype)
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else None
        if shape is None or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise UnsafePickleError("malformed numpy array shape")
        if not isinstance(raw, bytes) or len(raw) != dtype.itemsize * math.prod(shape):
            raise UnsafePickleError("numpy array data does not match its shape and dtype")
        super().__setstate__((shape, dtype, bool(fortran), raw))


def _refuse_ndarray_call(*args: Any) -> None:
    raise UnsafePickleError("numpy.ndarray may only be named as the type of a pickled array")


_NDARRAY = None  # set below to the guarded token standing for numpy.ndarray


def _numpy_reconstruct(subtype: Any, shape: Any = (0,), dtype: Any = b"b") -> np.ndarray:
    if subtype is not _NDARRAY:
        raise UnsafePickleError(f"numpy array reconstruction refused for {subtype!r}")
    return np.ndarray.__new__(NumpyArray, (0,), np.uint8)


def _bytearray(*args: Any) -> bytearray:
    if args and not isinstance(args[0], (bytes, str)):
        raise UnsafePickleError("bytearray may only be rebuilt from bytes")
    return bytearray(*args)


# ----------------------------------------------------------------------------------------
# The allow-list


def _guard(fn: Callable, name: str) -> _Guarded:
    return _Guarded(fn, name)


_NUMPY_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")

ALLOWED: dict = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"):
        _guard(_reconstruct_persistent_obj, "_reconstruct_persistent_obj"),
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): _guard(_bytearray, "bytearray"),
    ("builtins", "object"): object,
    ("copyreg", "_reconstructor"): _guard(_reconstructor, "copyreg._reconstructor"),
    ("_codecs", "encode"): _guard(_codecs_encode, "_codecs.encode"),
    ("torch._utils", "_rebuild_tensor_v2"): _guard(_rebuild_tensor_v2, "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"): _guard(_rebuild_parameter, "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"):
        _guard(_rebuild_parameter, "_rebuild_parameter_with_state"),
    ("torch.storage", "_load_from_bytes"): _guard(_load_from_bytes, "_load_from_bytes"),
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("numpy", "dtype"): _guard(NumpyDType, "numpy.dtype"),
}
_NDARRAY = _guard(_refuse_ndarray_call, "numpy.ndarray")
ALLOWED[("numpy", "ndarray")] = _NDARRAY
for _m in _NUMPY_MULTIARRAY:  # numpy 1.x and 2.x spellings
    ALLOWED[(_m, "scalar")] = _guard(_numpy_scalar, "numpy scalar")
    ALLOWED[(_m, "_reconstruct")] = _guard(_numpy_reconstruct, "numpy _reconstruct")


def _torch_dtype(module: str, name: str) -> Optional[torch.dtype]:
    """torch dtypes (torch.float32, ...). Storage classes (torch.FloatStorage) stay refused:
    they only occur inside storage payloads, which torch.load(weights_only=True) reads."""
    value = getattr(torch, name, None) if module == "torch" and not name.startswith("_") else None
    return value if isinstance(value, torch.dtype) else None


_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class SafeUnpickler(pickle.Unpickler):
    """pickle.Unpickler whose globals come from ALLOWED or inert placeholders, nothing else."""

    def __init__(self, file: Any, source: str = "pickle"):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        module = _PY2_MODULES.get(module, module)  # protocol <= 2 spells builtins '__builtin__'
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]
        value = _torch_dtype(module, name)
        if value is not None:
            return value
        if module.split(".")[0] in PLACEHOLDER_ROOTS:
            return placeholder_class(module, name)
        raise UnsafePickleError(
            f"{self.source}: refusing to load global '{module}.{name}', which is not on the "
            f"allow-list of data types (nothing from the file was run)")

    def load(self) -> Any:
        try:
            return super().load()
        except UnsafePickleError as e:  # raised inside a reconstruction: add the file name
            if str(e).startswith(f"{self.source}:"):
                raise
            raise UnsafePickleError(f"{self.source}: {e}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source}: persistent ids are not supported")


# ----------------------------------------------------------------------------------------
# Entry points


def torch_load(f: Any, source: str) -> Any:
    """torch.load with weights_only=True; a refusal becomes UnsafePickleError."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):  # rosinality's `args`
            return torch.load(f, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        raise UnsafePickleError(f"{source}: torch.load(weights_only=True) refused the file: "
                                f"{str(e).splitlines()[0]}") from None


def loads(data: bytes, source: str = "pickle") -> Any:
    return load(io.BytesIO(data), source)


def load(file: Any, source: Optional[str] = None) -> Any:
    """Load a pickle (path or binary file object) with the allow-list unpickler.

    A torch zip archive or legacy torch.save file goes to torch.load(weights_only=True).
    """
    if isinstance(file, (str, os.PathLike)):
        with open(file, "rb") as f:
            return load(f, source or str(file))
    source = source or getattr(file, "name", "pickle")
    start = file.tell()
    if file.read(4) == ZIP_MAGIC:
        file.seek(start)
        return torch_load(file, source)
    file.seek(start)
    obj = SafeUnpickler(file, source).load()
    if isinstance(obj, int) and obj == LEGACY_TORCH_MAGIC:
        file.seek(start)
        return torch_load(file, source)
    return obj
