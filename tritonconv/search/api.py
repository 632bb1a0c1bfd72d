"""`tune(problem)` / `tune_many(problems)`: an Optuna study over every supporting kernel family, checked and
timed, stored in the cache.

One tuning run:
  1. a warm cache entry for the same problem, device, kernel sources and search options answers at once,
     unless a bigger trial budget is asked for: then its study resumes and adds the missing trials (entries.py);
  2. otherwise a study (one Optuna journal file per study beside the cache, see journal.py, so a killed run
     resumes) samples candidates (study.py): every feasible candidate in turn (seeds first, then a seeded random
     order) when they fit the trial budget, else TPE (multivariate, group) seeded with each family's default and
     heuristic configs. Trials a killed or interrupted run left unfinished are pruned and enqueued again:
     measured on resume, never taken as failures;
  3. infeasible candidates (constraints, pruning rules, compiled spills / shared memory on a GPU) are PRUNED
     with user_attr "infeasible" without running; repeated ones are answered from the study or the cache's
     earlier trials; the rest run through the Runner, which checks them against a float64 reference before
     timing; failures are FAIL trials with user_attr "error" and the run goes on (loop.py);
  4. the top few are re-timed, cuDNN is timed in the same runner, and the winner goes into the cache.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import torch

from .. import cache as tuning_cache
from ..errors import TritonConvError
from ..problem import ConvProblem
from ..progress import progress as progress_display
from ..runtime import INTERPRET, INTERPRETER_DEVICE
from .compile_pool import Precompiler
from .entries import answered_by_cache, cache_entry, prior_records, result_from_entry
from .journal import discard, journal_path, open_journal, problem_stem, tuning_lock
from .loop import ProgressHook, screened, search, winner
from .options import DEFAULTS, TuneOptions, check_tune_options, default_compile_workers
from .plan import SearchPlan, cache_file, search_plan
from .result import TuneResult, TuningError, TuningInterrupted
from .runner import InProcessRunner, Runner, SubprocessRunner, runner_target
from .space import FAMILY, SearchSpace
from .state import RunState, runner_config
from .study import make_study, requeue_unfinished, study_name, timeline, trials_spent


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


def precompiler_for(runner: Runner, workers: Optional[int]) -> Optional[Precompiler]:
    """The compile pool for the runner's `target` (a CUDA runner's GPU, or the GPU a fake runner names, as in
    bench/tune_speed.py); none for the interpreter, for a CUDA runner in the interpreter, or with `workers == 0`."""
    target = runner_target(runner)
    if workers == 0 or target == INTERPRETER_DEVICE or (INTERPRET and runner.device == "cuda"):
        return None
    return Precompiler(target, workers or default_compile_workers())


def _tune_one(problem: ConvProblem, runner: Runner, options: TuneOptions, precompiler: Optional[Precompiler],
              on_progress: Optional[ProgressHook]) -> TuneResult:
    """One problem under its tuning lock: a second process tuning the same problem (same device and cache)
    waits, then finds the first one's result in the cache."""
    plan = search_plan(problem, options.precision, options.tolerance, options.layouts)
    device_fp = runner_target(runner).fingerprint
    key = tuning_cache.entry_key(plan.problem, device_fp)
    file = cache_file(options.cache)
    directory = file.parent if file else Path(tuning_cache.cache_dir()) / "scratch"
    stem = problem_stem(plan.problem.key, key)
    with tuning_lock(directory, stem):
        return _tune_one_locked(plan, runner, options, device_fp, key, file, directory, stem, precompiler, on_progress)


def _tune_one_locked(plan: SearchPlan, runner: Runner, options: TuneOptions, device_fp: str, key: str,
                     file: Optional[Path], directory: Path, stem: str, precompiler: Optional[Precompiler],
                     on_progress: Optional[ProgressHook]) -> TuneResult:
    started = time.perf_counter()
    trials = options.trials
    stored = tuning_cache.read_entry(key, path=file) if file else None
    if options.resume and answered_by_cache(stored, plan, trials):
        return result_from_entry(plan.problem, stored, time.perf_counter() - started)  # type: ignore[arg-type]

    space = SearchSpace(plan.problem, precisions=plan.precisions, convert_options=plan.convert_options, device=runner_target(runner))
    name = study_name(key, space, plan)
    path = journal_path(directory, stem, name)
    if not options.resume:
        discard(path)
    opened = open_journal(path)
    study, grid, seeds = make_study(space, opened.storage, name, trials, options.seed)
    requeue_unfinished(study)
    run = RunState(space, study, runner, plan, grid, seeds)
    if stored is not None and options.resume:
        run.prior.update(prior_records(stored, space))
    try:
        # cuDNN first: its time bounds how long a candidate may run (SubprocessRunner's adaptive hang timeout)
        run.benchmarks += 1
        baseline = runner.baseline(plan.problem)
        screened(runner, lambda: search(run, trials, options.timeout, options.early_stop, precompiler, on_progress))
        candidate, measured = winner(run, options.retime_top)
    except KeyboardInterrupt:
        requeue_unfinished(study)
        raise TuningInterrupted(
            f"tuning {plan.problem.key} was interrupted: its {trials_spent(study)} finished trials are kept in "
            f"{path}, and tuning it again resumes from them"
        ) from None
    except OSError as exc:
        if opened.replaced():
            raise TuningError(
                f"the study journal {path} was removed while {plan.problem.key} was being tuned ({exc}); "
                f"nothing was cached for it: tune it again to start afresh"
            ) from None
        raise
    if opened.replaced():  # removed meanwhile: what this run appended since is a fragment, not a study
        discard(path)

    result = TuneResult(
        problem=plan.problem, family=candidate[FAMILY], config={k: v for k, v in candidate.items() if k != FAMILY},
        time_ms=float(measured.time_ms), cudnn_time_ms=baseline.time_ms if baseline.ok else None,  # type: ignore[arg-type]
        rel_error=float(measured.rel_error or 0.0), trials_run=run.finished,
        wall_time_s=time.perf_counter() - started, precision=space.problem_for(candidate).precision,
        benchmarks_run=run.benchmarks, device=device_fp, timeline=timeline(run.study),
        journal=None if opened.replaced() else path,
    )
    if file:
        entry = cache_entry(run, result, cudnn_error=None if baseline.ok else baseline.error, budget=trials)
        tuning_cache.update({key: entry}, path=file)
    return result


def tune(
    problem: ConvProblem,
    *,
    trials: int = DEFAULTS.trials,
    timeout: Optional[float] = DEFAULTS.timeout,
    precision: Optional[str] = DEFAULTS.precision,
    tolerance: Optional[float] = DEFAULTS.tolerance,
    layouts: str = DEFAULTS.layouts,
    resume: bool = DEFAULTS.resume,
    early_stop: Optional[int] = DEFAULTS.early_stop,
    runner: Optional[Runner] = None,
    cache: Union[None, bool, str, Path] = DEFAULTS.cache,
    progress: bool = True,
    retime_top: int = DEFAULTS.retime_top,
    seed: int = DEFAULTS.seed,
    compile_workers: Optional[int] = DEFAULTS.compile_workers,
) -> TuneResult:
    """Tune `problem` for the runner's target (`runner_target`: its `target`, else its `device`; this device by
    default) and store the winner (and cuDNN's time) in the cache.

    The tuning options and their defaults are `tritonconv.search.TuneOptions` (which documents each one);
    runner: how candidates are run and timed (default: a GPU worker subprocess; the interpreter on a CPU);
    progress: show a progress bar (lines when not on a terminal).
    """
    return tune_many([problem], trials=trials, timeout=timeout, precision=precision, tolerance=tolerance,
                     layouts=layouts, resume=resume, early_stop=early_stop, runner=runner, cache=cache,
                     progress=progress, retime_top=retime_top, seed=seed, compile_workers=compile_workers)[0]


def tune_many(problems: Iterable[ConvProblem], *, progress: bool = True, runner: Optional[Runner] = None,
              precompiler: Optional[Precompiler] = None, **options: Any) -> list[TuneResult]:
    """`tune` each distinct problem (de-duplicated by key, results in input order) with one runner and a rich
    progress bar over problems; takes tune's keyword arguments (the fields of `TuneOptions`). `precompiler`: a
    compile pool to use instead of a new one (the caller closes it; its `stats` count what it compiled)."""
    if capturing():
        raise TuningError(
            "cannot tune while a CUDA graph is being captured (benchmarking would break the capture): tune before "
            "capturing, then capture with the tuned configs"
        )
    problems = list(problems)
    settings = check_tune_options(problems, options)
    owned, own_pool = runner is None, precompiler is None
    runner = runner or default_runner()
    unique: dict[str, ConvProblem] = {}
    for p in problems:
        unique.setdefault(p.key, p)
    results: dict[str, TuneResult] = {}
    try:
        precompiler = precompiler or precompiler_for(runner, settings.compile_workers)
        with _progress_bar(progress) as bar:
            overall = bar.add_task("problems", total=len(unique)) if bar else None
            queue = list(unique.values())
            for index, (key, problem) in enumerate(unique.items()):
                if precompiler is not None and index + 1 < len(queue):
                    precompiler.upcoming = _seed_jobs(queue[index + 1], runner, settings)
                label = problem.long_label
                task = bar.add_task(label, total=settings.trials) if bar else None

                def on_progress(done: int, total: int, best: Optional[float], task=task, label=label) -> None:
                    if bar is not None:
                        best_text = f"best so far {best:.4g} ms" if best is not None else "no valid candidate yet"
                        bar.update(task, completed=done, description=f"{label}: {best_text}")

                result = results[key] = _tune_one(problem, runner, settings, precompiler, on_progress)
                if bar is not None:
                    how = "cached" if result.from_cache else f"{result.trials_run} trials"
                    bar.update(task, completed=settings.trials, visible=False,
                               description=f"{label}: {result.family} {result.time_ms:.4g} ms re-timed ({how})")
                    bar.advance(overall)
    finally:
        if precompiler is not None and own_pool:
            precompiler.close()
        if owned:
            runner.close()
    return [results[p.key] for p in problems]


def _seed_jobs(problem: ConvProblem, runner: Runner, options: TuneOptions) -> list[tuple[ConvProblem, str, dict[str, Any]]]:
    """The compile jobs of the problem's seed candidates, the first ones its search will ask (none when the
    cache answers the problem, or the problem cannot be tuned: its own turn reports why)."""
    try:
        plan = search_plan(problem, options.precision, options.tolerance, options.layouts)
        file = cache_file(options.cache)
        if options.resume and file:
            key = tuning_cache.entry_key(plan.problem, runner_target(runner).fingerprint)
            if answered_by_cache(tuning_cache.read_entry(key, path=file), plan, options.trials):
                return []
        space = SearchSpace(plan.problem, precisions=plan.precisions, convert_options=plan.convert_options, device=runner_target(runner))
        seeds = space.seeds()[: options.trials]
    except TritonConvError:
        return []
    return [(space.problem_for(c), c[FAMILY], runner_config(c)) for c in seeds]


def _progress_bar(enabled: bool):
    """Trials per problem and problems overall with ETAs: a bar on a terminal, lines otherwise."""
    return progress_display() if enabled else contextlib.nullcontext()
