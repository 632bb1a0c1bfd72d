"""Trial histories: one file per entry, out of the hot file, united (never replaced) when re-tuned."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import CacheError
from .files import backup_copy, parse_json, read_bytes, warn_once, write_bytes
from .keys import TRIALS_DIR, TRIALS_SCHEMA, cache_dir, problem_slug


def trials_path(key: str, directory: Path | None = None) -> Path:
    return (Path(directory) if directory is not None else cache_dir()) / TRIALS_DIR / f"{problem_slug(key)}.json"


def read_trials(key: str, directory: Path | None = None) -> list[Any]:
    """The stored trial history of `key` ([] if none or unreadable: trials only save re-measuring)."""
    path = trials_path(key, directory)
    try:
        raw = read_bytes(path, what="trial history")
    except CacheError as exc:
        warn_once(str(path), f"{exc}; its trials will be re-measured")
        return []
    if raw is None:
        return []
    data, problem = parse_json(raw)
    if problem is None and not (isinstance(data, dict) and data.get("key") == key and isinstance(data.get("trials"), list)):
        problem = "it is not this entry's trial history"
    if problem:
        warn_once(str(path), f"ignoring the trial history {path}: {problem} (a copy was kept at {backup_copy(path, raw)})")
        return []
    return data["trials"]


def write_trials(key: str, trials: list[Any], directory: Path, *, durable: bool = True) -> None:
    payload = json.dumps({"schema": TRIALS_SCHEMA, "version": 1, "key": key, "trials": trials}, separators=(",", ":"))
    write_bytes(trials_path(key, directory), payload.encode(), durable=durable)


def _trial_id(trial: Any) -> str:
    if isinstance(trial, dict):
        return json.dumps([trial.get("family_version"), trial.get("config")], sort_keys=True, default=str)
    return json.dumps(trial, sort_keys=True, default=str)


def unite_trials(old: list[Any], new: list[Any]) -> list[Any]:
    united = {_trial_id(t): t for t in old}
    united.update({_trial_id(t): t for t in new})
    return list(united.values())
