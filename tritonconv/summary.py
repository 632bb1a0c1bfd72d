"""What a user reads at the end of `tritonconv tune` and `tritonconv tune-model`: where the winners went, that
they are used from now on, how to share them, what the run cost and gained, where the study journal is."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .results import baseline_label, format_speedup


@dataclass(frozen=True)
class RunSummary:
    """The end-of-run facts of one tuning command."""

    winners: int  # distinct problems with a cached winner after the run
    newly_tuned: int  # of those, tuned by this run (the others were already cached)
    trials_run: int
    wall_time_s: float
    best_speedup: float | None
    best_label: str
    keep_baseline: int  # float winners where the baseline measured faster: dispatch keeps calling it there
    baseline: str  # "cuDNN" or "torch CPU"
    device: str  # hardware fingerprint the winners belong to
    cache_file: Path
    journals: tuple[Path, ...]  # the study journals of the problems tuned by this run
    quantized: int = 0  # winners of int8 problems: tritonconv.quantized.conv2d uses them (always a Triton kernel)

    @classmethod
    def of(cls, results: Sequence[Any], wall_time_s: float) -> RunSummary:
        """From tritonconv.search TuneResults (duplicates by problem key counted once)."""
        from . import cache

        unique = list({r.problem.key: r for r in results}.values())
        speedups = [(r.speedup, r.problem.label) for r in unique if r.speedup is not None]
        best, label = max(speedups) if speedups else (None, "")
        device = unique[0].device if unique else cache.fingerprint()
        return cls(
            winners=len(unique), newly_tuned=sum(not r.from_cache for r in unique),
            trials_run=sum(r.trials_run for r in unique), wall_time_s=wall_time_s, best_speedup=best,
            best_label=label, keep_baseline=sum(r.backend == "cudnn" and not r.problem.is_quantized for r in unique),
            baseline=baseline_label(device), device=device, cache_file=cache.cache_path(),
            journals=tuple(r.journal for r in unique if getattr(r, "journal", None) is not None),
            quantized=sum(r.problem.is_quantized for r in unique),
        )

    def lines(self) -> list[str]:
        if not self.winners:  # no problem was tuned (e.g. a model without convs): nothing to use or share
            return [f"nothing tuned: no winner cached at {self.cache_file}",
                    f"time {self.wall_time_s:.1f} s, {self.trials_run} trials run"]
        already = self.winners - self.newly_tuned
        cached = f"{self.winners} winner{'s' if self.winners != 1 else ''} cached at {self.cache_file}"
        if already:
            cached += f" ({self.newly_tuned} tuned now, {already} already cached)"
        best = (f"best speedup vs {self.baseline} {format_speedup(self.best_speedup)} ({self.best_label})"
                if self.best_speedup is not None else f"no {self.baseline} time to compare with")
        users = ["tritonconv.conv2d, tritonconv.nn.Conv2d and tritonconv.convert"] if self.winners > self.quantized else []
        users += ["tritonconv.quantized.conv2d (the int8 ones)" if users else "tritonconv.quantized.conv2d"] if self.quantized else []
        lines = [
            cached,
            f"  used automatically by {'; '.join(users)} on this device "
            f"({self.device})" + (f"; {self.keep_baseline} of them keep {self.baseline}, which measured faster"
                                  if self.keep_baseline else ""),
            "  share them: tritonconv cache export tritonconv-cache.json   (elsewhere: tritonconv cache import tritonconv-cache.json)",
            f"time {self.wall_time_s:.1f} s, {self.trials_run} trials run, {best}",
        ]
        if len(self.journals) == 1:
            lines.append(f"study journal: {self.journals[0]}   (view: optuna-dashboard {self.journals[0]})")
        elif self.journals:
            lines.append(f"study journals (one per problem) in {self.journals[0].parent}   "
                         f"(view one: optuna-dashboard {self.journals[0]})")
        return lines

    def print(self, console: Any) -> None:
        for line in self.lines():
            console.print(line, soft_wrap=True, highlight=False, markup=False)  # paths stay one copyable line
