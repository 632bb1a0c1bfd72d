"""The ask/tell loop of one problem's study, pipelined with the compile pool, and the re-timing of the best
few candidates that picks the winner."""
from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any, Callable, Optional

import optuna
from optuna.trial import TrialState

from .compile_pool import Precompiler
from .result import TuningError
from .runner import Measurement, Runner
from .space import FAMILY, Candidate
from .state import RunState, runner_config
from .study import params_key, trials_spent

# Samplers may keep proposing infeasible candidates on a mostly-infeasible space: stop after this many per trial.
MAX_INFEASIBLE_PER_TRIAL = 50

ProgressHook = Callable[[int, int, Optional[float]], None]  # (trials finished, budget, best ms so far)


def ask(run: RunState) -> Optional[tuple[optuna.Trial, Candidate]]:
    """Ask the sampler for one trial; None when it was infeasible or answered from what is known."""
    trial = run.study.ask()
    candidate = run.space.suggest(trial)
    reason = run.space.violation(candidate, pruning=not trial.user_attrs.get("seed"))
    if reason:
        run.finish(trial, state=TrialState.PRUNED, attrs={"infeasible": reason}, counts=False)
    elif not run.answer_known(trial, candidate):
        return trial, candidate
    return None


def screened(runner: Runner, search: Callable[[], None]) -> None:
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


def search(run: RunState, trials: int, timeout: Optional[float], early_stop: Optional[int],
           precompiler: Optional[Precompiler], on_progress: Optional[ProgressHook]) -> None:
    """Ask, reject, answer or measure, tell: until the budget, the timeout, early stopping or an exhausted grid.

    Pipelined: up to two candidates per compile worker are compiling while the runner measures the oldest one,
    so the GPU and the compile pool work at the same time, and a runner with `start_benchmark` measures while
    the next candidates are asked for. Candidates still in flight when the search stops are told PRUNED ("not
    run") and cost nothing."""
    start = time.monotonic()
    done = trials_spent(run.study)
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
            asked = ask(run)
            if asked is not None:
                trial, candidate = asked
                future = precompiler.submit(run.space.problem_for(candidate), candidate[FAMILY], runner_config(candidate)) if precompiler else None
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
        if params_key(trial.params) in run.known:  # an identical candidate asked earlier in this pipeline
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


def winner(run: RunState, retime_top: int) -> tuple[Candidate, Measurement]:
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
        raise TuningError(f"no candidate ran correctly for {run.plan.problem.key}: {detail}")
    best: Optional[tuple[Candidate, Measurement]] = None
    for candidate in top:
        run.benchmarks += 1
        m = run.runner.benchmark(run.space.problem_for(candidate), runner_config(candidate), run.plan.tolerance)
        if m.ok and (best is None or m.time_ms < best[1].time_ms):  # type: ignore[operator]
            best = (candidate, m)
    if best is None:
        raise TuningError(f"none of the {len(top)} best candidates for {run.plan.problem.key} ran again when re-timed")
    return best
