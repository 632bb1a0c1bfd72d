"""`tritonconv report FILE.json [--out DIR]`: print a results file (conv, gemm, models, tune, tune-model, compile,
or a cache export) as a table with the geomean speedups, and write its PNG charts (default: next to the file)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="render a results JSON as a table and PNG charts",
                                   description=__doc__)
    parser.add_argument("file", type=Path, help="results JSON written by a benchmark or tuning run")
    parser.add_argument("--out", type=Path, default=None, help="directory for the charts (default: next to FILE)")
    parser.add_argument("--no-charts", action="store_true", help="only print the table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..errors import TritonConvError
    from ..report import render

    console = Console()
    try:
        charts = render(args.file, args.out, console=console, charts=not args.no_charts)
    except TritonConvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for chart in charts:
        console.print(f"chart: {chart}", soft_wrap=True, highlight=False)  # a path must stay one copyable line
    return 0
