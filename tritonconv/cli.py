"""The `tritonconv` command. Each subcommand lives in `tritonconv/commands/<name>.py`, which defines
`register(subparsers)` adding its parser with `set_defaults(func=...)`; `func(args)` returns the exit code.

Errors are handled here, once for every command: a user error never prints a traceback. Bad usage (argparse,
InvalidInputError, UnsupportedError, InvalidConfigError) exits 2, a runtime failure (any other tritonconv error,
or an OS error such as a permission, a full disk or a directory where a file should be) exits 1; each prints one
line, `error: ...`, naming the problem (and the path for OS errors). Anything else is a bug and keeps its
traceback. Parsing imports neither torch nor Triton, so `--help` and bad flags answer at once.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Optional

from . import __version__, commands
from .errors import InvalidConfigError, InvalidInputError, TritonConvError, UnsupportedError
from .text import one_line

USAGE_ERRORS = (InvalidInputError, UnsupportedError, InvalidConfigError)


def build_parser() -> argparse.ArgumentParser:
    from .commands._options import HelpFormatter, Parser

    parser = Parser(prog="tritonconv", description="Tuned Triton conv2d and GEMM kernels for PyTorch.",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"tritonconv {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(subparsers)
    _use_formatter(parser, HelpFormatter)
    return parser


def _use_formatter(parser: argparse.ArgumentParser, formatter: type) -> None:
    """Every (sub)parser formats its help alike: defaults shown, descriptions as written."""
    parser.formatter_class = formatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _use_formatter(sub, formatter)


def os_error_message(error: OSError) -> str:
    """`PATH: reason` for an OSError (permission denied, no space left on device, is a directory, ...)."""
    reason = error.strerror or str(error) or type(error).__name__
    paths = [p for p in (error.filename, getattr(error, "filename2", None)) if p is not None]
    return f"{' -> '.join(map(str, paths))}: {reason}" if paths else reason


def report_error(message: object) -> None:
    print(f"error: {one_line(message)}", file=sys.stderr, flush=True)


def run_command(func, args: argparse.Namespace) -> int:
    """Run one command's `func(args)`, mapping user errors to one line and an exit code."""
    try:
        return int(func(args) or 0)
    except USAGE_ERRORS as error:
        report_error(error)
        return 2
    except TritonConvError as error:
        report_error(error)
        return 1
    except OSError as error:
        report_error(os_error_message(error))
        return 1
    except KeyboardInterrupt as error:
        print(f"interrupted{': ' + one_line(error) if str(error) else ''}", file=sys.stderr, flush=True)
        return 130


def main(argv: Optional[list[str]] = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); returns the exit code (argparse's exits included:
    2 for bad usage, 0 for --help and --version)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
