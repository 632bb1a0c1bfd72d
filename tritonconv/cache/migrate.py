"""Migrating an older file to the current schema version."""
from __future__ import annotations

import os

from .files import write_bytes
from .keys import SCHEMA_VERSION
from .store import StoredFile, dump_store
from .trials import read_trials, unite_trials, write_trials


def migrate(stored: StoredFile) -> None:
    """An older file -> the current version (call under the lock); the old file is kept as `<name>.v<N>`, and
    the hot file is rewritten with every entry, also those that do not validate or are stale.

    1 -> 2: trial histories move out of the hot file into their own files.
    2 -> 3: family versions by the current rule: an entry whose kernel is unchanged by the old rule was already
    re-stamped when the file was read (`StoredFile`, `versions.restamp`); an entry of a changed kernel is kept
    as it is (stale: never used, listed by `tritonconv cache list`), as is anything this version does not
    understand."""
    directory = stored.path.parent
    moved = False
    for key, raw in stored.entries.items():
        if isinstance(key, str) and isinstance(raw, dict) and isinstance(raw.get("trials"), list):
            existing = read_trials(key, directory)
            # Not synced one by one (20,000 fsyncs take minutes); one sync below, before the hot file changes.
            write_trials(key, unite_trials(existing, raw["trials"]), directory, durable=False)
            moved = True
    if moved:
        os.sync()
    stored.entries = {k: ({n: v for n, v in raw.items() if n != "trials"} if isinstance(raw, dict) else raw)
                      for k, raw in stored.entries.items()}
    backup = stored.path.with_name(f"{stored.path.name}.v{stored.version}")
    if stored.path.exists() and not backup.exists():
        try:
            os.link(stored.path, backup)
        except OSError:
            pass  # a filesystem without hard links: the entries and trials are all kept in the new files anyway
    stored.version = SCHEMA_VERSION
    write_bytes(stored.path, dump_store(stored))
