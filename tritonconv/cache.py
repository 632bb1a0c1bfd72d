"""The tuning cache: one versioned JSON file of tuned winners, loaded once per process by the dispatcher.

Layout of the file (`tuning-cache.json` in `cache_dir()`):

    {"schema": "tritonconv-cache", "version": 1, "entries": {ENTRY_KEY: ENTRY, ...}}

ENTRY_KEY = "<device fingerprint>|triton-<version>|<problem key>". An ENTRY holds the winning Triton config (with
its "family" key), its time, the cuDNN time measured in the same run, the relative error, the source hash of the
winning family (a config is only trusted for the kernel it was tuned on), the search options, and every trial's
timing (so a later search re-times only configs it has not seen).

Writes are atomic (temp file + os.replace) under a file lock, and re-read the file under the lock and merge, so
concurrent tuners never clobber each other. A corrupt or foreign file is backed up and reported, never wiped.
"""
from __future__ import annotations

import functools
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import platformdirs
import torch
import triton
from filelock import FileLock

from .errors import TritonConvError
from .problem import ConvProblem
from .runtime import device_info

SCHEMA = "tritonconv-cache"
SCHEMA_VERSION = 1
CACHE_FILE = "tuning-cache.json"
CUDNN_FAMILY = "cudnn"
# Set to "1" to let a new batch size reuse the entry tuned for the nearest batch size (launched with its exact shape).
BATCH_BUCKETING_ENV = "TRITONCONV_BATCH_BUCKETING"

Entry = dict[str, Any]


class CacheError(TritonConvError):
    """The cache file is unreadable or belongs to another program/schema version."""


# ------------------------------------------------------------------------------------------------------------
# Where and under which key
# ------------------------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """TRITONCONV_CACHE_DIR if set, else the platform's user cache directory for tritonconv."""
    override = os.environ.get("TRITONCONV_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir("tritonconv"))


def cache_path() -> Path:
    return cache_dir() / CACHE_FILE


def fingerprint(device: torch.device | str | None = None) -> str:
    """Device name, compute capability and SM count of `device` (the interpreter has its own)."""
    return device_info(device).fingerprint


def entry_key(problem: ConvProblem, device_fingerprint: str) -> str:
    return f"{device_fingerprint}|triton-{triton.__version__}|{problem.key}"


def _bucket_key(problem: ConvProblem, device_fingerprint: str) -> str:
    """The entry key with the batch size left out (batch bucketing groups entries by it)."""
    return entry_key(problem.with_(n=1), device_fingerprint)


def batch_bucketing_enabled() -> bool:
    return os.environ.get(BATCH_BUCKETING_ENV, "0") not in ("", "0")


# ------------------------------------------------------------------------------------------------------------
# Reading and writing the file
# ------------------------------------------------------------------------------------------------------------
def _empty() -> dict[str, Any]:
    return {"schema": SCHEMA, "version": SCHEMA_VERSION, "entries": {}}


def _backup(path: Path) -> Path:
    backup = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    if not backup.exists():
        shutil.copy2(path, backup)
    return backup


def read_file(path: Path, *, backup: bool = True) -> dict[str, Any]:
    """The parsed cache (or export) file at `path`; empty if missing. Raises CacheError (after keeping a backup
    copy) if it is not valid JSON or not a tritonconv cache of this schema version."""
    if not path.exists():
        return _empty()
    try:
        data = json.loads(path.read_text())
        problem = None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            problem = "it is not a tritonconv cache file"
        elif data.get("version") != SCHEMA_VERSION:
            problem = f"its schema version {data.get('version')!r} is not {SCHEMA_VERSION}"
        elif not isinstance(data.get("entries"), dict):
            problem = "it has no 'entries' mapping"
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        problem = f"it is not valid JSON ({exc})"
    if problem is None:
        return data
    where = f"; a copy was kept at {_backup(path)}" if backup else ""
    raise CacheError(
        f"cannot use the tuning cache {path}: {problem}{where}. Nothing was overwritten: move the file away or "
        f"run `tritonconv cache clear` to start a new cache"
    )


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _lock(path: Path) -> FileLock:
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock", timeout=120)


# ------------------------------------------------------------------------------------------------------------
# Merging
# ------------------------------------------------------------------------------------------------------------
def _trial_id(trial: dict[str, Any]) -> str:
    return json.dumps([trial.get("family_version"), trial.get("config")], sort_keys=True)


def merge_entry(old: Optional[Entry], new: Entry, *, prefer: str = "new") -> Entry:
    """One entry from two measurements of the same key. `prefer="new"`: the newer tuning wins (it saw the old
    trials); `prefer="faster"`: the faster winner wins (import). Trial timings are united either way."""
    if old is None:
        return new
    if prefer == "faster":
        keep = new if _time(new) < _time(old) else old
    else:
        keep = new
    trials = {_trial_id(t): t for t in old.get("trials", [])}
    trials.update({_trial_id(t): t for t in new.get("trials", [])})
    return {**keep, "trials": list(trials.values())}


def _time(entry: Entry) -> float:
    t = entry.get("time_ms")
    return float(t) if isinstance(t, (int, float)) else math.inf


def update(
    entries: dict[str, Entry], *, prefer: str = "new", path: Optional[Path] = None
) -> dict[str, str]:
    """Merge `entries` into the cache file under its lock (re-read, merge, atomic write); what happened to each
    key: "added", "replaced" or "kept". Clears the in-memory view and the dispatcher's memo."""
    path = path or cache_path()
    changes: dict[str, str] = {}
    with _lock(path):
        data = read_file(path)
        stored = data["entries"]
        for key, entry in entries.items():
            old = stored.get(key)
            merged = merge_entry(old, entry, prefer=prefer)
            changes[key] = "added" if old is None else ("kept" if _same_winner(merged, old) else "replaced")
            stored[key] = merged
        _write_atomic(path, data)
    invalidate()
    return changes


def _same_winner(a: Entry, b: Entry) -> bool:
    return (a.get("family"), a.get("config"), a.get("time_ms")) == (b.get("family"), b.get("config"), b.get("time_ms"))


def clear(path: Optional[Path] = None) -> int:
    """Delete every entry (the file goes; a corrupt file is backed up first). Returns how many were removed."""
    path = path or cache_path()
    with _lock(path):
        try:
            count = len(read_file(path)["entries"])
        except CacheError:
            count = 0
        if path.exists():
            path.unlink()
    invalidate()
    return count


# ------------------------------------------------------------------------------------------------------------
# The in-memory view used by the dispatcher
# ------------------------------------------------------------------------------------------------------------
@dataclass
class _Loaded:
    dir_setting: Optional[str]  # TRITONCONV_CACHE_DIR when loaded (cheaper to compare than paths)
    entries: dict[str, Entry]
    by_bucket: dict[str, list[tuple[int, Entry]]] = field(default_factory=dict)


_loaded: Optional[_Loaded] = None


def invalidate() -> None:
    """Forget the in-memory copy (next lookup re-reads the file) and the dispatcher's resolved choices."""
    global _loaded
    _loaded = None
    from . import dispatch  # late: dispatch imports this module

    dispatch.clear_memo()


def _view() -> _Loaded:
    global _loaded
    setting = os.environ.get("TRITONCONV_CACHE_DIR")
    if _loaded is None or _loaded.dir_setting != setting:
        try:
            entries = read_file(cache_path())["entries"]
        except CacheError as exc:
            warnings.warn(f"{exc} - using default configs until then", RuntimeWarning, stacklevel=3)
            entries = {}
        view = _Loaded(setting, entries)
        for entry in entries.values():
            if "problem" in entry and "fingerprint" in entry:
                problem = ConvProblem.from_dict(entry["problem"])
                view.by_bucket.setdefault(_bucket_key(problem, entry["fingerprint"]), []).append((problem.n, entry))
        _loaded = view
    return _loaded


def entries() -> dict[str, Entry]:
    """Every stored entry (read-only view of the file; raises CacheError on a corrupt file)."""
    return read_file(cache_path())["entries"]


def get_entry(problem: ConvProblem, device: torch.device | str | None = None) -> Optional[Entry]:
    """The stored entry for exactly `problem` on `device`, if its winner's kernel source is unchanged."""
    entry = _view().entries.get(entry_key(problem, fingerprint(device)))
    return entry if entry is not None and is_current(entry) else None


def is_current(entry: Entry) -> bool:
    """Whether the winning family still exists with the source it was tuned on."""
    version = family_version(entry.get("family", ""))
    return version is not None and version == entry.get("family_version")


@functools.lru_cache(maxsize=None)
def family_version(name: str) -> Optional[str]:
    """A family's source hash, computed once per process (hashing reads the source file)."""
    from .kernels import FAMILIES

    family = FAMILIES.get(name)
    return family.version if family is not None else None


def _nearest_batch(problem: ConvProblem, device_fingerprint: str) -> Optional[Entry]:
    from .kernels import FAMILIES

    candidates = _view().by_bucket.get(_bucket_key(problem, device_fingerprint), [])
    for _, entry in sorted(candidates, key=lambda c: abs(math.log2(c[0]) - math.log2(problem.n))):
        if not is_current(entry):
            continue
        family = FAMILIES[entry["family"]]
        kernel_config = {k: v for k, v in entry["config"].items() if k not in ("family", "convert_nhwc", "precision")}
        if family.supports(problem) is None and family.space(problem).violation(problem, kernel_config, pruning=False) is None:
            return entry
    return None


def lookup_config(problem: ConvProblem, device: torch.device, backend: str = "auto") -> Optional[dict[str, Any]]:
    """The tuned config (with its "family" key) for `problem` on `device`, or None. With backend="auto" the
    family may be "cudnn" where cuDNN measured faster; with "triton" it is always the best Triton kernel."""
    device_fp = fingerprint(device)
    entry = _view().entries.get(entry_key(problem, device_fp))
    if entry is None or not is_current(entry):
        entry = _nearest_batch(problem, device_fp) if batch_bucketing_enabled() else None
    if entry is None:
        return None
    cudnn_ms = entry.get("cudnn_time_ms")
    if backend == "auto" and cudnn_ms is not None and cudnn_ms < _time(entry):
        return {"family": CUDNN_FAMILY}
    return dict(entry["config"])


# ------------------------------------------------------------------------------------------------------------
# Export / import
# ------------------------------------------------------------------------------------------------------------
@dataclass
class ImportReport:
    added: list[str]
    replaced: list[str]
    kept: list[str]
    source_fingerprints: list[str]
    warning: Optional[str] = None


def export(destination: Path, *, select: Optional[Callable[[str, Entry], bool]] = None) -> int:
    """Write the cache's entries (optionally filtered) to a portable file stamped with this machine's hardware
    fingerprint; returns how many entries were written."""
    chosen = {k: v for k, v in entries().items() if select is None or select(k, v)}
    data = {
        **_empty(),
        "entries": chosen,
        "exported_from": fingerprint(),
        "triton": triton.__version__,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    _write_atomic(Path(destination), data)
    return len(chosen)


def import_file(source: Path) -> ImportReport:
    """Merge an exported file into the cache, keeping the faster entry on conflicts. Warns (and says so in the
    report) when the file was tuned on different hardware than this machine's."""
    data = read_file(Path(source), backup=False)
    changes = update(data["entries"], prefer="faster")
    sources = sorted({e.get("fingerprint", "?") for e in data["entries"].values()} | ({data["exported_from"]} if data.get("exported_from") else set()))
    here = fingerprint()
    warning = None
    foreign = [s for s in sources if s != here]
    if foreign:
        warning = (
            f"{source} was tuned on {', '.join(foreign)}, but this machine is {here}: those entries are kept but "
            f"only used on matching hardware"
        )
        warnings.warn(warning, UserWarning, stacklevel=2)
    by = lambda kind: sorted(k for k, v in changes.items() if v == kind)  # noqa: E731
    return ImportReport(by("added"), by("replaced"), by("kept"), sources, warning)


def iter_entries_for(device_fingerprint: str) -> Iterator[tuple[str, Entry]]:
    for key, entry in entries().items():
        if entry.get("fingerprint") == device_fingerprint:
            yield key, entry
