"""The numeric precision a model runs in: choosing it, checking the device can run it, and
setting the backend flags that go with it.

StyleGAN2 generators take a precision through `Generator.set_precision` (NVIDIA's per-block
fp16 scheme, see gankit.models.stylegan2); other models (classifiers, feature nets) run under
`autocast`.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Optional

import torch

PRECISIONS = (
    "auto",  # GPU_DEFAULT on a CUDA device, fp32 elsewhere
    "fp32",  # full fp32, TF32 off: bit-identical to NVIDIA's fp32 reference path
    "tf32",  # fp32 tensors, convs/matmuls on TF32 tensor cores (10-bit mantissa products)
    "bf16",  # StyleGAN's top blocks in bfloat16 (8-bit exponent, 7-bit mantissa); CPU or GPU
    "fp16",  # StyleGAN's top blocks in float16 with NVIDIA's clamp and pre-normalisation; GPU
)

# NVIDIA renders its own results with the checkpoint's fp16 blocks, so fp16 is the tested
# reduced precision. On H100 fp16 and bf16 run at the same tensor-core rate, and fp16's 10-bit
# mantissa keeps images closer to fp32 than bf16's 7 bits (the conv clamp keeps fp16's smaller
# range safe). The measured tolerance against fp32 is in MODELS.md.
GPU_DEFAULT = "fp16"

_REDUCED = {"fp16": torch.float16, "bf16": torch.bfloat16}


def _is_cuda(device) -> bool:
    return str(device).startswith("cuda")


def resolve(precision: str, device) -> str:
    """'auto' -> GPU_DEFAULT on CUDA, else 'fp32'; a named precision is returned as is."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return GPU_DEFAULT if _is_cuda(device) else "fp32"
    return precision


def reduced_dtype(precision: str) -> Optional[torch.dtype]:
    """torch.float16 / torch.bfloat16 for 'fp16' / 'bf16'; None for the fp32 precisions."""
    return _REDUCED.get(precision)


@functools.lru_cache(maxsize=None)
def _cpu_runs_bf16_conv() -> bool:
    # Some CPU builds lack bf16 kernels for conv2d; a 1-pixel conv tells.
    try:
        x = torch.ones([1, 1, 1, 1], dtype=torch.bfloat16)
        torch.nn.functional.conv2d(x, x)
        return True
    except (RuntimeError, NotImplementedError):
        return False


def _gpu_runs_bf16() -> bool:
    # Native bf16 only (Ampere and later, ROCm): older GPUs emulate it, slowly.
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def check(precision: str, device) -> None:
    """Raise ValueError (one sentence) when `device` cannot run `precision`."""
    precision = resolve(precision, device)
    if _is_cuda(device):
        if precision == "bf16" and not _gpu_runs_bf16():
            raise ValueError(f"precision 'bf16' is not supported by this GPU ({device}); "
                             "use fp16 or fp32")
        return
    if precision == "fp16":
        raise ValueError("precision 'fp16' needs a CUDA GPU; use fp32 or bf16 on CPU")
    if precision == "tf32":
        raise ValueError("precision 'tf32' is a GPU tensor-core mode and needs a CUDA GPU; "
                         "use fp32 on CPU")
    if precision == "bf16" and not _cpu_runs_bf16_conv():
        raise ValueError("precision 'bf16' cannot run here: this PyTorch CPU build has no "
                         "bfloat16 conv2d; use fp32")


def configure_backends(device, precision: str, threads: Optional[int] = None) -> None:
    """Backend flags for `precision` on `device`: deterministic cuDNN, TF32 only for 'tf32'.

    TF32 stays off for fp16/bf16 too, as in NVIDIA's fp16 training: the fp32 blocks then
    stay exact fp32. On CPU nothing is set apart from `threads` (torch.set_num_threads).
    """
    precision = resolve(precision, device)
    if threads is not None:
        torch.set_num_threads(threads)
    if not _is_cuda(device):
        return
    torch.backends.cudnn.deterministic = True    # same images run to run
    torch.backends.cudnn.benchmark = False       # autotuning may pick a different algorithm
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def autocast(device, precision: str):
    """Context for models without their own precision scheme (classifiers, feature nets):
    torch.autocast in bf16/fp16, else a no-op (tf32 is a backend flag, see configure_backends).
    """
    dtype = reduced_dtype(resolve(precision, device))
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda" if _is_cuda(device) else "cpu", dtype=dtype)
