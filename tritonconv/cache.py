"""Tuned-config cache (placeholder until the search lands: nothing is cached yet)."""
from __future__ import annotations

from typing import Any, Optional

import torch

from .problem import ConvProblem


def lookup_config(problem: ConvProblem, device: torch.device, backend: str = "auto") -> Optional[dict[str, Any]]:
    """The tuned config (with its "family" key) for `problem` on `device`, or None. With backend="auto" the
    family may be "cudnn" where cuDNN measured faster; with "triton" it is always the best Triton kernel."""
    return None
