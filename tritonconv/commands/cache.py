"""`tritonconv cache list|show|export|import|clear`: inspect and move the tuning cache."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("cache", help="inspect, export, import or clear the tuning cache", description=__doc__)
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
    actions.add_parser("clear", help="delete every cached entry and stored study")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import cache

    try:
        return {"list": _list, "show": _show, "export": _export, "import": _import, "clear": _clear}[args.cache_action](args)
    except cache.CacheError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _selected(here: bool) -> dict:
    from .. import cache

    here_fp = cache.fingerprint()
    return {k: v for k, v in cache.entries().items() if not here or v.get("fingerprint") == here_fp}


def _list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from .. import cache

    entries = _selected(args.here)
    table = Table(title=f"tuning cache {cache.cache_path()} ({len(entries)} entries)")
    for column in ("device", "problem", "family", "time (ms)", "cuDNN (ms)", "speedup", "trials", "tuned", "current"):
        table.add_column(column, overflow="fold")
    for entry in sorted(entries.values(), key=lambda e: (e.get("fingerprint", ""), e.get("problem", {}).get("c", 0))):
        t, c = entry.get("time_ms"), entry.get("cudnn_time_ms")
        table.add_row(
            entry.get("fingerprint", "?"), _problem_key(entry), entry.get("family", "?"), _ms(t), _ms(c),
            f"{c / t:.2f}x" if t and c else "-", str(entry.get("trials_run", "?")), entry.get("timestamp", "?"),
            "yes" if cache.is_current(entry) else "stale kernel",
        )
    Console().print(table)
    return 0


def _problem_key(entry: dict) -> str:
    from ..problem import ConvProblem

    try:
        return ConvProblem.from_dict(entry["problem"]).key
    except (KeyError, TypeError):
        return "?"


def _ms(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "-"


def _show(args: argparse.Namespace) -> int:
    from .. import cache

    found = {k: v for k, v in cache.entries().items() if args.text in k}
    if not args.trials:
        found = {k: {**v, "trials": f"{len(v.get('trials', []))} trials (--trials shows them)"} for k, v in found.items()}
    print(json.dumps(found, indent=1, sort_keys=True))
    if not found:
        print(f"no entry matches {args.text!r}", file=sys.stderr)
        return 1
    return 0


def _export(args: argparse.Namespace) -> int:
    from .. import cache

    here_fp = cache.fingerprint()
    count = cache.export(Path(args.file), select=(lambda k, v: v.get("fingerprint") == here_fp) if args.here else None)
    print(f"exported {count} entries to {args.file} (hardware fingerprint {here_fp})")
    return 0


def _import(args: argparse.Namespace) -> int:
    import warnings

    from .. import cache

    if not Path(args.file).exists():
        print(f"error: no such file {args.file}", file=sys.stderr)
        return 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the report below says it
        report = cache.import_file(Path(args.file))
    print(f"imported {args.file}: {len(report.added)} added, {len(report.replaced)} replaced (faster), "
          f"{len(report.kept)} kept (existing entry as fast or faster)")
    for kind, keys in (("added", report.added), ("replaced", report.replaced)):
        for key in keys:
            print(f"  {kind}: {key}")
    if report.warning:
        print(f"warning: {report.warning}", file=sys.stderr)
    return 0


def _clear(args: argparse.Namespace) -> int:
    from .. import cache
    from ..search.journal import remove_studies

    count = cache.clear()
    studies = remove_studies(cache.cache_dir())
    print(f"cleared {count} entries from {cache.cache_path()} and {studies.removed} stored studies")
    if studies.busy:
        print(f"kept {len(studies.busy)} studies being tuned right now (their tuners will cache their winners)")
    return 0
