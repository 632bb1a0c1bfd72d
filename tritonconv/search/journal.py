"""Study journals: one Optuna JournalStorage file per study, repaired when opened, set aside when unusable.

Layout, in the cache directory:

    studies/<problem key>-<entry hash>.lock                  the problem's tuning lock (one tuner at a time)
    studies/<problem key>-<entry hash>-<study hash>.journal  one study (Optuna's journal format)

Damage stays in one file: a torn or garbage tail (a kill or a full disk mid-write) is cut back to the last
complete record when the journal is opened, the cut bytes kept beside it with one warning; a journal that
Optuna still cannot replay is moved aside and the study starts afresh (the cache's recorded trials answer what
it had measured). Journals are only opened, repaired or removed under the problem's tuning lock.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import optuna
from filelock import FileLock, Timeout
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

STUDIES_DIR = "studies"
LEGACY_JOURNAL_FILE = "studies.journal"  # before per-study journals: every problem in one file
JOURNAL_SUFFIX = ".journal"
OPTUNA_LOCK_SUFFIX = ".lock"  # JournalFileOpenLock's lock file: <journal>.lock


class JournalWarning(RuntimeWarning):
    """A study journal was damaged: repaired or set aside (the message says which and where the bytes went)."""


def studies_dir(cache_directory: Path) -> Path:
    return Path(cache_directory) / STUDIES_DIR


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def problem_stem(problem_key: str, entry_key: str) -> str:
    """File name stem of one problem's study files: readable problem key + hash of the full cache entry key."""
    return f"{problem_key}-{_digest(entry_key, 10)}"


def tuning_lock(cache_directory: Path, stem: str, timeout: float = -1) -> FileLock:
    """The problem's tuning lock: held by the one process tuning it, for the whole tuning."""
    directory = studies_dir(cache_directory)
    directory.mkdir(parents=True, exist_ok=True)
    return FileLock(str(directory / f"{stem}.lock"), timeout=timeout)


def journal_path(cache_directory: Path, stem: str, study_name: str) -> Path:
    return studies_dir(cache_directory) / f"{stem}-{_digest(study_name, 10)}{JOURNAL_SUFFIX}"


@dataclass
class Journal:
    """An opened study journal; `identity` tells whether the file was replaced or removed meanwhile."""

    path: Path
    storage: JournalStorage
    identity: Optional[tuple[int, int]] = field(default=None)

    def replaced(self) -> bool:
        """Whether the file at `path` is no longer the one opened (removed, or removed and recreated)."""
        return _identity(self.path) != self.identity


def _identity(path: Path) -> Optional[tuple[int, int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _storage(path: Path) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def _complete_prefix(path: Path) -> int:
    """Bytes of the leading run of complete records: newline-terminated JSON objects with an "op_code"."""
    good = 0
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            try:
                record = json.loads(line)
            except ValueError:  # JSONDecodeError and UnicodeDecodeError
                break
            if not isinstance(record, dict) or "op_code" not in record:
                break
            good += len(line)
    return good


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def _cut_damaged_tail(path: Path) -> None:
    size = path.stat().st_size
    good = _complete_prefix(path)
    if good == size:
        return
    backup = path.with_name(f"{path.name}.damaged-{_stamp()}-{os.getpid()}")
    with open(path, "rb") as f:
        f.seek(good)
        backup.write_bytes(f.read())
    os.truncate(path, good)
    warnings.warn(
        f"study journal {path}: its last {size - good} bytes were not a complete record (a write was cut off, or the "
        f"file was damaged); cut back to the last complete record, the removed bytes are in {backup}",
        JournalWarning, stacklevel=3,
    )


def _set_aside(path: Path, reason: str) -> None:
    aside = path.with_name(f"{path.name}.unusable-{_stamp()}-{os.getpid()}")
    os.replace(path, aside)
    warnings.warn(
        f"study journal {path} cannot be read ({reason}); moved to {aside}. The study starts again; candidates the "
        f"cache recorded for this problem are not re-measured", JournalWarning, stacklevel=3,
    )


def _check_replay(storage: JournalStorage) -> None:
    """Replay already ran in JournalStorage(); this also builds every trial, which damaged records can break."""
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(deepcopy=False)


def open_journal(path: Path) -> Journal:
    """Open (creating it if needed) the study journal at `path`, repairing a damaged tail and setting aside a
    journal Optuna cannot replay. Call only under the problem's tuning lock: nothing else writes it then, so a
    leftover Optuna lock file is a dead writer's and is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Path(str(path) + OPTUNA_LOCK_SUFFIX).unlink(missing_ok=True)
    if path.exists():
        _cut_damaged_tail(path)
        try:
            storage = _storage(path)
            _check_replay(storage)
            return Journal(path, storage, _identity(path))
        except Exception as exc:  # noqa: BLE001 - whatever Optuna's replay raises, the file is unusable
            _set_aside(path, f"{type(exc).__name__}: {str(exc)[:200]}")
    storage = _storage(path)
    return Journal(path, storage, _identity(path))


def discard(path: Path) -> None:
    """Remove a study journal (and its Optuna lock file): the study starts from nothing (resume=False)."""
    path.unlink(missing_ok=True)
    Path(str(path) + OPTUNA_LOCK_SUFFIX).unlink(missing_ok=True)


@dataclass
class RemovedStudies:
    removed: int  # journals deleted
    busy: list[Path]  # journals of problems being tuned right now: kept (their tuners finish normally)


def remove_studies(cache_directory: Path) -> RemovedStudies:
    """Delete every stored study whose problem is not being tuned (for `cache clear`); a running tuner's
    journal is kept, so no tuner loses its study under its feet."""
    directory = studies_dir(cache_directory)
    removed, busy = 0, []
    legacy = Path(cache_directory) / LEGACY_JOURNAL_FILE
    if legacy.exists():
        discard(legacy)
        removed += 1
    if not directory.is_dir():
        return RemovedStudies(removed, busy)
    for journal in sorted(directory.glob(f"*{JOURNAL_SUFFIX}")):
        stem = journal.name[: -len(JOURNAL_SUFFIX)].rsplit("-", 1)[0]
        try:
            with tuning_lock(cache_directory, stem, timeout=0):
                discard(journal)
                removed += 1
        except Timeout:
            busy.append(journal)
    return RemovedStudies(removed, busy)
