"""Merging and writing entries, reading them back, clearing the cache."""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import CacheError, EntryError
from .entry import CacheEntry
from .files import Locked, clean_stale_temp_files, os_message, refuse_read_only, unlink_all, warn_once, write_bytes
from .keys import SCHEMA_VERSION, TRIALS_DIR, cache_path
from .migrate import migrate
from .store import dump_store, quarantine, read_file
from .trials import read_trials, unite_trials, write_trials
from .view import invalidate


def merge_entry(old: CacheEntry | None, new: CacheEntry, *, prefer: str = "new") -> CacheEntry:
    """One entry from two measurements of the same key. `prefer="new"`: the newer tuning wins (it saw the old
    trials); `prefer="faster"`: the faster winner wins (import). Trial timings are united either way."""
    if old is None:
        return new
    keep = new if prefer != "faster" or new.time_ms < old.time_ms else old
    trials = unite_trials(old.trials or [], new.trials or [])
    return CacheEntry(**{**{f.name: getattr(keep, f.name) for f in fields(keep)}, "trials": trials})


def _same_winner(a: CacheEntry, b: CacheEntry) -> bool:
    return (a.family, a.config, a.time_ms) == (b.family, b.config, b.time_ms)


def _as_entry(key: str, entry: CacheEntry | dict[str, Any]) -> CacheEntry:
    return entry if isinstance(entry, CacheEntry) else CacheEntry.from_json(key, entry)


def update(entries: dict[str, CacheEntry | dict[str, Any]], *, prefer: str = "new",
           path: Path | None = None) -> dict[str, str]:
    """Merge `entries` into the cache under its lock (re-read, merge, atomic write); what happened to each key:
    "added", "replaced" or "kept". Raises EntryError for an entry that does not validate (nothing is written
    then) and CacheError for a cache that cannot be read or written. Bumps the cache generation."""
    path = Path(path) if path is not None else cache_path()
    new_entries = {key: _as_entry(key, entry) for key, entry in entries.items()}
    changes: dict[str, str] = {}
    try:
        with Locked(path):
            stored = read_file(path)
            refuse_read_only(path)
            clean_stale_temp_files(path.parent)
            if stored.version != SCHEMA_VERSION:
                migrate(stored)
            quarantined: dict[str, Any] = {}
            for key, entry in new_entries.items():
                old = None
                if key in stored.entries:
                    try:
                        old = CacheEntry.from_json(key, stored.entries[key])
                        old.trials = read_trials(key, path.parent)
                    except EntryError as exc:  # replaced by a valid one: the old one is set aside, not dropped
                        quarantined[key] = {"entry": stored.entries[key], "reason": str(exc)}
                merged = merge_entry(old, entry, prefer=prefer)
                changes[key] = "added" if old is None else ("kept" if _same_winner(merged, old) else "replaced")
                if merged.trials is not None and (old is None or merged.trials != old.trials):
                    write_trials(key, merged.trials, path.parent)
                stored.entries[key] = merged.to_json(with_trials=False)
            quarantined.update({f"damaged line {i}": {"line": line, "reason": "the line does not parse"}
                                for i, line in enumerate(stored.damaged_lines, 1)})
            if quarantined:
                quarantine(path.parent, quarantined)
            write_bytes(path, dump_store(stored))
    finally:
        invalidate()
    return changes


def read_entry(key: str, *, path: Path | None = None, trials: bool = True) -> CacheEntry | None:
    """The valid stored entry under `key` (with its trial history), None if absent or invalid. Raises
    CacheError if the file is unreadable (the tuner reports it; `conv2d` uses `lookup_config`)."""
    path = Path(path) if path is not None else cache_path()
    stored = read_file(path).entries
    if key not in stored:
        return None
    try:
        entry = CacheEntry.from_json(key, stored[key])
    except EntryError as exc:
        warn_once(str(path), f"skipping the invalid cache entry {key} in {path}: {exc}")
        return None
    if trials:
        entry.trials = read_trials(key, path.parent) if entry.trials is None else entry.trials
    return entry


def entries(*, path: Path | None = None) -> dict[str, CacheEntry]:
    """Every valid stored entry, without trial histories (invalid ones: `invalid_entries`). Raises CacheError
    on an unreadable file."""
    return read_file(Path(path) if path is not None else cache_path()).parsed()[0]


@dataclass
class ClearReport:
    winners: int  # entries removed from the cache file
    trial_files: int  # trial histories removed


def clear(path: Path | None = None) -> ClearReport:
    """Delete every winner and trial history (the studies are the search's: `search.journal`). Safe while tuners
    run: a tuner that finishes afterwards stores its winner in the new, empty cache. A corrupt cache file is
    backed up first; a read-only one is refused."""
    path = Path(path) if path is not None else cache_path()
    directory = path.parent
    try:
        with Locked(path):
            try:
                winners = len(read_file(path).entries)
            except CacheError:
                winners = 0  # read_file kept a backup copy
            refuse_read_only(path)
            clean_stale_temp_files(directory)
            trial_files = unlink_all((directory / TRIALS_DIR).glob("*.json"))
            unlink_all([path])
    except OSError as exc:
        raise CacheError(f"cannot clear the tuning cache in {directory}: {os_message(exc)}") from None
    finally:
        invalidate()
    return ClearReport(winners, trial_files)
