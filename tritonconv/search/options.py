"""`TuneOptions`: the one source of tuning defaults (the library's `tune`/`tune_many`/`tune_model` and both CLIs
read them from here) and the up-front checks of tuning arguments, so a bad one is a clear InvalidInputError
before any study, worker or cache file is touched (not "no candidate ran correctly" after building a study).

Torch-free at import (the CLIs read the defaults while parsing `--help`); checking problems imports torch.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from ..enums import DType, Precision
from ..errors import InvalidInputError, UnsupportedError


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@dataclass(frozen=True)
class TuneOptions:
    """How one tuning call searches; every field is checked when the options are made.

    trials: trial budget of each problem's study (a resumed study counts its earlier trials).
    timeout: seconds of searching per problem after which the best so far wins (None: no limit).
    precision: None keeps each problem's precision; a name fixes it; "auto" lets every precision allowed for the
        dtype compete (only those within `tolerance` of the float64 reference may win).
    tolerance: max relative error vs the float64 reference (None: the precision's, enums.Precision.tolerance).
    layouts: "native" reads the input as given; "auto" also tries converting NCHW input to NHWC first.
    resume: reuse the cache entry / continue the stored study; False re-tunes from scratch.
    early_stop: stop after this many measured trials without a new best (None: never).
    cache: None/True: the default cache dir; a directory path; False: neither read nor write the cache.
    retime_top: how many of the best distinct candidates are re-timed with the full timer at the end.
    seed: seed of the samplers and of the grid order.
    compile_workers: processes compiling candidates ahead of the GPU (None: `default_compile_workers()`;
        0 disables); one pool serves every problem of a tune_many call.
    """

    trials: int = 64
    timeout: Optional[float] = None
    precision: Optional[str] = None
    tolerance: Optional[float] = None
    layouts: str = "native"
    resume: bool = True
    early_stop: Optional[int] = 24
    cache: Union[None, bool, str, Path] = None
    retime_top: int = 3
    seed: int = 0
    compile_workers: Optional[int] = None

    def __post_init__(self) -> None:
        self._check()

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> "TuneOptions":
        """The options of `tune`/`tune_many` keyword arguments (the rest keep their defaults)."""
        unknown = sorted(set(options) - set(cls.names()))
        if unknown:
            raise InvalidInputError(f"unknown tuning option(s) {unknown}; the options are {', '.join(cls.names())}")
        return cls(**options)

    def _check(self) -> None:
        if not _is_int(self.trials) or self.trials < 1:
            raise InvalidInputError(f"trials must be a positive int, got {self.trials!r}")
        if self.timeout is not None and not _positive_number(self.timeout):
            raise InvalidInputError(f"timeout must be a positive number of seconds or None, got {self.timeout!r}")
        if self.tolerance is not None and not _positive_number(self.tolerance):
            raise InvalidInputError(f"tolerance must be a positive number or None, got {self.tolerance!r}")
        if self.early_stop is not None and (not _is_int(self.early_stop) or self.early_stop < 1):
            raise InvalidInputError(f"early_stop must be a positive int or None, got {self.early_stop!r}")
        if not _is_int(self.retime_top) or self.retime_top < 1:
            raise InvalidInputError(f"retime_top must be a positive int, got {self.retime_top!r}")
        if not _is_int(self.seed):
            raise InvalidInputError(f"seed must be an int, got {self.seed!r}")
        if self.compile_workers is not None and (not _is_int(self.compile_workers) or self.compile_workers < 0):
            raise InvalidInputError(f"compile_workers must be a non-negative int or None, got {self.compile_workers!r}")
        if not isinstance(self.resume, bool):
            raise InvalidInputError(f"resume must be True or False, got {self.resume!r}")
        if self.layouts not in ("native", "auto"):
            raise InvalidInputError(f"layouts must be 'native' or 'auto', got {self.layouts!r}")
        cache = self.cache
        if cache is not None and not isinstance(cache, (bool, str, Path)):
            raise InvalidInputError(f"cache must be None, True, False or a directory path, got {cache!r}")
        if isinstance(cache, (str, Path)) and Path(cache).exists() and not Path(cache).is_dir():
            raise InvalidInputError(f"cache must be a directory, but {str(cache)!r} is a file")
        allowed = ("auto",) + Precision.names()
        if self.precision is not None and self.precision not in allowed:
            raise InvalidInputError(f"precision must be None, 'auto' or one of {allowed[1:]}, got {self.precision!r}")

    def check_problems(self, problems: Iterable[Any]) -> None:
        """Every problem is worth tuning and allows the fixed precision, if one is asked for."""
        for problem in problems:
            check_problem(problem)
            allowed = Precision.for_dtype(problem.dtype)
            if self.precision not in (None, "auto") and self.precision not in allowed:
                raise InvalidInputError(f"precision {self.precision!r} is not available for {problem.dtype} "
                                        f"({problem.key}); choose from {allowed} or 'auto'")


DEFAULTS = TuneOptions()


def default_compile_workers() -> int:
    """Compile processes beside the benchmark worker: every core but one (the GPU process), at least one."""
    return max(1, (os.cpu_count() or 2) - 1)


def check_problem(problem: Any) -> None:
    """A problem worth tuning: a ConvProblem with positive sizes, groups dividing the channels, a positive
    output, a known dtype/layout and a precision allowed for its dtype."""
    from ..problem import ConvProblem  # torch: only when problems are checked (never while parsing --help)

    if not isinstance(problem, ConvProblem):
        raise InvalidInputError(f"tune takes ConvProblems (tritonconv.ConvProblem), got {type(problem).__name__}")
    sizes = {name: getattr(problem, name) for name in ("n", "c", "h", "w", "k", "r", "s", "stride_h", "stride_w",
                                                       "dilation_h", "dilation_w", "groups", "p", "q")}
    for name, value in sizes.items():
        if not _is_int(value) or value < 1:
            raise InvalidInputError(f"cannot tune {problem.key}: {name} must be a positive int, got {value!r}")
    for name in ("pad_h", "pad_w"):
        if not _is_int(getattr(problem, name)) or getattr(problem, name) < 0:
            raise InvalidInputError(f"cannot tune {problem.key}: {name} must be a non-negative int")
    if problem.c % problem.groups or problem.k % problem.groups:
        raise InvalidInputError(f"cannot tune {problem.key}: groups={problem.groups} must divide c={problem.c} "
                                f"and k={problem.k}")
    if problem.dtype not in DType.names():
        raise UnsupportedError(f"cannot tune {problem.key}: dtype {problem.dtype!r} is not one of {sorted(DType.names())}")
    if problem.layout not in ("nchw", "nhwc"):
        raise InvalidInputError(f"cannot tune {problem.key}: layout must be 'nchw' or 'nhwc', got {problem.layout!r}")
    if problem.precision not in Precision.for_dtype(problem.dtype):
        raise InvalidInputError(f"cannot tune {problem.key}: precision {problem.precision!r} is not available for "
                                f"{problem.dtype}; choose from {Precision.for_dtype(problem.dtype)}")


def check_tune_options(problems: Iterable[Any], options: dict[str, Any]) -> TuneOptions:
    """Validate `tune`/`tune_many` keyword arguments and problems; raises InvalidInputError naming the first
    bad one. Returns the options."""
    checked = TuneOptions.from_kwargs(options)
    checked.check_problems(problems)
    return checked
