"""Render a results file (see `tritonconv.results` for the schema) as a rich table and matplotlib PNG charts.

Works for every kind (conv, gemm, models, tune, tune-model, compile, a cache export): records with a "results"
list become one row each with a "ms / speedup" cell per candidate; records without one become rows of their scalar
fields (the ones meta "columns" names, if the writer named them: a compile report's registers, spills, MMA, ...).
Charts (Agg backend, one PNG each, written only when the data has the metric):
  * <stem>_speedup.png - speedup over the baseline per record, one bar per candidate (baselines left out);
  * <stem>_roofline.png - achieved fraction of the roofline floor per record, every result;
  * <stem>_tflops.png   - TFLOP/s per record, every result.
All on log scales (0.5x and 2x are equally far from 1x; small values stay visible). Every chart names its baseline in the title, the device, library versions and (for interpreter runs) that the
times are CPU wall-clock in a caption, labels records by their full names (never cut into collisions), and marks
failed candidates with a red "×" instead of leaving a gap.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence

from rich.console import Console
from rich.table import Table

from .results import Record, format_speedup, load_results, summarize

CHARTS = {
    # metric: (file suffix, title ({baseline} filled in), y label, include baselines, reference line, log scale)
    "speedup": ("speedup", "Speedup over {baseline} (higher is better)", "speedup (x, log scale)", False, 1.0, True),
    "floor_fraction": ("roofline", "Achieved fraction of the roofline floor", "floor time / time (log scale)", True,
                       1.0, True),
    "tflops": ("tflops", "Throughput", "TFLOP/s (log scale)", True, None, True),
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


def record_labels(records: Sequence[Record]) -> list[str]:
    """The records' names, made distinct (a repeated name gets its record's "label", then "#2", "#3", ...)."""
    names = [str(r.get("name", "?")) for r in records]
    labels = [n if names.count(n) == 1 or not r.get("label") else f"{n} ({r['label']})" for n, r in zip(names, records)]
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        seen[label] = seen.get(label, 0) + 1
        if labels.count(label) > 1:
            labels[i] = f"{label} #{seen[label]}"
    return labels


def baseline_name(document: dict[str, Any]) -> str:
    """The baseline's name for titles: meta["baseline"], else the records' baselines, else "the baseline"."""
    meta = document.get("meta", {})
    if meta.get("baseline"):
        return str(meta["baseline"])
    names = sorted({str(r["baseline"]) for r in document["records"] if r.get("baseline")})
    return " / ".join(names) if names else "the baseline"


def caption(document: dict[str, Any]) -> str:
    """Where the numbers come from: device, library versions, date; interpreter runs say so."""
    meta = document.get("meta", {})
    device = meta.get("gpu") or (", ".join(meta["devices"]) if meta.get("devices") else None)
    interpreted = bool(meta.get("interpreter")) or (device is None and meta.get("torch") is not None)
    parts = [f"device: {device or ('Triton interpreter on the CPU' if interpreted else 'CPU')}"]
    parts += [f"{name} {meta[name]}" for name in ("tritonconv", "torch", "triton", "cudnn") if meta.get(name)]
    if meta.get("date"):
        parts.append(str(meta["date"])[:10])
    text = " | ".join(parts)
    if interpreted:
        text += "\nTRITON INTERPRETER RUN: times are CPU wall-clock of the interpreter, not GPU performance"
    return text


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
        text += f"\n[{color}]{format_speedup(speedup)}[/{color}]"
    return text


def _name_cell(record: Record) -> str:
    """The record's name, and below it the problem's short label when the name is something else (a layer)."""
    name, label = str(record.get("name", "?")), record.get("label")
    return f"{name}\n[dim]{label}[/dim]" if label and label != name else name


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
            row = [_name_cell(record)] + [_cell(_entry(record, n)) for n in names]
            if has_floor:
                floor = _number(record.get("floor_ms"))
                row.append(f"{floor:.4g}" if floor is not None else "-")
            row.append(f"{max(errors):.1e}" if errors else "-")
            table.add_row(*row)
        return table
    # Flat records: the columns the writer named (meta "columns"), else their scalar fields (not the identifying
    # ones the name already shows); a column no record has is left out.
    table.columns[0].no_wrap, table.columns[0].overflow = False, "fold"
    keys: dict[str, None] = {}
    for record in records:
        for key, value in record.items():
            if key not in ("name", "key", "label", "problem") and not isinstance(value, (dict, list)):
                keys.setdefault(key, None)
    if meta.get("columns"):
        keys = {key: None for key in meta["columns"] if key in keys}
    for key in keys:
        table.add_column(key, justify="right")
    for record in records:
        table.add_row(str(record.get("name", "?")), *(_format(record.get(k)) for k in keys))
    return table


def summary_lines(document: dict[str, Any]) -> list[str]:
    """'name: geomean 1.23x over N, worst 0.91x (shape)' for each candidate that has speedups."""
    return [
        f"{name}: geomean speedup {format_speedup(s['geomean'])} over {s['count']} records, "
        f"worst {format_speedup(s['worst'])} "
        f"({s['worst_record']})"
        for name, s in summarize(document["records"]).items()
    ]


def plot_metric(
    records: Sequence[Record], metric: str, path: str | Path, *, title: str = "", ylabel: str = "",
    include_baselines: bool = True, reference_line: Optional[float] = None, log_scale: bool = False,
    caption_text: str = "",
) -> Optional[Path]:
    """Grouped bar chart of `metric` per record (x) and result (bars); a red "×" where a result failed (it has an
    error and no value). None (no file) if no result has the metric."""
    records = [_as_results(r) for r in records]
    names = result_names(records, include_baselines=include_baselines)
    values = {n: [_number((_entry(r, n) or {}).get(metric)) for r in records] for n in names}
    failed = {n: [bool((_entry(r, n) or {}).get("error")) and v is None for r, v in zip(records, values[n])]
              for n in names}
    values = {n: v for n, v in values.items() if any(x is not None for x in v)}
    if not values:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = record_labels(records)
    width = 0.8 / len(values)
    fig, ax = plt.subplots(figsize=(max(6.5, 0.32 * len(labels) * len(values) + 2.5), 5.0))
    if log_scale:
        from matplotlib.ticker import FuncFormatter

        ax.set_yscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")  # 4, 0.01, 1e-05 rather than 4×10^0
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    present = [x for series in values.values() for x in series if x is not None and x > 0]
    marker_y = min(present + ([reference_line] if reference_line else [])) * (0.8 if log_scale else 0.0)
    any_failed = False
    for i, (name, series) in enumerate(values.items()):
        xs = [j + (i - (len(values) - 1) / 2) * width for j in range(len(labels))]
        bars = ax.bar([x for x, v in zip(xs, series) if v is not None], [v for v in series if v is not None], width,
                      label=name)
        if log_scale or len(labels) <= 12:
            crowded = len(values) > 2
            ax.bar_label(bars, labels=[format_speedup(v) if metric == "speedup" else f"{v:.3g}" for v in series
                                       if v is not None], fontsize=6 if crowded else 7, padding=1,
                         rotation=90 if crowded else 0)
        down = [x for x, bad in zip(xs, failed[name]) if bad]
        if down:
            any_failed = True
            ax.scatter(down, [marker_y] * len(down), marker="x", color="red", s=60, zorder=3)
    if any_failed:
        ax.scatter([], [], marker="x", color="red", label="failed (no time)")
    bottom, top = ax.get_ylim()
    ax.set_ylim(bottom, top * (4 if log_scale else 1.12))  # room for the value labels above the tallest bar
    if reference_line is not None:
        ax.axhline(reference_line, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 3 else 0,
                  ha="right" if len(labels) > 3 else "center", fontsize=8)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: never over a bar
    ax.grid(axis="y", alpha=0.3)
    if caption_text:
        fig.text(0.01, -0.01, caption_text, fontsize=7, ha="left", va="top", color="dimgray")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def write_charts(document: dict[str, Any], out_dir: str | Path, stem: str) -> list[Path]:
    """Every chart in CHARTS the document has data for, as <out_dir>/<stem>_<suffix>.png."""
    meta = document.get("meta", {})
    subtitle = " | ".join(str(v) for v in (document.get("kind"), meta.get("gpu"), meta.get("dtype"), meta.get("layout"),
                                           meta.get("precision")) if v)
    written = []
    for metric, (suffix, title, ylabel, baselines, line, log_scale) in CHARTS.items():
        title = title.format(baseline=baseline_name(document))
        path = plot_metric(
            document["records"], metric, Path(out_dir) / f"{stem}_{suffix}.png",
            title=f"{title}\n{subtitle}" if subtitle else title, ylabel=ylabel, include_baselines=baselines,
            reference_line=line, log_scale=log_scale, caption_text=caption(document),
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
