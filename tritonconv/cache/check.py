"""Checking and repairing (`tritonconv cache check [--fix]`)."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CacheError, EntryError
from .entry import CacheEntry
from .files import Locked, clean_stale_temp_files, os_message, write_bytes
from .keys import CACHE_FILE, SCHEMA_VERSION, TRIALS_DIR, cache_path, fingerprint
from .migrate import migrate
from .store import dump_store, quarantine, read_file
from .view import invalidate


OLD_FORMATS = {1: "trial histories inline, slow to load", 2: "family versions by the older rule"}


@dataclass
class CheckReport:
    path: Path
    entries: int = 0
    problems: list[str] = field(default_factory=list)  # one line each
    fixed: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # keys of valid entries tuned on a kernel that changed since

    @property
    def ok(self) -> bool:
        return not self.problems or len(self.fixed) >= len(self.problems)


def check(*, fix: bool = False, path: Path | None = None) -> CheckReport:
    """List what is wrong with the cache: an unreadable file, invalid entries (with the reason), stale temp
    files, a v1 file. With `fix`: a corrupt file is moved aside, invalid entries go to the quarantine file
    (removed from the hot file, never deleted), temp files are removed and a v1 file is migrated."""
    path = Path(path) if path is not None else cache_path()
    report = CheckReport(path)
    here = None
    try:
        with Locked(path):
            temps = [p for pattern in (f"{CACHE_FILE}*.tmp", f"{TRIALS_DIR}/*.tmp") for p in path.parent.glob(pattern)]
            if temps:
                report.problems.append(f"{len(temps)} temp file(s) left by killed writers in {path.parent}")
                if fix:
                    clean_stale_temp_files(path.parent)
                    report.fixed.append(f"removed {len(temps)} temp file(s)")
            try:
                stored = read_file(path)
            except CacheError as exc:
                report.problems.append(str(exc).split(". Nothing was overwritten")[0])
                if fix and path.is_file():
                    aside = path.with_name(f"{path.name}.corrupt-{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}")
                    if aside.exists():
                        path.unlink()
                    else:
                        os.replace(path, aside)
                    report.fixed.append(f"moved the unreadable cache file to {aside}; a new cache starts empty")
                return report
            report.entries = len(stored.entries)
            if stored.version != SCHEMA_VERSION:
                old = stored.version
                report.problems.append(f"{path} is schema version {old} ({OLD_FORMATS.get(old, 'older')}); "
                                       f"the current version is {SCHEMA_VERSION}")
                if fix:
                    migrate(stored)
                    report.fixed.append(f"migrated {path} to version {SCHEMA_VERSION} (the old file is kept as "
                                        f"{path.name}.v{old})")
            here = fingerprint()
            bad: dict[str, Any] = {}
            for key, raw in stored.entries.items():
                try:
                    entry = CacheEntry.from_json(key, raw)
                    if not entry.is_current():
                        report.stale.append(key)
                    reason = entry.config_problem() if entry.fingerprint == here and entry.is_current() else None
                    if reason:
                        raise EntryError(f"its config does not fit its problem: {reason}")
                except EntryError as exc:
                    report.problems.append(f"entry {key}: {exc}")
                    bad[key] = {"entry": raw, "reason": str(exc)}
            if fix and bad:
                quarantined = quarantine(path.parent, bad)
                stored.entries = {k: v for k, v in stored.entries.items() if k not in bad}
                write_bytes(path, dump_store(stored))
                report.fixed.extend(f"moved entry {key} to {quarantined}" for key in bad)
    except OSError as exc:
        raise CacheError(f"cannot check the tuning cache {path}: {os_message(exc)}") from None
    finally:
        if fix:
            invalidate()
    return report
