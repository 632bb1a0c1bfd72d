"""A tuning run and its cache entry: answering from a current entry, reusing an earlier run's trial records,
and the entry the winner is stored as."""
from __future__ import annotations

from typing import Any, Optional

from optuna.trial import TrialState

from .. import cache as tuning_cache
from ..problem import ConvProblem
from .plan import SearchPlan
from .result import TuneResult
from .space import FAMILY, Candidate, SearchSpace
from .state import RunState
from .study import params_key, trials_spent

# Earlier versions stored interrupted trials as failures in cache entries: such records are not answers.
LEGACY_INTERRUPTED_ERROR = "interrupted: the tuning process stopped"


def answered_by_cache(stored: Optional[tuning_cache.CacheEntry], plan: SearchPlan, trials: int) -> bool:
    """Whether the cache entry already holds this tuning job: same kernels and search options, and a budget at
    least `trials` (or every feasible candidate measured). A bigger budget resumes the study instead."""
    if stored is None or not stored.is_current() or stored.search != plan.search:
        return False
    budget = stored.budget if stored.budget is not None else stored.trials_run
    return bool(stored.exhausted) or (isinstance(budget, int) and budget >= trials)


def result_from_entry(problem: ConvProblem, entry: tuning_cache.CacheEntry, wall: float) -> TuneResult:
    config = {k: v for k, v in entry.config.items() if k != FAMILY}
    return TuneResult(
        problem=problem, family=entry.family, config=config, time_ms=entry.time_ms,
        cudnn_time_ms=entry.cudnn_time_ms, rel_error=entry.rel_error or 0.0, trials_run=0, wall_time_s=wall,
        precision=entry.precision, from_cache=True, device=entry.fingerprint,
    )


def prior_records(stored: tuning_cache.CacheEntry, space: SearchSpace) -> dict[str, dict[str, Any]]:
    """The entry's trial records that still describe today's kernels, by candidate key (they answer repeats)."""
    prior = {}
    for record in stored.usable_trials():
        family = space.families.get(record.get("family", ""))
        if family is not None and family.version == record.get("family_version") and record.get("error") != LEGACY_INTERRUPTED_ERROR:
            prior[params_key(record["config"])] = record
    return prior


def trial_record(space: SearchSpace, candidate: Candidate, time_ms: Optional[float], rel_error: Optional[float],
                 error: Optional[str]) -> dict[str, Any]:
    return {
        "family": candidate[FAMILY], "family_version": space.families[candidate[FAMILY]].version,
        "config": candidate, "time_ms": time_ms, "rel_error": rel_error, "error": error,
    }


def trial_records(run: RunState) -> list[dict[str, Any]]:
    """The earlier records plus every trial this study measured itself (not repeats or cached answers)."""
    records = dict(run.prior)
    for t in run.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        if t.user_attrs.get("repeat_of") is not None or t.user_attrs.get("from_cache"):
            continue
        candidate = run.space.candidate(t.params)
        records[params_key(candidate)] = trial_record(
            run.space, candidate, t.value, t.user_attrs.get("rel_error"), t.user_attrs.get("error") if t.state == TrialState.FAIL else None
        )
    return list(records.values())


def cache_entry(run: RunState, result: TuneResult, *, cudnn_error: Optional[str], budget: int) -> tuning_cache.CacheEntry:
    """The cache entry of the winner `result` of `run` (CacheEntry.from_result; the search adds what only it knows)."""
    return tuning_cache.CacheEntry.from_result(
        result, family_version=run.space.families[result.family].version, cudnn_error=cudnn_error,
        trials_run=trials_spent(run.study), budget=budget, exhausted=run.exhausted(), search=run.plan.search,
        trials=trial_records(run), timer="wall-clock (interpreter)" if run.runner.device == "cpu" else "cuda",
    )
