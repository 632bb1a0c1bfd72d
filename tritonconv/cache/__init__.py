"""The tuning cache: tuned winners per (device, Triton version, problem), read by the dispatcher, written by tuning.

Files in `cache_dir()`:

    tuning-cache.json        {"schema": "tritonconv-cache", "version": 3, "entries": {ENTRY_KEY: ENTRY, ...}}
    tuning-trials/<slug>.json  every trial's timing for one entry (so a re-tune re-times only unseen configs)
    tuning-cache.quarantine.json  entries set aside by `tritonconv cache check --fix` (never deleted)

ENTRY_KEY = "<device fingerprint>|triton-<version>|<problem key>". An ENTRY (a `CacheEntry`) holds the winning
config (with its "family" key), its time, the cuDNN time measured in the same run, the relative error, the
winning family's source hash (a config is only trusted for the kernel it was tuned on) and the search options.
The trial history lives out of the hot file, so a process's first `conv2d` parses only the winners, and an entry
is validated only when it is looked up. Older files are read as they are and migrated by the next write or
`tritonconv cache check --fix`, the old file kept beside as `tuning-cache.json.v<N>`: version 1 had the trials
inline; version 2 family versions by an older rule, so its entries whose kernel is unchanged are re-stamped
with today's version (`versions`), those of changed kernels kept in the file, unused (see `migrate`).

Robustness rules: writes are atomic (temp file + os.replace) under one file lock, re-read and merged, so
concurrent tuners never clobber each other; modes of existing files are kept; a read-only cache file is never
replaced. An entry that does not validate (unknown family, a config its family rejects, a key that names other
hardware than its fingerprint, fields of the wrong type) is skipped with one warning per file per process and
left on disk as it is; unknown extra fields are kept on rewrite. A corrupt file is copied aside once per
distinct content and never overwritten. Reading the cache never raises into `conv2d`.

The package, by job (each imports only those above it in this list; nothing here imports the dispatcher):

    keys      where the cache lives, the key of an entry, the schema constants
    versions  kernel family versions, now and by the rules of older schema versions (re-stamping)
    entry     CacheEntry, the typed record (to/from JSON, validated field by field)
    files     reading with limits, atomic writes keeping modes, backups, the lock, warn-once
    store     StoredFile (a parsed cache or export file), the one-entry-per-line hot file, the quarantine
    trials    the per-entry trial history files
    migrate   older schema versions -> the current one
    view      the in-memory view for the dispatcher and the generation counter
    buckets   batch bucketing (TRITONCONV_BATCH_BUCKETING)
    lookup    lookup_config / get_entry for the dispatcher (never raise)
    writes    update (merge under the lock), read_entry, entries, clear
    transfer  export / import
    check     `tritonconv cache check [--fix]`
"""
from __future__ import annotations

from ..errors import CacheError, EntryError
from .buckets import BATCH_BUCKETING_ENV, batch_bucketing_enabled
from .check import CheckReport, check
from .entry import CacheEntry, is_current
from .files import MAX_FILE_BYTES
from .keys import (
    CACHE_DIR_ENV, CACHE_FILE, CUDNN_FAMILY, QUARANTINE_FILE, READABLE_VERSIONS, SCHEMA, SCHEMA_VERSION, TRIALS_DIR,
    TRIALS_SCHEMA, cache_dir, cache_path, entry_key, fingerprint, problem_slug,
)
from .lookup import get_entry, lookup_config
from .store import StoredFile, read_file
from .transfer import ImportReport, export, import_file, iter_entries_for, validate_import
from .trials import read_trials, trials_path
from .versions import family_version
from .view import generation, invalidate
from .writes import ClearReport, clear, entries, merge_entry, read_entry, update


__all__ = [
    "BATCH_BUCKETING_ENV", "CACHE_DIR_ENV", "CACHE_FILE", "CUDNN_FAMILY", "MAX_FILE_BYTES", "QUARANTINE_FILE",
    "READABLE_VERSIONS", "SCHEMA", "SCHEMA_VERSION", "TRIALS_DIR", "TRIALS_SCHEMA",
    "CacheEntry", "CacheError", "CheckReport", "ClearReport", "EntryError", "ImportReport", "StoredFile",
    "batch_bucketing_enabled", "cache_dir", "cache_path", "check", "clear", "entries", "entry_key", "export",
    "family_version", "fingerprint", "generation", "get_entry", "import_file", "invalidate", "is_current",
    "iter_entries_for", "lookup_config", "merge_entry", "problem_slug", "read_entry", "read_file", "read_trials",
    "trials_path", "update", "validate_import",
]
