"""Tune on first call, the way `torch.backends.cudnn.benchmark = True` works.

    tritonconv.autotune("on-first-call", budget_s=10)    # from now on (or: TRITONCONV_AUTOTUNE=on-first-call)
    with tritonconv.autotune("on-first-call"): model(x)    # only inside the block
    tritonconv.autotune("off")

While it is on, `tritonconv.conv2d`, `tritonconv.nn.Conv2d` and converted models tune a problem the first time
they meet one that has no cached winner: a short study (a few trials, seeded with the kernel families' default
and heuristic configs, stopped after `budget_s` seconds of searching), stored in the tuning cache like any
`tritonconv tune`, then used for this and every later call. During CUDA-graph capture, `torch.compile` tracing or
on meta/fake tensors nothing is tuned (benchmarking would break the capture, or there is no data): the call uses
what is cached (else the default heuristic) and the problem is recorded in `missed()`; it is tuned at its next
eager call, or by `tune_missed()` / `tritonconv tune-model`. A problem whose tuning fails is not retried.
"""
from __future__ import annotations

import os
import sys
import threading
import warnings
from dataclasses import dataclass, field

import torch

from . import dispatch
from .problem import ConvProblem
from .runtime import INTERPRET

ENV = "TRITONCONV_AUTOTUNE"  # "on-first-call" (or "1") turns it on at import
BUDGET_ENV = "TRITONCONV_AUTOTUNE_BUDGET_S"
MODES = ("off", "on-first-call")
DEFAULT_BUDGET_S = 10.0
DEFAULT_TRIALS = 8
EARLY_STOP = 4  # measured trials without a new best after which a first-call study stops


@dataclass
class Settings:
    """The active first-call tuning mode and what it has done in this process."""

    mode: str = "off"
    budget_s: float = DEFAULT_BUDGET_S  # seconds of searching per problem (re-timing the winner comes on top)
    trials: int = DEFAULT_TRIALS  # trial budget per problem
    verbose: bool = True  # one line on stderr per tuned problem
    tuned: list[ConvProblem] = field(default_factory=list)
    missed_problems: dict[ConvProblem, torch.device] = field(default_factory=dict)  # met while capturing/tracing
    failed: dict[ConvProblem, str] = field(default_factory=dict)


_settings = Settings()
_busy = threading.local()  # set while this thread is tuning: the tuner's own launches never tune


class _Restore:
    """What `autotune(...)` returns: the new mode is active at once; `with` restores the previous one on exit."""

    def __init__(self, previous: tuple[str, float, int, bool]) -> None:
        self._previous = previous

    def __enter__(self) -> Settings:
        return _settings

    def __exit__(self, *exc: object) -> None:
        _settings.mode, _settings.budget_s, _settings.trials, _settings.verbose = self._previous
        _install()


def autotune(mode: str = "on-first-call", *, budget_s: float = DEFAULT_BUDGET_S, trials: int = DEFAULT_TRIALS,
             verbose: bool = True) -> _Restore:
    """Turn tuning on first call on ("on-first-call") or off ("off"); also a context manager.

    budget_s: seconds of searching per new problem; trials: the most trials per new problem (each is checked
    against a float64 reference before its time counts); verbose: print one line per tuned problem to stderr.
    """
    from .errors import InvalidInputError

    if mode not in MODES:
        raise InvalidInputError(f"autotune mode must be one of {MODES}, got {mode!r}")
    if not budget_s > 0 or not isinstance(trials, int) or trials < 1:
        raise InvalidInputError(f"autotune needs budget_s > 0 and trials >= 1, got budget_s={budget_s!r}, trials={trials!r}")
    previous = (_settings.mode, _settings.budget_s, _settings.trials, _settings.verbose)
    _settings.mode, _settings.budget_s, _settings.trials, _settings.verbose = mode, float(budget_s), trials, verbose
    _install()
    return _Restore(previous)


def enabled() -> bool:
    return _settings.mode == "on-first-call"


def tuned() -> list[ConvProblem]:
    """Problems tuned on first call in this process."""
    return list(_settings.tuned)


def missed() -> list[ConvProblem]:
    """Problems met during CUDA-graph capture or torch.compile tracing and not tuned yet."""
    return list(_settings.missed_problems)


def tune_missed() -> list[ConvProblem]:
    """Tune every missed problem now (eagerly); returns the ones tuned."""
    done = []
    for problem, device in list(_settings.missed_problems.items()):
        if _tune(problem, device):
            done.append(problem)
    return done


def _cannot_benchmark(device: torch.device) -> bool:
    """Whether measuring now is impossible or would break something: capture, tracing, no data."""
    if device.type == "meta" or torch.compiler.is_compiling() or torch.jit.is_tracing():
        return True
    if torch._C._len_torch_dispatch_stack():  # FakeTensorMode, functionalization, ...
        return True
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def _can_tune_here(device: torch.device) -> bool:
    """Tuning needs a CUDA device (or the interpreter on the CPU)."""
    return device.type == "cuda" and not INTERPRET or device.type == "cpu" and INTERPRET


def _on_untuned(problem: ConvProblem, device: torch.device) -> str:
    """dispatch's hook for a problem without a cached winner: "tuned" (look the cache up again), "later"
    (use the default now, ask again next call) or "never" (use the default from now on)."""
    if not enabled() or getattr(_busy, "active", False) or problem in _settings.failed:
        return "never"
    if not _can_tune_here(device):
        return "never"
    if _cannot_benchmark(device):
        _settings.missed_problems.setdefault(problem, device)
        return "later"
    return "tuned" if _tune(problem, device) else "never"


def _tune(problem: ConvProblem, device: torch.device) -> bool:
    from .errors import TritonConvError
    from .search import tune

    _busy.active = True
    try:
        with torch.no_grad():
            result = tune(problem, trials=_settings.trials, timeout=_settings.budget_s, early_stop=EARLY_STOP,
                          retime_top=1, progress=False)
    except TritonConvError as exc:
        _settings.failed[problem] = str(exc)
        warnings.warn(f"tritonconv: tuning {problem.label} on first call failed ({exc}); using the default config",
                      RuntimeWarning, stacklevel=2)
        return False
    finally:
        _busy.active = False
    _settings.missed_problems.pop(problem, None)
    _settings.tuned.append(problem)
    if _settings.verbose:
        print(f"tritonconv: tuned {problem.long_label} on first call: {result.family} {result.time_ms:.4g} ms "
              f"({result.trials_run} trials, {result.wall_time_s:.1f} s), cached", file=sys.stderr)
    return True


def _install() -> None:
    """Hook into dispatch only while on (an off mode costs dispatch nothing), and forget memoised defaults."""
    dispatch.untuned_hook = _on_untuned if enabled() else None
    dispatch.clear_memo()


def _from_environment() -> None:
    value = os.environ.get(ENV, "").strip().lower()
    if value in ("", "0", "off"):
        return
    if value not in ("1", "on", "on-first-call"):
        warnings.warn(f"{ENV}={value!r} is not one of on-first-call, 1, off: first-call tuning stays off",
                      RuntimeWarning, stacklevel=2)
        return
    try:
        budget = float(os.environ.get(BUDGET_ENV, DEFAULT_BUDGET_S))
    except ValueError:
        budget = DEFAULT_BUDGET_S
    autotune("on-first-call", budget_s=budget if budget > 0 else DEFAULT_BUDGET_S)


_from_environment()
