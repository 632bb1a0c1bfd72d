"""`tritonconv bench`: the tuned choice (and optionally every family's default config) against cuDNN on a suite,
timed in one process on this GPU; prints a table and the geomean speedup, writes results JSON + PNG charts.

bench/conv.py is the same machinery with every family on and results under bench/results/.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

SUITES_DIR = Path(__file__).resolve().parent.parent / "suites"
NO_GPU_MESSAGE = (
    "no CUDA GPU found: {what} times kernels against cuDNN on a GPU, and nothing can be measured without one. "
    "Run it on a machine with an NVIDIA GPU."
)


def add_suite_arguments(parser: argparse.ArgumentParser, *, default_suite: Path) -> None:
    """Options shared by `tritonconv bench` and bench/conv.py: which shapes, in which dtype/layout/precision."""
    parser.add_argument("--suite", type=Path, default=default_suite, help=f"suite JSON (default: {default_suite})")
    parser.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default="fp16")
    parser.add_argument("--layout", choices=("nhwc", "nchw"), default="nhwc", help="tritonconv's input layout")
    parser.add_argument("--precision", default=None,
                        help="operand precision for fp32 (ieee, tf32, tf32x3, fp16, bf16; default tf32)")
    parser.add_argument("--shapes", nargs="+", default=None, metavar="PATTERN",
                        help="only shapes whose name matches a glob or contains a substring, e.g. 'r50_*' dw")
    parser.add_argument("--out", type=Path, default=None, help="results JSON path (charts go next to it)")
    parser.add_argument("--no-charts", action="store_true", help="skip the PNG charts")


def results_name(dtype: str, layout: str) -> str:
    """conv2d_<gpu>_<dtype>_<layout>, the GPU name made file-name safe."""
    import torch

    gpu = re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name().lower()).strip("-")
    return f"conv2d_{gpu}_{dtype}_{layout}"


def run_suite_benchmark(args: argparse.Namespace, *, families: bool, default_dir: Path, what: str) -> int:
    """Load the suite (bad options: exit 2), refuse without a GPU (exit 2), benchmark, print table + summary,
    write JSON + charts."""
    from rich.console import Console

    from .. import benchmark, report
    from ..errors import TritonConvError
    from ..problem import PRECISIONS

    dtype = benchmark.DTYPE_ALIASES[args.dtype]
    precision = args.precision or ("tf32" if dtype == "float32" else "")
    try:
        if precision and precision not in PRECISIONS[dtype]:
            raise TritonConvError(f"precision {precision!r} is not available for {args.dtype}; "
                                  f"choose from {PRECISIONS[dtype]}")
        problems = benchmark.load_conv_suite(args.suite, dtype=dtype, layout=args.layout, precision=precision,
                                             shapes=args.shapes)
    except TritonConvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import torch

    if not torch.cuda.is_available():
        print(NO_GPU_MESSAGE.format(what=what), file=sys.stderr)
        return 2
    console = Console()

    def progress(record: benchmark.Record) -> None:
        done = [e for e in record["results"] if e["ms"] is not None]
        best = min(done, key=lambda e: e["ms"]) if done else None
        console.log(f"{record['name']}: fastest {best['name'] if best else '-'}"
                    + (f" {best['ms']:.4g} ms" if best else ""))

    records, meta = benchmark.run_conv_suite(problems, families=families, on_record=progress)
    meta["suite"] = str(args.suite)
    out = args.out or default_dir / f"{results_name(args.dtype, args.layout)}.json"
    path = benchmark.write_results(out, records, meta, kind="conv")
    charts = report.render(path, console=console, charts=not args.no_charts)
    console.print(f"results: {path}" + "".join(f"\nchart: {c}" for c in charts), soft_wrap=True, highlight=False)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="time the tuned choice against cuDNN on a suite (GPU)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_suite_arguments(parser, default_suite=SUITES_DIR / "conv2d.json")
    parser.add_argument("--families", action="store_true", help="also time every family's default config")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_suite_benchmark(args, families=args.families, default_dir=Path("."), what="`tritonconv bench`")
