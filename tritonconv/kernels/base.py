"""The kernel-family interface: what every family declares and how the dispatcher, the search and the
compile checks talk to it.

A family is one parameterized Triton kernel (or a few that belong together) plus:
  * `supports(problem)`   - whether it computes this problem correctly (None) or why not (a reason string);
  * `space(problem)`      - its tunable parameters, their choices and its constraints;
  * `default_config(problem)` and `heuristic_configs(problem)` - good starting points;
  * `kernel_calls(problem, tensors, config)` - the launches that compute the result, as data, so that the same
    description can be launched, or compiled for a GPU target without a GPU (see `tritonconv.compile`).
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import inspect
import itertools
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Iterator, Optional, Sequence

import torch

from ..enums import Precision
from ..errors import InvalidConfigError
from ..problem import INT32_MAX, ConvProblem
from ..runtime import INTERPRET, DeviceInfo, device_info

Config = dict[str, Any]

# Parameters every family accepts: launch options Triton consumes itself.
LAUNCH_OPTIONS = ("num_warps", "num_stages")


@dataclass(frozen=True)
class Param:
    """One tunable parameter with its discrete choices (the search samples among them)."""

    name: str
    choices: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.choices:
            raise ValueError(f"parameter {self.name} has no choices")


Constraint = Callable[[ConvProblem, Config], Optional[str]]
CONFIG_VALUE_TYPES = (bool, int, float, str)


def is_choice(value: Any, choices: Sequence[Any]) -> bool:
    """`value` is one of `choices` with the same type: 32.0 is not the choice 32, nor True the choice 1."""
    return any(type(value) is type(choice) and value == choice for choice in choices)


def check_config(config: Any) -> Config:
    """An explicit config must be a dict of parameter names to scalars (bool, int, float or text): anything else
    (a list, a nested dict, NaN, a non-text key) is an InvalidConfigError naming it. Returns the config."""
    if not isinstance(config, dict):
        raise InvalidConfigError(f"config must be a dict of parameter names to values, got {type(config).__name__}")
    for name, value in config.items():
        if not isinstance(name, str):
            raise InvalidConfigError(f"config keys must be parameter names (text), got {name!r}")
        if not isinstance(value, CONFIG_VALUE_TYPES) or (isinstance(value, float) and value != value):
            raise InvalidConfigError(f"config value {name}={value!r} must be an int, bool or text")
    return config


@dataclass
class ConfigSpace:
    """Parameters and constraints of one family for one problem. A constraint returns a reason when violated.

    `constraints` are hard: a config that breaks one would fail to compile or run (explicit configs are checked
    against them). `pruning` rules only keep the search away from configs that cannot win (e.g. tiles that are
    mostly padding); an explicit config may still break them.
    """

    params: list[Param]
    constraints: list[Constraint] = field(default_factory=list)
    pruning: list[Constraint] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def violation(self, problem: ConvProblem, config: Config, *, pruning: bool = True) -> Optional[str]:
        """Why `config` is infeasible (unknown value, broken constraint, or with `pruning` a pruned one); None if fine."""
        for p in self.params:
            if p.name not in config:
                return f"missing parameter {p.name}"
            if not is_choice(config[p.name], p.choices):
                return f"{p.name}={config[p.name]!r} is not one of {list(p.choices)}"
        for constraint in self.constraints + (self.pruning if pruning else []):
            reason = constraint(problem, config)
            if reason:
                return reason
        return None

    def feasible(self, problem: ConvProblem, configs: list[Config], *, pruning: bool = False) -> list[Config]:
        """`configs` without duplicates and without those `violation` rejects, in their order."""
        kept: list[Config] = []
        for config in configs:
            if config not in kept and self.violation(problem, config, pruning=pruning) is None:
                kept.append(config)
        return kept

    def size(self) -> int:
        total = 1
        for p in self.params:
            total *= len(p.choices)
        return total

    def enumerate(self, problem: ConvProblem) -> Iterator[Config]:
        """Every feasible config (use only on small spaces)."""
        for values in itertools.product(*(p.choices for p in self.params)):
            config = dict(zip(self.names, values))
            if self.violation(problem, config) is None:
                yield config


@dataclass(frozen=True)
class Quantization:
    """The epilogue scales of a quantized (int8) conv: y = int32 sum * scale[k] (+ bias, residual, activation),
    stored as float, or with `out_scale` requantised to int8 (round half to even of y / out_scale, saturated)."""

    scale: torch.Tensor  # float32 [K], contiguous: x_scale * w_scale[k]
    out_scale: Optional[float] = None


@dataclass
class ConvTensors:
    """The tensors of one conv call. `output` is allocated by the dispatcher in the input's memory format.
    `quant`: the scales of an int8 conv (None: unit scales, float32 output of the exact int32 sums)."""

    input: torch.Tensor
    weight: torch.Tensor
    output: torch.Tensor
    bias: Optional[torch.Tensor] = None
    residual: Optional[torch.Tensor] = None
    activation: str = "none"
    quant: Optional[Quantization] = None


@dataclass
class KernelCall:
    """One kernel launch as data: launch it, or compile it for a target with `tritonconv.compile`."""

    fn: Any  # a triton.JITFunction
    grid: tuple[int, ...]
    args: dict[str, Any]  # runtime arguments, in the kernel's parameter order (tensors, ints, floats, None)
    constexprs: dict[str, Any]
    num_warps: int = 4
    num_stages: int = 3

    def launch(self) -> Any:
        """Launch; returns Triton's compiled kernel (None in the interpreter)."""
        return self.fn[self.grid](**self.args, **self.constexprs, num_warps=self.num_warps, num_stages=self.num_stages)


def target_device(device: Optional[DeviceInfo]) -> DeviceInfo:
    """The device a family decides for: `device`, else the one this process runs kernels on (`device_info()`:
    the current GPU, or the Triton interpreter)."""
    return device if device is not None else device_info()


class KernelFamily:
    """Base class of a kernel family. Subclasses set `name` (the family's module is named like it) and implement
    the methods.

    The target device is an input, never looked up behind the caller's back: every method whose answer depends
    on the GPU (`supports`, `space`, `default_config`, `heuristic_configs`, `kernel_calls` and the shared ones
    built on them) takes `device`, a `runtime.DeviceInfo` record (compute capability, SM count, shared memory per
    block), so the same call answers for the GPU it runs on, a compile target (`runtime.COMPILE_TARGETS`) or the
    interpreter alike. `device=None` means the device this process runs kernels on (`target_device`). Callers that
    decide for another GPU pass its record down (the compile CLI and the compile pool their target, the search its
    runner's `target`, the dispatcher the `target` of `select`/`run_problem`); there is no global that changes
    what None means, so answering for a target never queries (or initialises) CUDA.
    """

    name: str = ""
    description: str = ""
    # Input dtypes the family computes: float families never see an int8 problem (families_for, resolve_config).
    dtypes: tuple[str, ...] = ("float32", "float16", "bfloat16")
    # Operand precisions the family computes: scaled (fp8) operands only where its kernel_calls quantize them
    # (`scaled_operands`) and its kernels dequantize the accumulator (families_for, resolve_config).
    precisions: tuple[str, ...] = tuple(p.value for p in Precision if not p.scaled)
    # Whether the family reads one weight per image (a batched matmul's B, `ConvProblem.batched_weight`); the
    # others read one weight for every image and must never be handed such a problem (`refusal`).
    handles_batched_weight: bool = False

    def refusal(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> Optional[str]:
        """None if the family computes `problem` correctly on `device`, else why not: the interface's checks
        (dtype, precision, batched weight: the class attributes above; the precision's minimum compute
        capability) and then the family's own `supports`. The
        one gate every caller goes through (families_for, the dispatcher, resolve_config for explicit and cached
        configs), so a family cannot be routed what its attributes exclude even if its `supports` forgets it."""
        if problem.dtype not in self.dtypes:
            return f"computes {', '.join(self.dtypes)} inputs, not {problem.dtype}"
        if problem.precision not in self.precisions:
            return f"has no {problem.precision} kernels (it computes {', '.join(self.precisions)})"
        if problem.batched_weight and not self.handles_batched_weight:
            return "no batched (per-image) weights"
        if reason := scaled_precision_reason(problem, target_device(device).capability):
            return reason
        return self.supports(problem, device)

    # ---- what the family computes ----------------------------------------------------------------------
    def supports(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> Optional[str]:
        """None if this family computes `problem` correctly on `device`, else a short reason why not."""
        raise NotImplementedError

    def space(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> ConfigSpace:
        """The tunable parameters and constraints for `problem` on `device` (shared memory, MMA kinds, TMA)."""
        raise NotImplementedError

    def default_config(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> Config:
        """The heuristic config for `problem` on `device` (tiles sized to fill its SMs); feasible in `space`."""
        raise NotImplementedError

    def preference(self, problem: ConvProblem) -> int:
        """How strongly this family expects to win an untuned problem (the default dispatch picks the highest)."""
        return 0

    def heuristic_configs(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> list[Config]:
        """A few good configs beside the default, to seed the search. Defaults to just the default."""
        return [self.default_config(problem, device)]

    def kernel_calls(
        self, problem: ConvProblem, tensors: ConvTensors, config: Config, device: Optional[DeviceInfo] = None,
    ) -> Sequence[KernelCall]:
        """The launches computing (problem, config) on `device` (grids of persistent kernels follow its SMs)."""
        raise NotImplementedError

    # ---- shared behaviour ------------------------------------------------------------------------------
    def complete_config(
        self, problem: ConvProblem, config: Optional[Config], device: Optional[DeviceInfo] = None,
    ) -> Config:
        """`config` with missing parameters taken from the default; rejects unknown names and bad values."""
        full = self.default_config(problem, device)
        if config:
            unknown = set(config) - set(full) - {"family"}
            if unknown:
                raise InvalidConfigError(
                    f"family {self.name!r} has no parameter(s) {sorted(unknown)}; it has {sorted(full)}"
                )
            full.update({k: v for k, v in config.items() if k != "family"})
        reason = self.space(problem, device).violation(problem, full, pruning=False)
        if reason:
            raise InvalidConfigError(f"config {full} is invalid for family {self.name!r}: {reason}")
        return full

    def launch(
        self, problem: ConvProblem, tensors: ConvTensors, config: Config, device: Optional[DeviceInfo] = None,
    ) -> list[Any]:
        """Launch every kernel of (problem, config); returns Triton's compiled kernels (None in the interpreter)."""
        return [call.launch() for call in self.kernel_calls(problem, tensors, config, device)]

    def lighter_configs(self, problem: ConvProblem, config: Config, device: Optional[DeviceInfo] = None) -> list[Config]:
        """Progressively lighter variants of `config` for a device where it spills registers: one pipeline
        stage fewer at a time down to 2, then BLOCK_K, BLOCK_N and BLOCK_M halved in turn (cumulatively). Only
        variants the space accepts are kept."""
        space = self.space(problem, device)
        steps: list[tuple[str, int]] = []
        stages = config.get("num_stages", 0)
        steps += [("num_stages", n) for n in range(stages - 1, 1, -1)]
        steps += [(name, config[name] // 2) for name in ("BLOCK_K", "BLOCK_N", "BLOCK_M") if name in config]
        ladder, current = [], dict(config)
        for name, value in steps:
            candidate = {**current, name: value}
            if space.violation(problem, candidate, pruning=False) is None:
                ladder.append(candidate)
                current = candidate
        return ladder

    @functools.cached_property
    def version(self) -> str:
        """Hash of the family's own module, of the plain-Python launch code it imports from `kernels.common` and
        `kernels.base` (grids, constexprs, weight layouts, limits, kernel arguments: `shared_launch_modules`),
        and of every Triton kernel it launches with the jit helpers those call: a cached config is only trusted
        for the exact launch it was tuned on, and an edit anywhere else (a docstring in problem.py, another
        family's module, a common module it does not import) leaves it valid. Compiled, the kernels count by
        Triton's own `JITFunction.cache_key` (their source and every jit function and constexpr global they
        use); in the interpreter, which has no such key, by the source of each jit function reached. The Python
        modules count by their code alone (`code_of`): comments, docstrings and layout leave the version as it is."""
        module = inspect.getmodule(type(self))
        sources = [code_of(m) for m in (module, *shared_launch_modules(module))]
        return hashlib.sha256("\0".join([*sources, *kernel_keys(module)]).encode()).hexdigest()[:12]


def code_of(module: ModuleType) -> str:
    """`module`'s code without its comments, docstrings and layout: its syntax tree (no line numbers) with every
    docstring taken out, as text."""
    tree = ast.parse(inspect.getsource(module))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


SHARED_LAUNCH_CODE = ("tritonconv.kernels.base", "tritonconv.kernels.common")


def shared_launch_modules(module: ModuleType) -> list[ModuleType]:
    """The modules of `kernels.common` and `kernels.base` that `module` imports from (any import statement,
    also late ones), and transitively those they import from: the shared code its launches run."""
    found: dict[str, ModuleType] = {}
    pending = [module]
    while pending:
        for name in _imported_names(pending.pop()):
            shared = name == SHARED_LAUNCH_CODE[0] or name.startswith(SHARED_LAUNCH_CODE[1] + ".")
            if shared and name not in found and isinstance(sys.modules.get(name), ModuleType):
                found[name] = sys.modules[name]
                pending.append(found[name])
    found.pop(module.__name__, None)
    return [found[name] for name in sorted(found)]


def _imported_names(module: ModuleType) -> Iterator[str]:
    """The absolute names of the modules `module`'s import statements name (`from a import b`: a, and a.b)."""
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = importlib.util.resolve_name("." * node.level + (node.module or ""), module.__package__)
            yield source
            yield from (f"{source}.{alias.name}" for alias in node.names)


def kernel_keys(module: ModuleType) -> list[str]:
    """What identifies the Triton code `module` launches: the `cache_key` of every jit function it defines or
    imports (compiled Triton), else the source of every jit function reached from them (the interpreter)."""
    jitted = [value for value in vars(module).values() if _python_function(value) is not None]
    if jitted and all(hasattr(value, "cache_key") for value in jitted):
        return sorted(value.cache_key for value in jitted)
    return [inspect.getsource(fn) for fn in jit_functions_used_by(module)]


def _python_function(value: Any) -> Optional[Callable]:
    """The Python function behind one of tritonconv's Triton jit functions (compiled or interpreted), else None.
    Triton's own library functions are covered by the Triton version in the cache key."""
    fn = getattr(value, "fn", None)
    is_jit = inspect.isfunction(fn) and type(value).__module__.startswith("triton.")
    return fn if is_jit and fn.__module__.startswith("tritonconv.") else None


def jit_functions_used_by(module: ModuleType) -> list[Callable]:
    """The Python functions behind every Triton jit function that `module` defines or imports, and,
    transitively, every jit function they call (found by the global and attribute names their code uses)."""
    found: dict[str, Callable] = {}
    pending = [fn for fn in map(_python_function, vars(module).values()) if fn is not None]
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
            pending += [f for f in map(_python_function, candidates) if f is not None]
    return [found[name] for name in sorted(found)]


def conv_io_args(problem: ConvProblem, tensors: ConvTensors) -> dict[str, Any]:
    """Kernel arguments every direct conv kernel takes alike: the input/output/bias/residual pointers, the
    spatial geometry, and the input, output and residual strides in (n, c|k, h|p, w|q) order."""
    x, y, res = tensors.input, tensors.output, tensors.residual
    res_strides = res.stride() if res is not None else (0, 0, 0, 0)
    return dict(
        x_ptr=x, y_ptr=y, bias_ptr=tensors.bias, res_ptr=res,
        N=problem.n, H=problem.h, W=problem.w, P=problem.p, Q=problem.q,
        stride_h=problem.stride_h, stride_w=problem.stride_w, pad_h=problem.pad_h, pad_w=problem.pad_w,
        dil_h=problem.dilation_h, dil_w=problem.dilation_w,
        sxn=x.stride(0), sxc=x.stride(1), sxh=x.stride(2), sxw=x.stride(3),
        syn=y.stride(0), syk=y.stride(1), syp=y.stride(2), syq=y.stride(3),
        srn=res_strides[0], srk=res_strides[1], srp=res_strides[2], srq=res_strides[3],
    )


def scaled_operands(problem: ConvProblem, tensors: ConvTensors) -> tuple[ConvTensors, Optional[torch.Tensor]]:
    """For a scaled precision (fp8): the tensors with the input and weight quantized per tensor (the weight's
    once per version, cached) and the one-element float32 scale x_scale * w_scale the kernel multiplies its
    accumulator by before the epilogue; otherwise the tensors unchanged and None."""
    precision = Precision(problem.precision)
    if not precision.scaled:
        return tensors, None
    from dataclasses import replace

    from ..weights import prepare_scaled_weight, quantize_per_tensor

    operand = problem.operand_dtype
    x_q, x_scale = quantize_per_tensor(tensors.input, operand)
    w_q, w_scale = prepare_scaled_weight(tensors.weight, operand)
    return replace(tensors, input=x_q, weight=w_q), x_scale * w_scale


def scaled_precision_reason(problem: ConvProblem, capability: tuple[int, int]) -> Optional[str]:
    """Why a device of `capability` cannot run the problem's precision (fp8 needs sm_89+); the interpreter
    (capability (0, 0)) can: it multiplies fp8 operands loaded from memory exactly."""
    precision = Precision(problem.precision)
    if capability != (0, 0) and capability < precision.min_capability:
        need = ".".join(map(str, precision.min_capability))
        return (f"precision {precision.value!r} needs compute capability >= {need} (fp8 tensor cores), "
                f"the device has {capability[0]}.{capability[1]}")
    return None


def epilogue_constexprs(problem: ConvProblem, tensors: ConvTensors) -> dict[str, Any]:
    """The fused-epilogue, precision and indexing constexprs shared by the conv kernels."""
    from ..enums import Activation

    return dict(
        HAS_BIAS=tensors.bias is not None, HAS_RESIDUAL=tensors.residual is not None,
        ACTIVATION=Activation(tensors.activation).code, PRECISION=Precision(problem.precision).code,
        INDEX_64=needs_int64(problem, tensors),
    )


def interpreter_dot_reason(problem: ConvProblem) -> Optional[str]:
    """Why a kernel that multiplies with tl.dot must not run `problem` here: the Triton interpreter computes tl.dot
    on bf16 operands wrongly (relative error ~1e10 with Triton 3.6), so such launches are refused, never run.
    fp16 and the float32 precisions (tf32/tf32x3 are computed as ieee float32 there) are right."""
    if INTERPRET and problem.operand_dtype == torch.bfloat16:
        return ("the Triton interpreter (TRITON_INTERPRET=1) computes bf16 matrix products (tl.dot) wrongly; "
                "run bf16 on a CUDA GPU, or use float16/float32 on the CPU")
    return None


def max_element_offset(tensor: Optional[torch.Tensor]) -> int:
    """The largest element offset `tensor` reaches from its data pointer: the sum over dims of (size-1)*|stride|.
    A strided view with few elements can reach far (a huge stride), so offsets, not element counts, decide."""
    if tensor is None or tensor.numel() == 0:
        return 0
    return sum((size - 1) * abs(stride) for size, stride in zip(tensor.shape, tensor.stride()))


def needs_int64(problem: ConvProblem, tensors: ConvTensors, *extra: Optional[torch.Tensor]) -> bool:
    """Whether a launch must compute offsets in 64 bits: some tensor it reads or writes (the problem's own
    dense tensors, the actual views passed, any `extra` workspace) reaches an element offset past 2^31 - 1."""
    views = (tensors.input, tensors.weight, tensors.output, tensors.bias, tensors.residual, *extra)
    return problem.needs_int64 or any(max_element_offset(t) > INT32_MAX for t in views)


def next_power_of_2(x: int) -> int:
    return 1 << max(0, (int(x) - 1).bit_length())


def clamp_pow2(x: int, lo: int, hi: int) -> int:
    """The power of two >= x, clamped to [lo, hi]."""
    return max(lo, min(hi, next_power_of_2(x)))


def pow2_divisor(values: Sequence[int], cap: int = 16) -> int:
    """The largest power of two (at most `cap`) dividing every value: an alignment hint (`tiling.known_multiple`) for
    strides that Triton's launcher only marks when they are multiples of 16 (e.g. 24- or 40-channel NHWC)."""
    align = cap
    for value in values:
        while align > 1 and int(value) % align:
            align //= 2
    return align
