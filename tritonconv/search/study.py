"""`tune(problem)`: an Optuna study over every supporting kernel family, checked and timed, stored in the cache.

One tuning run:
  1. a warm cache entry for the same problem, device, kernel sources and search options answers at once,
     unless a bigger trial budget is asked for: then its study resumes and adds the missing trials;
  2. otherwise a study (one Optuna journal file per study beside the cache, see journal.py, so a killed run
     resumes) samples candidates: every feasible candidate in turn (seeds first, then a seeded random order)
     when they fit the trial budget, else TPE (multivariate, group) seeded with each family's default and
     heuristic configs. Trials a killed or interrupted run left unfinished are pruned and enqueued again:
     measured on resume, never taken as failures;
  3. infeasible candidates (constraints, pruning rules, compiled spills / shared memory on a GPU) are PRUNED
     with user_attr "infeasible" without running; repeated ones are answered from the study or the cache's
     earlier trials; the rest run through the Runner, which checks them against a float64 reference before
     timing; failures are FAIL trials with user_attr "error" and the run goes on;
  4. the top few are re-timed, cuDNN is timed in the same runner, and the winner goes into the cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import time
import warnings
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

import optuna
import torch
from optuna.storages import JournalStorage
from optuna.trial import TrialState

from .. import cache as tuning_cache
from ..errors import InvalidInputError, TritonConvError
from ..enums import Precision
from ..problem import ConvProblem
from ..runtime import INTERPRET, device_info
from . import journal
from .compile_pool import Precompiler
from .options import check_tune_options
from .runner import InProcessRunner, Measurement, Runner, SubprocessRunner
from .space import FAMILY, PRECISION, Candidate, SearchSpace

# Trials that count against the budget. PRUNED ones cost nothing: infeasible candidates (user_attr "infeasible")
# and trials a stopped run left unfinished (enqueued again; the new trial's user_attr REQUEUED names the old one).
BUDGETED = (TrialState.COMPLETE, TrialState.FAIL)
REQUEUED = "requeued_from"
# Earlier versions stored interrupted trials as failures in cache entries: such records are not answers.
LEGACY_INTERRUPTED_ERROR = "interrupted: the tuning process stopped"
# Samplers may keep proposing infeasible candidates on a mostly-infeasible space: stop after this many per trial.
MAX_INFEASIBLE_PER_TRIAL = 50
# Feasible spaces up to this size (or the trial budget) are searched with a GridSampler: sampling among feasible
# candidates only beats a model-based sampler that spends most of its proposals on infeasible ones.
GRID_MAX = 512

optuna.logging.set_verbosity(optuna.logging.WARNING)


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
        if self.cudnn_time_ms is None or not self.time_ms:
            return None
        return self.cudnn_time_ms / self.time_ms

    @property
    def backend(self) -> str:
        """What dispatch with backend="auto" runs for this problem."""
        speedup = self.speedup
        return "cudnn" if speedup is not None and speedup < 1 else "triton"


# ------------------------------------------------------------------------------------------------------------
# Setup helpers
# ------------------------------------------------------------------------------------------------------------
def capturing() -> bool:
    """Whether the current CUDA stream is capturing a graph (tuning would break the capture)."""
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def default_runner() -> Runner:
    """The GPU subprocess runner; in the Triton interpreter, the in-process one (CPU wall-clock times)."""
    if torch.cuda.is_available() and not INTERPRET:
        return SubprocessRunner()
    if INTERPRET:
        return InProcessRunner()
    raise TuningError(
        "no CUDA GPU found: tuning measures kernels on a GPU. To try the search on the CPU, run it in the Triton "
        "interpreter (TRITON_INTERPRET=1 before importing tritonconv, or `tritonconv tune --interpret`)"
    )


@dataclass
class _Options:
    problem: ConvProblem  # the key problem: its precision is the one callers dispatch with
    precisions: tuple[str, ...]
    convert_options: tuple[bool, ...]
    tolerance: float
    search: dict[str, Any]  # what the cache records about how this entry was tuned


def _options(problem: ConvProblem, precision: Optional[str], tolerance: Optional[float], layouts: str) -> _Options:
    allowed = Precision.for_dtype(problem.dtype)
    if precision == "auto":
        precisions = (problem.precision,) + tuple(p for p in allowed if p != problem.precision)
    elif precision is None:
        precisions = (problem.precision,)
    elif precision in allowed:
        problem, precisions = problem.with_(precision=precision), (precision,)
    else:
        raise InvalidInputError(f"precision {precision!r} is not available for {problem.dtype}; choose from {allowed} or 'auto'")
    if layouts not in ("native", "auto"):
        raise InvalidInputError(f"layouts must be 'native' or 'auto', got {layouts!r}")
    if tolerance is not None and not tolerance > 0:
        raise InvalidInputError(f"tolerance must be positive, got {tolerance!r}")
    tol = float(tolerance if tolerance is not None else Precision(problem.precision).tolerance)
    converts = (False, True) if layouts == "auto" else (False,)
    search = {"precision": "auto" if precision == "auto" else "fixed", "layouts": layouts, "tolerance": tol}
    return _Options(problem, precisions, converts, tol, search)


def _cache_file(cache: Union[None, bool, str, Path]) -> Optional[Path]:
    if cache is False:
        return None
    directory = tuning_cache.cache_dir() if cache in (None, True) else Path(cache)  # type: ignore[arg-type]
    return directory / tuning_cache.CACHE_FILE


def _trial_record(space: SearchSpace, candidate: Candidate, time_ms: Optional[float], rel_error: Optional[float], error: Optional[str]) -> dict[str, Any]:
    return {
        "family": candidate[FAMILY], "family_version": space.families[candidate[FAMILY]].version,
        "config": candidate, "time_ms": time_ms, "rel_error": rel_error, "error": error,
    }


# ------------------------------------------------------------------------------------------------------------
# The study
# ------------------------------------------------------------------------------------------------------------
ProgressHook = Callable[[int, int, Optional[float]], None]  # (trials finished, budget, best ms so far)


@dataclass
class _Run:
    """State of one tuning call: the study, what is already known, counters."""

    space: SearchSpace
    study: optuna.Study
    runner: Runner
    options: _Options
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
            self.known.setdefault(_params_key(t.params), t)
        self.tried = set(self.known) | {
            _params_key(t.params) for t in self.study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
            if "infeasible" in t.user_attrs
        }
        best = [t.value for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        self.best = min(best) if best else None

    def finish(self, trial: optuna.Trial, *, value: Optional[float] = None, state: TrialState = TrialState.COMPLETE,
               attrs: Optional[dict[str, Any]] = None, counts: bool = True) -> None:
        for name, v in (attrs or {}).items():
            trial.set_user_attr(name, v)
        frozen = self.study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
        self.tried.add(_params_key(frozen.params))
        if state == TrialState.PRUNED:
            self.infeasible += 1
            return
        self.known.setdefault(_params_key(frozen.params), frozen)
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
            if _params_key(params) not in self.tried:
                return params
            self._grid_cursor += 1
        return None

    def ready(self) -> bool:
        """Make sure the next ask has a candidate: on a grid, enqueue the next untried one unless some trial is
        queued already (a re-queued interrupted one, a seed). False when a grid has nothing left."""
        if not self.grid or not _queue_empty(self.study):
            return True
        params = self.next_grid()
        if params is None:
            return False
        self._grid_cursor += 1
        self.study.enqueue_trial(params, user_attrs={"seed": True} if _params_key(params) in self.seeds else None)
        return True

    def exhausted(self) -> bool:
        return bool(self.grid) and _queue_empty(self.study) and self.next_grid() is None

    def answer_known(self, trial: optuna.Trial, candidate: Candidate) -> bool:
        """Finish `trial` from an identical finished trial or an earlier run's cached timing; False if unknown."""
        earlier = self.known.get(_params_key(trial.params))
        if earlier is not None:
            attrs = {"repeat_of": earlier.number, **{k: v for k, v in earlier.user_attrs.items() if k in ("error", "rel_error")}}
            self.finish(trial, value=earlier.value, state=earlier.state, attrs=attrs, counts=False)
            return True
        record = self.prior.get(_candidate_key(candidate))
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
        problem, config = self.space.problem_for(candidate), _runner_config(candidate)
        start = getattr(self.runner, "start_benchmark", None)
        if start is not None and meanwhile is not None:
            waiting = start(problem, config, self.options.tolerance)
            meanwhile()
            m = waiting()
        else:
            m = self.runner.benchmark(problem, config, self.options.tolerance)
        timing = {**(compiled or {}), **{k: v for k, v in (("check_s", m.check_s), ("time_s", m.time_s), ("compiles", m.compiles)) if v is not None}}
        if m.ok:
            self.finish(trial, value=m.time_ms, attrs={"rel_error": m.rel_error, **timing})
        else:
            attrs = {"error": m.error, "crashed": m.crashed, **timing}
            if m.rel_error is not None:
                attrs["rel_error"] = m.rel_error
            self.finish(trial, state=TrialState.FAIL, attrs=attrs)
        return m


def _params_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def _candidate_key(candidate: Candidate) -> str:
    return json.dumps(candidate, sort_keys=True)


def _runner_config(candidate: Candidate) -> dict[str, Any]:
    """The dispatch config the runner launches; the precision travels in the problem instead."""
    return {k: v for k, v in candidate.items() if k != PRECISION}


def _study_name(key: str, space: SearchSpace, options: _Options) -> str:
    versions = sorted(f"{name}:{family.version}" for name, family in space.families.items())
    digest = hashlib.sha256(json.dumps([versions, options.search]).encode()).hexdigest()[:12]
    return f"{key}|{digest}"


def _make_study(space: SearchSpace, storage: JournalStorage, name: str, trials: int,
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
    return study, grid, {_params_key(space.params(c)) for c in seeds}


def _queue_empty(study: optuna.Study) -> bool:
    return not study.get_trials(deepcopy=False, states=(TrialState.WAITING,))


def _ask(run: _Run) -> Optional[tuple[optuna.Trial, Candidate]]:
    """Ask the sampler for one trial; None when it was infeasible or answered from what is known."""
    trial = run.study.ask()
    candidate = run.space.suggest(trial)
    reason = run.space.violation(candidate, pruning=not trial.user_attrs.get("seed"))
    if reason:
        run.finish(trial, state=TrialState.PRUNED, attrs={"infeasible": reason}, counts=False)
    elif not run.answer_known(trial, candidate):
        return trial, candidate
    return None


def _screened(runner: Runner, search: Callable[[], None]) -> None:
    """Run the search with the runner's quick screening timer where it has one (`runner.screening`); the
    winner's re-timing afterwards uses the full timer."""
    screens = hasattr(runner, "screening")
    if screens:
        runner.screening = True  # type: ignore[attr-defined]
    try:
        search()
    finally:
        if screens:
            runner.screening = False  # type: ignore[attr-defined]


def _search(run: _Run, trials: int, timeout: Optional[float], early_stop: Optional[int], precompiler: Optional[Precompiler],
            on_progress: Optional[ProgressHook]) -> None:
    """Ask, reject, answer or measure, tell: until the budget, the timeout, early stopping or an exhausted grid.

    Pipelined: up to two candidates per compile worker are compiling while the runner measures the oldest one,
    so the GPU and the compile pool work at the same time, and a runner with `start_benchmark` measures while
    the next candidates are asked for. Candidates still in flight when the search stops are told PRUNED ("not
    run") and cost nothing."""
    start = time.monotonic()
    done = _trials_spent(run.study)
    depth = 2 * precompiler.workers if precompiler else 1
    pending: deque[tuple[optuna.Trial, Candidate, Any]] = deque()
    measuring = [0]  # 1 while a trial is being measured: it counts against the budget, not the compile lookahead

    def stopping() -> bool:
        return (
            (timeout is not None and time.monotonic() - start > timeout)
            or bool(early_stop and run.best is not None and run.since_best >= early_stop)
            or run.infeasible >= MAX_INFEASIBLE_PER_TRIAL * trials
        )

    def fill() -> None:
        """Ask for candidates (and start compiling them) until `depth` are in flight or the budget is asked for."""
        while (len(pending) < depth and done + run.finished + len(pending) + measuring[0] < trials
               and run.infeasible < MAX_INFEASIBLE_PER_TRIAL * trials
               and run.ready()):
            asked = _ask(run)
            if asked is not None:
                trial, candidate = asked
                future = precompiler.submit(run.space.problem_for(candidate), candidate[FAMILY], _runner_config(candidate)) if precompiler else None
                pending.append((trial, candidate, future))
        if precompiler is not None and done + run.finished + len(pending) + measuring[0] >= trials:
            precompiler.prefetch()  # the last candidate is asked: the pool starts on the next problem's seeds

    while not stopping():
        fill()
        if not pending:
            break
        trial, candidate, future = pending.popleft()
        compiled = None
        if future is not None:
            verdict = precompiler.verdict(future, timeout=precompiler.compile_timeout_s)  # type: ignore[union-attr]
            compiled = verdict.attrs()
            if verdict.infeasible:
                run.finish(trial, state=TrialState.PRUNED, attrs={"infeasible": verdict.infeasible, **compiled}, counts=False)
                continue
            if verdict.error:
                run.finish(trial, state=TrialState.FAIL, attrs={"error": verdict.error, **compiled})
                continue
        if _params_key(trial.params) in run.known:  # an identical candidate asked earlier in this pipeline
            run.answer_known(trial, candidate)
            continue
        # the next asks (Optuna's sampling, the launch hashes) run while the GPU worker measures this one
        measuring[0] = 1
        try:
            run.measure(trial, candidate, compiled, meanwhile=fill)
        finally:
            measuring[0] = 0
        if on_progress:
            on_progress(done + run.finished, trials, run.best)
    if precompiler is not None:
        precompiler.prefetch()
    for trial, _, future in pending:
        if future is not None:
            future.cancel()
        run.study.tell(trial, None, state=TrialState.PRUNED)


def _winner(run: _Run, retime_top: int) -> tuple[Candidate, Measurement]:
    """Re-time the best few distinct candidates and keep the fastest re-timed one."""
    complete = sorted(run.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.value)
    top: list[Candidate] = []
    for t in complete:
        candidate = run.space.candidate(t.params)
        if candidate not in top and run.space.violation(candidate, pruning=False) is None:
            top.append(candidate)
        if len(top) >= max(1, retime_top):
            break
    if not top:
        failed = run.study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        errors = Counter(str(t.user_attrs.get("error", "?"))[:160] for t in failed).most_common(3)
        detail = "; ".join(f"{n}x {e}" for e, n in errors) or "every sampled candidate was infeasible"
        raise TuningError(f"no candidate ran correctly for {run.options.problem.key}: {detail}")
    best: Optional[tuple[Candidate, Measurement]] = None
    for candidate in top:
        run.benchmarks += 1
        m = run.runner.benchmark(run.space.problem_for(candidate), _runner_config(candidate), run.options.tolerance)
        if m.ok and (best is None or m.time_ms < best[1].time_ms):  # type: ignore[operator]
            best = (candidate, m)
    if best is None:
        raise TuningError(f"none of the {len(top)} best candidates for {run.options.problem.key} ran again when re-timed")
    return best


TIMELINE_ATTRS = ("compile_s", "compile_cpu_s", "compile_shared", "compile_cache_hits", "check_s", "time_s", "compiles",
                  "infeasible", "error", "repeat_of", "from_cache", "seed")


def _timeline(study: optuna.Study) -> list[dict[str, Any]]:
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


def _trial_records(run: _Run) -> list[dict[str, Any]]:
    records = {k: v for k, v in run.prior.items()}
    for t in run.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        if t.user_attrs.get("repeat_of") is not None or t.user_attrs.get("from_cache"):
            continue
        candidate = run.space.candidate(t.params)
        records[_candidate_key(candidate)] = _trial_record(
            run.space, candidate, t.value, t.user_attrs.get("rel_error"), t.user_attrs.get("error") if t.state == TrialState.FAIL else None
        )
    return list(records.values())


def _result_from_entry(problem: ConvProblem, entry: tuning_cache.CacheEntry, wall: float) -> TuneResult:
    config = {k: v for k, v in entry.config.items() if k != FAMILY}
    return TuneResult(
        problem=problem, family=entry.family, config=config, time_ms=entry.time_ms,
        cudnn_time_ms=entry.cudnn_time_ms, rel_error=entry.rel_error or 0.0, trials_run=0, wall_time_s=wall,
        precision=entry.precision, from_cache=True, device=entry.fingerprint,
    )


def _trials_spent(study: optuna.Study) -> int:
    """Trials that count against the budget: measured or failed candidates (not infeasible or interrupted ones)."""
    return len(study.get_trials(deepcopy=False, states=BUDGETED))


def _requeue_unfinished(study: optuna.Study) -> int:
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


def _answered_by_cache(stored: Optional[tuning_cache.CacheEntry], options: _Options, trials: int) -> bool:
    """Whether the cache entry already holds this tuning job: same kernels and search options, and a budget at
    least `trials` (or every feasible candidate measured). A bigger budget resumes the study instead."""
    if stored is None or not stored.is_current() or stored.search != options.search:
        return False
    budget = stored.budget if stored.budget is not None else stored.trials_run
    return bool(stored.exhausted) or (isinstance(budget, int) and budget >= trials)


def _tune_one(problem: ConvProblem, runner: Runner, *, precision: Optional[str], tolerance: Optional[float], layouts: str,
              cache: Union[None, bool, str, Path], **search: Any) -> TuneResult:
    """One problem under its tuning lock: a second process tuning the same problem (same device and cache)
    waits, then finds the first one's result in the cache."""
    options = _options(problem, precision, tolerance, layouts)
    device_fp = device_info(runner.device).fingerprint
    key = tuning_cache.entry_key(options.problem, device_fp)
    cache_file = _cache_file(cache)
    directory = cache_file.parent if cache_file else Path(tuning_cache.cache_dir()) / "scratch"
    stem = journal.problem_stem(options.problem.key, key)
    with journal.tuning_lock(directory, stem):
        return _tune_one_locked(options, runner, device_fp, key, cache_file, directory, stem, **search)


def _tune_one_locked(options: _Options, runner: Runner, device_fp: str, key: str, cache_file: Optional[Path],
                     directory: Path, stem: str, *, trials: int, timeout: Optional[float], resume: bool,
                     early_stop: Optional[int], retime_top: int, seed: int, precompiler: Optional[Precompiler],
                     on_progress: Optional[ProgressHook]) -> TuneResult:
    started = time.perf_counter()
    stored = tuning_cache.read_entry(key, path=cache_file) if cache_file else None
    if resume and _answered_by_cache(stored, options, trials):
        return _result_from_entry(options.problem, stored, time.perf_counter() - started)  # type: ignore[arg-type]

    space = SearchSpace(options.problem, precisions=options.precisions, convert_options=options.convert_options)
    name = _study_name(key, space, options)
    path = journal.journal_path(directory, stem, name)
    if not resume:
        journal.discard(path)
    opened = journal.open_journal(path)
    study, grid, seeds = _make_study(space, opened.storage, name, trials, seed)
    _requeue_unfinished(study)
    run = _Run(space, study, runner, options, grid, seeds)
    if stored is not None and resume:
        for record in stored.usable_trials():
            family = space.families.get(record.get("family", ""))
            if family is not None and family.version == record.get("family_version") and record.get("error") != LEGACY_INTERRUPTED_ERROR:
                run.prior[_candidate_key(record["config"])] = record
    try:
        # cuDNN first: its time bounds how long a candidate may run (SubprocessRunner's adaptive hang timeout)
        run.benchmarks += 1
        baseline = runner.baseline(options.problem)
        _screened(runner, lambda: _search(run, trials, timeout, early_stop, precompiler, on_progress))
        candidate, measured = _winner(run, retime_top)
    except KeyboardInterrupt:
        _requeue_unfinished(study)
        raise TuningInterrupted(
            f"tuning {options.problem.key} was interrupted: its {_trials_spent(study)} finished trials are kept in "
            f"{path}, and tuning it again resumes from them"
        ) from None
    except OSError as exc:
        if opened.replaced():
            raise TuningError(
                f"the study journal {path} was removed while {options.problem.key} was being tuned ({exc}); "
                f"nothing was cached for it: tune it again to start afresh"
            ) from None
        raise
    if opened.replaced():  # removed meanwhile: what this run appended since is a fragment, not a study
        journal.discard(path)
    cudnn_ms = baseline.time_ms if baseline.ok else None

    config = {k: v for k, v in candidate.items() if k != FAMILY}
    result = TuneResult(
        problem=options.problem, family=candidate[FAMILY], config=config, time_ms=float(measured.time_ms),  # type: ignore[arg-type]
        cudnn_time_ms=cudnn_ms, rel_error=float(measured.rel_error or 0.0), trials_run=run.finished,
        wall_time_s=time.perf_counter() - started, precision=space.problem_for(candidate).precision,
        benchmarks_run=run.benchmarks, device=device_fp, timeline=_timeline(run.study),
        journal=None if opened.replaced() else path,
    )
    if cache_file:
        entry = tuning_cache.CacheEntry.from_result(
            result, family_version=space.families[result.family].version,
            cudnn_error=None if baseline.ok else baseline.error, trials_run=_trials_spent(study), budget=trials,
            exhausted=run.exhausted(), search=options.search, trials=_trial_records(run),
            timer="wall-clock (interpreter)" if runner.device == "cpu" else "cuda",
        )
        tuning_cache.update({key: entry}, path=cache_file)
    return result


# ------------------------------------------------------------------------------------------------------------
# Public API
# ------------------------------------------------------------------------------------------------------------
def tune(
    problem: ConvProblem,
    *,
    trials: int = 64,
    timeout: Optional[float] = None,
    precision: Optional[str] = None,
    tolerance: Optional[float] = None,
    layouts: str = "native",
    resume: bool = True,
    early_stop: Optional[int] = 24,
    runner: Optional[Runner] = None,
    cache: Union[None, bool, str, Path] = None,
    progress: bool = True,
    retime_top: int = 3,
    seed: int = 0,
    compile_workers: Optional[int] = None,
) -> TuneResult:
    """Tune `problem` on this device and store the winner (and cuDNN's time) in the cache.

    Args:
        trials: trial budget of the problem's study (a resumed study counts its earlier trials).
        timeout: seconds of searching after which the best so far wins.
        precision: None keeps `problem.precision`; a name fixes it; "auto" lets every precision allowed for the
            dtype compete, only those within `tolerance` of the float64 reference may win.
        tolerance: max relative error; default Precision(problem.precision).tolerance.
        layouts: "native" reads the input as given; "auto" also tries converting NCHW input to NHWC first.
        resume: reuse the cache entry / continue the stored study; False re-tunes from scratch.
        early_stop: stop after this many measured trials without a new best (None: never).
        runner: how candidates are run and timed (default: a GPU worker subprocess; the interpreter on a CPU).
        cache: None/True: the default cache dir; a directory path; False: neither read nor write the cache.
        compile_workers: processes compiling candidates ahead of the GPU (default: all cores but one; 0
            disables); one pool serves every problem of a tune_many call.
    """
    return tune_many([problem], trials=trials, timeout=timeout, precision=precision, tolerance=tolerance,
                     layouts=layouts, resume=resume, early_stop=early_stop, runner=runner, cache=cache,
                     progress=progress, retime_top=retime_top, seed=seed, compile_workers=compile_workers)[0]


def tune_many(problems: Iterable[ConvProblem], *, progress: bool = True, runner: Optional[Runner] = None,
              precompiler: Optional[Precompiler] = None, **options: Any) -> list[TuneResult]:
    """`tune` each distinct problem (de-duplicated by key, results in input order) with one runner and a rich
    progress bar over problems; takes tune's keyword arguments. `precompiler`: a compile pool to use instead of
    a new one (the caller closes it; its `stats` count what it compiled)."""
    if capturing():
        raise TuningError(
            "cannot tune while a CUDA graph is being captured (benchmarking would break the capture): tune before "
            "capturing, then capture with the tuned configs"
        )
    problems = list(problems)
    check_tune_options(problems, options)
    owned, own_pool = runner is None, precompiler is None
    runner = runner or default_runner()
    unique: dict[str, ConvProblem] = {}
    for p in problems:
        unique.setdefault(p.key, p)
    results: dict[str, TuneResult] = {}
    defaults = dict(trials=64, timeout=None, precision=None, tolerance=None, layouts="native", resume=True,
                    early_stop=24, cache=None, retime_top=3, seed=0, compile_workers=None)
    unknown = set(options) - set(defaults)
    if unknown:
        raise TypeError(f"unknown tuning option(s) {sorted(unknown)}")
    settings = {**defaults, **options}
    compile_workers = settings.pop("compile_workers")
    try:
        precompiler = precompiler or _precompiler(runner, compile_workers)
        with _progress_bar(progress) as bar:
            overall = bar.add_task("problems", total=len(unique)) if bar else None
            queue = list(unique.values())
            for index, (key, problem) in enumerate(unique.items()):
                if precompiler is not None and index + 1 < len(queue):
                    precompiler.upcoming = _seed_jobs(queue[index + 1], runner, settings)
                label = problem.long_label
                task = bar.add_task(label, total=settings["trials"]) if bar else None

                def on_progress(done: int, total: int, best: Optional[float], task=task, label=label) -> None:
                    if bar is not None:
                        best_text = f"best so far {best:.4g} ms" if best is not None else "no valid candidate yet"
                        bar.update(task, completed=done, description=f"{label}: {best_text}")

                result = results[key] = _tune_one(problem, runner, on_progress=on_progress, precompiler=precompiler,
                                                  **settings)
                if bar is not None:
                    how = "cached" if result.from_cache else f"{result.trials_run} trials"
                    bar.update(task, completed=settings["trials"], visible=False,
                               description=f"{label}: {result.family} {result.time_ms:.4g} ms re-timed ({how})")
                    bar.advance(overall)
    finally:
        if precompiler is not None and own_pool:
            precompiler.close()
        if owned:
            runner.close()
    return [results[p.key] for p in problems]


def _seed_jobs(problem: ConvProblem, runner: Runner, settings: dict[str, Any]) -> list[tuple[ConvProblem, str, dict[str, Any]]]:
    """The compile jobs of the problem's seed candidates, the first ones its search will ask (none when the
    cache answers the problem, or the problem cannot be tuned: its own turn reports why)."""
    try:
        options = _options(problem, settings["precision"], settings["tolerance"], settings["layouts"])
        cache_file = _cache_file(settings["cache"])
        if settings["resume"] and cache_file:
            key = tuning_cache.entry_key(options.problem, device_info(runner.device).fingerprint)
            if _answered_by_cache(tuning_cache.read_entry(key, path=cache_file), options, settings["trials"]):
                return []
        space = SearchSpace(options.problem, precisions=options.precisions, convert_options=options.convert_options)
        seeds = space.seeds()[: settings["trials"]]
    except TritonConvError:
        return []
    return [(space.problem_for(c), c[FAMILY], _runner_config(c)) for c in seeds]


def default_compile_workers() -> int:
    """Compile processes beside the benchmark worker: every core but one (the GPU process), at least one."""
    return max(1, (os.cpu_count() or 2) - 1)


def _precompiler(runner: Runner, workers: Optional[int]) -> Optional[Precompiler]:
    """The compile pool for the runner's device: a CUDA runner's GPU, or a runner's `compile_target` (the fake
    runner of bench/tune_speed.py); none in the interpreter or with `workers == 0`."""
    target = getattr(runner, "compile_target", None)
    if workers == 0 or (target is None and (runner.device != "cuda" or INTERPRET)):
        return None
    return Precompiler(target or device_info(runner.device), workers or default_compile_workers())


class _NoBar:
    def __enter__(self):
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _progress_bar(enabled: bool):
    """Trials per problem and problems overall with ETAs: a bar on a terminal, lines otherwise."""
    if not enabled:
        return _NoBar()
    from ..progress import progress

    return progress()
