"""Benchmarks against cuDNN/cuBLAS, the roofline floor, and the results JSON every bench script writes.

Generic parts (reused by bench/conv.py, bench/gemm.py, bench/models.py and `tritonconv bench`):
  * `measure_peaks(dtype, precision)` - copy bandwidth and matmul FLOP/s measured on this GPU, in this run;
  * `floor_ms` / `roofline_floor_ms` - max(flops / peak FLOP/s, bytes / peak bandwidth);
  * `geomean`, `summarize` - geomean speedup and worst record per candidate;
Conv-specific parts: `load_conv_suite`, `bench_problem` (one shape: cuDNN NCHW + NHWC, every family's default
config, the tuned choice), `run_conv_suite`.

The results file (schema, the one writer, the loader) is `tritonconv.results`; its names are re-exported here.
"""
from __future__ import annotations

import contextlib
import fnmatch
import functools
import math
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Protocol, Sequence

import torch

from . import suite
from .enums import DType, Precision, canonical_dtype, default_precision
from .errors import InvalidInputError, TritonConvError
from .problem import ConvProblem
from .results import (  # noqa: F401  the results file lives in tritonconv.results; re-exported for bench/*.py
    KINDS, SCHEMA, SCHEMA_VERSION, CandidateResult, Record, ResultRecord, device_metadata, load_results,
    result_entry, tflops, tune_record, write_results,
)


# Shapes with at most this many FLOPs get a float64 reference; larger ones a float32 (no TF32) reference.
FLOAT64_REFERENCE_MAX_FLOPS = 2 * 10**9

TimeFn = Callable[[Callable[[], object]], float]


class HasWork(Protocol):
    """Anything with a FLOP count and a minimum byte count (ConvProblem, a GEMM's ConvProblem, ...)."""

    flops: int
    min_bytes: int


def default_time_fn(fn: Callable[[], object]) -> float:
    """tritonconv.timing.time_ms: do_bench medians with the L2 cache flushed (imported lazily: needs a GPU)."""
    from .timing import time_ms

    return time_ms(fn)


# ---- peaks and the roofline -------------------------------------------------------------------------------------
@contextlib.contextmanager
def tf32_enabled(enabled: bool) -> Iterator[None]:
    """Temporarily allow (or forbid) TF32 in cuBLAS matmuls and cuDNN convs."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _matmul_dtype(dtype: str, precision: str) -> tuple[torch.dtype, bool]:
    """The dtype the matrix units multiply in for (dtype, precision), and whether that is TF32."""
    rule = Precision(precision)
    if rule.operand_dtype:
        return DType(rule.operand_dtype).torch, False
    return DType(dtype).torch, dtype == "float32" and rule.tf32_mma


def measure_peaks(
    dtype: str | torch.dtype = "float16",
    precision: str = "",
    *,
    device: str | torch.device = "cuda",
    copy_mib: int = 1024,
    matmul_size: int = 8192,
    time_fn: TimeFn = default_time_fn,
) -> dict[str, Any]:
    """Peak bandwidth and FLOP/s measured on `device` now, for the roofline floor of this run.

    Bandwidth: a device-to-device copy of `copy_mib` MiB, counting read + write bytes. FLOP/s: a square
    torch.matmul of `matmul_size` in the dtype the matrix units use for (dtype, precision): float32 with
    precision "ieee" runs without TF32, "tf32"/"tf32x3" with TF32 (tf32x3 does ~3 TF32 products, so its fraction of
    this floor is at most ~1/3), "fp16"/"bf16" in that type. These are achievable peaks, not datasheet numbers.
    """
    known = DType(dtype) if dtype in DType.names() else DType.from_torch(dtype)
    if known is None:
        raise InvalidInputError(f"unknown dtype {dtype!r}; choose from {sorted(DType.names())}")
    dtype_name = known.value
    precision = precision or default_precision(dtype_name)
    mm_dtype, use_tf32 = _matmul_dtype(dtype_name, precision)

    src = torch.empty(copy_mib * 2**20, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    copy_ms = time_fn(functools.partial(dst.copy_, src))
    del src, dst

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(matmul_size, matmul_size, generator=gen).to(device=device, dtype=mm_dtype)
    b = torch.randn(matmul_size, matmul_size, generator=gen).to(device=device, dtype=mm_dtype)
    with tf32_enabled(use_tf32):
        matmul_ms = time_fn(functools.partial(torch.matmul, a, b))
    del a, b

    copy_bytes = 2 * copy_mib * 2**20
    matmul_flops = 2 * matmul_size**3
    return {
        "dtype": dtype_name, "precision": precision, "matmul_dtype": str(mm_dtype).removeprefix("torch."),
        "tf32": use_tf32, "copy_bytes": copy_bytes, "copy_ms": copy_ms, "matmul_size": matmul_size,
        "matmul_ms": matmul_ms, "bytes_per_s": copy_bytes / (copy_ms * 1e-3),
        "flops_per_s": matmul_flops / (matmul_ms * 1e-3),
    }


def floor_ms(flops: float, nbytes: float, peaks: dict[str, Any]) -> float:
    """The roofline floor: max(flops / peak FLOP/s, bytes / peak bandwidth), in milliseconds."""
    return 1e3 * max(flops / peaks["flops_per_s"], nbytes / peaks["bytes_per_s"])


def roofline_floor_ms(problem: HasWork, peaks: dict[str, Any]) -> float:
    """`floor_ms` of a problem's FLOPs and minimum bytes (input + weight read once, output written once)."""
    return floor_ms(problem.flops, problem.min_bytes, peaks)


def geomean(values: Iterable[Optional[float]]) -> float:
    """Geometric mean of the positive finite values (None, NaN, inf and non-positive are skipped); NaN if none."""
    logs = [math.log(v) for v in values if v is not None and math.isfinite(v) and v > 0]
    return math.exp(sum(logs) / len(logs)) if logs else float("nan")


def summarize(records: Sequence[Record], metric: str = "speedup") -> dict[str, dict[str, Any]]:
    """Per candidate name: geomean of `metric` over the records that have it, and the worst record."""
    per_name: dict[str, list[tuple[float, str]]] = {}
    for record in records:
        for entry in record.get("results", []):
            value = entry.get(metric)
            if entry.get("role") != "baseline" and value is not None and math.isfinite(value):
                per_name.setdefault(entry["name"], []).append((value, record.get("name", "?")))
    summary = {}
    for name, pairs in per_name.items():
        worst_value, worst_record = min(pairs)
        summary[name] = {
            "geomean": geomean(v for v, _ in pairs), "worst": worst_value, "worst_record": worst_record,
            "count": len(pairs),
        }
    return summary


# ---- conv suites ---------------------------------------------------------------------------------------------
def matches(name: str, patterns: Optional[Sequence[str]]) -> bool:
    """True if `name` matches any glob pattern ('r50_*', '*dw*'); no patterns match all."""
    if not patterns:
        return True
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def load_conv_suite(
    path: str | Path, *, dtype: str = "float16", layout: str = "nhwc", precision: str = "",
    shapes: Optional[Sequence[str]] = None,
) -> list[tuple[str, ConvProblem]]:
    """(name, ConvProblem) for each shape of the suite file (validated: tritonconv.suite) whose name matches one
    of the glob patterns `shapes` (all without patterns)."""
    dtype = canonical_dtype(dtype)
    selected = suite.select(suite.load_suite(path), shapes, source=str(path))
    return [(s.name, s.problem(dtype=dtype, layout=layout, precision=precision)) for s in selected]


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref||, computed in the reference's dtype on its device; inf if out is not finite."""
    out = out.to(ref.dtype)
    if not torch.isfinite(out).all():
        return float("inf")
    return ((out - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def _reference(problem: ConvProblem, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, str]:
    """F.conv2d in float64 (small shapes) or float32 without TF32, and which one it is."""
    from .cudnn import cudnn_conv2d
    from .kernels import ConvTensors

    ref_dtype = torch.float64 if problem.flops <= FLOAT64_REFERENCE_MAX_FLOPS else torch.float32
    with tf32_enabled(False):
        ref = cudnn_conv2d(problem, ConvTensors(x.to(ref_dtype), w.to(ref_dtype), output=None))
    return ref, str(ref_dtype).removeprefix("torch.")


def _timed_entry(
    name: str, run: Callable[[], torch.Tensor], output: Optional[torch.Tensor], ref: torch.Tensor, *,
    time_fn: TimeFn, role: str, flops: float, floor: float, timed: Optional[Callable[[], object]] = None,
    **extra: Any,
) -> dict[str, Any]:
    """Check `run`'s result against the reference (its `output` poisoned with NaN first), then time `timed`
    (default: `run`). A candidate that raises is recorded with its error instead."""
    try:
        if output is not None:
            output.fill_(float("nan"))
        result = run()
        error = relative_error(output if output is not None else result, ref)
        ms = time_fn(timed or run)
    except Exception as exc:  # a failing candidate is recorded, the benchmark goes on
        return result_entry(name, None, role=role, error=f"{type(exc).__name__}: {exc}", **extra)
    return result_entry(name, ms, role=role, flops=flops, floor=floor, rel_error=error, **extra)


def _public_call(problem: ConvProblem, x: torch.Tensor, w: torch.Tensor) -> Optional[Callable[[], torch.Tensor]]:
    """`tritonconv.conv2d(x, w, ...)` for `problem` (what users call), or None when its arguments would describe
    a different problem (asymmetric padding, a layout the tensors cannot show)."""
    from .functional import conv2d, make_problem

    args = dict(stride=(problem.stride_h, problem.stride_w), padding=(problem.pad_h, problem.pad_w),
                dilation=(problem.dilation_h, problem.dilation_w), groups=problem.groups, precision=problem.precision)
    try:
        if make_problem(x, w, **args) != problem:
            return None
    except TritonConvError:
        return None
    return lambda: conv2d(x, w, **args)


def bench_problem(
    problem: ConvProblem,
    *,
    peaks: dict[str, Any],
    name: Optional[str] = None,
    device: str | torch.device = "cuda",
    families: bool = True,
    tuned: bool = True,
    time_fn: TimeFn = default_time_fn,
) -> Record:
    """Time one conv problem in this process and return its record.

    Candidates: cuDNN on NCHW and on NHWC tensors (cudnn.benchmark on, TF32 as the problem's precision asks),
    with `families` every supporting family's default config, with `tuned` the cached tuned choice (if there
    is one). Speedups are relative to the faster cuDNN layout; every result is checked against a float64 (small
    shapes) or float32 reference before it is timed.
    """
    from . import cache
    from .cudnn import cudnn_conv2d
    from .dispatch import empty_output, run_problem
    from .kernels import ConvTensors, families_for

    device = torch.device(device)
    x, w = problem.make_tensors(device)
    ref, ref_dtype = _reference(problem, x, w)
    flops, floor = problem.flops, roofline_floor_ms(problem, peaks)
    common = dict(time_fn=time_fn, flops=flops, floor=floor)

    # cuDNN in both layouts; TF32 only where the problem's precision is TF32-like (or lower).
    cudnn_tf32 = problem.dtype == "float32" and Precision(problem.precision).cudnn_tf32
    entries = []
    baseline = "cudnn" if device.type == "cuda" else "torch_cpu"  # on the CPU (interpreter runs) it is not cuDNN
    for layout, memory_format in (("nchw", torch.contiguous_format), ("nhwc", torch.channels_last)):
        xl, wl = x.contiguous(memory_format=memory_format), w.contiguous(memory_format=memory_format)
        tensors = ConvTensors(xl, wl, output=None)
        with torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=False, allow_tf32=cudnn_tf32):
            # The checked run before the timing also lets cudnn.benchmark pick its algorithm (warm).
            entries.append(_timed_entry(
                f"{baseline}_{layout}", lambda t=tensors: cudnn_conv2d(problem, t), None, ref, role="baseline",
                tf32=cudnn_tf32, **common,
            ))

    def triton_run(config: Optional[dict[str, Any]], out: torch.Tensor, backend: str) -> Callable[[], torch.Tensor]:
        return lambda: run_problem(problem, x, w, None, None, "none", config, output=out, backend=backend)

    if families:
        for family in families_for(problem):
            out = empty_output(problem, x)
            entries.append(_timed_entry(
                family.name, triton_run({"family": family.name}, out, "triton"), out, ref, role="candidate",
                family=family.name, config=family.default_config(problem), **common,
            ))
    tuned_config = cache.lookup_config(problem, device, "auto") if tuned else None
    if tuned_config is not None:
        # Checked through run_problem (poisoned output), timed through tritonconv.conv2d with no config: the same
        # dispatch (cache -> family) plus everything a user's call costs.
        out = empty_output(problem, x)
        entries.append(_timed_entry(
            "tuned", triton_run(None, out, "auto"), out, ref, role="candidate", timed=_public_call(problem, x, w),
            family=tuned_config.get("family"), config=tuned_config, **common,
        ))

    baselines = [e for e in entries if e["role"] == "baseline" and e["ms"] is not None]
    best = min(baselines, key=lambda e: e["ms"]) if baselines else None
    for entry in entries:
        if best is not None and entry["ms"] is not None:
            entry["speedup"] = best["ms"] / entry["ms"]
    return {
        "name": name or problem.key, "key": problem.key, "problem": problem.to_dict(), "flops": flops,
        "min_bytes": problem.min_bytes, "floor_ms": floor, "reference": ref_dtype,
        "baseline": best["name"] if best else None, "baseline_ms": best["ms"] if best else None,
        "tuned": tuned_config is not None, "results": entries,
    }


def run_conv_suite(
    problems: Sequence[tuple[str, ConvProblem]],
    *,
    device: str | torch.device = "cuda",
    families: bool = True,
    tuned: bool = True,
    time_fn: TimeFn = default_time_fn,
    peaks: Optional[dict[str, Any]] = None,
    on_record: Optional[Callable[[Record], None]] = None,
) -> tuple[list[Record], dict[str, Any]]:
    """Benchmark every (name, problem); peaks are measured first (same dtype/precision as the problems) unless
    given. Returns (records, meta) ready for `write_results(..., kind="conv")`."""
    if not problems:
        raise InvalidInputError("no problems to benchmark")
    first = problems[0][1]
    if peaks is None:
        peaks = measure_peaks(first.dtype, first.precision, device=device, time_fn=time_fn)
    records = []
    for name, problem in problems:
        record = bench_problem(problem, peaks=peaks, name=name, device=device, families=families, tuned=tuned,
                               time_fn=time_fn)
        records.append(record)
        if on_record is not None:
            on_record(record)
    meta = {
        "peaks": peaks, "dtype": first.dtype, "layout": first.layout, "precision": first.precision,
        "summary": summarize(records),
    }
    return records, meta
