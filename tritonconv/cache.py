"""The tuning cache: tuned winners per (device, Triton version, problem), read by the dispatcher, written by tuning.

Files in `cache_dir()`:

    tuning-cache.json        {"schema": "tritonconv-cache", "version": 2, "entries": {ENTRY_KEY: ENTRY, ...}}
    tuning-trials/<slug>.json  every trial's timing for one entry (so a re-tune re-times only unseen configs)
    tuning-cache.quarantine.json  entries set aside by `tritonconv cache check --fix` (never deleted)

ENTRY_KEY = "<device fingerprint>|triton-<version>|<problem key>". An ENTRY (a `CacheEntry`) holds the winning
config (with its "family" key), its time, the cuDNN time measured in the same run, the relative error, the
winning family's source hash (a config is only trusted for the kernel it was tuned on) and the search options.
The trial history lives out of the hot file, so a process's first `conv2d` parses only the winners, and an entry
is validated only when it is looked up. Version-1 files (trials inline) are migrated on first use; the v1 file
is kept beside it as `tuning-cache.json.v1`.

Robustness rules: writes are atomic (temp file + os.replace) under one file lock, re-read and merged, so
concurrent tuners never clobber each other; modes of existing files are kept; a read-only cache file is never
replaced. An entry that does not validate (unknown family, a config its family rejects, a key that names other
hardware than its fingerprint, fields of the wrong type) is skipped with one warning per file per process and
left on disk as it is; unknown extra fields are kept on rewrite. A corrupt file is copied aside once per
distinct content and never overwritten. Reading the cache never raises into `conv2d`.
"""
from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import stat
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs
import torch
import triton
from filelock import FileLock, Timeout

from .config import resolve_config
from .errors import TritonConvError
from .kernels import FAMILIES
from .problem import ConvProblem
from .runtime import device_info

SCHEMA = "tritonconv-cache"
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
TRIALS_SCHEMA = "tritonconv-trials"
CACHE_FILE = "tuning-cache.json"
TRIALS_DIR = "tuning-trials"
QUARANTINE_FILE = "tuning-cache.quarantine.json"
CUDNN_FAMILY = "cudnn"
# Limits on what is read: a bigger file is refused with a clear error instead of exhausting memory.
MAX_FILE_BYTES = 1 << 30
# Set to "1" to let a new batch size reuse the entry tuned for the nearest batch size (launched with its exact shape).
BATCH_BUCKETING_ENV = "TRITONCONV_BATCH_BUCKETING"
CACHE_DIR_ENV = "TRITONCONV_CACHE_DIR"


class CacheError(TritonConvError):
    """The cache file is unreadable, belongs to another program/schema version, or cannot be written."""


class EntryError(CacheError):
    """One cache entry does not validate (the reason is the message)."""


# ------------------------------------------------------------------------------------------------------------
# Where and under which key
# ------------------------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """TRITONCONV_CACHE_DIR if set, else the platform's user cache directory for tritonconv."""
    override = os.environ.get(CACHE_DIR_ENV)
    return Path(override) if override else Path(platformdirs.user_cache_dir("tritonconv"))


def cache_path() -> Path:
    return cache_dir() / CACHE_FILE


def fingerprint(device: torch.device | str | None = None) -> str:
    """Device name, compute capability and SM count of `device` (the interpreter has its own)."""
    return device_info(device).fingerprint


def entry_key(problem: ConvProblem, device_fingerprint: str, triton_version: str = triton.__version__) -> str:
    return f"{device_fingerprint}|triton-{triton_version}|{problem.key}"


def problem_slug(key: str) -> str:
    """A short file-name-safe name for one entry key (its trial history file is named by it)."""
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def _bucket_key(problem: ConvProblem, device_fingerprint: str) -> str:
    """The entry key with the batch size left out (batch bucketing groups entries by it)."""
    return entry_key(problem.with_(n=1), device_fingerprint)


def batch_bucketing_enabled() -> bool:
    return os.environ.get(BATCH_BUCKETING_ENV, "0") not in ("", "0")


# ------------------------------------------------------------------------------------------------------------
# The entry record
# ------------------------------------------------------------------------------------------------------------
_PROBLEM_FIELDS = {f.name: f.type for f in fields(ConvProblem)}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _problem_from_json(data: Any) -> ConvProblem:
    if not isinstance(data, dict):
        raise EntryError(f"its problem is a {type(data).__name__}, not a mapping")
    unknown = sorted(set(data) - set(_PROBLEM_FIELDS))
    if unknown:
        raise EntryError(f"its problem has unknown field(s) {unknown} (written by a newer tritonconv?)")
    for name, value in data.items():
        kind = _PROBLEM_FIELDS[name]
        ok = isinstance(value, bool) if kind == "bool" else _is_int(value) if kind == "int" else isinstance(value, str)
        if not ok:
            raise EntryError(f"its problem field {name}={value!r} is not a {kind}")
    try:
        problem = ConvProblem.from_dict(data)
        problem.key  # noqa: B018 - derived sizes must compute
    except Exception as exc:  # noqa: BLE001 - whatever a bad problem raises, the entry is unusable
        raise EntryError(f"its problem is invalid ({type(exc).__name__}: {exc})") from None
    if min(problem.n, problem.c, problem.h, problem.w, problem.k, problem.r, problem.s, problem.groups,
           problem.stride_h, problem.stride_w, problem.dilation_h, problem.dilation_w, problem.p, problem.q) < 1:
        raise EntryError("its problem has a size, stride, dilation or group count below 1")
    return problem


@dataclass
class CacheEntry:
    """One tuned winner. `trials` is None when the trial history was not loaded (it lives in its own file)."""

    problem: ConvProblem
    fingerprint: str
    family: str
    family_version: str
    config: dict[str, Any]  # the winning config, with its "family" key
    time_ms: float
    cudnn_time_ms: float | None = None
    cudnn_error: str | None = None
    rel_error: float | None = None
    precision: str = ""
    triton: str = triton.__version__
    trials_run: int | None = None
    budget: int | None = None  # the trial budget it was tuned with
    exhausted: bool | None = None  # every feasible candidate was measured
    wall_time_s: float | None = None
    timestamp: str = ""
    search: dict[str, Any] | None = None
    timer: str | None = None
    trials: list[Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # fields this version does not know, kept on rewrite

    @property
    def key(self) -> str:
        return entry_key(self.problem, self.fingerprint, self.triton)

    def to_json(self, *, with_trials: bool = True) -> dict[str, Any]:
        data = dict(self.extra)
        for f in fields(self):
            if f.name in ("extra", "trials"):
                continue
            value = getattr(self, f.name)
            data[f.name] = value.to_dict() if isinstance(value, ConvProblem) else value
        if with_trials and self.trials is not None:
            data["trials"] = self.trials
        return data

    @classmethod
    def from_json(cls, key: str, data: Any) -> CacheEntry:
        """The entry stored under `key`; raises EntryError naming what is wrong. Checks types and that the key,
        the fingerprint and the problem agree; `config_problem` checks the config against its family's space."""
        if not isinstance(data, dict):
            raise EntryError(f"it is a {type(data).__name__}, not a mapping")
        if not isinstance(key, str):
            raise EntryError("its key is not a string")
        for name in ("family", "family_version", "fingerprint"):
            if not isinstance(data.get(name), str) or not data[name]:
                raise EntryError(f"its {name!r} is missing or not a string")
        if data["family"] not in FAMILIES:
            raise EntryError(f"its family {data['family']!r} is not a known kernel family (written by a newer tritonconv?)")
        problem = _problem_from_json(data.get("problem"))
        config = data.get("config")
        if not isinstance(config, dict):
            raise EntryError("its 'config' is missing or not a mapping")
        for name, value in config.items():
            if not isinstance(value, (bool, int, str)) or (isinstance(value, float)):
                raise EntryError(f"its config value {name}={value!r} is not an int, bool or string")
        if config.get("family") != data["family"]:
            raise EntryError(f"its config's family {config.get('family')!r} is not its family {data['family']!r}")
        if not _is_number(data.get("time_ms")) or data["time_ms"] <= 0:
            raise EntryError(f"its time_ms {data.get('time_ms')!r} is not a positive number")
        for name in ("cudnn_time_ms", "rel_error", "wall_time_s"):
            if data.get(name) is not None and (not _is_number(data[name]) or data[name] < 0):
                raise EntryError(f"its {name} {data[name]!r} is not a non-negative number")
        for name in ("cudnn_error", "precision", "triton", "timestamp", "timer"):
            if data.get(name) is not None and not isinstance(data[name], str):
                raise EntryError(f"its {name} {data[name]!r} is not a string")
        for name in ("trials_run", "budget"):
            if data.get(name) is not None and not _is_int(data[name]):
                raise EntryError(f"its {name} {data[name]!r} is not an integer")
        if data.get("exhausted") is not None and not isinstance(data["exhausted"], bool):
            raise EntryError(f"its exhausted {data['exhausted']!r} is not true or false")
        if data.get("search") is not None and not isinstance(data["search"], dict):
            raise EntryError("its 'search' is not a mapping")
        if data.get("trials") is not None and not isinstance(data["trials"], list):
            raise EntryError("its 'trials' is not a list")
        known = {f.name for f in fields(cls)} - {"extra"}
        entry = cls(
            problem=problem, config=dict(config), extra={k: v for k, v in data.items() if k not in known},
            **{k: data[k] for k in known - {"problem", "config"} if data.get(k) is not None},
        )
        expected = entry_key(problem, entry.fingerprint, entry.triton)
        if key != expected:
            device = key.split("|triton-")[0]
            if device != entry.fingerprint:
                raise EntryError(f"its key names the device {device!r} but its fingerprint says {entry.fingerprint!r}")
            raise EntryError(f"its key is not the key of its problem and Triton version ({expected})")
        return entry

    def config_problem(self) -> str | None:
        """Why this entry's config cannot run its problem on this machine (unknown family, a parameter or value
        outside the family's space, a broken constraint), or None if it resolves."""
        if self.family == CUDNN_FAMILY:
            return "its winner family is 'cudnn' (a Triton family is expected)"
        try:
            resolve_config(self.problem, self.config)
        except Exception as exc:  # noqa: BLE001 - any failure means: unusable, fall back
            return str(exc)
        return None

    def is_current(self) -> bool:
        """Whether the winning family still exists with the source it was tuned on."""
        version = family_version(self.family)
        return version is not None and version == self.family_version

    def usable_trials(self) -> list[dict[str, Any]]:
        """The trial records a search can reuse (well-formed ones; others stay on disk untouched)."""
        return [t for t in self.trials or [] if isinstance(t, dict) and isinstance(t.get("config"), dict)]


def family_version(name: str) -> str | None:
    """A family's source hash (computed once per process by the family)."""
    family = FAMILIES.get(name)
    return family.version if family is not None else None


def is_current(entry: CacheEntry) -> bool:
    return entry.is_current()


# ------------------------------------------------------------------------------------------------------------
# Files: reading with limits, atomic writes that keep modes, backups of corrupt files
# ------------------------------------------------------------------------------------------------------------
def _os_message(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied (read-only?)"
    return exc.strerror or type(exc).__name__


def _mkdir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"cannot create the cache directory {directory}: {_os_message(exc)}") from None


def _read_bytes(path: Path, *, what: str) -> bytes | None:
    """The file's bytes, None if it does not exist; CacheError (one line) for a directory, a file over the
    size limit or an OS error."""
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise CacheError(f"cannot read the {what} {path}: {_os_message(exc)}") from None
    if stat.S_ISDIR(info.st_mode):
        raise CacheError(f"cannot read the {what} {path}: it is a directory, not a file")
    if info.st_size > MAX_FILE_BYTES:
        raise CacheError(f"cannot read the {what} {path}: it is {info.st_size / 2**20:.0f} MiB, over the limit of "
                         f"{MAX_FILE_BYTES / 2**20:.0f} MiB")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CacheError(f"cannot read the {what} {path}: {_os_message(exc)}") from None


def _parse_json(raw: bytes) -> tuple[Any, str | None]:
    """(parsed value, None) or (None, why it is not JSON). Deep nesting is refused, never a RecursionError."""
    try:
        return json.loads(raw), None  # bytes: no decoded copy of a big file
    except RecursionError:
        return None, "it is nested too deeply"
    except UnicodeDecodeError:
        return None, "it is not UTF-8 text"
    except ValueError as exc:
        return None, f"it is not valid JSON ({exc})"


def _backup(path: Path, raw: bytes) -> Path:
    """One backup copy per distinct corrupt content (named by its hash), however many processes read it."""
    backup = path.with_name(f"{path.name}.corrupt-{hashlib.sha256(raw).hexdigest()[:12]}")
    if not backup.exists():
        try:
            _write_bytes(backup, raw)
        except CacheError:
            pass  # the original is never touched, so a failed backup loses nothing
    return backup


def _write_bytes(path: Path, payload: bytes, *, mode: int | None = None, durable: bool = True) -> None:
    """Atomically replace `path` (temp file in the same directory + fsync + os.replace). The new file keeps the
    mode of the file it replaces (a fresh one gets `mode`, else the umask's default); a file without write
    permission is not replaced."""
    _mkdir(path.parent)
    try:
        existing = os.stat(path).st_mode
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise CacheError(f"cannot write {path}: {_os_message(exc)}") from None
    if existing is not None and stat.S_ISDIR(existing):
        raise CacheError(f"cannot write {path}: it is a directory")
    _refuse_read_only(path, existing)
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            if existing is not None or mode is not None:
                os.fchmod(fd, stat.S_IMODE(existing) if existing is not None else mode)
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise CacheError(f"cannot write {path}: {_os_message(exc)}") from None
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


_ENTRIES_OPEN = ', "entries": {'
_ENTRY_LINE = re.compile(rb'^("(?:[^"\\\n]|\\.)*"): ', re.MULTILINE)


def _dump_store(stored: StoredFile) -> bytes:
    """The hot file, one entry per line (still plain JSON), so a reader can find one entry without parsing all:
    a first line with the schema, version and other header fields, then `"KEY": ENTRY,` lines, then `}}`."""
    head = json.dumps({**stored.header, "schema": SCHEMA, "version": SCHEMA_VERSION}, sort_keys=True)[:-1]
    lines = [json.dumps(key) + ": " + json.dumps(value, sort_keys=True) for key, value in sorted(stored.entries.items())]
    return (head + _ENTRIES_OPEN + "\n" + ",\n".join(lines) + "\n}}\n").encode()


class _LineIndexed:
    """The raw entries of a hot file written by `_dump_store`, found and parsed one at a time: a lookup is one
    substring search of the bytes (`"KEY": ` at a line start), never a parse of the whole file."""

    def __init__(self, raw: bytes):
        self.raw = raw

    @staticmethod
    def parse(raw: bytes) -> _LineIndexed | None:
        """The view of a canonical hot file, None if `raw` is not in that layout (then it is parsed whole)."""
        first = raw[: raw.find(b"\n") + 1]
        if not first.endswith((_ENTRIES_OPEN + "\n").encode()) or not raw.endswith(b"\n}}\n"):
            return None
        try:
            header = json.loads(first[: -len(_ENTRIES_OPEN) - 1] + b"}")
        except ValueError:
            return None
        if not isinstance(header, dict) or header.get("schema") != SCHEMA or header.get("version") != SCHEMA_VERSION:
            return None
        return _LineIndexed(raw)

    def _start(self, key: object) -> int:
        if not isinstance(key, str):
            return -1
        marker = b"\n" + json.dumps(key).encode() + b": "
        at = self.raw.find(marker)
        return -1 if at < 0 else at + len(marker)

    def __contains__(self, key: object) -> bool:
        return self._start(key) >= 0

    def __getitem__(self, key: str) -> Any:
        start = self._start(key)
        if start < 0:
            raise KeyError(key)
        end = self.raw.find(b"\n", start)
        value, problem = _parse_json(self.raw[start:end].rstrip(b","))
        if problem:
            raise EntryError(f"its line in the file is damaged ({problem})")
        return value

    def keys(self) -> list[str]:
        """Every key (a scan of all lines: only batch bucketing needs it)."""
        found = []
        for match in _ENTRY_LINE.finditer(self.raw):
            try:
                found.append(json.loads(match.group(1)))
            except ValueError:
                continue
        return found


def _refuse_read_only(path: Path, mode: int | None = None) -> None:
    """A file its owner made read-only is never replaced (checked by mode: root may write anything)."""
    if mode is None:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return
    if not mode & stat.S_IWUSR:
        raise CacheError(f"cannot write {path}: the file is read-only (mode {stat.S_IMODE(mode):o}); it was "
                         f"left as it is: make it writable or set {CACHE_DIR_ENV} to another directory")


def _dump(data: Any) -> bytes:
    return json.dumps(data, indent=1, sort_keys=True).encode()


def _lock(path: Path) -> FileLock:
    _mkdir(path.parent)
    return FileLock(str(path) + ".lock", timeout=120)


class _Locked:
    """The cache's file lock as a context manager that turns lock failures into one-line CacheErrors."""

    def __init__(self, path: Path, timeout: float = 120):
        self.lock = _lock(path)
        self.lock.timeout = timeout
        self.path = path

    def __enter__(self) -> None:
        try:
            self.lock.acquire()
        except Timeout:
            raise CacheError(f"timed out waiting for the cache lock {self.lock.lock_file}") from None
        except OSError as exc:
            raise CacheError(f"cannot lock the tuning cache {self.path}: {_os_message(exc)}") from None

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def _clean_stale_temp_files(directory: Path) -> int:
    """Temp files of killed writers (call under the cache lock: no live writer has one then)."""
    removed = 0
    for pattern in (f"{CACHE_FILE}*.tmp", f"{QUARANTINE_FILE}*.tmp", f"{TRIALS_DIR}/*.tmp"):
        for tmp in directory.glob(pattern):
            try:
                tmp.unlink()
                removed += 1
            except OSError:
                pass
    return removed


# ------------------------------------------------------------------------------------------------------------
# The stored file: raw entries (validated when used), unknown top-level fields kept
# ------------------------------------------------------------------------------------------------------------
@dataclass
class StoredFile:
    """A parsed cache or export file: its raw entries by key, exactly as on disk."""

    path: Path
    version: int
    entries: dict[str, Any]
    header: dict[str, Any] = field(default_factory=dict)  # every other top-level field, kept on rewrite
    damaged_lines: list[str] = field(default_factory=list)  # lines of a one-entry-per-line file that do not parse

    def parsed(self) -> tuple[dict[str, CacheEntry], dict[str, str]]:
        """(valid entries, {key: why invalid}) - full structural validation of every entry."""
        valid, invalid = {}, {}
        for key, raw in self.entries.items():
            try:
                valid[key] = CacheEntry.from_json(key, raw)
            except EntryError as exc:
                invalid[key] = str(exc)
        return valid, invalid

    def to_json(self) -> dict[str, Any]:
        return {**self.header, "schema": SCHEMA, "version": SCHEMA_VERSION, "entries": self.entries}


def _file_problem(data: Any) -> str | None:
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return "it is not a tritonconv cache file"
    if data.get("version") not in READABLE_VERSIONS:
        newer = _is_int(data.get("version")) and data["version"] > SCHEMA_VERSION
        return (f"its schema version {data.get('version')!r} is "
                + ("newer than this tritonconv reads (upgrade tritonconv)" if newer else f"not one of {list(READABLE_VERSIONS)}"))
    if not isinstance(data.get("entries"), dict):
        return "it has no 'entries' mapping"
    return None


def read_file(path: Path, *, backup: bool = True, what: str = "tuning cache") -> StoredFile:
    """The cache (or export) file at `path`, empty if missing. Raises CacheError (one line; after keeping one
    backup copy of a corrupt cache) if it is not a readable tritonconv cache."""
    path = Path(path)
    raw = _read_bytes(path, what=what)
    if raw is None:
        return StoredFile(path, SCHEMA_VERSION, {})
    return _stored_from_bytes(path, raw, backup=backup, what=what)


def _recover_lines(path: Path, raw: bytes) -> StoredFile | None:
    """A hot file (`_dump_store`'s layout) whose whole does not parse, entry line by entry line: the lines that
    parse, and the damaged ones kept aside as text. None if even its header line is not ours."""
    lines = raw.decode("utf-8", errors="replace").split("\n")
    head = lines[0]
    if not head.endswith(_ENTRIES_OPEN):
        return None
    header, problem = _parse_json((head[: -len(_ENTRIES_OPEN)] + "}").encode())
    if problem or not isinstance(header, dict) or _file_problem({**header, "entries": {}}):
        return None
    entries: dict[str, Any] = {}
    damaged: list[str] = []
    for line in lines[1:]:
        if not line.strip() or line == "}}":
            continue
        value, problem = _parse_json(("{" + line.rstrip(",") + "}").encode())
        if problem or not isinstance(value, dict) or len(value) != 1:
            damaged.append(line)
        else:
            entries.update(value)
    rest = {k: v for k, v in header.items() if k not in ("schema", "version")}
    return StoredFile(path, header["version"], entries, rest, damaged)


def _stored_from_bytes(path: Path, raw: bytes, *, backup: bool, what: str) -> StoredFile:
    data, problem = _parse_json(raw)
    problem = problem or _file_problem(data)
    if problem is None:
        header = {k: v for k, v in data.items() if k not in ("schema", "version", "entries")}
        return StoredFile(path, data["version"], data["entries"], header)
    recovered = _recover_lines(path, raw) if backup else None
    if recovered is not None:  # damage inside some entry lines: the rest of the cache stays in use
        warnings.warn(
            f"tritonconv: {len(recovered.damaged_lines)} damaged line(s) in the {what} {path} ({problem}); the other "
            f"entries are used, a copy of the file was kept at {_backup(path, raw)}, and the next write moves the "
            f"damaged lines to {QUARANTINE_FILE}", RuntimeWarning, stacklevel=3)
        return recovered
    if not backup:
        raise CacheError(f"cannot use the {what} {path}: {problem}")
    raise CacheError(
        f"cannot use the {what} {path}: {problem}; a copy was kept at {_backup(path, raw)}. Nothing was "
        f"overwritten: move the file away, or run `tritonconv cache check --fix` to set it aside"
    )


# ---- trial history files ----------------------------------------------------------------------------------
def trials_path(key: str, directory: Path | None = None) -> Path:
    return (Path(directory) if directory is not None else cache_dir()) / TRIALS_DIR / f"{problem_slug(key)}.json"


def read_trials(key: str, directory: Path | None = None) -> list[Any]:
    """The stored trial history of `key` ([] if none or unreadable: trials only save re-measuring)."""
    path = trials_path(key, directory)
    try:
        raw = _read_bytes(path, what="trial history")
    except CacheError as exc:
        _warn_once(str(path), f"{exc}; its trials will be re-measured")
        return []
    if raw is None:
        return []
    data, problem = _parse_json(raw)
    if problem is None and not (isinstance(data, dict) and data.get("key") == key and isinstance(data.get("trials"), list)):
        problem = "it is not this entry's trial history"
    if problem:
        _warn_once(str(path), f"ignoring the trial history {path}: {problem} (a copy was kept at {_backup(path, raw)})")
        return []
    return data["trials"]


def _write_trials(key: str, trials: list[Any], directory: Path, *, durable: bool = True) -> None:
    payload = json.dumps({"schema": TRIALS_SCHEMA, "version": 1, "key": key, "trials": trials}, separators=(",", ":"))
    _write_bytes(trials_path(key, directory), payload.encode(), durable=durable)


def _migrate(stored: StoredFile) -> None:
    """Version 1 -> 2 (call under the lock): trial histories move to their own files, the v1 file is kept as
    `<name>.v1`, and the hot file is rewritten with every entry (also those that do not validate)."""
    directory = stored.path.parent
    for key, raw in stored.entries.items():
        if isinstance(key, str) and isinstance(raw, dict) and isinstance(raw.get("trials"), list):
            existing = read_trials(key, directory)
            # Not synced one by one (20,000 fsyncs take minutes); one sync below, before the hot file changes.
            _write_trials(key, _unite_trials(existing, raw["trials"]), directory, durable=False)
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
    _write_bytes(stored.path, _dump_store(stored))


# ------------------------------------------------------------------------------------------------------------
# Merging and writing
# ------------------------------------------------------------------------------------------------------------
def _trial_id(trial: Any) -> str:
    if isinstance(trial, dict):
        return json.dumps([trial.get("family_version"), trial.get("config")], sort_keys=True, default=str)
    return json.dumps(trial, sort_keys=True, default=str)


def _unite_trials(old: list[Any], new: list[Any]) -> list[Any]:
    united = {_trial_id(t): t for t in old}
    united.update({_trial_id(t): t for t in new})
    return list(united.values())


def merge_entry(old: CacheEntry | None, new: CacheEntry, *, prefer: str = "new") -> CacheEntry:
    """One entry from two measurements of the same key. `prefer="new"`: the newer tuning wins (it saw the old
    trials); `prefer="faster"`: the faster winner wins (import). Trial timings are united either way."""
    if old is None:
        return new
    keep = new if prefer != "faster" or new.time_ms < old.time_ms else old
    trials = _unite_trials(old.trials or [], new.trials or [])
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
        with _Locked(path):
            stored = read_file(path)
            _refuse_read_only(path)
            _clean_stale_temp_files(path.parent)
            if stored.version != SCHEMA_VERSION:
                _migrate(stored)
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
                    _write_trials(key, merged.trials, path.parent)
                stored.entries[key] = merged.to_json(with_trials=False)
            quarantined.update({f"damaged line {i}": {"line": line, "reason": "the line does not parse"}
                                for i, line in enumerate(stored.damaged_lines, 1)})
            if quarantined:
                _quarantine(path.parent, quarantined)
            _write_bytes(path, _dump_store(stored))
    finally:
        invalidate()
    return changes


def _quarantine(directory: Path, entries: dict[str, Any]) -> Path:
    """Add entries (with why) to the quarantine file, which is only ever added to."""
    path = directory / QUARANTINE_FILE
    try:
        existing = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError, RecursionError):
        existing = {}
    if not isinstance(existing, dict):
        existing = {}
    stamp = time.strftime("%Y%m%dT%H%M%S")
    existing.update({f"{stamp}|{key}": value for key, value in entries.items()})
    _write_bytes(path, _dump(existing))
    return path


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
        _warn_once(str(path), f"skipping the invalid cache entry {key} in {path}: {exc}")
        return None
    if trials:
        entry.trials = read_trials(key, path.parent) if entry.trials is None else entry.trials
    return entry


def entries(*, path: Path | None = None) -> dict[str, CacheEntry]:
    """Every valid stored entry, without trial histories (invalid ones: `invalid_entries`). Raises CacheError
    on an unreadable file."""
    return read_file(Path(path) if path is not None else cache_path()).parsed()[0]


# ------------------------------------------------------------------------------------------------------------
# Clearing, with running tuners
# ------------------------------------------------------------------------------------------------------------
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
        with _Locked(path):
            try:
                winners = len(read_file(path).entries)
            except CacheError:
                winners = 0  # read_file kept a backup copy
            _refuse_read_only(path)
            _clean_stale_temp_files(directory)
            trial_files = _unlink_all((directory / TRIALS_DIR).glob("*.json"))
            _unlink_all([path])
    except OSError as exc:
        raise CacheError(f"cannot clear the tuning cache in {directory}: {_os_message(exc)}") from None
    finally:
        invalidate()
    return ClearReport(winners, trial_files)


def _unlink_all(paths: Any) -> int:
    removed = 0
    for p in paths:
        try:
            if p.is_file() or p.is_symlink():
                p.unlink()
                removed += 1
        except FileNotFoundError:
            pass
    return removed


# ------------------------------------------------------------------------------------------------------------
# The in-memory view used by the dispatcher, and the generation counter in dispatch's memo key
# ------------------------------------------------------------------------------------------------------------
@dataclass
class _View:
    dir_setting: str | None  # TRITONCONV_CACHE_DIR when loaded (cheaper to compare than paths)
    path: Path
    raw: dict[str, Any] | _LineIndexed
    parsed: dict[str, CacheEntry | None] = field(default_factory=dict)  # validated on first lookup
    by_bucket: dict[str, list[tuple[int, str]]] | None = None  # built on first bucketed lookup


_view_cache: _View | None = None
_generation = 0
_generation_dir: str | None = None
_warned: set[str] = set()  # files already warned about in this process


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


def _warn_once(file_key: str, message: str) -> None:
    if file_key not in _warned:
        _warned.add(file_key)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def _load_view() -> _View:
    global _view_cache
    setting = os.environ.get(CACHE_DIR_ENV)
    if _view_cache is not None and _view_cache.dir_setting == setting:
        return _view_cache
    path = cache_path()
    entries: dict[str, Any] | _LineIndexed = {}
    try:
        raw = _read_bytes(path, what="tuning cache")
        if raw is not None:
            indexed = _LineIndexed.parse(raw)
            if indexed is not None:
                entries = indexed
            else:  # another layout (an older version's, or edited by hand): parsed whole
                stored = _stored_from_bytes(path, raw, backup=True, what="tuning cache")
                entries = stored.entries
                if stored.version != SCHEMA_VERSION:  # used as it is (stripping the trials would copy it all)
                    _warn_once(f"version:{path}", f"the tuning cache {path} is in the version-{stored.version} format "
                               f"(trial histories inline, slow to load); the next tune or `tritonconv cache check "
                               f"--fix` converts it")
    except CacheError as exc:
        warnings.warn(f"{exc} - using default configs until then", RuntimeWarning, stacklevel=4)
        entries = {}
    _view_cache = _View(setting, path, entries)
    return _view_cache


def _valid_entry(view: _View, key: str) -> CacheEntry | None:
    """The entry under `key` if it validates fully (record, config for its problem, current kernel)."""
    if key in view.parsed:
        return view.parsed[key]
    entry = None
    if key in view.raw:
        try:
            entry = CacheEntry.from_json(key, view.raw[key])
            reason = entry.config_problem() if entry.is_current() else None
            if reason:
                raise EntryError(f"its config does not fit its problem: {reason}")
            if not entry.is_current():
                entry = None  # tuned on an older kernel source: silently unused
        except EntryError as exc:
            _warn_once(str(view.path), f"skipping the invalid tuning cache entry {key} in {view.path}: {exc} (it stays "
                                       f"in the file; `tritonconv cache check` lists every such entry)")
            entry = None
    view.parsed[key] = entry
    return entry


def get_entry(problem: ConvProblem, device: torch.device | str | None = None) -> CacheEntry | None:
    """The stored entry for exactly `problem` on `device`, if valid and tuned on the current kernel source."""
    try:
        return _valid_entry(_load_view(), entry_key(problem, fingerprint(device)))
    except Exception as exc:  # noqa: BLE001 - the cache never breaks a conv2d call
        _warn_once("lookup", f"tuning cache lookup failed ({type(exc).__name__}: {exc}); using default configs")
        return None


def _nearest_batch(view: _View, problem: ConvProblem, device_fingerprint: str) -> CacheEntry | None:
    if view.by_bucket is None:
        view.by_bucket = {}
        for key in list(view.raw.keys()):  # index only this device's entries
            if isinstance(key, str) and key.startswith(device_fingerprint + "|"):
                try:
                    other = CacheEntry.from_json(key, view.raw[key])
                except EntryError:
                    continue
                view.by_bucket.setdefault(_bucket_key(other.problem, other.fingerprint), []).append((other.problem.n, key))
    candidates = view.by_bucket.get(_bucket_key(problem, device_fingerprint), [])
    for _, key in sorted(candidates, key=lambda c: abs(math.log2(c[0]) - math.log2(problem.n))):
        entry = _valid_entry(view, key)
        if entry is not None and entry.fingerprint == device_fingerprint:
            moved = CacheEntry(**{**{f.name: getattr(entry, f.name) for f in fields(entry)}, "problem": problem})
            if moved.config_problem() is None:
                return entry
    return None


def lookup_config(problem: ConvProblem, device: torch.device, backend: str = "auto") -> dict[str, Any] | None:
    """The tuned config (with its "family" key) for `problem` on `device`, or None. With backend="auto" the
    family may be "cudnn" where cuDNN measured faster; with "triton" it is always the best Triton kernel.
    Never raises: whatever is wrong with the cache, the answer is None (the default config) and a warning."""
    try:
        view = _load_view()
        device_fp = fingerprint(device)
        entry = _valid_entry(view, entry_key(problem, device_fp))
        if entry is None and batch_bucketing_enabled():
            entry = _nearest_batch(view, problem, device_fp)
        if entry is None or entry.fingerprint != device_fp:
            return None
        if backend == "auto" and entry.cudnn_time_ms is not None and entry.cudnn_time_ms < entry.time_ms:
            return {"family": CUDNN_FAMILY}
        return dict(entry.config)
    except Exception as exc:  # noqa: BLE001 - the cache never breaks a conv2d call
        _warn_once("lookup", f"tuning cache lookup failed ({type(exc).__name__}: {exc}); using default configs")
        return None


# ------------------------------------------------------------------------------------------------------------
# Export / import
# ------------------------------------------------------------------------------------------------------------
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
    _write_bytes(destination, _dump(data), mode=0o644)
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


# ------------------------------------------------------------------------------------------------------------
# Checking and repairing (`tritonconv cache check [--fix]`)
# ------------------------------------------------------------------------------------------------------------
@dataclass
class CheckReport:
    path: Path
    entries: int = 0
    problems: list[str] = field(default_factory=list)  # one line each
    fixed: list[str] = field(default_factory=list)

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
        with _Locked(path):
            temps = [p for pattern in (f"{CACHE_FILE}*.tmp", f"{TRIALS_DIR}/*.tmp") for p in path.parent.glob(pattern)]
            if temps:
                report.problems.append(f"{len(temps)} temp file(s) left by killed writers in {path.parent}")
                if fix:
                    _clean_stale_temp_files(path.parent)
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
                report.problems.append(f"{path} is schema version {stored.version} (trials inline); version "
                                       f"{SCHEMA_VERSION} keeps them out of the hot file")
                if fix:
                    _migrate(stored)
                    report.fixed.append(f"migrated {path} to version {SCHEMA_VERSION} (the old file is kept as {path.name}.v1)")
            here = fingerprint()
            bad: dict[str, Any] = {}
            for key, raw in stored.entries.items():
                try:
                    entry = CacheEntry.from_json(key, raw)
                    reason = entry.config_problem() if entry.fingerprint == here and entry.is_current() else None
                    if reason:
                        raise EntryError(f"its config does not fit its problem: {reason}")
                except EntryError as exc:
                    report.problems.append(f"entry {key}: {exc}")
                    bad[key] = {"entry": raw, "reason": str(exc)}
            if fix and bad:
                quarantine = _quarantine(path.parent, bad)
                stored.entries = {k: v for k, v in stored.entries.items() if k not in bad}
                _write_bytes(path, _dump_store(stored))
                report.fixed.extend(f"moved entry {key} to {quarantine}" for key in bad)
    except OSError as exc:
        raise CacheError(f"cannot check the tuning cache {path}: {_os_message(exc)}") from None
    finally:
        if fix:
            invalidate()
    return report
