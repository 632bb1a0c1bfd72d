"""Command line of the differential sweeps (from the repository root):

    python -m tests.sweeps                                   # every sweep, 20 cases each, in the interpreter
    python -m tests.sweeps --device cuda --cases 100 --out results.jsonl
    python -m tests.sweeps --sweep gemm --sweep matmul --cases 500 --seed 7 --configs 3

Writes one JSON line per checked run to --out (see `SweepResult`), prints counts per family and status and the
failures, and exits 1 if any run failed. On a CPU device the Triton interpreter is used.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

SWEEP_NAMES = ("implicit_gemm", "depthwise", "small_group", "gemm", "hopper_implicit_gemm", "matmul", "dispatch")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.sweeps", description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", action="append", choices=SWEEP_NAMES, help="repeatable; default: all")
    parser.add_argument("--cases", type=int, default=20, help="cases per sweep (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu (Triton interpreter) or cuda[:N]")
    parser.add_argument("--configs", type=int, default=2, help="random feasible configs per case beside the default")
    parser.add_argument("--max-cost", type=int, default=256,
                        help="interpreter only: skip random configs launching more programs x filter taps")
    parser.add_argument("--no-memory-format", action="store_true", help="do not compare output memory formats")
    parser.add_argument("--out", help="JSON lines file of every result")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.device == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before tritonconv defines its kernels
    os.environ.setdefault("TRITONCONV_CACHE_DIR", tempfile.mkdtemp(prefix="tritonconv-sweep-cache-"))
    from .run import SweepOptions, run_sweep, summarize

    options = SweepOptions(device=args.device, configs=args.configs, max_cost=args.max_cost,
                           check_memory_format=not args.no_memory_format)
    results = []
    out = open(args.out, "w") if args.out else None
    start = time.perf_counter()
    try:
        for sweep in args.sweep or SWEEP_NAMES:
            for result in run_sweep(sweep, args.cases, args.seed, options):
                results.append(result)
                if out:
                    out.write(result.to_json() + "\n")
                    out.flush()
                if result.failed:
                    print(f"FAIL {result.kind}:{result.family} {result.mode} {result.status} {result.problem} "
                          f"{result.config} err={result.rel_error} {result.detail}", flush=True)
    finally:
        if out:
            out.close()
    print(json.dumps({"seconds": round(time.perf_counter() - start, 1), "counts": summarize(results)}, indent=1))
    return 1 if any(r.failed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
