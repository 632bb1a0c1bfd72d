"""`tritonconv tune`: tune a suite of conv shapes (or one shape) on this GPU and store the winners in the cache.

Without a CUDA GPU, `tritonconv tune` with no arguments runs a small demonstration study in the Triton
interpreter; with arguments it needs --interpret to do so (the interpreter's timings are CPU wall-clock times).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SUITE = Path(__file__).resolve().parent.parent / "suites" / "conv2d.json"
DTYPE_ALIASES = {"fp16": "float16", "float16": "float16", "bf16": "bfloat16", "bfloat16": "bfloat16", "fp32": "float32", "float32": "float32"}
PRECISION_CHOICES = ("auto", "ieee", "tf32", "tf32x3", "fp16", "bf16")
# Tiny shapes for the interpreter demonstration: a 3x3 conv and a 1x1 conv.
DEMO_SHAPES = [
    {"name": "demo_3x3", "n": 1, "c": 4, "h": 6, "w": 6, "k": 8, "r": 3, "s": 3, "pad": 1},
    {"name": "demo_1x1", "n": 1, "c": 8, "h": 4, "w": 4, "k": 16, "r": 1, "s": 1},
]
DEMO_TRIALS = 4

# (flag, dest) of every option, in the order they are re-emitted when re-executing in the interpreter.
_OPTIONS: list[tuple[str, str]] = []
_DEFAULTS: dict[str, Any] = {}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tune", help="tune conv shapes on this GPU and cache the winners", description=__doc__)
    parser.add_argument("suite", nargs="?", help=f"suite JSON file (default: the embedded {SUITE.name})")
    add = _adder(parser)
    add("--shapes", default=None, help="only suite shapes whose name contains this text")
    add("--limit", type=int, default=0, help="only the first N suite shapes")
    shape = parser.add_argument_group("one shape instead of a suite (needs --c --h --w --k)")
    for dim, default, text in (("n", 1, "batch"), ("c", None, "input channels"), ("h", None, "input height"),
                               ("w", None, "input width"), ("k", None, "output channels"), ("r", 3, "filter height"),
                               ("s", 3, "filter width"), ("stride", 1, ""), ("pad", None, "default: r // 2"),
                               ("dilation", 1, ""), ("groups", 1, "")):
        _adder(shape)(f"--{dim}", type=int, default=default, help=text or None)
    add("--dtype", default="float16", choices=sorted(DTYPE_ALIASES), help="input dtype (default float16)")
    add("--layout", default="nhwc", choices=("nhwc", "nchw", "auto"),
        help="input layout; auto: NCHW input, reading it directly competes with converting it to NHWC first")
    add("--precision", default=None, choices=PRECISION_CHOICES,
        help="operand precision (default: the dtype's default); auto: every allowed precision within --tolerance competes")
    add("--tolerance", type=float, default=None, help="max relative error vs float64 (default: the precision's)")
    add("--trials", type=int, default=64, help="trial budget per shape (default 64)")
    add("--timeout", type=float, default=None, help="seconds of search per shape")
    add("--early-stop", type=int, default=24, help="stop a shape after N measured trials without improvement")
    add("--resume", action=argparse.BooleanOptionalAction, default=True,
        help="reuse cached results and continue interrupted studies (default); --no-resume re-tunes")
    add("--json", default=None, help="also write the results to this JSON file")
    add("--interpret", action="store_true", help="run in the Triton interpreter on the CPU (no GPU needed; slow)")
    add("--demo", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def _adder(parser: Any):
    def add(flag: str, **kwargs: Any) -> None:
        dest = flag.lstrip("-").replace("-", "_")
        if (flag, dest) not in _OPTIONS:
            _OPTIONS.append((flag, dest))
        _DEFAULTS[dest] = parser.add_argument(flag, **kwargs).default

    return add


def _explicit(args: argparse.Namespace) -> bool:
    """Whether the user gave any argument at all (a bare `tritonconv tune` runs the default job)."""
    return args.suite is not None or any(getattr(args, dest) != _DEFAULTS[dest] for _, dest in _OPTIONS if dest != "demo")


def _argv(args: argparse.Namespace) -> list[str]:
    """The command line that reproduces `args` (for re-executing under the interpreter)."""
    argv = ["tune"] + ([args.suite] if args.suite else [])
    for flag, dest in _OPTIONS:
        value = getattr(args, dest)
        if value == _DEFAULTS[dest]:
            continue
        if isinstance(value, bool):
            argv.append(flag if value else f"--no-{flag[2:]}")
        else:
            argv += [flag, str(value)]
    return argv


def _reexec_in_interpreter(args: argparse.Namespace) -> int:
    """Run this command again in a fresh process with TRITON_INTERPRET=1 (it must be set before import)."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    command = [sys.executable, "-m", "tritonconv.cli", *_argv(args)]
    return subprocess.call(command, env=env)


def run(args: argparse.Namespace) -> int:
    from ..runtime import INTERPRET, gpu_available

    explicit = _explicit(args)
    if args.interpret or not gpu_available():
        if not explicit and not args.demo:
            print("No CUDA GPU found: running a small demonstration study in the Triton interpreter instead "
                  "(tiny shapes, few trials; times are CPU wall-clock, not GPU performance).", flush=True)
            args.demo = args.interpret = True
        elif not args.interpret:
            print("error: no CUDA GPU found. `tritonconv tune` measures kernels on a GPU; add --interpret to run this "
                  "study in the Triton interpreter on the CPU instead (slow, tiny shapes only).", file=sys.stderr)
            return 2
        if not INTERPRET:
            return _reexec_in_interpreter(args)
    return _tune(args)


def _problems(args: argparse.Namespace) -> list[tuple[str, Any]]:
    from ..errors import InvalidInputError
    from ..problem import ConvProblem

    dtype = DTYPE_ALIASES[args.dtype]
    layout = "nhwc" if args.layout == "nhwc" else "nchw"
    given = [d for d in ("c", "h", "w", "k") if getattr(args, d) is not None]
    if args.demo:
        entries = DEMO_SHAPES
        dtype = "float32" if not explicit_dtype(args) else dtype
    elif given:
        missing = sorted({"c", "h", "w", "k"} - set(given))
        if missing:
            raise InvalidInputError(f"one shape needs --c --h --w --k; missing {', '.join('--' + m for m in missing)}")
        if args.suite:
            raise InvalidInputError("give either a suite file or one shape's options, not both")
        pad = args.pad if args.pad is not None else args.r // 2
        entries = [{"name": "shape", "n": args.n, "c": args.c, "h": args.h, "w": args.w, "k": args.k, "r": args.r,
                    "s": args.s, "stride": args.stride, "pad": pad, "dilation": args.dilation, "groups": args.groups}]
    else:
        path = Path(args.suite) if args.suite else SUITE
        try:
            entries = json.loads(path.read_text())["shapes"]
        except (OSError, ValueError, KeyError) as exc:
            raise InvalidInputError(f"cannot read suite file {path}: {exc}") from None
        if args.shapes:
            entries = [e for e in entries if args.shapes in e.get("name", "")]
        if args.limit:
            entries = entries[: args.limit]
        if not entries:
            raise InvalidInputError(f"no shapes selected from {path}")
    return [(e.get("name", f"shape{i}"), ConvProblem.from_suite_entry(e, dtype=dtype, layout=layout)) for i, e in enumerate(entries)]


def explicit_dtype(args: argparse.Namespace) -> bool:
    return args.dtype != _DEFAULTS["dtype"]


def _tune(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..errors import TritonConvError
    from ..search import tune_many
    from ..summary import RunSummary

    console = Console(width=None if sys.stdout.isatty() else 160)
    try:
        named = _problems(args)
    except TritonConvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    trials = min(args.trials, DEMO_TRIALS) if args.demo else args.trials
    started = time.perf_counter()
    try:
        results = tune_many(
            [p for _, p in named], trials=trials, timeout=args.timeout, precision=args.precision,
            tolerance=args.tolerance, layouts="auto" if args.layout == "auto" else "native", resume=args.resume,
            early_stop=args.early_stop, progress=True, retime_top=1 if args.demo else 3,
        )
    except TritonConvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - started
    console.print(results_table([n for n, _ in named], results, wall, interpreted=args.interpret))
    RunSummary.of(results, wall).print(console)
    if args.json:
        write_json(Path(args.json), [n for n, _ in named], results, wall)
        console.print(f"results written to {args.json}", soft_wrap=True, highlight=False)
    return 0


_SHORT_NAMES = {"num_warps": "warps", "num_stages": "stages", "LOOP_ORDER": "loop", "WEIGHT_LAYOUT": "wlayout"}


def _config_text(config: dict[str, Any]) -> str:
    """Compact config for a table cell: BLOCK_M=128 -> BM128, num_warps=8 -> warps=8, booleans only when set."""
    parts = []
    for name, value in config.items():
        if name.startswith("BLOCK_"):
            parts.append(f"B{name[6:]}{value}")
        elif isinstance(value, bool):
            parts += [_SHORT_NAMES.get(name, name.lower())] if value else []
        else:
            parts.append(f"{_SHORT_NAMES.get(name, name.lower())}={value}")
    return " ".join(parts)


def results_table(names: list[str], results: list[Any], wall_s: float, *, interpreted: bool = False):
    """The final rich table: shape, winner, its time, cuDNN's time, speedup, trials and tuning wall time."""
    from rich.table import Table

    from ..search.runner import default_device

    baseline = "torch CPU (ms)" if interpreted or default_device() == "cpu" else "cuDNN (ms)"
    table = Table(title="tritonconv tune", caption=_caption(wall_s, interpreted))
    for column in ("shape", "family", "config", "time (ms)", baseline, "speedup", "trials", "wall (s)"):
        table.add_column(column, overflow="fold", justify="right" if column.endswith(")") or column in ("speedup", "trials") else "left")
    for name, r in zip(names, results):
        speedup = f"{r.speedup:.2f}x" if r.speedup is not None else "-"
        cudnn = f"{r.cudnn_time_ms:.4g}" if r.cudnn_time_ms is not None else "-"
        trials = "cached" if r.from_cache else str(r.trials_run)
        table.add_row(f"{name}\n{shape_text(r.problem)}", r.family, _config_text(r.config), f"{r.time_ms:.4g}", cudnn, speedup,
                      trials, f"{r.wall_time_s:.1f}")
    return table


def shape_text(p: Any) -> str:
    """Compact shape: N x C x H x W -> K, RxS filter, stride/pad/groups, dtype, layout, precision."""
    return (f"{p.n}x{p.c}x{p.h}x{p.w}->{p.k} {p.r}x{p.s} s{p.stride_h} p{p.pad_h} g{p.groups} "
            f"{p.dtype} {p.layout} {p.precision}")


def _caption(wall_s: float, interpreted: bool) -> str:
    text = f"total tuning wall time {wall_s:.1f} s"
    if interpreted:
        text += "; Triton interpreter on the CPU: times are CPU wall-clock, not GPU performance"
    return text


def write_json(path: Path, names: list[str], results: list[Any], wall_s: float) -> None:
    """The results file (`tritonconv.results`, kind "tune") that `tritonconv report` reads."""
    from ..results import baseline_label, tune_record, write_results

    records = [tune_record(r, name if name != "shape" else None) for name, r in zip(names, results)]
    meta = {"wall_time_s": wall_s, "baseline": baseline_label(results[0].device if results else "")}
    write_results(path, records, meta, kind="tune")
