"""Choosing the kernel for a problem: an explicit config, else the tuned one from the cache, else the default.

Resolved choices are memoised per (problem, device), so a repeated shape costs one dict lookup.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from . import cache
from .cudnn import CudnnConv
from .errors import InvalidConfigError, UnsupportedError
from .kernels import DEFAULT_FAMILY, FAMILIES, KernelFamily, families_for, get_family
from .kernels.base import Config, is_choice
from .kernels.epilogue import PRECISION_CODES
from .problem import PRECISIONS, ConvProblem

# Options handled by the dispatcher itself, valid with every family.
#   convert_nhwc: copy an NCHW input to channels_last before the launch (the copy is part of the timed work).
#   precision: operand precision chosen by a precision="auto" search (must be allowed for the input dtype).
DISPATCH_OPTIONS: dict[str, tuple[Any, ...]] = {"convert_nhwc": (False, True), "precision": tuple(PRECISION_CODES)}

BACKENDS = ("auto", "triton", "cudnn")
CUDNN = CudnnConv()

# Set by tritonconv.first_call while tuning on first call is on: called for a problem with no cached winner;
# answers "tuned" (look the cache up again), "later" (use the default, do not memoise it) or "never".
untuned_hook: Optional[Callable[[ConvProblem, torch.device], str]] = None

_memo: dict[tuple, tuple[KernelFamily, Config]] = {}
# Memo keys resolved by the default heuristic -> the lighter configs still to try should the current one spill.
_fallbacks: dict[tuple, list[Config]] = {}


def clear_memo() -> None:
    """Forget resolved choices (call after the cache changed)."""
    _memo.clear()
    _fallbacks.clear()


def _memo_key(problem: ConvProblem, config: Optional[dict[str, Any]], device: torch.device, backend: str) -> tuple:
    return (problem, device, backend, None if config is None else tuple(sorted(config.items())))


def default_family(problem: ConvProblem) -> KernelFamily:
    """The supporting family that expects to be fastest on an untuned problem (highest `preference`)."""
    candidates = families_for(problem)
    if not candidates:
        reasons = "; ".join(f"{f.name}: {f.supports(problem) or 'no batched weight'}" for f in FAMILIES.values())
        raise UnsupportedError(f"no kernel family supports {problem.key} ({reasons})")
    return max(candidates, key=lambda f: (f.preference(problem), f.name == DEFAULT_FAMILY))


def resolve_config(problem: ConvProblem, config: dict[str, Any]) -> tuple[KernelFamily, Config]:
    """Validate an explicit config and complete it with the family's defaults. Its "family" key names the
    family; without one it is the general implicit-GEMM family (not whatever the default dispatch would pick,
    so that a config means the same thing for every problem)."""
    family = get_family(config.get("family", DEFAULT_FAMILY))
    reason = family.supports(problem)
    if reason:
        raise InvalidConfigError(f"family {family.name!r} does not support this problem: {reason}")
    options = {}
    for name, choices in DISPATCH_OPTIONS.items():
        if name in config:
            if not is_choice(config[name], choices):
                raise InvalidConfigError(f"{name}={config[name]!r} is not one of {list(choices)}")
            options[name] = config[name]
    if options.get("precision", problem.precision) not in PRECISIONS[problem.dtype]:
        raise InvalidConfigError(f"precision {options['precision']!r} is not available for {problem.dtype}")
    kernel_config = {k: v for k, v in config.items() if k not in DISPATCH_OPTIONS}
    target = problem.with_(precision=options["precision"]) if "precision" in options else problem
    return family, {**family.complete_config(target, kernel_config), **options}


def select(
    problem: ConvProblem, config: Optional[dict[str, Any]], device: torch.device, backend: str = "auto"
) -> tuple[KernelFamily, Config]:
    """(family, complete config) for `problem`: explicit `config` > cached tuned config > default heuristic.

    backend: "triton" always runs a Triton kernel; "cudnn" always F.conv2d; "auto" follows the cache, which
    picks cuDNN for problems where tuning measured it faster.
    """
    key = _memo_key(problem, config, device, backend)
    choice = _memo.get(key)
    if choice is None:
        if backend == "cudnn":
            choice = (CUDNN, {})
        elif config is not None:
            choice = resolve_config(problem, config)
        else:
            tuned = cache.lookup_config(problem, device, backend)
            if tuned is None and untuned_hook is not None:
                answer = untuned_hook(problem, device)
                if answer == "tuned":
                    tuned = cache.lookup_config(problem, device, backend)
                elif answer == "later":
                    family = default_family(problem)
                    return family, family.default_config(problem)
            if tuned is not None and tuned.get("family") == CUDNN.name:
                choice = (CUDNN, {})
            elif tuned is not None:
                choice = resolve_config(problem, tuned)
            else:
                family = default_family(problem)
                choice = (family, family.default_config(problem))
                _fallbacks[key] = family.lighter_configs(problem, choice[1])
        _memo[key] = choice
    return choice


def check_spills(
    problem: ConvProblem, config: Optional[dict[str, Any]], device: torch.device, backend: str,
    kernels: Optional[list[Any]],
) -> None:
    """After a launch of a default-heuristic choice: if Triton's compiled kernel spilled registers on this device
    (the heuristic's register model is approximate), later calls take the next lighter config. Tuned and explicit
    configs are left alone (the search already rejects configs that spill)."""
    if not any(getattr(kernel, "n_spills", 0) for kernel in kernels or ()):  # a family's launch may return None
        return
    key = _memo_key(problem, config, device, backend)
    ladder = _fallbacks.get(key)
    if ladder:
        _memo[key] = (_memo[key][0], ladder.pop(0))

