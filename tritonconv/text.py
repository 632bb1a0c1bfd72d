"""Text that came from files or the command line, made safe to print.

A fingerprint, a suite name or a problem key read from a file may hold terminal escape sequences (which would
recolour, retitle or clear the user's terminal) or rich markup (`[/x]` makes rich raise). `terminal_safe`
escapes control characters; `safe_console` is a rich Console that prints every string literally and escaped.
Torch-free, so the CLI can use it before importing anything heavy.
"""
from __future__ import annotations

import re
from typing import Any

# C0 and C1 control characters (ESC among them), DEL, and the Unicode bidi overrides that reorder a line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_safe(text: Any, *, keep_newlines: bool = False) -> str:
    """`text` with every control character written as an escape (\\x1b, \\x07, ...); newlines and tabs are kept
    only with `keep_newlines`."""
    text = str(text)
    if keep_newlines:
        return "\n".join("\t".join(_CONTROL.sub(_escape, part) for part in line.split("\t")) for line in text.split("\n"))
    return _CONTROL.sub(_escape, text)


def one_line(text: Any) -> str:
    """A message as one printable line: its lines joined with "; ", control characters escaped."""
    return terminal_safe("; ".join(line.strip() for line in str(text).splitlines() if line.strip()))


def markup_safe(text: Any) -> str:
    """`text` (from a file) for a rich string that also holds markup: control characters and markup escaped."""
    from rich.markup import escape

    return escape(terminal_safe(text))


def safe_console(**options: Any):
    """A rich Console that never interprets markup in what it prints and escapes control characters in every
    string it renders (table cells, titles, captions), keeping newlines."""
    from rich.console import Console

    class _SafeConsole(Console):
        def render_str(self, text: str, **kwargs: Any):
            return super().render_str(terminal_safe(text, keep_newlines=True), **kwargs)

    options.setdefault("markup", False)
    options.setdefault("emoji", False)
    options.setdefault("highlight", False)
    return _SafeConsole(**options)
