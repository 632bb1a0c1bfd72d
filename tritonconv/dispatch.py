"""Running a validated problem: the layout rules, the output allocation, and choosing the kernel (an explicit
config, else the tuned one from the cache, else the default), then the launch (`run_problem`).

The GPU the choice is made for is an argument (`target`, a `runtime.DeviceInfo`; None: the device this process
runs kernels on, `runtime.device_info()`), passed down to the cache and every family method: deciding (and
launching as data, `tritonconv.compile`) for a compile target never asks torch.cuda. Resolved choices are memoised
per (problem, config, device, target, backend, cache generation), so a repeated shape costs one dict lookup, and
any change of the cache (an update, a clear, an import, another TRITONCONV_CACHE_DIR) is seen by the next call. Imports run one way: functional/matmul -> ops -> dispatch -> cache -> config -> kernels;
nothing here imports upwards.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Optional

import torch
from torch._prims_common import suggest_memory_format

from . import cache
from .config import DISPATCH_OPTIONS, resolve_config
from .cudnn import CudnnConv
from .errors import InvalidConfigError, UnsupportedError
from .kernels import DEFAULT_FAMILY, FAMILIES, ConvTensors, KernelFamily, families_for
from .kernels.base import Config, Quantization
from .problem import ConvProblem
from .runtime import DeviceInfo
from .weights import contiguous_vector

__all__ = [
    "BACKENDS", "DISPATCH_OPTIONS", "check_spills", "clear_memo", "default_family", "empty_output", "layout_of",
    "output_layout_of", "resolve_config", "run_problem", "select",
]

BACKENDS = ("auto", "triton", "cudnn")
CUDNN = CudnnConv()

# Set by tritonconv.first_call while tuning on first call is on: called for a problem with no cached winner;
# answers "tuned" (look the cache up again), "later" (use the default, do not memoise it) or "never".
untuned_hook: Optional[Callable[[ConvProblem, torch.device], str]] = None

_memo: dict[tuple, tuple[KernelFamily, Config]] = {}
# Memo keys resolved by the default heuristic -> the lighter configs still to try should the current one spill.
_fallbacks: dict[tuple, list[Config]] = {}
_memo_generation = -1  # the cache generation the memo entries were resolved under


def clear_memo() -> None:
    """Forget resolved choices. Never needed after a cache change (the cache generation is part of the key);
    tests use it to start from a clean slate."""
    _memo.clear()
    _fallbacks.clear()


def _memo_key(
    problem: ConvProblem, config: Optional[dict[str, Any]], device: torch.device, backend: str, target: Optional[DeviceInfo],
) -> tuple:
    global _memo_generation
    generation = cache.generation()
    if generation != _memo_generation:  # choices resolved under an older cache can never be hit again: drop them
        clear_memo()
        _memo_generation = generation
    return (problem, device, target, backend, None if config is None else tuple(sorted(config.items())), generation)


def default_family(problem: ConvProblem, target: Optional[DeviceInfo] = None) -> KernelFamily:
    """The supporting family that expects to be fastest on an untuned problem (highest `preference`)."""
    candidates = families_for(problem, target)
    if not candidates:
        reasons = "; ".join(f"{f.name}: {f.refusal(problem, target)}" for f in FAMILIES.values())
        raise UnsupportedError(f"no kernel family supports {problem.key} ({reasons})")
    return max(candidates, key=lambda f: (f.preference(problem), f.name == DEFAULT_FAMILY))


def select(
    problem: ConvProblem, config: Optional[dict[str, Any]], device: torch.device, backend: str = "auto",
    target: Optional[DeviceInfo] = None,
) -> tuple[KernelFamily, Config]:
    """(family, complete config) for `problem` on `device`: explicit `config` > cached tuned config > default
    heuristic, decided for `target` (None: the device this process runs kernels on: its GPU, or the interpreter).

    backend: "triton" always runs a Triton kernel; "cudnn" always F.conv2d; "auto" follows the cache, which
    picks cuDNN for problems where tuning measured it faster.
    """
    key = _memo_key(problem, config, device, backend, target)
    choice = _memo.get(key)
    if choice is None:
        if backend == "cudnn":
            choice = (CUDNN, {})
        elif config is not None:
            choice = resolve_config(problem, config, target)
        else:
            tuned = cache.lookup_config(problem, device, backend, target)
            if tuned is None and untuned_hook is not None:
                answer = untuned_hook(problem, device)
                if answer == "tuned":
                    tuned = cache.lookup_config(problem, device, backend, target)
                elif answer == "later":
                    family = default_family(problem, target)
                    return family, family.default_config(problem, target)
            choice = None
            if tuned is not None and tuned.get("family") == CUDNN.name:
                choice = (CUDNN, {})
            elif tuned is not None:
                choice = _resolve_tuned(problem, tuned, target)
            if choice is None:
                family = default_family(problem, target)
                choice = (family, family.default_config(problem, target))
                _fallbacks[key] = family.lighter_configs(problem, choice[1], target)
        _memo[key] = choice
    return choice


def _resolve_tuned(
    problem: ConvProblem, tuned: dict[str, Any], target: Optional[DeviceInfo],
) -> Optional[tuple[KernelFamily, Config]]:
    """A cached config, or None (with a warning) if it no longer resolves: the cache never breaks a call."""
    try:
        return resolve_config(problem, tuned, target)
    except InvalidConfigError as exc:
        warnings.warn(f"ignoring the cached config for {problem.key}: {exc}; using the default", RuntimeWarning, stacklevel=4)
        return None


def check_spills(
    problem: ConvProblem, config: Optional[dict[str, Any]], device: torch.device, backend: str,
    kernels: Optional[list[Any]], target: Optional[DeviceInfo] = None,
) -> None:
    """After a launch of a default-heuristic choice: if Triton's compiled kernel spilled registers on this device
    (the heuristic's register model is approximate), later calls take the next lighter config. Tuned and explicit
    configs are left alone (the search already rejects configs that spill)."""
    if not any(getattr(kernel, "n_spills", 0) for kernel in kernels or ()):  # a family's launch may return None
        return
    key = _memo_key(problem, config, device, backend, target)
    ladder = _fallbacks.get(key)
    if ladder:
        _memo[key] = (_memo[key][0], ladder.pop(0))


# ------------------------------------------------------------------------------------------------------------
# Layouts, the output, the launch
# ------------------------------------------------------------------------------------------------------------
def layout_of(x: torch.Tensor) -> str:
    """'nhwc' for channels_last tensors, 'nchw' otherwise (ambiguous tensors, e.g. C=1, count as NCHW)."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return "nhwc"
    return "nchw"


def output_layout_of(input: torch.Tensor, weight: torch.Tensor) -> str:
    """The output's memory format by F.conv2d's rule: channels_last when the input or the weight is, judged
    from their strides as torch's suggest_memory_format judges them (a C=1 tensor with NHWC strides counts)."""
    if torch.channels_last in (suggest_memory_format(input), suggest_memory_format(weight)):
        return "nhwc"
    return "nchw"


def empty_output(problem: ConvProblem, like: torch.Tensor) -> torch.Tensor:
    """An uninitialised output for `problem` in its output memory format, on `like`'s device, in the problem's
    output dtype (the input's for floats; float32 for int8, see ConvProblem.output_dtype)."""
    memory_format = torch.channels_last if problem.output_layout == "nhwc" else torch.contiguous_format
    return torch.empty(problem.output_shape, dtype=problem.output_dtype, device=like.device, memory_format=memory_format)


def run_problem(
    problem: ConvProblem,
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    residual: Optional[torch.Tensor],
    activation: str,
    config: Optional[dict[str, Any]] = None,
    output: Optional[torch.Tensor] = None,
    backend: str = "auto",
    quant: Optional[Quantization] = None,
    target: Optional[DeviceInfo] = None,
) -> torch.Tensor:
    """Launch an already-validated problem: choose family and config, allocate the output, launch. `quant`: the
    scales of an int8 problem (see tritonconv.quantized); `target`: the GPU to choose and launch for (None: the
    device this process runs kernels on; another one only makes sense where the launch is intercepted, e.g.
    `compile.launch_hashes`, or in the interpreter)."""
    if output is None:
        output = empty_output(problem, input)
    if output.numel() == 0 or output.device.type == "meta":  # nothing to compute; meta: shape and strides only
        return output
    family, full_config = select(problem, config, input.device, backend, target)
    if full_config.get("convert_nhwc") and problem.layout == "nchw":
        input = input.contiguous(memory_format=torch.channels_last)
    launched = problem
    if full_config.get("precision", problem.precision) != problem.precision:
        launched = problem.with_(precision=full_config["precision"])
    kernel_config = {k: v for k, v in full_config.items() if k not in DISPATCH_OPTIONS}
    if bias is not None:
        bias = contiguous_vector(bias)  # the kernels read bias[k] at bias_ptr + k
    tensors = ConvTensors(input, weight, output, bias, residual, activation, quant)
    kernels = family.launch(launched, tensors, kernel_config, target)
    check_spills(problem, config, input.device, backend, kernels, target)
    return output
