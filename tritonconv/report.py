"""Render a results file (see `tritonconv.benchmark` for the schema) as a rich table and matplotlib PNG charts.

Works for every kind (conv, gemm, models, tune): records with a "results" list become one row each with a
"ms / speedup" cell per candidate; records without one become rows of their scalar fields.
Charts (Agg backend, one PNG each, written only when the data has the metric):
  * <stem>_speedup.png - speedup over the baseline per record, one bar per candidate (baselines left out);
  * <stem>_roofline.png - achieved fraction of the roofline floor per record, every result;
  * <stem>_tflops.png   - TFLOP/s per record, every result.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence

from rich.console import Console
from rich.table import Table

from .benchmark import Record, load_results, summarize

CHARTS = {
    # metric: (file suffix, title, y label, include baselines, reference line)
    "speedup": ("speedup", "Speedup over the baseline (higher is better)", "speedup (x)", False, 1.0),
    "floor_fraction": ("roofline", "Achieved fraction of the roofline floor", "floor time / time", True, 1.0),
    "tflops": ("tflops", "Throughput", "TFLOP/s", True, None),
}


def _number(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return "…"
    return str(value)


def _short(label: str, limit: int = 40) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def result_names(records: Sequence[Record], *, include_baselines: bool = True) -> list[str]:
    """Names of the results across records, in first-seen order."""
    names: dict[str, None] = {}
    for record in records:
        for entry in record.get("results", []):
            if include_baselines or entry.get("role") != "baseline":
                names.setdefault(entry["name"], None)
    return list(names)


def _entry(record: Record, name: str) -> Optional[dict[str, Any]]:
    return next((e for e in record.get("results", []) if e.get("name") == name), None)


def _as_results(record: Record) -> Record:
    """A flat record (no "results") as a record with one result named "value" holding its fields (for charts)."""
    return record if "results" in record else {**record, "results": [{**record, "name": "value", "role": "candidate"}]}


def _cell(entry: Optional[dict[str, Any]]) -> str:
    if entry is None:
        return ""
    if entry.get("ms") is None:
        return "[red]failed[/red]" if entry.get("error") else "-"
    text = f"{entry['ms']:.4g}"
    speedup = _number(entry.get("speedup"))
    if speedup is not None and entry.get("role") != "baseline":
        color = "green" if speedup >= 1 else "red"
        text += f"\n[{color}]{speedup:.2f}x[/{color}]"
    return text


def results_table(document: dict[str, Any]) -> Table:
    """One row per record: a cell per result (ms, and below it the speedup of candidates), the roofline floor
    (ms) if known, the worst relative error of the record's results."""
    records = document["records"]
    meta = document.get("meta", {})
    title = " | ".join(str(v) for v in (document.get("kind"), meta.get("gpu"), meta.get("dtype"), meta.get("layout"),
                                        meta.get("precision")) if v)
    table = Table(title=title or None)
    table.add_column("name", no_wrap=True)  # cells hold "ms" over "speedup"; long headers fold
    names = result_names(records)
    if names:
        for name in names:
            table.add_column(f"{name} ms", justify="right", overflow="fold")
        has_floor = any("floor_ms" in r for r in records)
        if has_floor:
            table.add_column("floor ms", justify="right")
        table.add_column("max rel err", justify="right", no_wrap=True, min_width=7)
        for record in records:
            errors = [_number(e.get("rel_error")) for e in record.get("results", [])]
            errors = [e for e in errors if e is not None]
            row = [str(record.get("name", "?"))] + [_cell(_entry(record, n)) for n in names]
            if has_floor:
                floor = _number(record.get("floor_ms"))
                row.append(f"{floor:.4g}" if floor is not None else "-")
            row.append(f"{max(errors):.1e}" if errors else "-")
            table.add_row(*row)
        return table
    # Flat records: their scalar fields.
    keys: dict[str, None] = {}
    for record in records:
        for key, value in record.items():
            if key != "name" and not isinstance(value, (dict, list)):
                keys.setdefault(key, None)
    for key in keys:
        table.add_column(key, justify="right")
    for record in records:
        table.add_row(str(record.get("name", "?")), *(_format(record.get(k)) for k in keys))
    return table


def summary_lines(document: dict[str, Any]) -> list[str]:
    """'name: geomean 1.23x over N, worst 0.91x (shape)' for each candidate that has speedups."""
    return [
        f"{name}: geomean speedup {s['geomean']:.3f}x over {s['count']} records, worst {s['worst']:.3f}x "
        f"({s['worst_record']})"
        for name, s in summarize(document["records"]).items()
    ]


def plot_metric(
    records: Sequence[Record], metric: str, path: str | Path, *, title: str = "", ylabel: str = "",
    include_baselines: bool = True, reference_line: Optional[float] = None,
) -> Optional[Path]:
    """Grouped bar chart of `metric` per record (x) and result (bars); None (no file) if no result has it."""
    records = [_as_results(r) for r in records]
    names = result_names(records, include_baselines=include_baselines)
    values = {n: [_number((_entry(r, n) or {}).get(metric)) for r in records] for n in names}
    values = {n: v for n, v in values.items() if any(x is not None for x in v)}
    if not values:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [_short(str(r.get("name", "?"))) for r in records]
    width = 0.8 / len(values)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.25 * len(labels) * len(values) + 2), 4.5))
    for i, (name, series) in enumerate(values.items()):
        xs = [j + (i - (len(values) - 1) / 2) * width for j in range(len(labels))]
        ax.bar(xs, [v if v is not None else 0.0 for v in series], width, label=name)
    if reference_line is not None:
        ax.axhline(reference_line, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def write_charts(document: dict[str, Any], out_dir: str | Path, stem: str) -> list[Path]:
    """Every chart in CHARTS the document has data for, as <out_dir>/<stem>_<suffix>.png."""
    subtitle = " | ".join(str(v) for v in (document.get("meta", {}).get("gpu"), document.get("meta", {}).get("dtype")) if v)
    written = []
    for metric, (suffix, title, ylabel, baselines, line) in CHARTS.items():
        path = plot_metric(
            document["records"], metric, Path(out_dir) / f"{stem}_{suffix}.png",
            title=f"{title}\n{subtitle}" if subtitle else title, ylabel=ylabel, include_baselines=baselines,
            reference_line=line,
        )
        if path is not None:
            written.append(path)
    return written


def render(
    source: str | Path | dict[str, Any], out_dir: Optional[str | Path] = None, *, console: Optional[Console] = None,
    charts: bool = True,
) -> list[Path]:
    """Print the table and the geomean summary of a results file (or loaded document) and write its charts to
    `out_dir` (default: next to the file). Returns the PNG paths."""
    if isinstance(source, dict):
        document, stem, default_dir = source, "results", Path(".")
    else:
        document, stem, default_dir = load_results(source), Path(source).stem, Path(source).parent
    console = console or Console()
    console.print(results_table(document))
    for line in summary_lines(document):
        console.print(line)
    return write_charts(document, out_dir or default_dir, stem) if charts else []
