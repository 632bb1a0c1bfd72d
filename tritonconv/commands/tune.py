"""`tritonconv tune`: tune a suite of conv shapes (or one shape) on this GPU and store the winners in the cache.

In the Triton interpreter (--interpret, TRITON_INTERPRET=1, or no CUDA GPU) `tritonconv tune` without a suite
or shape runs a small demonstration study (tiny shapes, few trials; the other options apply); naming shapes
(SUITE.json, --shapes, --limit or --c/--h/--w/--k) runs those, and without a GPU that needs --interpret. An
interpreter run estimated at more than a few minutes prints its estimate first. Interpreter timings are CPU
wall-clock times, not GPU performance.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..enums import PRECISION_CHOICES
from ..search.options import DEFAULTS
from ..suite import CONV_SUITE
from ._options import (
    add_dtype_argument, add_interpret_argument, add_suite_argument, check_writable,
    enable_interpreter, interpreter_requested, non_negative_int, output_file, positive_float, positive_int,
    resolve_suite,
)

SUITE = CONV_SUITE
# Tiny shapes for the interpreter demonstration: a 3x3 conv and a 1x1 conv.
DEMO_SHAPES = [
    {"name": "demo_3x3", "n": 1, "c": 4, "h": 6, "w": 6, "k": 8, "r": 3, "s": 3, "pad": 1},
    {"name": "demo_1x1", "n": 1, "c": 8, "h": 4, "w": 4, "k": 16, "r": 1, "s": 1},
]
DEMO_TRIALS = 4
# Interpreter cost model for the up-front estimate (measured on a 2-core CPU: ~1 s of fixed work per trial, and
# a trial runs the candidate ~8 times at ~10 MFLOP/s); runs estimated above WARN_AFTER_S print a warning first.
INTERPRETER_TRIAL_S = 1.0
INTERPRETER_FLOPS_PER_S = 1e7
INTERPRETER_RUNS_PER_TRIAL = 8
WARN_AFTER_S = 600.0
SHAPE_OPTIONS = ("c", "h", "w", "k", "n", "r", "s", "stride", "pad", "dilation", "groups")

# (flag, dest) of every option, in the order they are re-emitted when re-executing in the interpreter.
_OPTIONS: list[tuple[str, str]] = []
_DEFAULTS: dict[str, Any] = {}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tune", help="tune conv shapes on this GPU and cache the winners", description=__doc__)
    add_suite_argument(parser)
    add = _adder(parser)
    add("--limit", type=non_negative_int, default=0, help="only the first N selected suite shapes (0: all)")
    shape = parser.add_argument_group("one shape instead of a suite (needs --c --h --w --k)")
    for dim, default, text, kind in (
        ("n", 1, "batch size", positive_int), ("c", None, "input channels", positive_int),
        ("h", None, "input height", positive_int), ("w", None, "input width", positive_int),
        ("k", None, "output channels", positive_int), ("r", 3, "filter height", positive_int),
        ("s", 3, "filter width", positive_int), ("stride", 1, "stride (both axes)", positive_int),
        ("pad", None, "zero padding (both axes; default: r // 2)", non_negative_int),
        ("dilation", 1, "filter dilation (both axes)", positive_int),
        ("groups", 1, "channel groups; must divide --c and --k", positive_int),
    ):
        _adder(shape)(f"--{dim}", type=kind, default=default, help=text)
    add_dtype_argument(_adder_parser(add), quantized=True,
                       help_text="input dtype (int8: the quantized family that tritonconv.quantized.conv2d runs)")
    add("--layout", default="nhwc", choices=("nhwc", "nchw", "auto"),
        help="input layout; auto: NCHW input, reading it directly competes with converting it to NHWC first")
    add("--precision", default=DEFAULTS.precision, choices=PRECISION_CHOICES,
        help="operand precision (default: the dtype's default); auto: every allowed precision within --tolerance competes")
    add("--tolerance", type=positive_float, default=DEFAULTS.tolerance, help="max relative error vs float64 (default: the precision's)")
    add("--trials", type=positive_int, default=DEFAULTS.trials, help="trial budget per shape (the demo caps it at 4)")
    add("--timeout", type=positive_float, default=DEFAULTS.timeout, help="seconds of search per shape (default: no limit)")
    add("--early-stop", type=positive_int, default=DEFAULTS.early_stop, help="stop a shape after N measured trials without improvement")
    add("--resume", action=argparse.BooleanOptionalAction, default=DEFAULTS.resume,
        help="reuse cached results and continue interrupted studies (default); --no-resume re-tunes")
    add("--json", type=output_file, default=None, help="also write the results to this JSON file")
    add_interpret_argument(_adder_parser(add))
    add("--demo", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def _adder_parser(add) -> SimpleNamespace:
    """A parser-like view of `add`, for the shared `add_*_argument` helpers (so re-execution sees their options)."""
    return SimpleNamespace(add_argument=add)


def _adder(parser: Any):
    def add(flag: str, **kwargs: Any) -> None:
        dest = kwargs.get("dest") or flag.lstrip("-").replace("-", "_")
        if (flag, dest) not in _OPTIONS:
            _OPTIONS.append((flag, dest))
        _DEFAULTS[dest] = parser.add_argument(flag, **kwargs).default

    return add


def _selects_shapes(args: argparse.Namespace) -> bool:
    """Whether the user named what to tune (a suite, --shapes, --limit or one shape's options)."""
    return (args.suite is not None or bool(args.shapes) or bool(args.limit)
            or any(getattr(args, dim) != _DEFAULTS[dim] for dim in SHAPE_OPTIONS))


def _explicit(args: argparse.Namespace) -> bool:
    """Whether the user gave any argument at all (a bare `tritonconv tune` runs the default job)."""
    return _selects_shapes(args) or any(
        getattr(args, dest) != _DEFAULTS[dest] for _, dest in _OPTIONS if dest not in ("demo", "interpret"))


def _argv(args: argparse.Namespace) -> list[str]:
    """The command line that reproduces `args` (for re-executing under the interpreter)."""
    argv = ["tune"] + ([str(args.suite)] if args.suite else [])
    for pattern in args.shapes or ():
        argv += ["--shapes", pattern]
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
    """Run this command again in a child process with TRITON_INTERPRET=1 (only when Triton was imported before
    the command decided to interpret, i.e. `main()` called from a process that already uses tritonconv)."""
    from ..runtime import run_cli_interpreted

    return run_cli_interpreted(_argv(args))


def _gpu_available() -> bool:
    import torch  # not tritonconv.runtime: it fixes the interpreter choice when imported

    return torch.cuda.is_available()


def run(args: argparse.Namespace) -> int:
    from ..errors import InvalidInputError

    resolve_suite(args)
    interpret = interpreter_requested(args)
    if not interpret and not _gpu_available():
        if _selects_shapes(args):
            raise InvalidInputError(
                "no CUDA GPU found. `tritonconv tune` measures kernels on a GPU; add --interpret to run these shapes "
                "in the Triton interpreter on the CPU instead (slow, tiny shapes only), or give no shapes for a "
                "demonstration study")
        print("No CUDA GPU found: running a small demonstration study in the Triton interpreter instead "
              "(tiny shapes, few trials; times are CPU wall-clock, not GPU performance).", flush=True)
        interpret = args.demo = True
    elif interpret and not _selects_shapes(args) and not args.demo:
        print("Triton interpreter: running a small demonstration study (tiny shapes, few trials). Give a suite, "
              "--shapes or --c/--h/--w/--k to tune those instead.", flush=True)
        args.demo = True
    args.interpret = interpret
    if interpret and not enable_interpreter():
        return _reexec_in_interpreter(args)
    return _tune(args)


def _problems(args: argparse.Namespace) -> list[tuple[str, Any]]:
    from ..enums import canonical_dtype
    from ..errors import InvalidInputError
    from ..suite import load_suite, parse_shape, select

    dtype = canonical_dtype(args.dtype, quantized=True)
    layout = "nhwc" if args.layout == "nhwc" else "nchw"
    given = [d for d in ("c", "h", "w", "k") if getattr(args, d) is not None]
    if args.demo:
        shapes = [parse_shape(e, where="demo shape") for e in DEMO_SHAPES]
        dtype = "float32" if not explicit_dtype(args) else dtype
    elif given:
        missing = sorted({"c", "h", "w", "k"} - set(given))
        if missing:
            raise InvalidInputError(f"one shape needs --c --h --w --k; missing {', '.join('--' + m for m in missing)}")
        if args.suite or args.shapes or args.limit:
            raise InvalidInputError("give either a suite (SUITE.json, --shapes, --limit) or one shape's options, not both")
        pad = args.pad if args.pad is not None else args.r // 2
        entry = {"n": args.n, "c": args.c, "h": args.h, "w": args.w, "k": args.k, "r": args.r,
                 "s": args.s, "stride": args.stride, "pad": pad, "dilation": args.dilation, "groups": args.groups}
        shapes = [parse_shape(entry, where="the shape options", default_name="shape")]
    else:
        path = Path(args.suite) if args.suite else SUITE
        shapes = select(load_suite(path), _patterns(args), source=str(path))
        if args.limit:
            shapes = shapes[: args.limit]
    _check_precision(args, dtype)
    return [(s.name, s.problem(dtype=dtype, layout=layout)) for s in shapes]


def _patterns(args: argparse.Namespace) -> list[str]:
    from ..suite import split_patterns

    return split_patterns(args.shapes)


def _check_precision(args: argparse.Namespace, dtype: str) -> None:
    """Check --precision against the dtype up front (auto and the default need no check here)."""
    from ..errors import InvalidInputError
    from ..enums import Precision

    allowed = Precision.for_dtype(dtype)
    if args.precision not in (None, "auto") and args.precision not in allowed:
        raise InvalidInputError(f"--precision {args.precision} is not available for {args.dtype}; "
                                f"choose from {', '.join(allowed + ('auto',))}")


def explicit_dtype(args: argparse.Namespace) -> bool:
    return args.dtype != _DEFAULTS["dtype"]


def interpreter_estimate_s(problems: list[Any], trials: int) -> float:
    """Rough seconds a study of `trials` per problem takes in the interpreter (see INTERPRETER_* above)."""
    per_problem = [INTERPRETER_TRIAL_S + INTERPRETER_RUNS_PER_TRIAL * p.flops / INTERPRETER_FLOPS_PER_S for p in problems]
    return trials * sum(per_problem)


def duration_text(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _warn_if_huge(named: list[tuple[str, Any]], trials: int) -> None:
    estimate = interpreter_estimate_s([p for _, p in named], trials)
    if estimate > WARN_AFTER_S:
        largest = max(named, key=lambda item: item[1].flops)
        print(f"warning: this Triton interpreter run is estimated to take about {duration_text(estimate)} "
              f"({len(named)} shapes x up to {trials} trials; the largest, {largest[0]}, is "
              f"{largest[1].flops / 1e9:.3g} GFLOP per call at ~{INTERPRETER_FLOPS_PER_S / 1e6:.0f} MFLOP/s). "
              "Press Ctrl-C to stop; `tritonconv tune --interpret` alone runs a small demonstration.",
              file=sys.stderr, flush=True)


def _tune(args: argparse.Namespace) -> int:
    from ..search import tune_many
    from ..summary import RunSummary
    from ..text import safe_console

    named = _problems(args)
    check_writable(args.json)
    console = safe_console(width=None if sys.stdout.isatty() else 160)
    trials = min(args.trials, DEMO_TRIALS) if args.demo else args.trials
    if args.interpret and not args.demo:
        _warn_if_huge(named, trials)
    started = time.perf_counter()
    try:
        results = tune_many(
            [p for _, p in named], trials=trials, timeout=args.timeout, precision=args.precision,
            tolerance=args.tolerance, layouts="auto" if args.layout == "auto" else "native", resume=args.resume,
            early_stop=args.early_stop, progress=True, retime_top=1 if args.demo else DEFAULTS.retime_top,
        )
    except KeyboardInterrupt as exc:
        print(f"interrupted: {exc or 'tuning stopped'}. Run the same command again to resume "
              f"(--no-resume starts over).", file=sys.stderr)
        return 130
    wall = time.perf_counter() - started
    console.print(results_table([n for n, _ in named], results, wall, interpreted=args.interpret))
    RunSummary.of(results, wall).print(console)
    if args.json:
        write_json(Path(args.json), [n for n, _ in named], results, wall)
        console.print(f"results written to {args.json}", soft_wrap=True)
    return 0


_SHORT_NAMES = {"num_warps": "warps", "num_stages": "stages", "LOOP_ORDER": "loop", "WEIGHT_LAYOUT": "wlayout"}


def _config_text(config: dict[str, Any]) -> str:
    """Compact config for a table cell: BLOCK_M=128 -> BM128, num_warps=8 -> warps=8, booleans only when set."""
    parts = []
    # A stable order, whatever order the search stored them in: tile sizes (M, N, K, then others), the rest by name.
    tiles = {"BLOCK_M": 0, "BLOCK_N": 1, "BLOCK_K": 2}
    ordered = sorted(config.items(), key=lambda kv: (not kv[0].startswith("BLOCK_"), tiles.get(kv[0], 3), kv[0]))
    for name, value in ordered:
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

    from ..results import baseline_label, format_speedup

    baseline = f"{baseline_label(results[0].device if results else '')} (ms)"
    table = Table(title="tritonconv tune", caption=_caption(wall_s, interpreted))
    for column in ("shape", "family", "config", "time (ms)", baseline, "speedup", "trials", "wall (s)"):
        table.add_column(column, overflow="fold", justify="right" if column.endswith(")") or column in ("speedup", "trials") else "left")
    for name, r in zip(names, results):
        speedup = format_speedup(r.speedup)
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
    text = (f"total tuning wall time {wall_s:.1f} s; time (ms): the winner re-timed after the search (the progress "
            "bar's \"best so far\" is its first timing)")
    if interpreted:
        text += "; Triton interpreter on the CPU: times are CPU wall-clock, not GPU performance"
    return text


def write_json(path: Path, names: list[str], results: list[Any], wall_s: float) -> None:
    """The results file (`tritonconv.results`, kind "tune") that `tritonconv report` reads."""
    from ..results import baseline_label, tune_record, write_results

    records = [tune_record(r, name if name != "shape" else None) for name, r in zip(names, results)]
    meta = {"wall_time_s": wall_s, "baseline": baseline_label(results[0].device if results else "")}
    write_results(path, records, meta, kind="tune")
