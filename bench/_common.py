"""What the per-GPU benchmark scripts that also dry-run on the CPU share (bench/int8.py, bench/winograd.py): their
options, cuDNN's time as the baseline candidate, a problem's row, and the run: the device and timer, the loop that
benches each problem and prints what it measured, the "conv" results file (`tritonconv report` draws it)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from tritonconv.baseline import fastest, time_cudnn
from tritonconv.problem import ConvProblem
from tritonconv.reference import reference_conv
from tritonconv.results import CandidateResult, ResultRecord, write_results
from tritonconv.timing import Timer

RESULTS = Path(__file__).resolve().parent / "results"


def bench_parser(script: str, doc: str, shapes_help: str) -> argparse.ArgumentParser:
    """The options every such script takes: --shapes, --trials, --out, --dry-run (`script`: bench/<name>.py)."""
    name = Path(script).stem
    parser = argparse.ArgumentParser(prog=f"python {script}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="*", help=f"suite shape globs ({shapes_help})")
    parser.add_argument("--trials", type=int, default=0, help="tune each problem first with this many trials")
    parser.add_argument("--out", type=Path, default=None, help=f"results file (default: bench/results/{name}_<gpu>.json)")
    parser.add_argument("--dry-run", action="store_true", help="CPU, Triton interpreter, tiny shapes, no timing")
    return parser


def cudnn_baseline(name: str, problem: ConvProblem, x: torch.Tensor, w: torch.Tensor,
                   timer: Timer) -> tuple[Optional[float], CandidateResult]:
    """cuDNN's time (F.conv2d in both layouts, the faster kept, each output checked first: tritonconv.baseline) and
    the baseline candidate that reports it."""
    best = fastest(time_cudnn(problem, x, w, reference_conv(problem, x, w), timer))
    ms = best.ms if best else None
    return ms, CandidateResult.measured(name, ms, role="baseline", flops=problem.flops)


def problem_record(name: str, problem: ConvProblem, results: list[CandidateResult], baseline: Optional[str]) -> ResultRecord:
    """One problem's row: its candidates beside the baseline named `baseline` (None: nothing was timed)."""
    return ResultRecord(name=name, results=results, baseline=baseline,
                        fields={"problem": problem.key, "label": problem.long_label, "flops": problem.flops})


def run(script: str, args: argparse.Namespace, selected: Callable[[], Sequence[tuple[str, ConvProblem]]],
        bench: Callable[[str, ConvProblem, str, int, Optional[Timer]], ResultRecord], what: str) -> int:
    """The script's run, its exit code: on a GPU (exit 2 without one, unless --dry-run: the interpreter, outputs
    checked, nothing timed) `bench(name, problem, device, trials, timer)` each selected problem, print a line per
    problem as it finishes, then write the results file (--out, or bench/results/<name>_<gpu>.json)."""
    if not args.dry_run and not torch.cuda.is_available():
        print(f"{script} needs a CUDA GPU (or --dry-run)", file=sys.stderr)
        return 2
    if args.dry_run:
        device, timer = "cpu", None
    else:
        from tritonconv.timing import time_ms

        device, timer = "cuda", time_ms
    records = []
    for label, problem in selected():
        records.append(bench(label, problem, device, args.trials, timer))
        print(label, [(r.name, r.ms, r.speedup, r.rel_error, r.error) for r in records[-1].results], flush=True)
    gpu = torch.cuda.get_device_name().replace(" ", "_") if device == "cuda" else "interpreter"
    out = args.out or RESULTS / f"{Path(script).stem}_{gpu}.json"
    path = write_results(out, records, {"what": f"{what}, {script}", "dry_run": args.dry_run}, kind="conv")
    print(f"wrote {path}")
    return 0
