"""What a candidate is checked against: float64 reference outputs (the per-precision tolerances are
`tritonconv.enums.Precision.tolerance`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..cudnn import cudnn_conv2d
from ..kernels.base import ConvTensors
from ..problem import ConvProblem

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
