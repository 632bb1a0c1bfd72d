"""Kernel family versions: the current one (a family's own hash, `KernelFamily.version`), and the rules older
schema versions were written with, so that an entry of an older file whose kernel is unchanged is kept usable
(re-stamped with the current version) when the rule changes, instead of being thrown away.

Schema versions 1 and 2 were written with a hash of a family's whole import closure (`import_closure_version`);
schema version 3 files first with a hash of its own module plus the kernels it launches
(`own_module_and_kernels_version`), then with the current rule (which adds the plain-Python launch code the family
imports from kernels.common and kernels.base: `kernels.base.shared_launch_modules`, and counts Python modules by
their code alone, `kernels.base.code_of`, so comments and docstrings no longer matter). Re-stamping
is applied to the entries of every file read, and costs nothing for an entry whose version is current (the old
rules are computed once per process, for a family only when one of its stored versions is not current).
Whoever changes the rule again appends a frozen copy of the outgoing rule to LEGACY_RULES.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

from ..kernels import FAMILIES, KernelFamily


def family_version(name: str) -> str | None:
    """A family's source hash (computed once per process by the family), None for an unknown family."""
    family = FAMILIES.get(name)
    return family.version if family is not None else None


def import_closure_version(family: KernelFamily) -> str:
    """The family version of schema versions 1 and 2: a hash of the source of the family's module and of every
    tritonconv module it imports or takes functions, kernels or classes from, transitively."""
    found: dict[str, ModuleType] = {}
    pending = [inspect.getmodule(type(family))]
    while pending:
        current = pending.pop()
        if current is None or current.__name__ in found:
            continue
        found[current.__name__] = current
        for value in vars(current).values():
            dependency = value if isinstance(value, ModuleType) else inspect.getmodule(getattr(value, "fn", value))
            if dependency is not None and dependency.__name__.startswith("tritonconv.") and dependency.__name__ not in found:
                pending.append(dependency)
    digest = hashlib.sha256()
    for name in sorted(found):
        digest.update(inspect.getsource(found[name]).encode())
    return digest.hexdigest()[:12]


def own_module_and_kernels_version(family: KernelFamily) -> str:
    """The family version of schema version 3 before the current rule: a hash of the source of the family's
    module and of what identifies the Triton code it launches (frozen copies of the kernel keys of that time)."""
    module = inspect.getmodule(type(family))
    return hashlib.sha256("\0".join([inspect.getsource(module), *_frozen_kernel_keys(module)]).encode()).hexdigest()[:12]


def _frozen_kernel_keys(module: ModuleType) -> list[str]:
    """`kernels.base.kernel_keys` as own_module_and_kernels_version used it: the `cache_key` of every jit
    function `module` defines or imports (compiled Triton), else the source of every jit function reached."""
    jitted = [value for value in vars(module).values() if _frozen_python_function(value) is not None]
    if jitted and all(hasattr(value, "cache_key") for value in jitted):
        return sorted(value.cache_key for value in jitted)
    found: dict[str, Callable] = {}
    pending = [fn for fn in map(_frozen_python_function, vars(module).values()) if fn is not None]
    while pending:
        fn = pending.pop()
        name = f"{fn.__module__}.{fn.__qualname__}"
        if name in found:
            continue
        found[name] = fn
        names = fn.__code__.co_names
        for referenced in names:
            value = fn.__globals__.get(referenced)
            candidates = [value] + ([getattr(value, attr, None) for attr in names] if isinstance(value, ModuleType) else [])
            pending += [f for f in map(_frozen_python_function, candidates) if f is not None]
    return [inspect.getsource(found[name]) for name in sorted(found)]


def _frozen_python_function(value: Any) -> Callable | None:
    fn = getattr(value, "fn", None)
    is_jit = inspect.isfunction(fn) and type(value).__module__.startswith("triton.")
    return fn if is_jit and fn.__module__.startswith("tritonconv.") else None


LEGACY_RULES: tuple[Callable[[KernelFamily], str], ...] = (import_closure_version, own_module_and_kernels_version)


@functools.lru_cache(maxsize=None)
def legacy_versions(name: str) -> frozenset[str]:
    """What the older rules give for family `name` today: a stored version among them means the kernel is
    exactly the one it was tuned on."""
    family = FAMILIES.get(name)
    if family is None:
        return frozenset()
    versions = set()
    for rule in LEGACY_RULES:
        try:
            versions.add(rule(family))
        except (OSError, TypeError):  # no source to hash (a frozen install): nothing is re-stamped
            continue
    return frozenset(versions)


def restamp(record: Any) -> Any:
    """An entry or trial record with its family version by the current rule where an older rule says its kernel
    is unchanged; anything else is returned as it is (the same object)."""
    if not isinstance(record, dict):
        return record
    family, stored = record.get("family"), record.get("family_version")
    current = family_version(family) if isinstance(family, str) else None
    if current is not None and isinstance(stored, str) and stored != current and stored in legacy_versions(family):
        return {**record, "family_version": current}
    return record
