"""`RunState`: what one tuning call knows and counts while it asks and tells: finished trials by params, an
earlier run's cached timings, the grid cursor, the best time and the early-stopping counter."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import optuna
from optuna.trial import TrialState

from .plan import SearchPlan
from .runner import Measurement, Runner
from .space import PRECISION, Candidate, SearchSpace
from .study import params_key, queue_empty


def runner_config(candidate: Candidate) -> dict[str, Any]:
    """The dispatch config the runner launches; the precision travels in the problem instead."""
    return {k: v for k, v in candidate.items() if k != PRECISION}


@dataclass
class RunState:
    """State of one tuning call: the study, what is already known, counters."""

    space: SearchSpace
    study: optuna.Study
    runner: Runner
    plan: SearchPlan
    grid: list[dict[str, Any]]  # a small space: every feasible candidate's params, in the order they are tried
    seeds: set[str] = field(default_factory=set)  # params JSON of the seed candidates
    known: dict[str, optuna.trial.FrozenTrial] = field(default_factory=dict)  # params JSON -> finished trial
    prior: dict[str, dict[str, Any]] = field(default_factory=dict)  # candidate JSON -> cached trial record
    benchmarks: int = 0
    finished: int = 0  # trials told by this call that count against the budget (not infeasible ones)
    infeasible: int = 0
    since_best: int = 0
    best: Optional[float] = None

    tried: set[str] = field(default_factory=set)  # params JSON of finished or infeasible trials
    _grid_cursor: int = 0

    def __post_init__(self) -> None:
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
            self.known.setdefault(params_key(t.params), t)
        self.tried = set(self.known) | {
            params_key(t.params) for t in self.study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
            if "infeasible" in t.user_attrs
        }
        best = [t.value for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        self.best = min(best) if best else None

    def finish(self, trial: optuna.Trial, *, value: Optional[float] = None, state: TrialState = TrialState.COMPLETE,
               attrs: Optional[dict[str, Any]] = None, counts: bool = True) -> None:
        for name, v in (attrs or {}).items():
            trial.set_user_attr(name, v)
        frozen = self.study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
        self.tried.add(params_key(frozen.params))
        if state == TrialState.PRUNED:
            self.infeasible += 1
            return
        self.known.setdefault(params_key(frozen.params), frozen)
        self.finished += 1
        if not counts:
            return
        if state == TrialState.COMPLETE and (self.best is None or value < self.best):  # type: ignore[operator]
            self.best, self.since_best = value, 0
        else:
            self.since_best += 1

    def next_grid(self) -> Optional[dict[str, Any]]:
        """The next grid candidate's params not tried yet; None when the grid is exhausted."""
        while self._grid_cursor < len(self.grid):
            params = self.grid[self._grid_cursor]
            if params_key(params) not in self.tried:
                return params
            self._grid_cursor += 1
        return None

    def ready(self) -> bool:
        """Make sure the next ask has a candidate: on a grid, enqueue the next untried one unless some trial is
        queued already (a re-queued interrupted one, a seed). False when a grid has nothing left."""
        if not self.grid or not queue_empty(self.study):
            return True
        params = self.next_grid()
        if params is None:
            return False
        self._grid_cursor += 1
        self.study.enqueue_trial(params, user_attrs={"seed": True} if params_key(params) in self.seeds else None)
        return True

    def exhausted(self) -> bool:
        return bool(self.grid) and queue_empty(self.study) and self.next_grid() is None

    def answer_known(self, trial: optuna.Trial, candidate: Candidate) -> bool:
        """Finish `trial` from an identical finished trial or an earlier run's cached timing; False if unknown."""
        earlier = self.known.get(params_key(trial.params))
        if earlier is not None:
            attrs = {"repeat_of": earlier.number, **{k: v for k, v in earlier.user_attrs.items() if k in ("error", "rel_error")}}
            self.finish(trial, value=earlier.value, state=earlier.state, attrs=attrs, counts=False)
            return True
        record = self.prior.get(params_key(candidate))
        if record is not None:
            attrs = {"from_cache": True, "rel_error": record.get("rel_error")}
            if record.get("error"):
                self.finish(trial, state=TrialState.FAIL, attrs={**attrs, "error": record["error"]}, counts=False)
            else:
                self.finish(trial, value=record["time_ms"], attrs=attrs, counts=False)
            return True
        return False

    def measure(self, trial: optuna.Trial, candidate: Candidate, compiled: Optional[dict[str, Any]] = None,
                meanwhile: Optional[Callable[[], None]] = None) -> Measurement:
        """Benchmark the candidate and tell the result; `compiled`: its compile's trial attributes. A runner
        with `start_benchmark` (the GPU worker process) works on it while `meanwhile()` runs here; others
        measure first (then `meanwhile` is not called)."""
        self.benchmarks += 1
        problem, config = self.space.problem_for(candidate), runner_config(candidate)
        start = getattr(self.runner, "start_benchmark", None)
        if start is not None and meanwhile is not None:
            waiting = start(problem, config, self.plan.tolerance)
            meanwhile()
            m = waiting()
        else:
            m = self.runner.benchmark(problem, config, self.plan.tolerance)
        timing = {**(compiled or {}), **{k: v for k, v in (("check_s", m.check_s), ("time_s", m.time_s), ("compiles", m.compiles)) if v is not None}}
        if m.ok:
            self.finish(trial, value=m.time_ms, attrs={"rel_error": m.rel_error, **timing})
        else:
            attrs = {"error": m.error, "crashed": m.crashed, **timing}
            if m.rel_error is not None:
                attrs["rel_error"] = m.rel_error
            self.finish(trial, state=TrialState.FAIL, attrs=attrs)
        return m
