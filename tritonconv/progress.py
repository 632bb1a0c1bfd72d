"""Progress of long commands (tune, tune-model, bench) with an ETA: a rich progress bar on a terminal, plain
timestamped lines (at most one per task every few seconds, plus one when a task finishes) when stderr is a file
or a pipe, so a redirected run is never silent.

Both answer the subset of `rich.progress.Progress` the commands use: `add_task`, `update`, `advance`, and use as
a context manager."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Optional, TextIO

LINE_INTERVAL_S = 10.0


def _clock(seconds: Optional[float]) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@dataclass
class _Task:
    description: str
    total: Optional[float]
    completed: float = 0.0
    started: float = field(default_factory=time.monotonic)
    printed: float = 0.0
    visible: bool = True

    def eta_s(self) -> Optional[float]:
        if not self.total or self.completed <= 0:
            return None
        elapsed = time.monotonic() - self.started
        return max(0.0, elapsed / self.completed * (self.total - self.completed))


class LineProgress:
    """Line-based progress for non-terminals: "12:00:01 problems 1/4 (25%), elapsed 0:00:10, ETA 0:00:30"."""

    def __init__(self, stream: Optional[TextIO] = None, interval_s: float = LINE_INTERVAL_S) -> None:
        self.stream = stream or sys.stderr
        self.interval_s = interval_s
        self.tasks: list[_Task] = []

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, total: Optional[float] = None, **_: Any) -> int:
        self.tasks.append(_Task(description, total))
        self._print(self.tasks[-1], force=True)
        return len(self.tasks) - 1

    def update(self, task_id: int, *, completed: Optional[float] = None, description: Optional[str] = None,
               visible: Optional[bool] = None, advance: Optional[float] = None, **_: Any) -> None:
        task = self.tasks[task_id]
        if description is not None:
            task.description = description
        if completed is not None:
            task.completed = completed
        if advance is not None:
            task.completed += advance
        done = task.total is not None and task.completed >= task.total
        self._print(task, force=done or advance is not None)  # a finished task gets its last line, even as it is hidden
        if visible is False:
            task.visible = False

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def _print(self, task: _Task, *, force: bool) -> None:
        now = time.monotonic()
        if not task.visible or (not force and now - task.printed < self.interval_s):
            return
        task.printed = now
        if task.total:
            share = f" {task.completed:g}/{task.total:g} ({100 * task.completed / task.total:.0f}%)"
        else:
            share = ""
        self.stream.write(f"{time.strftime('%H:%M:%S')} {task.description}{share}, elapsed "
                          f"{_clock(now - task.started)}, ETA {_clock(task.eta_s())}\n")
        self.stream.flush()


def progress(*, transient: bool = True, stream: Optional[TextIO] = None) -> Any:
    """A rich progress bar with elapsed time and ETA when `stream` (default stderr) is a terminal, else a
    LineProgress writing to it."""
    stream = stream or sys.stderr
    if not stream.isatty():
        return LineProgress(stream)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), transient=transient, console=Console(file=stream))
