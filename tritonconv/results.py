"""The results file: one schema, one writer, read by `tritonconv report`.

Every command that writes timings writes this format: `tritonconv tune --json`, `tritonconv tune-model --json`,
`tritonconv bench`, bench/*.py and `python -m tritonconv.compile --json` (also with --report). `load_results` also reads a cache
export (`tritonconv cache export`), so every JSON file tritonconv writes can be reported.

Schema (version 1):
    {"schema": "tritonconv-results", "version": 1,
     "kind": "conv" | "gemm" | "models" | "tune" | "tune-model" | "compile" | "cache",
     "meta": {device_metadata() fields ("gpu", "torch", "triton", "cudnn", "interpreter", ...), "baseline": ...,
              "columns": [the fields a table of flat records shows, in order (optional)], anything the writer adds},
     "records": [
        {"name": "r50_l1_3x3",            # row label (suite name, layer, or the problem's short label)
         "baseline": "cuDNN",             # name of the result the speedups are relative to (optional)
         "results": [                     # one entry per timed candidate (see CandidateResult)
            {"name": "tuned", "role": "candidate" | "baseline", "ms": 0.1, "tflops": ..., "speedup": ...,
             "floor_fraction": ..., "rel_error": ..., "error": None, ...}],
         ...any other fields: "problem", "label", "flops", "floor_ms", "trials_run", ...}]}
A record without "results" is rendered as a flat row of its scalar fields. Non-finite floats are written as null.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import InvalidInputError
from .runtime import INTERPRET, INTERPRETER_DEVICE

SCHEMA = "tritonconv-results"
SCHEMA_VERSION = 1
KINDS = ("conv", "gemm", "models", "tune", "tune-model", "compile", "cache")
CACHE_SCHEMA = "tritonconv-cache"  # tritonconv.cache.SCHEMA (not imported: the cache imports the kernels)

Record = dict[str, Any]  # a record as stored in the file


def baseline_label(device_fingerprint: str = "") -> str:
    """What the baseline of a tuning run is: cuDNN on a GPU, PyTorch's own conv on the CPU (interpreter runs)."""
    on_cpu = device_fingerprint.startswith(INTERPRETER_DEVICE.name) if device_fingerprint else (
        INTERPRET or not torch.cuda.is_available())
    return "torch CPU" if on_cpu else "cuDNN"


def device_metadata(device: torch.device | str | int | None = None) -> dict[str, Any]:
    """Where and with what a run happened: GPU, compute capability, SM count, library versions, whether the
    Triton interpreter ran the kernels, date, command."""
    import triton

    from . import __version__

    meta: dict[str, Any] = {
        "gpu": None, "capability": None, "sm_count": None, "gpu_memory_gib": None,
        "torch": torch.__version__, "triton": triton.__version__, "tritonconv": __version__,
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "interpreter": INTERPRET,
        "python": platform.python_version(), "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(sys.argv),
    }
    if torch.cuda.is_available() and not INTERPRET:
        index = torch.device(device).index if isinstance(device, (str, torch.device)) else device
        props = torch.cuda.get_device_properties(torch.cuda.current_device() if index is None else index)
        meta.update(
            gpu=props.name, capability=f"{props.major}.{props.minor}", sm_count=props.multi_processor_count,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
        )
    return meta


def tflops(flops: float, ms: float) -> float:
    return flops / (ms * 1e-3) / 1e12


def speedup_over(baseline_ms: float | None, ms: float | None) -> float | None:
    """baseline time / time (> 1: faster than the baseline), both measured in the same run; None unless both
    times are positive and finite."""
    def measured(t: float | None) -> bool:
        return t is not None and t > 0 and math.isfinite(t)

    return baseline_ms / ms if measured(baseline_ms) and measured(ms) else None  # type: ignore[operator]


@dataclass
class CandidateResult:
    """One timed candidate of a record: its time and what follows from it (TFLOP/s, fraction of the roofline
    floor, speedup over the baseline); `error` says why a candidate has no time."""

    name: str
    ms: float | None
    role: str = "candidate"  # or "baseline"
    tflops: float | None = None
    floor_fraction: float | None = None
    speedup: float | None = None
    rel_error: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # family, config, precision, ...

    @classmethod
    def measured(cls, name: str, ms: float | None, *, role: str = "candidate", flops: float | None = None,
                 floor: float | None = None, baseline_ms: float | None = None, rel_error: float | None = None,
                 error: str | None = None, **extra: Any) -> CandidateResult:
        ok = ms is not None and ms > 0 and math.isfinite(ms)
        return cls(
            name=name, ms=ms if ok else None, role=role,
            tflops=tflops(flops, ms) if ok and flops else None,  # type: ignore[arg-type]
            floor_fraction=floor / ms if ok and floor else None,  # type: ignore[operator]
            speedup=speedup_over(baseline_ms, ms),
            rel_error=rel_error, error=error, extra=extra,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "ms": self.ms, "tflops": self.tflops,
                "floor_fraction": self.floor_fraction, "speedup": self.speedup, "rel_error": self.rel_error,
                "error": self.error, **self.extra}


@dataclass
class ResultRecord:
    """One row of a results file: a name, its candidates (empty: a flat row of `fields`), the baseline's name."""

    name: str
    results: list[CandidateResult] = field(default_factory=list)
    baseline: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # problem, label, flops, trials_run, ...

    def to_dict(self) -> Record:
        record: Record = {"name": self.name, **self.fields}
        if self.results:
            record["baseline"] = self.baseline
            record["results"] = [r.to_dict() for r in self.results]
        return record


def result_entry(name: str, ms: float | None, **kwargs: Any) -> dict[str, Any]:
    """`CandidateResult.measured(...)` as the dict stored in a record (for writers that build dicts)."""
    return CandidateResult.measured(name, ms, **kwargs).to_dict()


def tune_record(result: Any, name: str | None = None) -> ResultRecord:
    """The record of one tuned problem, from a tritonconv.search TuneResult (read by attribute: problem, family,
    config, time_ms, cudnn_time_ms, rel_error, trials_run, wall_time_s, precision, from_cache, device)."""
    problem = result.problem
    baseline_ms = getattr(result, "cudnn_time_ms", None)
    baseline = baseline_label(getattr(result, "device", "") or "")
    flops = getattr(problem, "flops", None)
    return ResultRecord(
        name=name or problem.label, baseline=baseline,
        fields={"key": problem.key, "label": problem.label, "problem": problem.to_dict(),
                "trials_run": getattr(result, "trials_run", None), "wall_time_s": getattr(result, "wall_time_s", None),
                "from_cache": getattr(result, "from_cache", False), "device": getattr(result, "device", None)},
        results=[
            CandidateResult.measured(baseline, baseline_ms, role="baseline", flops=flops, baseline_ms=baseline_ms),
            CandidateResult.measured("tuned", result.time_ms, flops=flops, baseline_ms=baseline_ms,
                                     rel_error=result.rel_error, family=result.family, config=result.config,
                                     precision=getattr(result, "precision", None)),
        ],
    )


def cache_entry_record(entry: Any) -> Record:
    """A cache (or cache export) entry, a `tritonconv.cache.CacheEntry`, as a results record: the tuned winner
    against the baseline it was timed with in the same run."""
    problem = entry.problem
    baseline = baseline_label(entry.fingerprint)
    return ResultRecord(
        name=problem.label, baseline=baseline,
        fields={"key": entry.key, "device": entry.fingerprint, "trials_run": entry.trials_run,
                "problem": problem.to_dict()},
        results=[
            CandidateResult.measured(baseline, entry.cudnn_time_ms, role="baseline", flops=problem.flops,
                                     baseline_ms=entry.cudnn_time_ms),
            CandidateResult.measured("tuned", entry.time_ms, flops=problem.flops, baseline_ms=entry.cudnn_time_ms,
                                     rel_error=entry.rel_error, family=entry.family, config=entry.config),
        ],
    ).to_dict()


def geomean(values: Iterable[float | None]) -> float:
    """Geometric mean of the positive finite values (None, NaN, inf and non-positive are skipped); NaN if none."""
    logs = [math.log(v) for v in values if v is not None and math.isfinite(v) and v > 0]
    return math.exp(sum(logs) / len(logs)) if logs else float("nan")


def summarize(records: Sequence[Record], metric: str = "speedup") -> dict[str, dict[str, Any]]:
    """Per candidate name: geomean of `metric` over the records that have it, and the worst record."""
    per_name: dict[str, list[tuple[float, str]]] = {}
    for record in records:
        for entry in record.get("results", []):
            value = entry.get(metric)
            if entry.get("role") != "baseline" and value is not None and math.isfinite(value):
                per_name.setdefault(entry["name"], []).append((value, record.get("name", "?")))
    summary = {}
    for name, pairs in per_name.items():
        worst_value, worst_record = min(pairs)
        summary[name] = {
            "geomean": geomean(v for v, _ in pairs), "worst": worst_value, "worst_record": worst_record,
            "count": len(pairs),
        }
    return summary


# ---- the file ------------------------------------------------------------------------------------------------
def _finite(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become None, tuples lists, dtypes and paths strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (torch.dtype, Path)):
        return str(value)
    return value


def write_results(
    path: str | Path, records: Sequence[ResultRecord | Record], meta: dict[str, Any] | None = None, *,
    kind: str,
) -> Path:
    """The one writer: records in the common schema, with `device_metadata()` merged under `meta` (atomic)."""
    if kind not in KINDS:
        raise InvalidInputError(f"results kind must be one of {KINDS}, got {kind!r}")
    rows = [r.to_dict() if isinstance(r, ResultRecord) else r for r in records]
    document = {
        "schema": SCHEMA, "version": SCHEMA_VERSION, "kind": kind,
        "meta": _finite({**device_metadata(), **(meta or {})}), "records": _finite(rows),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # a results file is meant to be shared (mkstemp makes it owner-only)
    with os.fdopen(fd, "w") as f:
        json.dump(document, f, indent=1, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)
    return path


def _from_cache_file(document: dict[str, Any], path: Path) -> dict[str, Any]:
    from .cache import CacheEntry, EntryError  # here, not at the top: the cache imports the kernels (and Triton)

    entries = document.get("entries")
    if not isinstance(entries, dict):
        raise InvalidInputError(f"{path}: a tritonconv cache file without an \"entries\" mapping")
    valid, skipped = [], {}
    for key, raw in sorted(entries.items()):
        try:
            valid.append(CacheEntry.from_json(key, raw))
        except EntryError as exc:
            skipped[str(key)] = str(exc)
    if skipped:
        first = next(iter(skipped))
        warnings.warn(f"{path}: {len(skipped)} cache entries that do not validate are left out of the report (first: "
                      f"{first}: {skipped[first]})", UserWarning, stacklevel=3)
    records = [cache_entry_record(entry) for entry in valid]
    fingerprints = sorted({entry.fingerprint for entry in valid})
    meta = {"source": "cache", "devices": fingerprints, "triton": document.get("triton"), "skipped_entries": skipped,
            "exported_from": document.get("exported_from"), "date": document.get("exported_at"),
            "interpreter": any(f.startswith(INTERPRETER_DEVICE.name) for f in fingerprints),
            "baseline": baseline_label(fingerprints[0]) if len(fingerprints) == 1 else None}
    return {"schema": SCHEMA, "version": SCHEMA_VERSION, "kind": "cache", "meta": meta, "records": records}


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and validate a results file (or a tuning cache / cache export); clear InvalidInputError otherwise."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidInputError(f"results file {path} does not exist") from None
    except IsADirectoryError:
        raise InvalidInputError(f"{path} is a directory, not a results file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"results file {path} is not valid JSON: {exc}") from None
    if isinstance(document, dict) and document.get("schema") == CACHE_SCHEMA:
        return _from_cache_file(document, path)
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise InvalidInputError(f"{path} is not a tritonconv results file (no \"schema\": \"{SCHEMA}\")")
    if document.get("version") != SCHEMA_VERSION:
        raise InvalidInputError(f"{path} has results schema version {document.get('version')!r}; "
                                f"this tritonconv reads version {SCHEMA_VERSION}")
    if document.get("kind") not in KINDS:
        raise InvalidInputError(f"{path}: unknown results kind {document.get('kind')!r}; known: {KINDS}")
    records = document.get("records")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InvalidInputError(f"{path}: \"records\" must be a list of objects")
    document.setdefault("meta", {})
    return document


def distinct_labels(problems: Sequence[Any]) -> list[str]:
    """Short labels (`ConvProblem.label`) for a list of problems; where two distinct problems would share one,
    the label with the input size ("c64→k128 3×3 s2 56×56"), then their long labels, then their keys: never one
    label for two problems."""
    labels = [p.label for p in problems]
    for longer in (lambda p: f"{p.label} {p.h}×{p.w}", lambda p: p.long_label, lambda p: p.key):
        owners: dict[str, set[Any]] = {}
        for label, problem in zip(labels, problems):
            owners.setdefault(label, set()).add(problem)
        labels = [longer(p) if len(owners[label]) > 1 else label for label, p in zip(labels, problems)]
    return labels


def format_speedup(value: float | None) -> str:
    """A speedup with three significant digits, never "0.00x": 2.00x, 0.500x, 0.00123x, 123x; "-" if unknown."""
    if value is None or not math.isfinite(value) or value <= 0:
        return "-"
    return f"{value:.0f}x" if value >= 100 else f"{value:#.3g}x"
