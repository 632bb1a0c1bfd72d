"""Files: reading with limits, atomic writes that keep modes, backups of corrupt files, the lock, warnings
given once per file per process."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import warnings
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ..errors import CacheError
from .keys import CACHE_DIR_ENV, CACHE_FILE, QUARANTINE_FILE, TRIALS_DIR


# Limits on what is read: a bigger file is refused with a clear error instead of exhausting memory.
MAX_FILE_BYTES = 1 << 30
_warned: set[str] = set()  # files already warned about in this process


def os_message(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied (read-only?)"
    return exc.strerror or type(exc).__name__


def mkdir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"cannot create the cache directory {directory}: {os_message(exc)}") from None


def read_bytes(path: Path, *, what: str) -> bytes | None:
    """The file's bytes, None if it does not exist; CacheError (one line) for a directory, a file over the
    size limit or an OS error."""
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise CacheError(f"cannot read the {what} {path}: {os_message(exc)}") from None
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
        raise CacheError(f"cannot read the {what} {path}: {os_message(exc)}") from None


def parse_json(raw: bytes) -> tuple[Any, str | None]:
    """(parsed value, None) or (None, why it is not JSON). Deep nesting is refused, never a RecursionError."""
    try:
        return json.loads(raw), None  # bytes: no decoded copy of a big file
    except RecursionError:
        return None, "it is nested too deeply"
    except UnicodeDecodeError:
        return None, "it is not UTF-8 text"
    except ValueError as exc:
        return None, f"it is not valid JSON ({exc})"


def backup_copy(path: Path, raw: bytes) -> Path:
    """One backup copy per distinct corrupt content (named by its hash), however many processes read it."""
    backup = path.with_name(f"{path.name}.corrupt-{hashlib.sha256(raw).hexdigest()[:12]}")
    if not backup.exists():
        try:
            write_bytes(backup, raw)
        except CacheError:
            pass  # the original is never touched, so a failed backup loses nothing
    return backup


def write_bytes(path: Path, payload: bytes, *, mode: int | None = None, durable: bool = True) -> None:
    """Atomically replace `path` (temp file in the same directory + fsync + os.replace). The new file keeps the
    mode of the file it replaces (a fresh one gets `mode`, else the umask's default); a file without write
    permission is not replaced."""
    mkdir(path.parent)
    try:
        existing = os.stat(path).st_mode
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise CacheError(f"cannot write {path}: {os_message(exc)}") from None
    if existing is not None and stat.S_ISDIR(existing):
        raise CacheError(f"cannot write {path}: it is a directory")
    refuse_read_only(path, existing)
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
        raise CacheError(f"cannot write {path}: {os_message(exc)}") from None
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def refuse_read_only(path: Path, mode: int | None = None) -> None:
    """A file its owner made read-only is never replaced (checked by mode: root may write anything)."""
    if mode is None:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return
    if not mode & stat.S_IWUSR:
        raise CacheError(f"cannot write {path}: the file is read-only (mode {stat.S_IMODE(mode):o}); it was "
                         f"left as it is: make it writable or set {CACHE_DIR_ENV} to another directory")


def dump_json(data: Any) -> bytes:
    return json.dumps(data, indent=1, sort_keys=True).encode()


def _lock(path: Path) -> FileLock:
    mkdir(path.parent)
    return FileLock(str(path) + ".lock", timeout=120)


class Locked:
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
            raise CacheError(f"cannot lock the tuning cache {self.path}: {os_message(exc)}") from None

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def clean_stale_temp_files(directory: Path) -> int:
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


def unlink_all(paths: Any) -> int:
    removed = 0
    for p in paths:
        try:
            if p.is_file() or p.is_symlink():
                p.unlink()
                removed += 1
        except FileNotFoundError:
            pass
    return removed


def warn_once(file_key: str, message: str) -> None:
    if file_key not in _warned:
        _warned.add(file_key)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def forget_warnings() -> None:
    """Warn again about files already warned about (tests)."""
    _warned.clear()
