"""The `tritonconv` command. Each subcommand lives in `tritonconv/commands/<name>.py`, which defines
`register(subparsers)` adding its parser with `set_defaults(func=...)`; `func(args)` returns the exit code."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Optional

from . import __version__, commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tritonconv", description="Tuned Triton conv2d and GEMM kernels for PyTorch.")
    parser.add_argument("--version", action="version", version=f"tritonconv {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
