"""int8 conv benchmark on this GPU: tritonconv.quantized.conv2d (dequantised and requantised output, the int8
family's default config or, with --trials, the tuned one) vs cuDNN fp16 (F.conv2d, NHWC and NCHW, the faster
kept) on the suite's 3x3 layers, all timed in one process. Every int8 output is checked first against float64 of
the same quantised values (dequantised: relative error; requantised: max LSB difference).

    python bench/int8.py [--shapes '*3x3*'] [--trials 0] [--out bench/results/NAME.json]
    python bench/int8.py --dry-run        # the same on the CPU in the Triton interpreter, tiny shapes, no timing

Writes bench/results/int8_<gpu>.json (a "conv" results file: `tritonconv report` draws it); exits 2 without a GPU
(unless --dry-run).
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

from tritonconv import quantized  # noqa: E402
from tritonconv.problem import ConvProblem  # noqa: E402
from tritonconv.results import CandidateResult, ResultRecord  # noqa: E402
from tritonconv.reference import rel_error  # noqa: E402
from tritonconv.suite import CONV_SUITE, load_suite, select, split_patterns  # noqa: E402

from bench._common import bench_parser, cudnn_baseline, problem_record, run  # noqa: E402

TINY = [ConvProblem(n=1, c=16, h=6, w=6, k=16, r=3, s=3, pad_h=1, pad_w=1, dtype="int8", layout="nhwc")]


def problems(shapes: str) -> list[tuple[str, ConvProblem]]:
    selected = select(load_suite(CONV_SUITE), split_patterns([shapes]), source=str(CONV_SUITE))
    return [(s.name, s.problem(dtype="int8", layout="nhwc")) for s in selected if (s.r, s.s) == (3, 3)]


def bench_problem(name: str, problem: ConvProblem, device: str, trials: int, timer) -> ResultRecord:
    x, w = problem.make_tensors(device, seed=0)
    gen = torch.Generator().manual_seed(1)
    w_scale = (torch.rand(problem.k, generator=gen) * 1e-3 + 1e-4).to(device)
    bias = torch.randn(problem.k, generator=gen).to(device)
    args = dict(stride=(problem.stride_h, problem.stride_w), padding=(problem.pad_h, problem.pad_w),
                dilation=(problem.dilation_h, problem.dilation_w), groups=problem.groups)
    x_scale = 0.02
    reference = F.conv2d(x.double() * x_scale, w.double() * w_scale.double()[:, None, None, None], bias.double(), **args)
    out_scale = reference.abs().max().item() / 127
    results, cudnn_ms = [], None
    if timer is not None:  # cuDNN fp16 on the same values
        cudnn_ms, baseline = cudnn_baseline("cudnn_fp16", problem, x, w, timer)
        results.append(baseline)
    if trials:
        from tritonconv.search import tune

        tune(problem, trials=trials, progress=False)
    for label, scale in (("int8_dequant", None), ("int8_requant", out_scale)):
        out = quantized.conv2d(x, w, x_scale, w_scale, bias, scale, **args)
        if scale is None:
            error = rel_error(out, reference)
            extra = {"rel_error_vs_float64": error}
        else:
            error = None
            lsb = (out.double() - torch.clamp(torch.round(reference / scale), -128, 127)).abs().max().item()
            extra = {"max_lsb_difference": lsb}
        ms = timer(lambda scale=scale: quantized.conv2d(x, w, x_scale, w_scale, bias, scale, **args)) if timer else None
        results.append(CandidateResult.measured(label, ms, flops=problem.flops, baseline_ms=cudnn_ms,
                                                rel_error=error, tuned=bool(trials), **extra))
    return problem_record(name, problem, results, "cudnn_fp16" if timer else None)


def main(argv: list[str] | None = None) -> int:
    args = bench_parser("bench/int8.py", __doc__, "among the 3x3 layers; default: all").parse_args(argv)
    selected = lambda: [("tiny_3x3", p) for p in TINY] if args.dry_run else problems(args.shapes)
    return run("bench/int8.py", args, selected, bench_problem, "int8 vs cuDNN fp16")


if __name__ == "__main__":
    sys.exit(main())
