"""The stored file: raw entries by key (validated when used), unknown top-level fields kept; the hot file's
one-entry-per-line layout; the quarantine file."""
from __future__ import annotations

import json
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CacheError, EntryError
from .entry import CacheEntry, is_int
from .files import backup_copy, dump_json, parse_json, read_bytes, write_bytes
from .keys import QUARANTINE_FILE, READABLE_VERSIONS, SCHEMA, SCHEMA_VERSION
from .versions import restamp


ENTRIES_OPEN = ', "entries": {'
LINE_VERSIONS = (2, 3)  # the schema versions written one entry per line (by dump_store)
_ENTRY_LINE = re.compile(rb'^("(?:[^"\\\n]|\\.)*"): ', re.MULTILINE)


def dump_store(stored: StoredFile) -> bytes:
    """The hot file, one entry per line (still plain JSON), so a reader can find one entry without parsing all:
    a first line with the schema, version and other header fields, then `"KEY": ENTRY,` lines, then `}}`."""
    head = json.dumps({**stored.header, "schema": SCHEMA, "version": SCHEMA_VERSION}, sort_keys=True)[:-1]
    lines = [json.dumps(key) + ": " + json.dumps(value, sort_keys=True) for key, value in sorted(stored.entries.items())]
    return (head + ENTRIES_OPEN + "\n" + ",\n".join(lines) + "\n}}\n").encode()


class _KeyIndexed:
    """Raw entries found by their key at the start of a line (`<indent>"KEY": ` within raw[start:end]) and parsed
    one at a time: a lookup is one substring search of the bytes, never a parse of the whole file."""

    indent: bytes  # what precedes a key on its line
    key_line: re.Pattern[bytes]  # a key's line (group 1: the key as JSON)
    damaged: str  # the error text of an entry that does not parse

    def __init__(self, raw: bytes, start: int, end: int):
        self.raw, self.start, self.end = raw, start, end

    def _value_end(self, start: int) -> int:
        """Where the entry whose value begins at `start` ends."""
        raise NotImplementedError

    def _value_start(self, key: object) -> int:
        if not isinstance(key, str):
            return -1
        marker = b"\n" + self.indent + json.dumps(key).encode() + b": "
        at = self.raw.find(marker, self.start, self.end)
        return -1 if at < 0 else at + len(marker)

    def __contains__(self, key: object) -> bool:
        return self._value_start(key) >= 0

    def __getitem__(self, key: str) -> Any:
        start = self._value_start(key)
        if start < 0:
            raise KeyError(key)
        value, problem = parse_json(self.raw[start:self._value_end(start)].rstrip(b","))
        if problem:
            raise EntryError(f"{self.damaged} ({problem})")
        return restamp(value)

    def keys(self) -> list[str]:
        """Every key (a scan of the entries' first lines: only batch bucketing needs it)."""
        found = []
        for match in self.key_line.finditer(self.raw, self.start, self.end):
            try:
                found.append(json.loads(match.group(1)))
            except ValueError:
                continue
        return found


class LineIndexed(_KeyIndexed):
    """The raw entries of a hot file written by `dump_store`, one per line."""

    indent, key_line, damaged = b"", _ENTRY_LINE, "its line in the file is damaged"

    def __init__(self, raw: bytes, version: int = SCHEMA_VERSION):
        super().__init__(raw, 0, len(raw))
        self.version = version  # the file's schema version

    @staticmethod
    def parse(raw: bytes) -> LineIndexed | None:
        """The view of a canonical hot file, None if `raw` is not in that layout (then it is parsed whole)."""
        first = raw[: raw.find(b"\n") + 1]
        if not first.endswith((ENTRIES_OPEN + "\n").encode()) or not raw.endswith(b"\n}}\n"):
            return None
        try:
            header = json.loads(first[: -len(ENTRIES_OPEN) - 1] + b"}")
        except ValueError:
            return None
        if not isinstance(header, dict) or header.get("schema") != SCHEMA or header.get("version") not in LINE_VERSIONS:
            return None
        return LineIndexed(raw, header["version"])

    def _value_end(self, start: int) -> int:
        return self.raw.find(b"\n", start)


class IndentedIndexed(_KeyIndexed):
    """The raw entries of a version-1 file in the layout version 1 wrote (`json.dumps(indent=1)`: top-level
    fields indented by one space, each entry starting on a line indented by two, everything inside it deeper),
    found and parsed one at a time like `LineIndexed`: an unmigrated v1 file, whose inline trial histories make
    it hundreds of MB of JSON, costs a process its bytes, not a parse of every trial."""

    version = 1
    indent, damaged = b"  ", "its lines in the file are damaged"
    key_line = re.compile(rb'^  ("(?:[^"\\\n]|\\.)*"): ', re.MULTILINE)

    @staticmethod
    def parse(raw: bytes) -> IndentedIndexed | None:
        """The view of a version-1 file in that layout, None if `raw` is not one (then it is parsed whole)."""
        if not raw.startswith(b"{\n ") or not raw.rstrip().endswith(b"\n}"):
            return None
        version = re.search(rb'\n "version": (\d+)[,\n]', raw)
        opening = raw.find(b'\n "entries": {\n')
        if b'\n "schema": ' + json.dumps(SCHEMA).encode() not in raw or version is None or version.group(1) != b"1" \
                or opening < 0:
            return None
        start = opening + len(b'\n "entries": {')
        end = raw.find(b"\n }", start)  # the first line back at depth one closes the entries
        return IndentedIndexed(raw, start, end) if end > 0 else None

    def _value_end(self, start: int) -> int:
        end = self.raw.find(b'\n  "', start, self.end)  # the next entry's line
        return end if end >= 0 else self.end


@dataclass
class StoredFile:
    """A parsed cache or export file: its raw entries by key as on disk, except that entries whose family version
    is by an older rule are re-stamped with the current version where that rule says their kernel is unchanged."""

    path: Path
    version: int
    entries: dict[str, Any]
    header: dict[str, Any] = field(default_factory=dict)  # every other top-level field, kept on rewrite
    damaged_lines: list[str] = field(default_factory=list)  # lines of a one-entry-per-line file that do not parse

    def __post_init__(self) -> None:
        self.entries = {key: restamp(raw) for key, raw in self.entries.items()}

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
        newer = is_int(data.get("version")) and data["version"] > SCHEMA_VERSION
        return (f"its schema version {data.get('version')!r} is "
                + ("newer than this tritonconv reads (upgrade tritonconv)" if newer else f"not one of {list(READABLE_VERSIONS)}"))
    if not isinstance(data.get("entries"), dict):
        return "it has no 'entries' mapping"
    return None


def read_file(path: Path, *, backup: bool = True, what: str = "tuning cache") -> StoredFile:
    """The cache (or export) file at `path`, empty if missing. Raises CacheError (one line; after keeping one
    backup copy of a corrupt cache) if it is not a readable tritonconv cache."""
    path = Path(path)
    raw = read_bytes(path, what=what)
    if raw is None:
        return StoredFile(path, SCHEMA_VERSION, {})
    return stored_from_bytes(path, raw, backup=backup, what=what)


def _recover_lines(path: Path, raw: bytes) -> StoredFile | None:
    """A hot file (`dump_store`'s layout) whose whole does not parse, entry line by entry line: the lines that
    parse, and the damaged ones kept aside as text. None if even its header line is not ours."""
    lines = raw.decode("utf-8", errors="replace").split("\n")
    head = lines[0]
    if not head.endswith(ENTRIES_OPEN):
        return None
    header, problem = parse_json((head[: -len(ENTRIES_OPEN)] + "}").encode())
    if problem or not isinstance(header, dict) or _file_problem({**header, "entries": {}}):
        return None
    entries: dict[str, Any] = {}
    damaged: list[str] = []
    for line in lines[1:]:
        if not line.strip() or line == "}}":
            continue
        value, problem = parse_json(("{" + line.rstrip(",") + "}").encode())
        if problem or not isinstance(value, dict) or len(value) != 1:
            damaged.append(line)
        else:
            entries.update(value)
    rest = {k: v for k, v in header.items() if k not in ("schema", "version")}
    return StoredFile(path, header["version"], entries, rest, damaged)


def stored_from_bytes(path: Path, raw: bytes, *, backup: bool, what: str) -> StoredFile:
    data, problem = parse_json(raw)
    problem = problem or _file_problem(data)
    if problem is None:
        header = {k: v for k, v in data.items() if k not in ("schema", "version", "entries")}
        return StoredFile(path, data["version"], data["entries"], header)
    recovered = _recover_lines(path, raw) if backup else None
    if recovered is not None:  # damage inside some entry lines: the rest of the cache stays in use
        warnings.warn(
            f"tritonconv: {len(recovered.damaged_lines)} damaged line(s) in the {what} {path} ({problem}); the other "
            f"entries are used, a copy of the file was kept at {backup_copy(path, raw)}, and the next write moves the "
            f"damaged lines to {QUARANTINE_FILE}", RuntimeWarning, stacklevel=3)
        return recovered
    if not backup:
        raise CacheError(f"cannot use the {what} {path}: {problem}")
    raise CacheError(
        f"cannot use the {what} {path}: {problem}; a copy was kept at {backup_copy(path, raw)}. Nothing was "
        f"overwritten: move the file away, or run `tritonconv cache check --fix` to set it aside"
    )


def quarantine(directory: Path, entries: dict[str, Any]) -> Path:
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
    write_bytes(path, dump_json(existing))
    return path
