"""Up-front checks of tuning arguments, so a bad one is a clear InvalidInputError before any study, worker or
cache file is touched (not "no candidate ran correctly" after building a study)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

from ..errors import InvalidInputError, UnsupportedError
from ..enums import DType, Precision
from ..problem import ConvProblem

OPTIONS = ("trials", "timeout", "precision", "tolerance", "layouts", "resume", "early_stop", "cache", "retime_top",
           "seed", "compile_workers")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def check_problem(problem: Any) -> None:
    """A problem worth tuning: a ConvProblem with positive sizes, groups dividing the channels, a positive
    output, a known dtype/layout and a precision allowed for its dtype."""
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


def check_tune_options(problems: Iterable[Any], options: dict[str, Any]) -> None:
    """Validate `tune`/`tune_many` keyword arguments and problems; raises InvalidInputError naming the first
    bad one."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise InvalidInputError(f"unknown tuning option(s) {unknown}; the options are {', '.join(OPTIONS)}")
    get = options.get
    if "trials" in options and (not _is_int(get("trials")) or get("trials") < 1):
        raise InvalidInputError(f"trials must be a positive int, got {get('trials')!r}")
    if get("timeout") is not None and not _positive_number(get("timeout")):
        raise InvalidInputError(f"timeout must be a positive number of seconds or None, got {get('timeout')!r}")
    if get("tolerance") is not None and not _positive_number(get("tolerance")):
        raise InvalidInputError(f"tolerance must be a positive number or None, got {get('tolerance')!r}")
    if get("early_stop") is not None and (not _is_int(get("early_stop")) or get("early_stop") < 1):
        raise InvalidInputError(f"early_stop must be a positive int or None, got {get('early_stop')!r}")
    if "retime_top" in options and (not _is_int(get("retime_top")) or get("retime_top") < 1):
        raise InvalidInputError(f"retime_top must be a positive int, got {get('retime_top')!r}")
    if "seed" in options and not _is_int(get("seed")):
        raise InvalidInputError(f"seed must be an int, got {get('seed')!r}")
    if get("compile_workers") is not None and (not _is_int(get("compile_workers")) or get("compile_workers") < 0):
        raise InvalidInputError(f"compile_workers must be a non-negative int or None, got {get('compile_workers')!r}")
    if "resume" in options and not isinstance(get("resume"), bool):
        raise InvalidInputError(f"resume must be True or False, got {get('resume')!r}")
    if get("layouts", "native") not in ("native", "auto"):
        raise InvalidInputError(f"layouts must be 'native' or 'auto', got {get('layouts')!r}")
    cache = get("cache")
    if cache is not None and not isinstance(cache, (bool, str, Path)):
        raise InvalidInputError(f"cache must be None, True, False or a directory path, got {cache!r}")
    if isinstance(cache, (str, Path)) and not isinstance(cache, bool) and Path(cache).exists() and not Path(cache).is_dir():
        raise InvalidInputError(f"cache must be a directory, but {str(cache)!r} is a file")
    precision = get("precision")
    allowed = ("auto",) + Precision.names()
    if precision is not None and precision not in allowed:
        raise InvalidInputError(f"precision must be None, 'auto' or one of {allowed[1:]}, got {precision!r}")
    for problem in problems:
        check_problem(problem)
        if precision not in (None, "auto") and precision not in Precision.for_dtype(problem.dtype):
            raise InvalidInputError(f"precision {precision!r} is not available for {problem.dtype} "
                                    f"({problem.key}); choose from {Precision.for_dtype(problem.dtype)} or 'auto'")
