"""What one problem's search covers, resolved from the tuning options: the key problem, the precisions and
layout conversions that compete, the tolerance, and where the cache file is."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from .. import cache as tuning_cache
from ..errors import InvalidInputError
from ..enums import Precision
from ..problem import ConvProblem


@dataclass
class SearchPlan:
    problem: ConvProblem  # the key problem: its precision is the one callers dispatch with
    precisions: tuple[str, ...]
    convert_options: tuple[bool, ...]
    tolerance: float
    search: dict[str, Any]  # what the cache records about how this entry was tuned


def search_plan(problem: ConvProblem, precision: Optional[str], tolerance: Optional[float], layouts: str) -> SearchPlan:
    """The plan for `problem` under options already checked by TuneOptions."""
    allowed = Precision.for_dtype(problem.dtype)
    if precision == "auto":
        precisions = (problem.precision,) + tuple(p for p in allowed if p != problem.precision)
    elif precision is None:
        precisions = (problem.precision,)
    elif precision in allowed:
        problem, precisions = problem.with_(precision=precision), (precision,)
    else:
        raise InvalidInputError(f"precision {precision!r} is not available for {problem.dtype}; choose from {allowed} or 'auto'")
    tol = float(tolerance if tolerance is not None else Precision(problem.precision).tolerance)
    # auto: a precision whose measured error the tolerance does not admit (fp8 under 4e-2) cannot win: not tried.
    precisions = tuple(p for p in precisions if p == problem.precision or Precision(p).auto_min_tolerance <= tol)
    converts = (False, True) if layouts == "auto" else (False,)
    search = {"precision": "auto" if precision == "auto" else "fixed", "layouts": layouts, "tolerance": tol}
    return SearchPlan(problem, precisions, converts, tol, search)


def cache_file(cache: Union[None, bool, str, Path]) -> Optional[Path]:
    """The cache file `cache` (a `TuneOptions.cache`) names; None when the cache is off."""
    if cache is False:
        return None
    directory = tuning_cache.cache_dir() if cache in (None, True) else Path(cache)  # type: ignore[arg-type]
    return directory / tuning_cache.CACHE_FILE
