"""Running sweep cases: each drawn case through the public API against a float64 PyTorch reference, outputs
NaN-poisoned, with the family's default config and random feasible configs from its own space; and, for every
family that refuses a problem, checks that nothing routes the problem to it.

Invariant: `family.refusal(problem) is None` (the gate dispatch uses) => every feasible config of the family is correct on the problem.
Each run yields `SweepResult` records (JSON lines for `python -m tests.sweeps --out`).
"""
from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

import tritonconv
from tritonconv import cache, dispatch
from tritonconv.compile import meta_tensors
from tritonconv.errors import InvalidConfigError, TritonConvError
from tritonconv.functional import make_problem
from tritonconv.kernels import FAMILIES, KernelFamily, families_for, get_family
from tritonconv.matmul import matmul_problem, run_matmul
from tritonconv.problem import ConvProblem
from tritonconv.runtime import COMPILE_TARGETS, INTERPRET, DeviceInfo
from tritonconv.search import space as search_space
from tritonconv.enums import Precision
from tritonconv.reference import rel_error

from .cases import (
    ConvCase,
    MatmulCase,
    draw_conv_case,
    draw_matmul_case,
    make_conv_tensors,
    make_matmul_tensors,
)

FAILED = ("wrong", "error", "misrouted", "format")

# Defects already filed and being fixed elsewhere: a failing run whose case matches one is reported as "known"
# (not failed) until the fix lands and the entry is deleted. Each: name -> predicate on the case dict.
KNOWN_DEFECTS: dict[str, Any] = {
}


def known_defect(case: dict[str, Any], status: str) -> str | None:
    return next((name for name, matches in KNOWN_DEFECTS.items() if matches(case, status)), None)
ACT = {"none": lambda y: y, "relu": F.relu, "relu6": F.relu6, "silu": F.silu, "gelu": F.gelu}


@dataclass
class SweepResult:
    """One checked run: `status` is ok | wrong | error | format (memory format differs from F.conv2d's) |
    refused (the family's supports() declined; routing was checked) | misrouted (a refused problem was offered) |
    known (a failure matching one of KNOWN_DEFECTS)."""

    kind: str  # conv | matmul | dispatch
    family: str
    mode: str  # default | random | pruned | dispatch-default | dispatch-cached | dispatch-explicit | routing
    status: str
    case: dict[str, Any]
    problem: str = ""
    config: dict[str, Any] | None = None
    rel_error: float | None = None
    tolerance: float | None = None
    detail: str = ""
    seconds: float = 0.0
    emulated: int | None = None

    def __post_init__(self) -> None:
        known = known_defect(self.case, self.status) if self.status in FAILED else None
        if known:
            self.detail, self.status = f"{known}: {self.detail}", "known"

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str, sort_keys=True)

    @property
    def failed(self) -> bool:
        return self.status in FAILED


@dataclass
class SweepOptions:
    device: str = "cpu"
    configs: int = 2  # random feasible configs per accepted case, besides the default
    max_cost: int = 256  # interpreter: skip random configs of a larger `interpreter_cost`
    check_memory_format: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def interpreter(self) -> bool:
        return torch.device(self.device).type == "cpu"


# ------------------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def poisoned_outputs() -> Iterator[None]:
    """Every output the dispatcher allocates starts as NaN, so an element a kernel never writes fails the check."""
    real = dispatch.empty_output

    def empty_output(*args: Any, **kwargs: Any) -> torch.Tensor:
        out = real(*args, **kwargs)
        return out.fill_(float("nan")) if out.is_floating_point() else out

    dispatch.empty_output = empty_output
    try:
        yield
    finally:
        dispatch.empty_output = real


def emulated_target(capability: int | None) -> DeviceInfo | None:
    """The GPU a case decides for in the interpreter: `capability`'s compile target (e.g. 90: the Hopper paths;
    the interpreter emulates TMA descriptors), passed to every family and dispatcher call; None: this process's
    device (the interpreter)."""
    return None if capability is None else COMPILE_TARGETS[capability]


def interpreter_cost(family: KernelFamily, problem: ConvProblem, config: dict[str, Any],
                     target: DeviceInfo | None = None) -> int:
    """Programs launched times filter taps: what the interpreter's time grows with (it runs programs one by one)."""
    total = 0
    for call in family.kernel_calls(problem, meta_tensors(problem), config, target):
        size = 1
        for g in call.grid:
            size *= g
        total += size
    return total * problem.r * problem.s


def sample_configs(
    family: KernelFamily, problem: ConvProblem, rng: random.Random, count: int, max_cost: int | None,
    target: DeviceInfo | None = None, *, tries: int = 400,
) -> list[tuple[str, dict[str, Any]]]:
    """The family's default config and `count` random feasible configs drawn from its space (by rejection):
    alternately one the search would offer ("pruned": passes the pruning rules too) and one that only meets the
    hard constraints ("random": an explicit config may be any of them). Configs whose `interpreter_cost` exceeds
    `max_cost` are skipped (interpreter only: they are slow, not different). For `target` (None: this device)."""
    space = family.space(problem, target)
    picked: list[tuple[str, dict[str, Any]]] = [("default", family.default_config(problem, target))]
    seen = [picked[0][1]]
    for attempt in range(tries):
        if len(picked) > count:
            break
        mode = "pruned" if len(picked) % 2 else "random"
        config = {p.name: rng.choice(p.choices) for p in space.params}
        if config in seen or space.violation(problem, config, pruning=mode == "pruned"):
            continue
        if mode == "pruned" and attempt > tries // 2:
            mode = "random"
        if max_cost is not None and interpreter_cost(family, problem, config, target) > max_cost:
            continue
        seen.append(config)
        picked.append((mode, config))
    return picked


def _activation(y: torch.Tensor, name: str) -> torch.Tensor:
    return ACT[name](y)


def conv_reference(case: ConvCase, x, w, b, residual) -> torch.Tensor:
    y = F.conv2d(x.double().cpu(), w.double().cpu(), None if b is None else b.double().cpu(),
                 case.stride, case.padding, case.dilation, case.groups)
    if residual is not None:
        y = y + residual.double().cpu()
    return _activation(y, case.activation)


def _with_dtype(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`t`'s values in `dtype` with exactly `t`'s strides (also for gapped and overlapping views)."""
    storage = torch.empty(0, dtype=t.dtype, device=t.device).set_(t.untyped_storage())
    return storage.to(dtype).as_strided(t.shape, t.stride(), t.storage_offset())


def expected_channels_last(x: torch.Tensor, w: torch.Tensor, case: ConvCase) -> bool | None:
    """Whether F.conv2d's output is channels_last for tensors with these strides (PyTorch itself is the oracle:
    cuDNN on a GPU, the CPU kernels otherwise, in float32 on the CPU); None when its output is both."""
    if x.device.type == "cpu" and x.dtype != torch.float32:
        x, w = _with_dtype(x, torch.float32), _with_dtype(w, torch.float32)
    y = F.conv2d(x, w, None, case.stride, case.padding, case.dilation, case.groups)
    if y.is_contiguous() and y.is_contiguous(memory_format=torch.channels_last):
        return None
    return y.is_contiguous(memory_format=torch.channels_last)


def _check_output(out: torch.Tensor, ref: torch.Tensor, tolerance: float) -> tuple[str, float]:
    err = rel_error(out, ref)
    return ("ok" if err <= tolerance else "wrong"), err


def routing_violations(problem: ConvProblem, family: KernelFamily, target: DeviceInfo | None = None) -> list[str]:
    """Ways a problem `family` refuses (on `target`) could still reach it: families_for, the default dispatch,
    the search space, an explicit config (must raise InvalidConfigError)."""
    found = []
    if any(f.name == family.name for f in families_for(problem, target)):
        found.append("families_for lists it")
    try:
        if dispatch.default_family(problem, target).name == family.name:
            found.append("the default dispatch picks it")
    except TritonConvError:
        pass
    try:
        offered = search_space.SearchSpace(problem, precisions=(problem.precision,), device=target).families
        if family.name in offered:
            found.append("the search space offers it")
    except TritonConvError:
        pass
    try:
        dispatch.resolve_config(problem, {"family": family.name}, target)
        found.append("an explicit config is accepted")
    except InvalidConfigError:
        pass
    except TritonConvError as error:
        found.append(f"an explicit config raised {type(error).__name__} instead of InvalidConfigError")
    return found


def _call_conv(case: ConvCase, t, config: dict[str, Any] | None, target: DeviceInfo | None = None) -> torch.Tensor:
    """Through `tritonconv.conv2d`, which decides for this process's device; for an emulated `target`, the same
    validated problem through the dispatcher below it (`dispatch.run_problem`, which takes the target)."""
    backend = "triton" if config is None else "auto"
    with poisoned_outputs():
        if target is None:
            return tritonconv.conv2d(
                t.input, t.weight, t.bias, **case.conv_args, activation=case.activation, residual=t.residual,
                precision=case.precision, config=config, backend=backend,
            )
        problem = make_problem(t.input, t.weight, t.bias, **case.conv_args, residual=t.residual,
                               precision=case.precision, activation=case.activation)
        return dispatch.run_problem(problem, t.input, t.weight, t.bias, t.residual, case.activation, config,
                                    backend=backend, target=target)


def _tolerance(problem: ConvProblem, config: dict[str, Any] | None = None) -> float:
    return Precision((config or {}).get("precision", problem.precision)).tolerance


def _format_status(case: ConvCase, t, out: torch.Tensor, options: SweepOptions) -> str | None:
    if not options.check_memory_format:
        return None
    want = expected_channels_last(t.input, t.weight, case)
    if want is None:
        return None
    if not out.is_contiguous(memory_format=torch.channels_last if want else torch.contiguous_format):
        return f"output strides {out.stride()} but F.conv2d gives {'channels_last' if want else 'contiguous'}"
    return None


# ------------------------------------------------------------------------------------------------------------
# Conv cases: one family
# ------------------------------------------------------------------------------------------------------------
def run_conv_case(family_name: str, case: ConvCase, options: SweepOptions, rng: random.Random,
                  emulate: int | None = None) -> list[SweepResult]:
    family = get_family(family_name)
    results: list[SweepResult] = []
    target = emulated_target(emulate)
    t = make_conv_tensors(case, options.device)
    base = dict(kind="conv", family=family_name, case=case.to_dict(), emulated=emulate)
    try:
        problem = make_problem(t.input, t.weight, t.bias, **case.conv_args, residual=t.residual,
                               precision=case.precision, activation=case.activation)
    except TritonConvError as error:
        return [SweepResult(**base, mode="default", status="refused", detail=f"make_problem: {error}")]
    reason = family.refusal(problem, target)
    if reason is not None:
        violations = routing_violations(problem, family, target)
        return [SweepResult(**base, mode="routing", problem=problem.key, status="misrouted" if violations else "refused",
                            detail="; ".join(violations) or reason)]
    ref = conv_reference(case, t.input, t.weight, t.bias, t.residual)
    max_cost = options.max_cost if options.interpreter else None
    for mode, config in sample_configs(family, problem, rng, options.configs, max_cost, target):
        if mode != "default" and problem.layout == "nchw" and rng.random() < 0.3:
            config = {**config, "convert_nhwc": True}
        start = time.perf_counter()
        full = {"family": family_name, **config}
        tolerance = _tolerance(problem)
        try:
            out = _call_conv(case, t, full, target)
            status, err = _check_output(out, ref, tolerance)
            detail = (_format_status(case, t, out, options) or "") if status == "ok" else ""
            status = "format" if detail else status
        except Exception as error:  # noqa: BLE001 - a crash is a finding, recorded with its message
            status, err, detail = "error", None, f"{type(error).__name__}: {error}".splitlines()[0][:300]
        results.append(SweepResult(**base, mode=mode, status=status, problem=problem.key, config=full,
                                   rel_error=err, tolerance=tolerance, detail=detail,
                                   seconds=time.perf_counter() - start))
    return results


# ------------------------------------------------------------------------------------------------------------
# Dispatcher: default, cached and explicit choices on problems any family may take
# ------------------------------------------------------------------------------------------------------------
def _cache_entry(problem: ConvProblem, family: KernelFamily, config: dict[str, Any], device: torch.device,
                 target: DeviceInfo | None = None) -> dict[str, Any]:
    """A tuned-config entry as `tritonconv tune` writes it, naming `config` of `family` the winner, for `target`
    (None: `device`'s)."""
    full = {"family": family.name, **config}
    return {
        "family": family.name, "family_version": family.version, "config": full, "time_ms": 1.0,
        "rel_error": 0.0, "precision": problem.precision, "trials_run": 1, "timestamp": "2026-01-01T00:00:00",
        "fingerprint": target.fingerprint if target is not None else cache.fingerprint(device),
        "problem": problem.to_dict(),
        "trials": [{"family": family.name, "family_version": family.version, "config": full, "time_ms": 1.0}],
    }


def run_dispatch_case(case: ConvCase, options: SweepOptions, rng: random.Random,
                      emulate: int | None = None) -> list[SweepResult]:
    """The dispatcher's own choices: default (no config, empty cache), cached (a random supporting family's
    random feasible config stored in the cache), explicit (a random family's config passed in); and for every
    family that refuses the problem, the routing checks."""
    device = torch.device(options.device)
    results: list[SweepResult] = []
    target = emulated_target(emulate)
    t = make_conv_tensors(case, options.device)
    base = dict(kind="dispatch", case=case.to_dict(), emulated=emulate)
    try:
        problem = make_problem(t.input, t.weight, t.bias, **case.conv_args, residual=t.residual,
                               precision=case.precision, activation=case.activation)
    except TritonConvError as error:
        return [SweepResult(**base, family="", mode="dispatch-default", status="refused", detail=str(error))]
    ref = conv_reference(case, t.input, t.weight, t.bias, t.residual)
    supporting = families_for(problem, target)
    for family in FAMILIES.values():
        if family not in supporting:
            violations = routing_violations(problem, family, target)
            if violations:
                results.append(SweepResult(**base, family=family.name, mode="routing", status="misrouted",
                                           problem=problem.key, detail="; ".join(violations)))
    max_cost = options.max_cost if options.interpreter else None

    def check(mode: str, expected: tuple[str, dict] | None, config: dict | None) -> None:
        start = time.perf_counter()
        dispatch.clear_memo()
        tolerance = _tolerance(problem, config)
        family_name = ""
        try:
            out = _call_conv(case, t, config, target)
            chosen, chosen_config = dispatch.select(problem, config, device, "triton" if config is None else "auto", target)
            family_name = chosen.name
            status, err = _check_output(out, ref, tolerance)
            detail = (_format_status(case, t, out, options) or "") if status == "ok" else ""
            if (refusal := chosen.refusal(problem, target)) is not None:
                status, detail = "misrouted", f"dispatch chose {chosen.name}, which refuses: {refusal}"
            elif expected is not None and (chosen.name, chosen_config) != expected:
                status, detail = "misrouted", f"dispatch chose {chosen.name} {chosen_config}, expected {expected}"
            status = "format" if detail and status == "ok" else status
        except Exception as error:  # noqa: BLE001
            status, err, detail = "error", None, f"{type(error).__name__}: {error}".splitlines()[0][:300]
        results.append(SweepResult(**base, family=family_name, mode=mode, status=status, problem=problem.key,
                                   config=config, rel_error=err, tolerance=tolerance, detail=detail,
                                   seconds=time.perf_counter() - start))

    if not supporting:  # e.g. bf16 in the interpreter: conv2d must refuse with a tritonconv error
        try:
            _call_conv(case, t, None, target)
        except TritonConvError as error:
            results.append(SweepResult(**base, family="", mode="routing", status="refused", problem=problem.key,
                                       detail=str(error)[:300]))
        else:
            results.append(SweepResult(**base, family="", mode="routing", status="misrouted", problem=problem.key,
                                       detail="no family supports it, yet conv2d returned a result"))
        return results
    check("dispatch-default", None, None)
    if supporting:
        family = rng.choice(supporting)
        _, config = rng.choice(sample_configs(family, problem, rng, 1, max_cost, target))
        entry = _cache_entry(problem, family, config, device, target)
        cache.update({cache.entry_key(problem, entry["fingerprint"]): entry})
        full = family.complete_config(problem, config, target)
        try:
            check("dispatch-cached", (family.name, full), None)
        finally:
            cache.clear()
            cache.invalidate()
            dispatch.clear_memo()
        family = rng.choice(supporting)
        _, config = rng.choice(sample_configs(family, problem, rng, 1, max_cost, target))
        check("dispatch-explicit", None, {"family": family.name, **config})
    return results


# ------------------------------------------------------------------------------------------------------------
# Matmul cases (the gemm family and every other family that takes the 1x1 problem)
# ------------------------------------------------------------------------------------------------------------
def matmul_reference(case: MatmulCase, a, b, bias, residual) -> torch.Tensor:
    y = torch.matmul(a.double().cpu(), b.double().cpu())
    if bias is not None:
        y = y + bias.double().cpu()
    if residual is not None:
        y = y + residual.double().cpu()
    return _activation(y, case.activation)


def _call_matmul(case: MatmulCase, t, config: dict[str, Any] | None, out: torch.Tensor | None,
                 target: DeviceInfo | None = None) -> None:
    """Through `tritonconv.matmul`; for an emulated `target`, the validated problem through `run_matmul`, the
    launch below it (the dispatcher takes the target)."""
    if target is None:
        tritonconv.matmul(t.a, t.b, bias=t.bias, residual=t.residual, activation=case.activation,
                          precision=case.precision, config=config, out=out)
        return
    problem = matmul_problem(t.a, t.b, bias=t.bias, residual=t.residual, activation=case.activation,
                             precision=case.precision)
    out = out if out is not None else torch.empty((*case.batch, case.m, case.n), dtype=t.a.dtype, device=t.a.device)
    run_matmul(problem, t.a, t.b, out, bias=t.bias, residual=t.residual, activation=case.activation, config=config,
               target=target)


def run_matmul_case(case: MatmulCase, options: SweepOptions, rng: random.Random,
                    emulate: int | None = None) -> list[SweepResult]:
    results: list[SweepResult] = []
    target = emulated_target(emulate)
    t = make_matmul_tensors(case, options.device)
    base = dict(kind="matmul", case=case.to_dict(), emulated=emulate)
    try:
        problem = matmul_problem(t.a, t.b, bias=t.bias, residual=t.residual, activation=case.activation,
                                 precision=case.precision)
    except TritonConvError as error:
        return [SweepResult(**base, family="", mode="default", status="refused", detail=str(error))]
    if not families_for(problem, target):  # e.g. bf16 in the interpreter: matmul must refuse with a tritonconv error
        try:
            _call_matmul(case, t, None, None, target)
        except TritonConvError as error:
            return [SweepResult(**base, family="", mode="routing", status="refused", problem=problem.key,
                                detail=str(error)[:300])]
        return [SweepResult(**base, family="", mode="routing", status="misrouted", problem=problem.key,
                            detail="no family supports it, yet matmul returned a result")]
    ref = matmul_reference(case, t.a, t.b, t.bias, t.residual)
    out_shape = (*case.batch, case.m, case.n)
    max_cost = options.max_cost if options.interpreter else None
    runs: list[tuple[str, str, dict | None]] = [("", "dispatch-default", None)]
    for family in families_for(problem, target):
        runs += [(family.name, mode, {"family": family.name, **config})
                 for mode, config in sample_configs(family, problem, rng, options.configs, max_cost, target)]
    for family_name, mode, config in runs:
        start = time.perf_counter()
        tolerance = Precision(problem.precision).tolerance
        out = torch.full(out_shape, float("nan"), dtype=t.a.dtype, device=options.device)
        detail = ""
        try:
            _call_matmul(case, t, config, out, target)
            status, err = _check_output(out, ref, tolerance)
        except Exception as error:  # noqa: BLE001
            status, err, detail = "error", None, f"{type(error).__name__}: {error}".splitlines()[0][:300]
        results.append(SweepResult(**base, family=family_name, mode=mode, status=status, problem=problem.key,
                                   config=config, rel_error=err, tolerance=tolerance, detail=detail,
                                   seconds=time.perf_counter() - start))
    return results


# ------------------------------------------------------------------------------------------------------------
# Sweeps
# ------------------------------------------------------------------------------------------------------------
SWEEPS = ("implicit_gemm", "depthwise", "small_group", "gemm", "hopper_implicit_gemm", "winograd", "matmul", "dispatch")


def _emulate_for(sweep: str, index: int, options: SweepOptions) -> int | None:
    """Interpreter only: the Hopper family always runs as on sm_90; gemm, matmul and the dispatcher every other
    case (their TMA / Hopper choices exist only there)."""
    if not (options.interpreter and INTERPRET):
        return None
    if sweep == "hopper_implicit_gemm":
        return 90
    if sweep in ("gemm", "matmul", "dispatch") and index % 2:
        return 90
    return None


def run_sweep(sweep: str, cases: int, seed: int, options: SweepOptions) -> Iterator[SweepResult]:
    """`cases` random cases of one sweep (a family name, "matmul" or "dispatch"), seeded: reproducible."""
    for index in range(cases):
        rng = random.Random(f"{sweep}:{seed}:{index}")
        emulate = _emulate_for(sweep, index, options)
        if sweep == "matmul":
            case = draw_matmul_case(rng, interpreter=options.interpreter)
        else:
            case = draw_conv_case(rng.choice(list(FAMILIES)) if sweep == "dispatch" else sweep, rng,
                                  interpreter=options.interpreter)
        if sweep != "hopper_implicit_gemm" and (case.dtype == "bfloat16" or case.precision == "bf16"):
            emulate = None  # an emulated sm_90 offers the Hopper family's bf16 tl.dot, wrong in the interpreter
        if sweep == "matmul":
            yield from run_matmul_case(case, options, rng, emulate)
        elif sweep == "dispatch":
            yield from run_dispatch_case(case, options, rng, emulate)
        else:
            yield from run_conv_case(sweep, case, options, rng, emulate)


def summarize(results: list[SweepResult]) -> dict[str, dict[str, int]]:
    """Counts per (kind/family) and status."""
    table: dict[str, dict[str, int]] = {}
    for r in results:
        row = table.setdefault(f"{r.kind}:{r.family or '-'}", {})
        row[r.status] = row.get(r.status, 0) + 1
    return table
