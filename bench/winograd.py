"""Winograd benchmark on this GPU: the winograd family's heuristic configs (each variant and tile its space offers
for the precision) and the implicit-GEMM default vs cuDNN (F.conv2d, NHWC and NCHW, the faster kept) on the
suite's 3x3 stride-1 layers, in fp16 and in float32 with TF32, all timed in one process. Every output is checked
first against float64; a candidate above the precision's tolerance is reported with its error and no speedup.
With --trials the layer is tuned first and the search's winner (any family) is timed too.

    python bench/winograd.py [--shapes 'r50_*'] [--precisions fp16,tf32] [--trials 0] [--out FILE.json]
    python bench/winograd.py --dry-run        # the same on the CPU in the Triton interpreter, tiny shapes, no timing

Writes bench/results/winograd_<gpu>.json (a "conv" results file: `tritonconv report` draws it); exits 2 without a
GPU (unless --dry-run).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing
if "--dry-run" in sys.argv:
    os.environ["TRITON_INTERPRET"] = "1"  # before Triton kernels are defined

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import tritonconv  # noqa: E402
from tritonconv.kernels import get_family  # noqa: E402
from tritonconv.problem import ConvProblem  # noqa: E402
from tritonconv.results import CandidateResult, ResultRecord  # noqa: E402
from tritonconv.enums import Precision  # noqa: E402
from tritonconv.reference import rel_error  # noqa: E402
from tritonconv.suite import CONV_SUITE, load_suite, select, split_patterns  # noqa: E402

from bench._common import bench_parser, cudnn_baseline, problem_record, run  # noqa: E402

DTYPE_OF = {"fp16": "float16", "tf32": "float32", "ieee": "float32"}
TINY = [ConvProblem(n=1, c=16, h=6, w=7, k=16, r=3, s=3, pad_h=1, pad_w=1, layout="nhwc")]


def problems(shapes: str, precisions: list[str]) -> list[tuple[str, ConvProblem]]:
    winograd = get_family("winograd")
    selected = []
    for shape in select(load_suite(CONV_SUITE), split_patterns([shapes]), source=str(CONV_SUITE)):
        for precision in precisions:
            problem = shape.problem(dtype=DTYPE_OF[precision], layout="nhwc", precision=precision)
            if winograd.refusal(problem) is None:
                selected.append((f"{shape.name} {precision}", problem))
    return selected


def bench_problem(name: str, problem: ConvProblem, device: str, trials: int, timer) -> ResultRecord:
    x, w = problem.make_tensors(device, seed=0)
    bias = torch.randn(problem.k, generator=torch.Generator().manual_seed(1)).to(device=device, dtype=x.dtype)
    args = dict(stride=(problem.stride_h, problem.stride_w), padding=(problem.pad_h, problem.pad_w),
                dilation=(problem.dilation_h, problem.dilation_w), groups=problem.groups)
    reference = F.conv2d(x.double(), w.double(), bias.double(), **args)
    tolerance = Precision(problem.precision).tolerance
    results, cudnn_ms = [], None
    if timer is not None:  # cuDNN with TF32 as the precision allows
        cudnn_ms, baseline = cudnn_baseline("cudnn", problem, x, w, timer)
        results.append(baseline)
    winograd = get_family("winograd")
    candidates = [("implicit_gemm default", {"family": "implicit_gemm"})]
    candidates += [(f"winograd {c['VARIANT']} F({c['TILE']},3)", {"family": "winograd", **c})
                   for c in winograd.heuristic_configs(problem)]
    if trials:
        from tritonconv.search import tune

        result = tune(problem, trials=trials, progress=False)
        candidates.append((f"tuned ({result.family})", {"family": result.family, **result.config}))
    for label, config in candidates:
        def run(config=config):
            return tritonconv.conv2d(x, w, bias, **args, config=config, precision=problem.precision, backend="triton")

        error = rel_error(run(), reference)
        within = error <= tolerance
        ms = timer(run) if timer is not None and within else None
        results.append(CandidateResult.measured(
            label, ms, flops=problem.flops, baseline_ms=cudnn_ms, rel_error=error,
            error=None if within else f"relative error {error:.3g} > tolerance {tolerance:g}",
            config=config, precision=problem.precision,
        ))
    return problem_record(name, problem, results, "cudnn" if timer else None)


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("bench/winograd.py", __doc__, "default: every 3x3 stride-1 layer")
    parser.add_argument("--precisions", default="fp16,tf32", help="comma-separated: fp16, tf32, ieee")
    args = parser.parse_args(argv)
    precisions = args.precisions.split(",")
    unknown = [p for p in precisions if p not in DTYPE_OF]
    if unknown:
        print(f"unknown precision {unknown[0]!r}; choose from {', '.join(DTYPE_OF)}", file=sys.stderr)
        return 2
    def selected():
        if args.dry_run:
            return [(f"tiny_3x3 {p}", t.with_(dtype=DTYPE_OF[p], precision=p)) for t in TINY for p in precisions]
        return problems(args.shapes, precisions)

    return run("bench/winograd.py", args, selected, bench_problem, "winograd vs cuDNN")


if __name__ == "__main__":
    sys.exit(main())
