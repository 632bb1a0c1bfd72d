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
    """One table per device, narrow enough for 80 columns: short problem labels, the winning kernel, its time,
    the baseline's time (cuDNN on a GPU, torch CPU in the interpreter) and the speedup."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from .. import cache
    from ..results import baseline_label, distinct_labels, format_speedup
    from ..text import markup_safe

    console = Console()
    entries = _selected(args.here)
    console.print(f"tuning cache {cache.cache_path()}: {len(entries)} entries", soft_wrap=True, highlight=False)
    here = cache.fingerprint()
    by_device: dict[str, list[dict]] = {}
    for entry in entries.values():
        by_device.setdefault(str(entry.get("fingerprint", "?")), []).append(entry)
    any_stale = False
    for device, group in sorted(by_device.items()):
        problems = [_problem(e) for e in group]
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
            t, c = entry.get("time_ms"), entry.get("cudnn_time_ms")
            stale = not cache.is_current(entry)
            any_stale |= stale
            kernel = markup_safe(entry.get("family", "?")) + ("[yellow]*[/yellow]" if stale else "")
            table.add_row(markup_safe(label_of.get(i, "?")), kernel, _ms(t), _ms(c), format_speedup(c / t if t and c else None),
                          str(entry.get("trials_run", "?")))
        console.print(table)
    if any_stale:
        console.print("* stale: the kernel's source changed since it was tuned, so dispatch ignores the entry; "
                      "`tritonconv tune` re-tunes it", highlight=False)
    if entries:
        console.print("speedup = baseline ms / ms, both measured in the same run; details: "
                      "`tritonconv cache show TEXT` (TEXT: part of a key such as n1_c64)", highlight=False)
    return 0


def _problem(entry: dict):
    from ..problem import ConvProblem

    try:
        return ConvProblem.from_dict(entry["problem"])
    except (KeyError, TypeError):
        return None


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
