"""Tuned-config cache (placeholder until the search lands: nothing is cached yet)."""
from __future__ import annotations

from typing import Any, Optional

import torch

from .problem import ConvProblem


def lookup_config(problem: ConvProblem, device: torch.device) -> Optional[dict[str, Any]]:
    """The tuned config (with its "family" key) for `problem` on `device`, or None."""
    return None
