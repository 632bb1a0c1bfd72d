"""Registry of conv kernel families. Every family competes in the search where it `supports()` a problem.

Families are discovered from this package's modules: any module defining a `KernelFamily` subclass with a
`name` registers one instance of it, so adding a family means adding one file.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil

from ..errors import InvalidConfigError
from ..problem import ConvProblem
from .base import Config, ConfigSpace, ConvTensors, KernelCall, KernelFamily, Param

FAMILIES: dict[str, KernelFamily] = {}
DEFAULT_FAMILY = "implicit_gemm"
_INFRASTRUCTURE = {"base", "epilogue", "tiling"}


def register(family: KernelFamily) -> KernelFamily:
    FAMILIES[family.name] = family
    return family


def _discover() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name in _INFRASTRUCTURE or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, KernelFamily) and cls.__module__ == module.__name__ and cls.name:
                register(cls())


def get_family(name: str) -> KernelFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise InvalidConfigError(f"unknown kernel family {name!r}; known: {sorted(FAMILIES)}") from None


def families_for(problem: ConvProblem) -> list[KernelFamily]:
    """Every registered family that computes `problem` correctly (its dtype and precision among the family's
    `dtypes` and `precisions`, a batched
    weight only where a family says `handles_batched_weight`)."""
    return [
        f for f in FAMILIES.values()
        if problem.dtype in f.dtypes and problem.precision in f.precisions and f.supports(problem) is None
        and (not problem.batched_weight or getattr(f, "handles_batched_weight", False))
    ]


_discover()

__all__ = [
    "FAMILIES", "DEFAULT_FAMILY", "register", "get_family", "families_for",
    "Config", "ConfigSpace", "ConvTensors", "KernelCall", "KernelFamily", "Param",
]
