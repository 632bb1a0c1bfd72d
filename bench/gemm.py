"""GEMM benchmark: tritonconv.matmul (default config, and the cached tuned one if any) vs cuBLAS (torch.matmul).

GPU only. Every shape of the suite (default the package's tritonconv/suites/gemm.json: C[m,n] = A[m,k] @ B[k,n],
schema in tritonconv/suite.py; --shapes as everywhere: globs on whole names) is timed in this one process with
tritonconv.timing.time_ms (do_bench medians, L2 flushed). Writes bench/results/<name>.json
(GPU, torch/triton versions, per-shape ms and TFLOP/s, speedup vs cuBLAS, relative error) and prints a table.

    python bench/gemm.py [SUITE.json] [--dtype fp16|bf16|fp32] [--shapes 'decode*'] [--tune --trials 64]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from tritonconv.cli import run_command  # noqa: E402
from tritonconv.commands._options import (  # noqa: E402
    HelpFormatter, Parser, add_suite_argument, positive_int, resolve_suite,
)
from tritonconv.enums import DType  # noqa: E402
from tritonconv.search.options import DEFAULTS  # noqa: E402
from tritonconv.suite import GEMM_SUITE, GemmShape, load_suite, select, split_patterns  # noqa: E402

ROOT = Path(__file__).resolve().parent


def bench_shape(shape: GemmShape, dtype: torch.dtype, tune_trials: int) -> dict[str, Any]:
    import tritonconv
    from tritonconv import dispatch
    from tritonconv.matmul import matmul_problem
    from tritonconv.reference import rel_error
    from tritonconv.results import result_entry
    from tritonconv.timing import time_ms

    m, n, k = shape.m, shape.n, shape.k
    gen = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(m, k, device="cuda", generator=gen).to(dtype)
    b = (torch.randn(k, n, device="cuda", generator=gen) / k**0.5).to(dtype)
    problem = matmul_problem(a, b)
    flops = 2 * m * n * k
    reference = a.float() @ b.float()  # float32 reference (no TF32: tf32_enabled(False) in main)

    results: list[dict[str, Any]] = []
    cublas_ms = time_ms(lambda: torch.matmul(a, b))
    results.append(result_entry("cublas", cublas_ms, role="baseline", flops=flops))

    def candidate(name: str, config: Optional[dict[str, Any]]) -> None:
        try:
            out = tritonconv.matmul(a, b, config=config)
            ms = time_ms(lambda: tritonconv.matmul(a, b, config=config))
            error = rel_error(out, reference)
            results.append(result_entry(name, ms, flops=flops, baseline_ms=cublas_ms, rel_error=error,
                                                  config=dispatch.select(problem, config, a.device, "triton")[1]))
        except Exception as exc:  # noqa: BLE001 - a failing candidate is reported, not fatal
            results.append(result_entry(name, None, error=f"{type(exc).__name__}: {exc}"[:500]))

    candidate("gemm_default", {"family": "gemm"})
    if tune_trials:
        from tritonconv.search import tune

        tune(problem, trials=tune_trials, progress=False)
    candidate("tuned", None)  # the cached tuned config, or the default dispatch when nothing is cached
    return {"name": shape.name, "problem": problem.key, "m": m, "n": n, "k": k,
            "flops": flops, "results": results}


def print_table(records: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    from tritonconv.results import summarize

    table = Table(title="tritonconv.matmul vs cuBLAS")
    for column in ("shape", "m x n x k", "cuBLAS ms", "cuBLAS TFLOP/s", "candidate", "ms", "TFLOP/s", "speedup", "rel err"):
        table.add_column(column, justify="left" if column in ("shape", "candidate") else "right")
    for record in records:
        base = next(e for e in record["results"] if e["role"] == "baseline")
        for entry in (e for e in record["results"] if e["role"] != "baseline"):
            fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
            table.add_row(
                record["name"], f"{record['m']}x{record['n']}x{record['k']}", fmt(base["ms"], ".4f"),
                fmt(base["tflops"], ".1f"), entry["name"], fmt(entry["ms"], ".4f"), fmt(entry["tflops"], ".1f"),
                fmt(entry["speedup"], ".2f"), fmt(entry["rel_error"], ".1e") if not entry["error"] else entry["error"][:40],
            )
    Console().print(table)
    for name, summary in summarize(records).items():
        print(f"{name}: geomean speedup {summary['geomean']:.3f}x, worst {summary['worst']:.3f}x ({summary['worst_record']})")


def main(argv: Optional[list[str]] = None) -> int:
    parser = Parser(prog="python bench/gemm.py", description=__doc__, formatter_class=HelpFormatter)
    add_suite_argument(parser, default=GEMM_SUITE)
    parser.add_argument("--dtype", choices=sorted(dtype.short for dtype in DType), default="fp16")
    parser.add_argument("--tune", action="store_true", help="tune each shape with tritonconv.search first")
    parser.add_argument("--trials", type=positive_int, default=DEFAULTS.trials, help="trials per shape with --tune")
    parser.add_argument("--out", help="results JSON (default bench/results/gemm_<gpu>_<dtype>.json)")
    return run_command(run, parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    resolve_suite(args)
    suite = args.suite or GEMM_SUITE
    shapes = select(load_suite(suite, kind="gemm"), split_patterns(args.shapes), source=str(suite))
    if not torch.cuda.is_available():
        print("bench/gemm.py needs a CUDA GPU: timings cannot be measured here.", file=sys.stderr)
        return 2

    from tritonconv.reference import tf32_enabled
    from tritonconv.results import write_results

    records = []
    with tf32_enabled(False):
        for shape in shapes:
            records.append(bench_shape(shape, DType.parse(args.dtype).torch, args.trials if args.tune else 0))
            print(f"done {records[-1]['name']}", flush=True)
    gpu = torch.cuda.get_device_name().replace(" ", "_")
    out = Path(args.out) if args.out else ROOT / "results" / f"gemm_{gpu}_{args.dtype}.json"
    write_results(out, records, {"suite": str(suite), "dtype": args.dtype, "tuned": args.tune}, kind="gemm")
    print_table(records)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
