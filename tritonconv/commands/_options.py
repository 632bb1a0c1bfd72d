"""Argument types and option groups shared by the subcommands (and `python -m tritonconv.compile`), so each
flag means one thing everywhere and is validated by argparse before any work starts (bad usage: exit 2).
Torch-free: parsing `--help` or a bad flag never imports torch or Triton."""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable

from ..enums import ALL_DTYPE_CHOICES, DTYPE_CHOICES
from ..suite import CONV_SUITE


class Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (`tritonconv tune: error: argument --stride: ...`), exit code 2."""

    def error(self, message: str):
        from ..text import one_line

        self.exit(2, f"{self.prog}: error: {one_line(message)} (see `{self.prog} --help`)\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Docstring descriptions kept as written; every option with a default value shows it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (text and "%(default)" not in text and "default" not in text and action.option_strings
                and not any(default is v for v in (None, False, True, argparse.SUPPRESS)) and action.nargs != 0):
            text += " (default: %(default)s)"
        return text


def _number(convert: Callable[[str], Any], test: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


positive_int = _number(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "a non-negative integer")
positive_float = _number(float, lambda v: math.isfinite(v) and v > 0, "a positive number")


def output_file(text: str) -> Path:
    """A file to write: not an existing directory, and no ancestor that is a file."""
    path = Path(text)
    if not text:
        raise argparse.ArgumentTypeError("must be a file path, got ''")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory; give a file path")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"cannot create {text!r}: {str(parent)!r} is not a directory")
            break
    return path


def check_writable(path) -> None:
    """Before any work: `path` (a file to write at the end) can be created or overwritten; else an
    InvalidInputError naming it. Creates missing parent directories; leaves no file behind."""
    from ..errors import InvalidInputError

    if path is None:
        return
    path = Path(path)
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a"):
            pass
        if not existed:
            path.unlink()
    except OSError as error:
        raise InvalidInputError(f"cannot write {path}: {error.strerror or error}") from None


def output_dir(text: str) -> Path:
    """A directory to write into: not an existing file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file; give a directory")
    return path


def input_file(text: str) -> Path:
    """A file to read: it must exist and not be a directory."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file {text!r}")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory; give a file")
    return path


def add_suite_argument(parser: argparse.ArgumentParser, *, default: Path = CONV_SUITE) -> None:
    """The suite as an optional positional SUITE.json (also `--suite`, kept for scripts) and `--shapes`:
    comma-separated glob patterns on suite names. Read `args.suite` after `resolve_suite(args)`."""
    parser.add_argument("suite", nargs="?", type=input_file, default=None, metavar="SUITE.json",
                        help=f"suite JSON file, schema in tritonconv/suite.py (default: the embedded {default.name})")
    parser.add_argument("--suite", dest="suite_option", type=input_file, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--shapes", action="append", default=None, metavar="GLOBS",
                        help="only suite shapes whose name matches one of these comma-separated glob patterns, "
                             "matched against whole names: 'r50_*,*dw*', or an exact name such as 'r50_l1_3x3' "
                             "(repeatable; a pattern matching no shape is an error; default: all)")
    parser.set_defaults(default_suite=default)


def resolve_suite(args: argparse.Namespace) -> None:
    """Merge the positional SUITE and `--suite` into `args.suite` (None: nothing given, use the default)."""
    if getattr(args, "suite_option", None) is not None:
        if args.suite is not None:
            raise _usage("give the suite once: as SUITE.json or with --suite, not both")
        args.suite = args.suite_option


def add_dtype_argument(parser: Any, *, default: str = "float16", help_text: str = "input dtype",
                       quantized: bool = False) -> None:
    """--dtype: a float dtype or its alias (`quantized`: int8 too)."""
    parser.add_argument("--dtype", default=default, choices=ALL_DTYPE_CHOICES if quantized else DTYPE_CHOICES,
                        help=help_text)


def add_interpret_argument(parser: Any) -> None:
    parser.add_argument("--interpret", action="store_true",
                        help="run the kernels on the CPU in the Triton interpreter (no GPU needed; slow, tiny shapes "
                             "only); same as TRITON_INTERPRET=1 in the environment")


def interpreter_requested(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "interpret", False)) or os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def enable_interpreter() -> bool:
    """Switch this process to the Triton interpreter. Works only before Triton or tritonconv's kernels are
    imported (the CLI imports neither while parsing); returns False if it is too late (then re-execute)."""
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        return "tritonconv.runtime" not in sys.modules or _runtime_interprets()
    if "triton" in sys.modules or "tritonconv.runtime" in sys.modules:
        return False
    os.environ["TRITON_INTERPRET"] = "1"
    return True


def _runtime_interprets() -> bool:
    from ..runtime import INTERPRET

    return INTERPRET


def _usage(message: str) -> Exception:
    from ..errors import InvalidInputError

    return InvalidInputError(message)
