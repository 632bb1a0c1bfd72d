"""Compile kernels for a GPU target without a GPU (`python -m tritonconv.compile`, or `tritonconv compile`).

    python -m tritonconv.compile [SUITE.json | --random N] [--shapes 'r50_*'] [--targets 80,90]

compiles every family's default config for every suite shape (or N random problems) and target, with the device
emulated (an A100 for 80, an H100 for 90) so each family offers what it would there; exits non-zero on any
failure. With --report (tritonconv.compile_report) it reads the compiled SASS instead and prints, per kernel,
registers, spills, occupancy, MMA kind, load widths and the main loop's size next to a reference GEMM's.
Either way --json writes a results file (kind "compile") that `tritonconv report` renders.
The library is tritonconv.compile; parsing imports neither torch nor Triton.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from ..enums import ALL_DTYPE_CHOICES
from ._options import HelpFormatter, Parser, add_suite_argument, non_negative_int, output_file, positive_int

PROG = "python -m tritonconv.compile"


def _compile_targets() -> list[str]:
    from ..runtime import COMPILE_TARGETS  # imports torch: only when a --targets value is checked

    return [str(cc) for cc in sorted(COMPILE_TARGETS)]


def _comma_list(allowed: Callable[[], Iterable[str]], what: str):
    """An argparse type: comma-separated names, each one of `allowed()`; returns the text unchanged."""

    def parse(text: str) -> str:
        names = [str(a) for a in allowed()]
        bad = [part for part in text.split(",") if part not in names]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {what} {bad[0]!r}; choose from {', '.join(names)}")
        return text

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_suite_argument(parser)
    parser.add_argument("--targets", type=_comma_list(_compile_targets, "target"), default="80,90",
                        help="compute capabilities, comma-separated")
    parser.add_argument("--dtypes", type=_comma_list(lambda: ALL_DTYPE_CHOICES, "dtype"), default="float16,float32",
                        help="input dtypes, comma-separated (int8: the quantized family's kernels)")
    parser.add_argument("--layouts", type=_comma_list(lambda: ("nhwc", "nchw"), "layout"), default="nhwc,nchw",
                        help="layouts of the suite problems, comma-separated")
    parser.add_argument("--limit", type=non_negative_int, default=0, help="only the first N selected shapes (0: all)")
    parser.add_argument("--families", help="only these kernel families, comma-separated (default: all)")
    parser.add_argument("--jobs", type=positive_int, default=os.cpu_count() or 1, help="parallel compile processes")
    parser.add_argument("--random", type=non_negative_int, default=0,
                        help="instead of the suite, N random problems (0: the suite)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --random")
    parser.add_argument("--json", type=output_file, default=None, help="write the records here")
    parser.add_argument("--report", action="store_true", help="static SASS report vs a reference GEMM (tritonconv.compile_report)")
    parser.add_argument("--choice", default="dispatch", choices=("dispatch", "families", "space"),
                        help="with --report: dispatch (the default pick), families (every family's default) or space "
                             "(every feasible config)")
    parser.add_argument("--space-limit", type=non_negative_int, default=0,
                        help="with --choice space: at most N configs per family (0: no limit)")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compile", help="compile the default configs for GPU targets, no GPU needed",
                                   description=__doc__)
    add_arguments(parser)
    parser.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    """The parser of `python -m tritonconv.compile`."""
    parser = Parser(prog=PROG, description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    add_arguments(parser)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    from ..cli import run_command

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else 2
    return run_command(run, args)


def run(args: argparse.Namespace) -> int:
    from ..enums import canonical_dtype
    from ..errors import InvalidInputError
    from ..suite import CONV_SUITE, load_suite, select, split_patterns
    from ._options import resolve_suite

    resolve_suite(args)
    suite = args.suite or CONV_SUITE
    shapes = select(load_suite(suite), split_patterns(args.shapes), source=str(suite))
    if args.limit:
        shapes = shapes[: args.limit]
    dtypes = [canonical_dtype(d, quantized=True) for d in args.dtypes.split(",")]
    layouts = args.layouts.split(",")
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise InvalidInputError("unset TRITON_INTERPRET: compiling for a target needs real Triton kernels")
    from ..compile import check_defaults, random_problems, write_compile_results
    from ..kernels import FAMILIES

    families = set(args.families.split(",")) if args.families else None
    unknown = sorted((families or set()) - set(FAMILIES))
    if unknown:
        raise InvalidInputError(f"unknown kernel family {unknown[0]!r}; choose from {', '.join(sorted(FAMILIES))}")
    problems = [s.problem(dtype=dt, layout=layout) for s in shapes for dt in dtypes for layout in layouts]
    labels = {} if args.random else {
        p: s.name for p, s in zip(problems, (s for s in shapes for _ in dtypes for _ in layouts))}
    if args.random:
        problems = random_problems(args.random, args.seed)
    targets = [int(t) for t in args.targets.split(",")]
    if args.report:
        from ..compile_report import report_main

        return report_main(problems, targets, args.choice, families, args.space_limit, labels, args.jobs, args.json)
    from ..progress import progress

    with progress() as bar:  # kernels compiled, elapsed and ETA: a bar on a terminal, lines when redirected
        tasks: list[Any] = []

        def on_record(record: dict[str, Any], done: int, total: int) -> None:
            if not tasks:
                tasks.append(bar.add_task("kernels compiled", total=total))
            bar.update(tasks[0], completed=done)

        records = check_defaults(problems, targets, families, args.jobs, on_record=on_record)
    failed = [r for r in records if not r["ok"]]
    for r in records:
        print(record_line(r))
    if args.json:
        write_compile_results(Path(args.json), records, targets=args.targets)
    spilled = sum(1 for r in records if r["ok"] and _spills(r))
    print(f"{len(records) - len(failed)} compiled ({spilled} spill registers), {len(failed)} failed")
    return 1 if failed else 0


def _spills(record: dict[str, Any]) -> bool:
    return any(u.get("stack_bytes", 0) > 0 for u in record.get("usage") or [])


def record_line(r: dict[str, Any]) -> str:
    """One line per compiled default: FAIL (did not compile), SPILL (compiled, but registers spill to local
    memory, which the dispatcher's defaults must not do) or ok."""
    if not r["ok"]:
        return f"FAIL  sm{r['sm']} {r['family']:<16} {r['problem']}  {r['error']}"
    u = r["usage"][0]
    detail = f"regs={u['registers']} stack={u['stack_bytes']} smem={u['shared_bytes']} hgmma={u['hgmma']} hmma={u['hmma']}"
    return f"{'SPILL' if _spills(r) else 'ok   '} sm{r['sm']} {r['family']:<16} {r['problem']}  {detail}"


if __name__ == "__main__":
    sys.exit(main())
