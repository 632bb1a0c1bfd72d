"""Migrating an older file to the current schema version."""
from __future__ import annotations

import os

from .files import write_bytes
from .keys import SCHEMA_VERSION
from .store import StoredFile, dump_store
from .trials import read_trials, unite_trials, write_trials


def migrate(stored: StoredFile) -> None:
    """Version 1 -> 2 (call under the lock): trial histories move to their own files, the v1 file is kept as
    `<name>.v1`, and the hot file is rewritten with every entry (also those that do not validate)."""
    directory = stored.path.parent
    for key, raw in stored.entries.items():
        if isinstance(key, str) and isinstance(raw, dict) and isinstance(raw.get("trials"), list):
            existing = read_trials(key, directory)
            # Not synced one by one (20,000 fsyncs take minutes); one sync below, before the hot file changes.
            write_trials(key, unite_trials(existing, raw["trials"]), directory, durable=False)
    os.sync()
    stored.entries = {k: ({n: v for n, v in raw.items() if n != "trials"} if isinstance(raw, dict) else raw)
                      for k, raw in stored.entries.items()}
    backup = stored.path.with_name(stored.path.name + ".v1")
    if stored.path.exists() and not backup.exists():
        try:
            os.link(stored.path, backup)
        except OSError:
            pass  # a filesystem without hard links: the entries and trials are all kept in the new files anyway
    stored.version = SCHEMA_VERSION
    write_bytes(stored.path, dump_store(stored))
