"""GEMM benchmark: tritonconv.matmul (default config, and the cached tuned one if any) vs cuBLAS (torch.matmul).

GPU only. Every shape of the suite (default bench/suites/gemm.json: C[m,n] = A[m,k] @ B[k,n]) is timed in this
one process with tritonconv.timing.time_ms (do_bench medians, L2 flushed). Writes bench/results/<name>.json
(GPU, torch/triton versions, per-shape ms and TFLOP/s, speedup vs cuBLAS, relative error) and prints a table.

    python bench/gemm.py [--suite FILE] [--dtype fp16|bf16|fp32] [--shapes 'decode*'] [--tune --trials 64]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

import torch

from tritonconv.enums import DType

ROOT = Path(__file__).resolve().parent


def bench_shape(entry: dict[str, Any], dtype: torch.dtype, tune_trials: int) -> dict[str, Any]:
    import tritonconv
    from tritonconv import benchmark, dispatch
    from tritonconv.matmul import matmul_problem
    from tritonconv.timing import time_ms

    m, n, k = int(entry["m"]), int(entry["n"]), int(entry["k"])
    gen = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(m, k, device="cuda", generator=gen).to(dtype)
    b = (torch.randn(k, n, device="cuda", generator=gen) / k**0.5).to(dtype)
    problem = matmul_problem(a, b)
    flops = 2 * m * n * k
    reference = a.float() @ b.float()  # float32 reference (no TF32: benchmark.tf32_enabled(False) below)

    results: list[dict[str, Any]] = []
    cublas_ms = time_ms(lambda: torch.matmul(a, b))
    results.append(benchmark.result_entry("cublas", cublas_ms, role="baseline", flops=flops))

    def candidate(name: str, config: Optional[dict[str, Any]]) -> None:
        try:
            out = tritonconv.matmul(a, b, config=config)
            ms = time_ms(lambda: tritonconv.matmul(a, b, config=config))
            error = benchmark.relative_error(out, reference)
            results.append(benchmark.result_entry(name, ms, flops=flops, baseline_ms=cublas_ms, rel_error=error,
                                                  config=dispatch.select(problem, config, a.device, "triton")[1]))
        except Exception as exc:  # noqa: BLE001 - a failing candidate is reported, not fatal
            results.append(benchmark.result_entry(name, None, error=f"{type(exc).__name__}: {exc}"[:500]))

    candidate("gemm_default", {"family": "gemm"})
    if tune_trials:
        from tritonconv.search import tune

        tune(problem, trials=tune_trials, progress=False)
    candidate("tuned", None)  # the cached tuned config, or the default dispatch when nothing is cached
    return {"name": entry.get("name", f"{m}x{n}x{k}"), "problem": problem.key, "m": m, "n": n, "k": k,
            "flops": flops, "results": results}


def print_table(records: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    from tritonconv import benchmark

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
    for name, summary in benchmark.summarize(records).items():
        print(f"{name}: geomean speedup {summary['geomean']:.3f}x, worst {summary['worst']:.3f}x ({summary['worst_record']})")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default=str(ROOT / "suites" / "gemm.json"))
    parser.add_argument("--dtype", choices=sorted(dtype.short for dtype in DType), default="fp16")
    parser.add_argument("--shapes", nargs="*", help="shape-name patterns (fnmatch), default all")
    parser.add_argument("--tune", action="store_true", help="tune each shape with tritonconv.search first")
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--out", help="results JSON (default bench/results/gemm_<gpu>_<dtype>.json)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench/gemm.py needs a CUDA GPU: timings cannot be measured here.", file=sys.stderr)
        return 2

    from tritonconv import benchmark

    shapes = [e for e in json.loads(Path(args.suite).read_text())["shapes"] if benchmark.matches(e.get("name", ""), args.shapes)]
    records = []
    with benchmark.tf32_enabled(False):
        for entry in shapes:
            records.append(bench_shape(entry, DType.parse(args.dtype).torch, args.trials if args.tune else 0))
            print(f"done {records[-1]['name']}", flush=True)
    gpu = torch.cuda.get_device_name().replace(" ", "_")
    out = Path(args.out) if args.out else ROOT / "results" / f"gemm_{gpu}_{args.dtype}.json"
    benchmark.write_results(out, records, {"suite": args.suite, "dtype": args.dtype, "tuned": args.tune}, kind="gemm")
    print_table(records)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
