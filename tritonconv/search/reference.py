"""What a candidate is checked against: float64 reference outputs and per-precision tolerances."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..cudnn import cudnn_conv2d
from ..kernels.base import ConvTensors
from ..problem import ConvProblem

# Relative error ||out - ref|| / ||ref|| a candidate may have, per operand precision (same table as the tests).
# int8: the search checks unit-scale float32 outputs of exact int32 sums (only float32 rounding, < 2^-24 each).
TOLERANCE: dict[str, float] = {"ieee": 1e-5, "tf32": 3e-3, "tf32x3": 1e-5, "fp16": 1e-2, "bf16": 3e-2, "int8": 1e-6}


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64; infinite if `out` has a NaN/Inf (e.g. an unwritten poisoned element)."""
    out64 = out.detach().double().to(ref.device)
    if not torch.isfinite(out64).all():
        return float("inf")
    return ((out64 - ref).norm() / ref.norm().clamp_min(1e-30)).item()


@dataclass
class ProblemData:
    """Random inputs of one problem on the benchmark device and their float64 reference output (same device)."""

    input: torch.Tensor
    weight: torch.Tensor
    reference: torch.Tensor

    @classmethod
    def make(cls, problem: ConvProblem, device: str, *, seed: int = 0) -> "ProblemData":
        x, w = problem.make_tensors(device, seed=seed)
        # float64 on the benchmark device: a big layer's reference takes minutes on a CPU, milliseconds on a GPU.
        reference = cudnn_conv2d(problem, ConvTensors(x.double(), w.double(), output=None))  # type: ignore[arg-type]
        return cls(x, w, reference)
