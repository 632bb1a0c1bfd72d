"""cuDNN, the baseline every tuned problem and every benchmark is compared with: F.conv2d on NCHW and on NHWC
tensors with cudnn.benchmark on and TF32 as the problem's precision allows, each checked against the reference
before it is timed. On a CPU (interpreter runs) the same calls run PyTorch's CPU conv."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import torch

from .cudnn import cudnn_conv2d
from .enums import Precision
from .kernels.base import ConvTensors
from .problem import ConvProblem
from .reference import rel_error
from .timing import Timer

LAYOUTS = (("nchw", torch.contiguous_format), ("nhwc", torch.channels_last))


@dataclass
class CudnnTiming:
    """One layout's checked and timed cuDNN run, or the exception that stopped it."""

    layout: str
    tf32: bool
    ms: Optional[float] = None
    rel_error: Optional[float] = None
    exception: Optional[BaseException] = None

    @property
    def error(self) -> Optional[str]:
        return None if self.exception is None else f"{type(self.exception).__name__}: {self.exception}"


def cudnn_allows_tf32(problem: ConvProblem) -> bool:
    """TF32 for cuDNN only where the problem's precision is TF32-like (or lower) on float32 inputs
    (enums.Precision.cudnn_tf32)."""
    return problem.dtype == "float32" and Precision(problem.precision).cudnn_tf32


def time_cudnn(problem: ConvProblem, x: torch.Tensor, w: torch.Tensor, reference: torch.Tensor,
               timer: Timer) -> list[CudnnTiming]:
    """cuDNN on `x`, `w` in each layout: a checked run (which also lets cudnn.benchmark pick its algorithm),
    then `timer`. A layout that raises is recorded with its exception; the other one still runs. A quantized
    problem is compared with the float conv of the same values (PyTorch has no cuDNN int8 conv): fp16 on a GPU,
    float32 on a CPU."""
    problem, x, w = float_twin(problem, x, w)
    tf32 = cudnn_allows_tf32(problem)
    timings = []
    with torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=False, allow_tf32=tf32):
        for layout, memory_format in LAYOUTS:
            timing = CudnnTiming(layout, tf32)
            tensors = ConvTensors(x.contiguous(memory_format=memory_format), w.contiguous(memory_format=memory_format),
                                  output=None)  # type: ignore[arg-type]
            run = functools.partial(cudnn_conv2d, problem, tensors)
            try:
                timing.rel_error = rel_error(run(), reference)
                timing.ms = timer(run)
            except Exception as exc:  # a failing layout is recorded, the other one goes on
                timing.exception = exc
            timings.append(timing)
    return timings


def float_twin(problem: ConvProblem, x: torch.Tensor, w: torch.Tensor) -> tuple[ConvProblem, torch.Tensor, torch.Tensor]:
    """`problem` and its tensors as cuDNN can run them: a quantized problem as the float conv of the same values."""
    if not problem.is_quantized:
        return problem, x, w
    dtype = "float16" if x.device.type == "cuda" else "float32"
    problem = problem.with_(dtype=dtype, precision="fp16" if dtype == "float16" else "ieee")
    return problem, x.to(problem.torch_dtype), w.to(problem.torch_dtype)


def fastest(timings: list[CudnnTiming]) -> Optional[CudnnTiming]:
    timed = [t for t in timings if t.ms is not None]
    return min(timed, key=lambda t: t.ms) if timed else None  # type: ignore[arg-type, return-value]
