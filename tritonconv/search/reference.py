"""What a candidate is checked against: each problem's inputs and their float64 reference output
(tritonconv.reference; the per-precision tolerances are `tritonconv.enums.Precision.tolerance`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..problem import ConvProblem
from ..reference import reference_conv


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
        reference = reference_conv(problem, x, w, torch.float64)
        return cls(x, w, reference)
