"""What a tuning call returns (`TuneResult`) or raises (`TuningError`, `TuningInterrupted`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import TritonConvError
from ..problem import ConvProblem
from ..results import speedup_over


class TuningError(TritonConvError):
    """Tuning cannot start or found no candidate that runs correctly."""


class TuningInterrupted(KeyboardInterrupt):
    """Tuning was stopped by Ctrl-C (SIGINT). The message says what is kept; tuning again resumes from it."""


@dataclass
class TuneResult:
    """The winner of one problem's tuning and the cuDNN time measured in the same run."""

    problem: ConvProblem
    family: str
    config: dict[str, Any]  # the winner's parameters and dispatch options ("convert_nhwc", "precision"), no "family"
    time_ms: float
    cudnn_time_ms: Optional[float]
    rel_error: float
    trials_run: int  # trials finished by this call (0 when answered from the cache)
    wall_time_s: float  # how long this call took
    precision: str  # operand precision of the winner
    from_cache: bool = False
    benchmarks_run: int = 0  # runner calls made by this call (candidates, re-timings, cuDNN)
    device: str = ""  # the hardware fingerprint the times belong to
    timeline: list[dict[str, Any]] = field(default_factory=list)  # per trial of this call: compile / check / time seconds
    journal: Optional[Path] = None  # the study's journal file (optuna-dashboard reads it); None when from the cache

    @property
    def speedup(self) -> Optional[float]:
        """cuDNN time / Triton time (> 1: Triton is faster), both measured in the same run."""
        return speedup_over(self.cudnn_time_ms, self.time_ms)

    @property
    def backend(self) -> str:
        """What dispatch with backend="auto" runs for this problem."""
        speedup = self.speedup
        return "cudnn" if speedup is not None and speedup < 1 else "triton"
