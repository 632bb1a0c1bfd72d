"""Checks of the tensors handed to tritonconv's functions (conv2d, matmul, the int8 conv): dense, a computed
dtype, one supported device. Each failure is a tritonconv error naming the argument."""
from __future__ import annotations

from typing import Optional

import torch

from .enums import DType
from .errors import InvalidInputError, UnsupportedError
from .runtime import INTERPRET


def check_tensors(**tensors: Optional[torch.Tensor]) -> None:
    """Each given tensor (None skips) is a dense torch.Tensor: sparse, nested and quantized tensors are
    UnsupportedErrors naming the argument."""
    for what, t in tensors.items():
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise InvalidInputError(f"{what} must be a torch.Tensor, got {type(t).__name__}")
        if t.is_nested:
            raise UnsupportedError(f"{what} is a nested tensor: tritonconv supports dense (strided) tensors; "
                                   f"pad it (torch.nested.to_padded_tensor) or run its components one by one")
        if t.layout != torch.strided:
            raise UnsupportedError(f"{what} is a sparse tensor ({t.layout}): tritonconv supports dense (strided) "
                                   f"tensors; convert it with .to_dense()")
        if t.is_quantized:
            raise UnsupportedError(f"{what} is quantized ({t.dtype}): tritonconv supports float32, float16 and "
                                   f"bfloat16; dequantize it with .dequantize()")


def check_dtype(t: torch.Tensor, what: str) -> str:
    """The name of `t`'s dtype if tritonconv computes it (float32, float16, bfloat16), else an UnsupportedError."""
    dtype = DType.from_torch(t.dtype)
    if dtype is None or dtype.quantized:
        if t.dtype == torch.float64:
            raise UnsupportedError(f"{what} is float64: tritonconv supports float32, float16 and bfloat16")
        if t.dtype == torch.int8:
            raise UnsupportedError(f"{what} has dtype {t.dtype}: tritonconv.conv2d computes float32, float16 and bfloat16; "
                                   f"use tritonconv.quantized.conv2d for int8 tensors with their scales")
        raise UnsupportedError(f"{what} has dtype {t.dtype}: tritonconv supports float32, float16 and bfloat16")
    return dtype.value


def check_device(tensors: dict[str, Optional[torch.Tensor]]) -> None:
    """All given tensors (None skips) are on one device tritonconv runs on: CUDA, meta, or CPU in the interpreter."""
    present = {name: t for name, t in tensors.items() if t is not None}
    devices = {t.device for t in present.values()}
    if len(devices) > 1:
        listing = ", ".join(f"{n} on {t.device}" for n, t in present.items())
        raise InvalidInputError(f"all tensors must be on one device, got {listing}")
    device = devices.pop()
    if device.type == "cuda" or device.type == "meta":
        return
    if device.type == "cpu":
        if INTERPRET:
            return
        raise InvalidInputError(
            "tritonconv runs on CUDA tensors; got CPU tensors. Move them to a GPU, or set TRITON_INTERPRET=1 "
            "before importing tritonconv to run (slowly) on the CPU through the Triton interpreter"
        )
    raise InvalidInputError(f"tensors on device type {device.type!r} are not supported (CUDA, or CPU with the interpreter)")
