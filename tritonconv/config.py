"""Explicit kernel configs: the options every family accepts and the check that completes a config for a problem.

Used by the dispatcher (explicit and tuned configs) and by the cache (an entry is only usable if its config
passes this check for its problem), so it sits below both.
"""
from __future__ import annotations

from typing import Any, Optional

from .errors import InvalidConfigError
from .kernels import DEFAULT_FAMILY, KernelFamily, get_family
from .kernels.base import Config, is_choice
from .enums import Precision
from .problem import ConvProblem
from .runtime import DeviceInfo

# Options handled by the dispatcher itself, valid with every family.
#   convert_nhwc: copy an NCHW input to channels_last before the launch (the copy is part of the timed work).
#   precision: operand precision chosen by a precision="auto" search (must be allowed for the input dtype).
DISPATCH_OPTIONS: dict[str, tuple[Any, ...]] = {"convert_nhwc": (False, True), "precision": Precision.names()}


def resolve_config(
    problem: ConvProblem, config: dict[str, Any], device: Optional[DeviceInfo] = None,
) -> tuple[KernelFamily, Config]:
    """Validate an explicit config for `device` (None: the device this process runs kernels on) and complete it
    with the family's defaults. Its "family" key names the family; without one it is the general implicit-GEMM
    family (not whatever the default dispatch would pick, so that a config means the same thing for every
    problem)."""
    family = get_family(config.get("family", DEFAULT_FAMILY))
    options = {}
    for name, choices in DISPATCH_OPTIONS.items():
        if name in config:
            if not is_choice(config[name], choices):
                raise InvalidConfigError(f"{name}={config[name]!r} is not one of {list(choices)}")
            options[name] = config[name]
    if options.get("precision", problem.precision) not in Precision.for_dtype(problem.dtype):
        raise InvalidConfigError(f"precision {options['precision']!r} is not available for {problem.dtype}")
    kernel_config = {k: v for k, v in config.items() if k not in DISPATCH_OPTIONS}
    target = problem.with_(precision=options["precision"]) if "precision" in options else problem
    if reason := family.refusal(target, device):
        raise InvalidConfigError(f"family {family.name!r} does not support this problem: {reason}")
    return family, {**family.complete_config(target, kernel_config, device), **options}
