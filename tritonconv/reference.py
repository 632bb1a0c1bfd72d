"""The one reference and error measure every check uses (tuning, the benchmarks, bench/*.py, the tests): a
conv computed by PyTorch in float64 (or, for shapes too big for that, float32 without TF32) and the relative
error ||out - ref|| / ||ref|| against it."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from .cudnn import cudnn_conv2d
from .kernels.base import ConvTensors
from .problem import ConvProblem

# Benchmarks give shapes with at most this many FLOPs a float64 reference, larger ones a float32 (no TF32) one.
FLOAT64_REFERENCE_MAX_FLOPS = 2 * 10**9


@contextlib.contextmanager
def tf32_enabled(enabled: bool) -> Iterator[None]:
    """Temporarily allow (or forbid) TF32 in cuBLAS matmuls and cuDNN convs."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref||, computed in the reference's dtype on its device; infinite if `out` has a NaN or an
    Inf (e.g. an unwritten element of a NaN-poisoned output)."""
    out = out.detach().to(device=ref.device, dtype=ref.dtype)
    if not torch.isfinite(out).all():
        return float("inf")
    return ((out - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def reference_dtype(problem: ConvProblem) -> torch.dtype:
    """float64 up to FLOAT64_REFERENCE_MAX_FLOPS, float32 above (a float64 conv of a big layer is slow)."""
    return torch.float64 if problem.flops <= FLOAT64_REFERENCE_MAX_FLOPS else torch.float32


def reference_conv(problem: ConvProblem, x: torch.Tensor, w: torch.Tensor,
                   dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """`problem`'s conv of `x` and `w` by PyTorch in `dtype` on their device, TF32 off."""
    with tf32_enabled(False):
        return cudnn_conv2d(problem, ConvTensors(x.to(dtype), w.to(dtype), output=None))  # type: ignore[arg-type]
