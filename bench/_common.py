"""What the per-GPU benchmark scripts that also dry-run on the CPU share (bench/int8.py, bench/winograd.py): the
device and timer of a run, cuDNN's time as the baseline candidate, and the loop that benches each problem, prints
what it measured and writes the "conv" results file (`tritonconv report` draws it)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from tritonconv.baseline import fastest, time_cudnn
from tritonconv.problem import ConvProblem
from tritonconv.reference import reference_conv
from tritonconv.results import CandidateResult, ResultRecord, write_results

RESULTS = Path(__file__).resolve().parent / "results"
Timer = Callable[[Callable[[], object]], float]


def device_and_timer(script: str, dry_run: bool) -> Optional[tuple[str, Optional[Timer]]]:
    """("cpu", None) for a dry run (the interpreter: outputs checked, nothing timed), ("cuda", the CUDA-event timer)
    on a GPU; None, after saying so on stderr, without a GPU."""
    if dry_run:
        return "cpu", None
    if not torch.cuda.is_available():
        print(f"{script} needs a CUDA GPU (or --dry-run)", file=sys.stderr)
        return None
    from tritonconv.timing import time_ms

    return "cuda", time_ms


def cudnn_baseline(name: str, problem: ConvProblem, x: torch.Tensor, w: torch.Tensor,
                   timer: Timer) -> tuple[Optional[float], CandidateResult]:
    """cuDNN's time (F.conv2d in both layouts, the faster kept, each output checked first: tritonconv.baseline) and
    the baseline candidate that reports it."""
    best = fastest(time_cudnn(problem, x, w, reference_conv(problem, x, w), timer))
    ms = best.ms if best else None
    return ms, CandidateResult.measured(name, ms, role="baseline", flops=problem.flops)


def run_and_write(selected: Sequence[tuple[str, ConvProblem]], bench: Callable[[str, ConvProblem], ResultRecord],
                  *, name: str, device: str, out: Optional[Path], meta: dict) -> Path:
    """`bench` each (name, problem), printing a line per problem as it finishes, then write the results file: `out`,
    or bench/results/<name>_<gpu>.json."""
    records = []
    for label, problem in selected:
        records.append(bench(label, problem))
        print(label, [(r.name, r.ms, r.speedup, r.rel_error, r.error) for r in records[-1].results], flush=True)
    gpu = torch.cuda.get_device_name().replace(" ", "_") if device == "cuda" else "interpreter"
    path = write_results(out or RESULTS / f"{name}_{gpu}.json", records, meta, kind="conv")
    print(f"wrote {path}")
    return path
