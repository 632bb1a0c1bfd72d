"""The Optuna study of one problem: its name, creation or resumption (grid or TPE, seeded), and the repair of
trials a stopped run left unfinished."""
from __future__ import annotations

import hashlib
import json
import random
import warnings
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.trial import TrialState

from .plan import SearchPlan
from .space import SearchSpace

# Trials that count against the budget. PRUNED ones cost nothing: infeasible candidates (user_attr "infeasible")
# and trials a stopped run left unfinished (enqueued again; the new trial's user_attr REQUEUED names the old one).
BUDGETED = (TrialState.COMPLETE, TrialState.FAIL)
REQUEUED = "requeued_from"
# Feasible spaces up to this size (or the trial budget) are searched as a grid: sampling among feasible
# candidates only beats a model-based sampler that spends most of its proposals on infeasible ones.
GRID_MAX = 512

optuna.logging.set_verbosity(optuna.logging.WARNING)


def params_key(params: dict[str, Any]) -> str:
    """A trial's params (or a candidate) as a stable text key."""
    return json.dumps(params, sort_keys=True)


def study_name(key: str, space: SearchSpace, plan: SearchPlan) -> str:
    """The cache entry key plus a digest of the families' versions and the search options: a kernel edit or
    other options start a new study."""
    versions = sorted(f"{name}:{family.version}" for name, family in space.families.items())
    digest = hashlib.sha256(json.dumps([versions, plan.search]).encode()).hexdigest()[:12]
    return f"{key}|{digest}"


def make_study(space: SearchSpace, storage: JournalStorage, name: str, trials: int,
               seed: int) -> tuple[optuna.Study, list[dict[str, Any]], set[str]]:
    """Load or create the study: (study, grid, seed keys). A small feasible space is a grid: every candidate in
    turn, seeds first, the rest in a seeded random order, enqueued one at a time (a GridSampler would store the
    whole grid with every trial). Otherwise TPE, its study seeded with the families' default and heuristic configs."""
    feasible = space.enumerate(limit=max(trials, GRID_MAX))
    seeds = space.seeds()
    grid: list[dict[str, Any]] = []
    if feasible is not None:
        rest = [c for c in feasible if c not in seeds]
        random.Random(seed).shuffle(rest)
        grid = [space.params(c) for c in seeds + rest]
        sampler: optuna.samplers.BaseSampler = optuna.samplers.RandomSampler(seed=seed)  # never asked: the grid is
    else:
        with warnings.catch_warnings():  # `group` is flagged experimental; it is what conditional spaces need
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(multivariate=True, group=True, seed=seed, n_startup_trials=8, constant_liar=True)
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, direction="minimize", load_if_exists=True)
    if not grid and not study.get_trials(deepcopy=False):
        for candidate in seeds:
            study.enqueue_trial(space.params(candidate), user_attrs={"seed": True})
    return study, grid, {params_key(space.params(c)) for c in seeds}


def queue_empty(study: optuna.Study) -> bool:
    return not study.get_trials(deepcopy=False, states=(TrialState.WAITING,))


def trials_spent(study: optuna.Study) -> int:
    """Trials that count against the budget: measured or failed candidates (not infeasible or interrupted ones)."""
    return len(study.get_trials(deepcopy=False, states=BUDGETED))


def requeue_unfinished(study: optuna.Study) -> int:
    """Trials left RUNNING by a run that stopped (killed, Ctrl-C) are pruned, costing nothing and answering
    nothing, and enqueued again so the next trials measure them. Call only under the problem's tuning lock:
    then no other process can be running them. Returns how many there were."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study.tell(trial.number, state=TrialState.PRUNED)
        # An enqueued trial stopped before its first suggest has its params only as the enqueued fixed params.
        params = {**trial.system_attrs.get("fixed_params", {}), **trial.params}
        if params:
            seed = {"seed": True} if trial.user_attrs.get("seed") else {}
            study.enqueue_trial(params, user_attrs={**seed, REQUEUED: trial.number})
    return len(stale)


TIMELINE_ATTRS = ("compile_s", "compile_cpu_s", "compile_shared", "compile_cache_hits", "check_s", "time_s", "compiles",
                  "infeasible", "error", "repeat_of", "from_cache", "seed")


def timeline(study: optuna.Study) -> list[dict[str, Any]]:
    """Every finished trial in order: state, value, when, and the compile / check / time split (seconds)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.RUNNING:
            continue
        row = {"number": t.number, "state": t.state.name, "time_ms": t.value,
               "start": t.datetime_start.timestamp() if t.datetime_start else None,
               "end": t.datetime_complete.timestamp() if t.datetime_complete else None}
        row.update({k: t.user_attrs[k] for k in TIMELINE_ATTRS if k in t.user_attrs})
        rows.append(row)
    return rows
