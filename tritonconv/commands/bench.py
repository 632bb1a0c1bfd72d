"""`tritonconv bench`: the tuned choice (and optionally every family's default config) against cuDNN on a suite,
timed in one process on this GPU; prints a table and the geomean speedup, writes results JSON + PNG charts.

bench/conv.py is the same machinery with every family on and results under bench/results/.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from ..enums import PRECISION_CHOICES
from ..suite import CONV_SUITE
from ._options import (
    add_dtype_argument, add_suite_argument, check_writable, output_file, resolve_suite,
)

NO_GPU_MESSAGE = (
    "no CUDA GPU found: {what} times kernels against cuDNN on a GPU, and nothing can be measured without one. "
    "Run it on a machine with an NVIDIA GPU."
)


def add_suite_arguments(parser: argparse.ArgumentParser, *, default_suite: Path) -> None:
    """Options shared by `tritonconv bench` and bench/conv.py: which shapes, in which dtype/layout/precision."""
    add_suite_argument(parser, default=default_suite)
    add_dtype_argument(parser, default="fp16")
    parser.add_argument("--layout", choices=("nhwc", "nchw"), default="nhwc", help="tritonconv's input layout")
    parser.add_argument("--precision", default=None, choices=PRECISION_CHOICES[1:],
                        help="operand precision for fp32 (default: tf32)")
    parser.add_argument("--out", type=output_file, default=None,
                        help="results JSON path, charts go next to it (default: a name from GPU, dtype and layout)")
    parser.add_argument("--no-charts", action="store_true", help="skip the PNG charts")


def results_name(dtype: str, layout: str) -> str:
    """conv2d_<gpu>_<dtype>_<layout>, the GPU name made file-name safe."""
    import torch

    gpu = re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name().lower()).strip("-")
    return f"conv2d_{gpu}_{dtype}_{layout}"


def run_suite_benchmark(args: argparse.Namespace, *, families: bool, default_dir: Path, what: str) -> int:
    """Load the suite (bad options: exit 2), refuse without a GPU (exit 2), benchmark, print table + summary,
    write JSON + charts."""
    from .. import benchmark, report
    from ..enums import Precision, canonical_dtype
    from ..errors import InvalidInputError
    from ..results import Record, write_results
    from ..suite import load_problems, split_patterns
    from ..text import safe_console

    resolve_suite(args)
    suite = args.suite or args.default_suite
    dtype = canonical_dtype(args.dtype)
    precision = args.precision or ("tf32" if dtype == "float32" else "")
    if precision and precision not in Precision.for_dtype(dtype):
        raise InvalidInputError(f"--precision {precision} is not available for {args.dtype}; "
                                f"choose from {', '.join(Precision.for_dtype(dtype))}")
    problems = load_problems(suite, dtype=dtype, layout=args.layout, precision=precision,
                             shapes=split_patterns(args.shapes))

    check_writable(args.out)

    import torch

    if not torch.cuda.is_available():
        raise InvalidInputError(NO_GPU_MESSAGE.format(what=what))
    console = safe_console()

    from ..progress import progress

    with progress() as bar:  # shapes done, elapsed and ETA: a bar on a terminal, lines when redirected
        task = bar.add_task("shapes benchmarked", total=len(problems))

        def on_record(record: Record) -> None:
            done = [e for e in record["results"] if e["ms"] is not None]
            best = min(done, key=lambda e: e["ms"]) if done else None
            bar.update(task, advance=1, description=f"{record['name']}: fastest {best['name'] if best else '-'}"
                       + (f" {best['ms']:.4g} ms" if best else ""))

        records, meta = benchmark.run_conv_suite(problems, families=families, on_record=on_record)
    meta["suite"] = str(suite)
    out = args.out or default_dir / f"{results_name(args.dtype, args.layout)}.json"
    path = write_results(out, records, meta, kind="conv")
    charts = report.render(path, console=console, charts=not args.no_charts)
    console.print(f"results: {path}" + "".join(f"\nchart: {c}" for c in charts), soft_wrap=True)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="time the tuned choice against cuDNN on a suite (GPU)",
                                   description=__doc__)
    add_suite_arguments(parser, default_suite=CONV_SUITE)
    parser.add_argument("--families", action="store_true", help="also time every family's default config")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_suite_benchmark(args, families=args.families, default_dir=Path("."), what="`tritonconv bench`")
