"""The conv benchmark: per problem, cuDNN on NCHW and NHWC tensors (tritonconv.baseline), every supporting
family's default config and the tuned choice, each checked against the reference (tritonconv.reference) before
it is timed, with the roofline floor from peaks measured in the same run (tritonconv.roofline). Used by
`tritonconv bench`, bench/conv.py and bench/gpu_session.py; `run_conv_suite` returns records for
`tritonconv.results.write_results(..., kind="conv")`.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch

from . import cache
from .baseline import time_cudnn
from .dispatch import empty_output, run_problem
from .errors import InvalidInputError, TritonConvError
from .functional import conv2d, make_problem
from .kernels import families_for
from .problem import ConvProblem
from .reference import reference_conv, reference_dtype, rel_error
from .results import Record, result_entry, summarize
from .roofline import default_time_fn, measure_peaks, roofline_floor_ms
from .timing import Timer


def _timed_entry(
    name: str, run: Callable[[], torch.Tensor], output: Optional[torch.Tensor], ref: torch.Tensor, *,
    time_fn: Timer, role: str, flops: float, floor: float, timed: Optional[Callable[[], object]] = None,
    **extra: Any,
) -> dict[str, Any]:
    """Check `run`'s result against the reference (its `output` poisoned with NaN first), then time `timed`
    (default: `run`). A candidate that raises is recorded with its error instead."""
    try:
        if output is not None:
            output.fill_(float("nan"))
        result = run()
        error = rel_error(output if output is not None else result, ref)
        ms = time_fn(timed or run)
    except Exception as exc:  # a failing candidate is recorded, the benchmark goes on
        return result_entry(name, None, role=role, error=f"{type(exc).__name__}: {exc}", **extra)
    return result_entry(name, ms, role=role, flops=flops, floor=floor, rel_error=error, **extra)


def _public_call(problem: ConvProblem, x: torch.Tensor, w: torch.Tensor) -> Optional[Callable[[], torch.Tensor]]:
    """`tritonconv.conv2d(x, w, ...)` for `problem` (what users call), or None when its arguments would describe
    a different problem (asymmetric padding, a layout the tensors cannot show)."""
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
    time_fn: Timer = default_time_fn,
) -> Record:
    """Time one conv problem in this process and return its record.

    Candidates: cuDNN on NCHW and on NHWC tensors (cudnn.benchmark on, TF32 as the problem's precision asks),
    with `families` every supporting family's default config, with `tuned` the cached tuned choice (if there
    is one). Speedups are relative to the faster cuDNN layout; every result is checked against a float64 (small
    shapes) or float32 reference before it is timed.
    """
    device = torch.device(device)
    x, w = problem.make_tensors(device)
    ref_dtype = reference_dtype(problem)
    ref = reference_conv(problem, x, w, ref_dtype)
    flops, floor = problem.flops, roofline_floor_ms(problem, peaks)
    common = dict(time_fn=time_fn, flops=flops, floor=floor)

    baseline = "cudnn" if device.type == "cuda" else "torch_cpu"  # on the CPU (interpreter runs) it is not cuDNN
    entries = []
    for timing in time_cudnn(problem, x, w, ref, time_fn):
        name_ = f"{baseline}_{timing.layout}"
        if timing.exception is not None:
            entries.append(result_entry(name_, None, role="baseline", error=timing.error, tf32=timing.tf32))
        else:
            entries.append(result_entry(name_, timing.ms, role="baseline", flops=flops, floor=floor,
                                        rel_error=timing.rel_error, tf32=timing.tf32))

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
        "min_bytes": problem.min_bytes, "floor_ms": floor, "reference": str(ref_dtype).removeprefix("torch."),
        "baseline": best["name"] if best else None, "baseline_ms": best["ms"] if best else None,
        "tuned": tuned_config is not None, "results": entries,
    }


def run_conv_suite(
    problems: Sequence[tuple[str, ConvProblem]],
    *,
    device: str | torch.device = "cuda",
    families: bool = True,
    tuned: bool = True,
    time_fn: Timer = default_time_fn,
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
