"""Registry of conv kernel families. Every family competes in the search where it `supports()` a problem.

Families are listed here explicitly (`FAMILY_CLASSES`): a new family is one module named like the family
(`kernels/<name>.py`, built from `kernels/base.py` and `kernels/common/`, never from another family's module)
plus one line in that list.
"""
from __future__ import annotations

from typing import Optional

from ..errors import InvalidConfigError
from ..problem import ConvProblem
from ..runtime import DeviceInfo
from .base import Config, ConfigSpace, ConvTensors, KernelCall, KernelFamily, Param
from .depthwise import DepthwiseConv
from .gemm import GemmConv
from .hopper_implicit_gemm import HopperConv
from .implicit_gemm import ImplicitGemmConv
from .int8_implicit_gemm import Int8ImplicitGemmConv
from .small_group import SmallGroupConv
from .winograd import WinogradConv

# Order matters only where families tie (iteration order of FAMILIES, e.g. reports and sweeps).
FAMILY_CLASSES: tuple[type[KernelFamily], ...] = (
    DepthwiseConv, HopperConv, ImplicitGemmConv, SmallGroupConv, GemmConv, Int8ImplicitGemmConv, WinogradConv,
)
FAMILIES: dict[str, KernelFamily] = {cls.name: cls() for cls in FAMILY_CLASSES}
DEFAULT_FAMILY = "implicit_gemm"


def get_family(name: str) -> KernelFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise InvalidConfigError(f"unknown kernel family {name!r}; known: {sorted(FAMILIES)}") from None


def families_for(problem: ConvProblem, device: Optional[DeviceInfo] = None) -> list[KernelFamily]:
    """Every registered family that computes `problem` correctly on `device` (None: the device this process runs
    kernels on): those whose `refusal` is None."""
    return [f for f in FAMILIES.values() if f.refusal(problem, device) is None]


__all__ = [
    "FAMILIES", "FAMILY_CLASSES", "DEFAULT_FAMILY", "get_family", "families_for",
    "Config", "ConfigSpace", "ConvTensors", "KernelCall", "KernelFamily", "Param",
]
