"""`tritonconv cache list|show|export|import|check|clear`: inspect, move, repair and clear the tuning cache."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..text import markup_safe, terminal_safe


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("cache", help="inspect, export, import, check or clear the tuning cache", description=__doc__)
    actions = parser.add_subparsers(dest="cache_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="one row per cached problem")
    listing.add_argument("--here", action="store_true", help="only entries tuned on this machine's hardware")
    show = actions.add_parser("show", help="print the entries whose key contains TEXT as JSON")
    show.add_argument("text", nargs="?", default="", help="part of an entry key (e.g. n32_c64 or float16)")
    show.add_argument("--trials", action="store_true", help="include every trial's timing")
    export = actions.add_parser("export", help="write the cache to a portable file stamped with this hardware")
    export.add_argument("file")
    export.add_argument("--here", action="store_true", help="only entries tuned on this machine's hardware")
    importing = actions.add_parser("import", help="merge an exported file (the faster entry wins conflicts)")
    importing.add_argument("file")
    check = actions.add_parser("check", help="list problems in the cache (invalid entries, corrupt or old files)")
    check.add_argument("--fix", action="store_true",
                       help="repair: set invalid entries and unreadable files aside (nothing is deleted), migrate old files")
    clear = actions.add_parser("clear", help="delete every cached winner, trial history and stored study")
    clear.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import cache

    actions = {"list": _list, "show": _show, "export": _export, "import": _import, "check": _check, "clear": _clear}
    try:
        return actions[args.cache_action](args)
    except cache.CacheError as exc:
        print(f"error: {terminal_safe(str(exc))}", file=sys.stderr)
        return 1
    except OSError as exc:  # anything the cache module did not already word
        print(f"error: {terminal_safe(str(exc.filename or ''))}: {exc.strerror or exc}", file=sys.stderr)
        return 1


def _selected(here: bool) -> dict:
    from .. import cache

    here_fp = cache.fingerprint()
    return {k: v for k, v in cache.entries().items() if not here or v.fingerprint == here_fp}


def _warn_invalid() -> None:
    from .. import cache

    invalid = cache.read_file(cache.cache_path()).parsed()[1]
    if invalid:
        print(f"warning: {len(invalid)} invalid entries in {cache.cache_path()} are skipped (kept in the file); "
              f"`tritonconv cache check` lists them", file=sys.stderr)


def _list(args: argparse.Namespace) -> int:
    """One table per device, narrow enough for 80 columns: short problem labels, the winning kernel, its time,
    the baseline's time (cuDNN on a GPU, torch CPU in the interpreter) and the speedup."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from .. import cache
    from ..results import baseline_label, distinct_labels, format_speedup
    console = Console()
    entries = _selected(args.here)
    console.print(markup_safe(f"tuning cache {cache.cache_path()}: {len(entries)} entries"), soft_wrap=True,
                  highlight=False)
    here = cache.fingerprint()
    by_device: dict[str, list] = {}
    for entry in entries.values():
        by_device.setdefault(entry.fingerprint, []).append(entry)
    any_stale = False
    for device, group in sorted(by_device.items()):
        problems = [e.problem for e in group]
        order = sorted(range(len(group)), key=lambda i: (problems[i] is None, problems[i].key if problems[i] else ""))
        labels = distinct_labels([p for p in problems if p is not None])
        label_of = dict(zip([i for i in range(len(group)) if problems[i] is not None], labels))
        baseline = baseline_label(device)
        table = Table(title=markup_safe(device) + (" (this device)" if device == here else ""), box=box.SIMPLE_HEAD,
                      pad_edge=False, title_justify="left")
        table.add_column("problem", overflow="fold", ratio=1)
        table.add_column("kernel", no_wrap=True)
        table.add_column("ms", justify="right", no_wrap=True)
        table.add_column(f"{baseline} ms", justify="right", no_wrap=True)
        table.add_column("speedup", justify="right", no_wrap=True)
        table.add_column("trials", justify="right", no_wrap=True)
        for i in order:
            entry = group[i]
            t, c = entry.time_ms, entry.cudnn_time_ms
            stale = not entry.is_current()
            any_stale |= stale
            kernel = markup_safe(entry.family) + ("[yellow]*[/yellow]" if stale else "")
            table.add_row(markup_safe(label_of.get(i, "?")), kernel, _ms(t), _ms(c),
                          format_speedup(c / t if t and c else None),
                          str(entry.trials_run if entry.trials_run is not None else "?"))
        console.print(table)
    if any_stale:
        console.print("* stale: the kernel's source changed since it was tuned, so dispatch ignores the entry; "
                      "`tritonconv tune` re-tunes it", highlight=False)
    if entries:
        console.print("speedup = baseline ms / ms, both measured in the same run; details: "
                      "`tritonconv cache show TEXT` (TEXT: part of a key such as n1_c64)", highlight=False)
    _warn_invalid()
    return 0


def _ms(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "-"


def _show(args: argparse.Namespace) -> int:
    from .. import cache

    found = {k: v for k, v in cache.entries().items() if args.text in k}
    shown = {}
    for key, entry in found.items():
        if args.trials:
            entry.trials = cache.read_trials(key)
            shown[key] = entry.to_json()
        else:
            shown[key] = {**entry.to_json(with_trials=False),
                          "trials": f"{len(cache.read_trials(key))} trials (--trials shows them)"}
    print(json.dumps(shown, indent=1, sort_keys=True))
    if not found:
        print(f"no entry matches {terminal_safe(args.text)!r}", file=sys.stderr)
        return 1
    return 0


def _export(args: argparse.Namespace) -> int:
    from .. import cache

    here_fp = cache.fingerprint()
    count = cache.export(Path(args.file), select=(lambda k, v: v.fingerprint == here_fp) if args.here else None)
    print(f"exported {count} entries to {terminal_safe(args.file)} (hardware fingerprint {terminal_safe(here_fp)})")
    return 0


def _import(args: argparse.Namespace) -> int:
    import warnings

    from .. import cache

    if not Path(args.file).exists():
        print(f"error: no such file {terminal_safe(args.file)}", file=sys.stderr)
        return 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the report below says it
        report = cache.import_file(Path(args.file))
    print(f"imported {terminal_safe(args.file)}: {len(report.added)} added, {len(report.replaced)} replaced (faster), "
          f"{len(report.kept)} kept (existing entry as fast or faster), {len(report.rejected)} rejected")
    for kind, keys in (("added", report.added), ("replaced", report.replaced)):
        for key in keys:
            print(f"  {kind}: {terminal_safe(key)}")
    for key, reason in sorted(report.rejected.items()):
        print(f"  rejected: {terminal_safe(key)}: {terminal_safe(reason)}", file=sys.stderr)
    if report.warning:
        print(f"warning: {terminal_safe(report.warning)}", file=sys.stderr)
    return 1 if report.rejected and not (report.added or report.replaced or report.kept) else 0


def _check(args: argparse.Namespace) -> int:
    from .. import cache

    report = cache.check(fix=args.fix)
    for problem in report.problems:
        print(f"problem: {terminal_safe(problem)}")
    for fixed in report.fixed:
        print(f"fixed: {terminal_safe(fixed)}")
    if report.stale:
        print(f"note: {len(report.stale)} entries were tuned on a kernel that changed since: kept in the file, not "
              f"used (`tritonconv cache list` marks them; tuning their problems again replaces them)")
    if not report.problems:
        print(f"{terminal_safe(str(report.path))}: {report.entries} entries, no problems")
        return 0
    if not args.fix:
        print(f"{len(report.problems)} problem(s); `tritonconv cache check --fix` repairs them (nothing is deleted)")
    return 0 if report.ok and args.fix else 1


def _clear(args: argparse.Namespace) -> int:
    from .. import cache
    from ..search.journal import remove_studies

    directory = cache.cache_dir()
    if not args.yes and sys.stdin.isatty():
        try:
            count = str(len(cache.read_file(cache.cache_path(), backup=False).entries))
        except cache.CacheError:
            count = "the unreadable cache file's"
        answer = input(f"delete {count} tuned winners and every stored study in {terminal_safe(str(directory))}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing was deleted")
            return 1
    report = cache.clear()
    studies = remove_studies(directory)
    print(f"cleared {terminal_safe(str(directory))}: removed {report.winners} tuned winners, {report.trial_files} trial "
          f"histories and {studies.removed} stored studies")
    if studies.busy:
        print(f"kept {len(studies.busy)} studies being tuned right now (their tuners will cache their winners)")
    return 0
