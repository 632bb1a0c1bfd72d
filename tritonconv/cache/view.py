"""The in-memory view used by the dispatcher (entries parsed and validated on first lookup), and the
generation counter in dispatch's memo key."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import CacheError, EntryError
from ..runtime import DeviceInfo
from .entry import CacheEntry
from .files import read_bytes, warn_once
from .keys import CACHE_DIR_ENV, cache_path
from .store import IndentedIndexed, LineIndexed, stored_from_bytes


@dataclass
class View:
    dir_setting: str | None  # TRITONCONV_CACHE_DIR when loaded (cheaper to compare than paths)
    path: Path
    raw: dict[str, Any] | LineIndexed | IndentedIndexed
    parsed: dict[str, CacheEntry | None] = field(default_factory=dict)  # validated on first lookup
    # per device fingerprint: its entries by bucket key, as (batch size, key); built on its first bucketed lookup
    by_bucket: dict[str, dict[str, list[tuple[int, str]]]] = field(default_factory=dict)


_view_cache: View | None = None
_generation = 0
_generation_dir: str | None = None


def generation() -> int:
    """A counter that changes whenever what `lookup_config` may answer changes in this process: an update, a
    clear, an import, or TRITONCONV_CACHE_DIR pointing elsewhere. The dispatcher keys its memo on it."""
    global _generation, _generation_dir
    setting = os.environ.get(CACHE_DIR_ENV)
    if setting != _generation_dir:
        _generation_dir = setting
        _generation += 1
    return _generation


def invalidate() -> None:
    """Forget the in-memory view (the next lookup re-reads the file) and bump the generation."""
    global _view_cache, _generation
    _view_cache = None
    _generation += 1


def load_view() -> View:
    global _view_cache
    setting = os.environ.get(CACHE_DIR_ENV)
    if _view_cache is not None and _view_cache.dir_setting == setting:
        return _view_cache
    path = cache_path()
    entries: dict[str, Any] | LineIndexed | IndentedIndexed = {}
    try:
        raw = read_bytes(path, what="tuning cache")
        if raw is not None:
            indexed = LineIndexed.parse(raw) or IndentedIndexed.parse(raw)
            if indexed is not None:
                entries, version = indexed, indexed.version
            else:  # another layout (edited by hand, written by another program): parsed whole
                stored = stored_from_bytes(path, raw, backup=True, what="tuning cache")
                entries, version = stored.entries, stored.version
            if version == 1:  # used as it is (a process reads only the entries it looks up)
                warn_once(f"version:{path}", f"the tuning cache {path} is in the version-1 format (trial histories "
                           f"inline, a big file to read); the next tune or `tritonconv cache check --fix` converts it")
    except CacheError as exc:
        warnings.warn(f"{exc} - using default configs until then", RuntimeWarning, stacklevel=4)
        entries = {}
    _view_cache = View(setting, path, entries)
    return _view_cache


def valid_entry(view: View, key: str, target: Optional[DeviceInfo] = None) -> CacheEntry | None:
    """The entry under `key` if it validates fully (record, config for its problem on `target`, the device its
    key names: None for this machine's; current kernel)."""
    if key in view.parsed:
        return view.parsed[key]
    entry = None
    if key in view.raw:
        try:
            entry = CacheEntry.from_json(key, view.raw[key])
            reason = entry.config_problem(target) if entry.is_current() else None
            if reason:
                raise EntryError(f"its config does not fit its problem: {reason}")
            if not entry.is_current():
                entry = None  # tuned on an older kernel source: silently unused
        except EntryError as exc:
            warn_once(str(view.path), f"skipping the invalid tuning cache entry {key} in {view.path}: {exc} (it stays "
                                       f"in the file; `tritonconv cache check` lists every such entry)")
            entry = None
    view.parsed[key] = entry
    return entry
