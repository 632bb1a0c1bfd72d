"""Export to a portable file, import (entry by entry, hostile files rejected with the reason)."""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import triton

from ..errors import CacheError, EntryError
from .entry import CacheEntry
from .files import dump_json, write_bytes
from .keys import SCHEMA, SCHEMA_VERSION, cache_path, fingerprint
from .store import StoredFile, read_file
from .trials import read_trials
from .writes import entries, update


@dataclass
class ImportReport:
    added: list[str]
    replaced: list[str]
    kept: list[str]
    source_fingerprints: list[str]
    rejected: dict[str, str] = field(default_factory=dict)  # key -> why it was not imported
    warning: str | None = None


def export(destination: Path, *, select: Callable[[str, CacheEntry], bool] | None = None) -> int:
    """Write the cache's valid entries (optionally filtered), with their trial histories, to a portable file
    (mode 0644: it is meant to be shared) stamped with this machine's hardware fingerprint; returns how many."""
    path = cache_path()
    chosen = {k: v for k, v in entries(path=path).items() if select is None or select(k, v)}
    for key, entry in chosen.items():
        entry.trials = read_trials(key, path.parent)
    data = {
        "schema": SCHEMA, "version": SCHEMA_VERSION,
        "entries": {k: v.to_json(with_trials=True) for k, v in chosen.items()},
        "exported_from": fingerprint(), "triton": triton.__version__, "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    destination = Path(destination)
    if destination.is_dir():
        raise CacheError(f"cannot export to {destination}: it is a directory")
    write_bytes(destination, dump_json(data), mode=0o644)
    return len(chosen)


def validate_import(stored: StoredFile, here: str) -> tuple[dict[str, CacheEntry], dict[str, str]]:
    """(usable entries, {key: why rejected}). Every entry must validate as a record (so its key names the
    hardware its fingerprint names); one tuned on this machine must also fit its problem here."""
    accepted, rejected = {}, {}
    for key, raw in stored.entries.items():
        try:
            entry = CacheEntry.from_json(key, raw)
        except EntryError as exc:
            rejected[str(key)] = str(exc)
            continue
        if entry.fingerprint == here:
            reason = entry.config_problem()
            if reason:
                rejected[key] = f"its config does not fit its problem: {reason}"
                continue
        accepted[key] = entry
    return accepted, rejected


def import_file(source: Path) -> ImportReport:
    """Merge an exported file into the cache, keeping the faster entry on conflicts. Entries that do not
    validate are rejected one by one with the reason; the rest are imported. Warns (and says so in the report)
    when entries were tuned on different hardware: those are only ever used on hardware they name."""
    source = Path(source)
    stored = read_file(source, backup=False, what="file to import")
    here = fingerprint()
    accepted, rejected = validate_import(stored, here)
    changes = update(accepted, prefer="faster") if accepted else {}
    sources = sorted({e.fingerprint for e in accepted.values()}
                     | ({stored.header["exported_from"]} if isinstance(stored.header.get("exported_from"), str) else set()))
    warning = None
    foreign = [s for s in sources if s != here]
    if foreign:
        warning = (f"{source} was tuned on {', '.join(foreign)}, but this machine is {here}: those entries are kept "
                   f"but only used on matching hardware")
        warnings.warn(warning, UserWarning, stacklevel=2)
    by = lambda kind: sorted(k for k, v in changes.items() if v == kind)
    return ImportReport(by("added"), by("replaced"), by("kept"), sources, rejected, warning)


def iter_entries_for(device_fingerprint: str) -> Iterator[tuple[str, CacheEntry]]:
    for key, entry in entries().items():
        if entry.fingerprint == device_fingerprint:
            yield key, entry
