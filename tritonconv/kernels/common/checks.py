"""Refusal reasons several families share (their `supports` and space constraints start from these and add their
own): the launch grid's limits. (A batched weight is refused by `KernelFamily.refusal`.)"""
from __future__ import annotations

from typing import Optional

from ...problem import ConvProblem

# CUDA's launch grid: up to 2^31 - 1 programs along axis 0, 65535 along axes 1 and 2.
MAX_GRID_X = 2**31 - 1
MAX_GRID_YZ = 65535


def programs_reason(programs: int) -> Optional[str]:
    """Why a 1-D launch of `programs` programs cannot run (None if it can)."""
    return f"{programs} programs exceed the launch grid's limit of {MAX_GRID_X}" if programs > MAX_GRID_X else None


def groups_grid_reason(problem: ConvProblem, programs_per_group: int = 1) -> Optional[str]:
    """Why a launch whose grid axis 1 walks the groups, `programs_per_group` programs each, cannot run."""
    if problem.groups * programs_per_group <= MAX_GRID_YZ:
        return None
    limit = f"{MAX_GRID_YZ}" if programs_per_group == 1 else f"{MAX_GRID_YZ} // {programs_per_group}"
    return f"groups={problem.groups} exceeds the launch grid's limit of {limit}"
