"""The roofline floor of a benchmark run: copy bandwidth and matmul FLOP/s measured on this GPU in the same run
(`measure_peaks`), and max(flops / peak FLOP/s, bytes / peak bandwidth) per problem (`floor_ms`)."""
from __future__ import annotations

import functools
from typing import Any, Callable, Protocol

import torch

from .errors import InvalidInputError
from .enums import DType, Precision, default_precision
from .reference import tf32_enabled
from .timing import Timer



class HasWork(Protocol):
    """Anything with a FLOP count and a minimum byte count (ConvProblem, a GEMM's ConvProblem, ...)."""

    flops: int
    min_bytes: int


def default_time_fn(fn: Callable[[], object]) -> float:
    """tritonconv.timing.time_ms: do_bench medians with the L2 cache flushed (imported lazily: needs a GPU)."""
    from .timing import time_ms

    return time_ms(fn)


def _matmul_dtype(dtype: str, precision: str) -> tuple[torch.dtype, bool]:
    """The dtype the matrix units multiply in for (dtype, precision), and whether that is TF32."""
    rule = Precision(precision)
    if rule.scaled:  # torch.matmul has no fp8: the fp16 peak (fp8 tensor cores run up to twice as fast)
        return DType.FLOAT16.torch, False
    if rule.operand_dtype:
        return DType(rule.operand_dtype).torch, False
    return DType(dtype).torch, dtype == "float32" and rule.tf32_mma


def measure_peaks(
    dtype: str | torch.dtype = "float16",
    precision: str = "",
    *,
    device: str | torch.device = "cuda",
    copy_mib: int = 1024,
    matmul_size: int = 8192,
    time_fn: Timer = default_time_fn,
) -> dict[str, Any]:
    """Peak bandwidth and FLOP/s measured on `device` now, for the roofline floor of this run.

    Bandwidth: a device-to-device copy of `copy_mib` MiB, counting read + write bytes. FLOP/s: a square
    torch.matmul of `matmul_size` in the dtype the matrix units use for (dtype, precision): float32 with
    precision "ieee" runs without TF32, "tf32"/"tf32x3" with TF32 (tf32x3 does ~3 TF32 products, so its fraction of
    this floor is at most ~1/3), "fp16"/"bf16" in that type. These are achievable peaks, not datasheet numbers.
    """
    known = DType(dtype) if dtype in DType.names() else DType.from_torch(dtype)
    if known is None:
        raise InvalidInputError(f"unknown dtype {dtype!r}; choose from {sorted(DType.names())}")
    dtype_name = known.value
    precision = precision or default_precision(dtype_name)
    mm_dtype, use_tf32 = _matmul_dtype(dtype_name, precision)

    src = torch.empty(copy_mib * 2**20, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    copy_ms = time_fn(functools.partial(dst.copy_, src))
    del src, dst

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(matmul_size, matmul_size, generator=gen).to(device=device, dtype=mm_dtype)
    b = torch.randn(matmul_size, matmul_size, generator=gen).to(device=device, dtype=mm_dtype)
    with tf32_enabled(use_tf32):
        matmul_ms = time_fn(functools.partial(torch.matmul, a, b))
    del a, b

    copy_bytes = 2 * copy_mib * 2**20
    matmul_flops = 2 * matmul_size**3
    return {
        "dtype": dtype_name, "precision": precision, "matmul_dtype": str(mm_dtype).removeprefix("torch."),
        "tf32": use_tf32, "copy_bytes": copy_bytes, "copy_ms": copy_ms, "matmul_size": matmul_size,
        "matmul_ms": matmul_ms, "bytes_per_s": copy_bytes / (copy_ms * 1e-3),
        "flops_per_s": matmul_flops / (matmul_ms * 1e-3),
    }


def floor_ms(flops: float, nbytes: float, peaks: dict[str, Any]) -> float:
    """The roofline floor: max(flops / peak FLOP/s, bytes / peak bandwidth), in milliseconds."""
    return 1e3 * max(flops / peaks["flops_per_s"], nbytes / peaks["bytes_per_s"])


def roofline_floor_ms(problem: HasWork, peaks: dict[str, Any]) -> float:
    """`floor_ms` of a problem's FLOPs and minimum bytes (input + weight read once, output written once)."""
    return floor_ms(problem.flops, problem.min_bytes, peaks)
