"""Faults around the studies: damaged journals, kill -9 at several points, Ctrl-C, bigger budgets, the
interpreter re-execution. Candidates cost nothing here (BookkeepingRunner) except in the CLI tests, which run
the real command line in the interpreter on a tiny shape.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
from filelock import FileLock
from optuna.trial import TrialState

from tritonconv import cache
from tritonconv.search import SearchSpace, journal
from tritonconv.search.entries import LEGACY_INTERRUPTED_ERROR
from tritonconv.search.result import TuningInterrupted
from tritonconv.search.study import REQUEUED

from tests import REPO
from tests.helpers import compiler_env
from tests.search.helpers import OTHER, PROBLEM, RecordingRunner, quick_tune, study_journal, study_trials

SPACE = SearchSpace(PROBLEM, precisions=(PROBLEM.precision,))


def only_entry():
    """The one cached entry, with its trial history."""
    (key,) = cache.entries()
    return cache.read_entry(key)


def candidates(trials, states=(TrialState.COMPLETE,)):
    return [SPACE.candidate(t.params) for t in trials if t.state in states]


def journal_warnings(caught):
    return [str(w.message) for w in caught if issubclass(w.category, journal.JournalWarning)]


# ------------------------------------------------------------------------------------------------------------
# Journal damage
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", [b'{"op_code": 4, "worker_id": "0f', b'\x00\xff\xfe garbage\n{"op_code": 5, "tr\n'],
                         ids=["torn-tail", "garbage-tail"])
def test_a_damaged_journal_tail_is_cut_back_and_kept_in_a_backup(damage):
    quick_tune(3)
    path = study_journal()
    intact = path.read_bytes()
    with open(path, "ab") as f:
        f.write(damage)
    runner = RecordingRunner()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = quick_tune(5, runner)
    (message,) = journal_warnings(caught)
    assert str(path) in message and "cut back to the last complete record" in message
    (backup,) = path.parent.glob(path.name + ".damaged-*")
    assert backup.read_bytes() == damage and path.read_bytes().startswith(intact)
    assert result.trials_run == 2 and len(runner.seen) == 2 + 1, "the 3 earlier trials are kept, not re-measured"
    assert len(candidates(study_trials())) == 5


def test_an_unreadable_journal_is_set_aside_and_the_cache_answers_its_trials():
    quick_tune(3)
    cached = {json.dumps(r["config"], sort_keys=True) for r in only_entry().trials}
    path = study_journal()
    path.write_bytes(b'{"op_code": 0, "worker_id": "x"}\n')  # valid JSON records that Optuna cannot replay
    runner = RecordingRunner()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = quick_tune(5, runner)
    (message,) = journal_warnings(caught)
    assert "cannot be read" in message and "moved to" in message
    (aside,) = path.parent.glob(path.name + ".unusable-*")
    assert aside.read_bytes() == b'{"op_code": 0, "worker_id": "x"}\n'
    measured = {json.dumps(c, sort_keys=True) for c in runner.seen[:-1]}
    assert len(cached) == 3 and not measured & cached, "candidates the cache recorded are answered, not re-measured"
    assert result.trials_run == 5 and len(measured) == 2


def test_damage_in_one_problems_journal_does_not_touch_another_problem():
    quick_tune(2)
    quick_tune(2, problem=OTHER)
    study_journal().write_bytes(b"\xff" * 100)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = quick_tune(4, problem=OTHER)
    assert result.trials_run == 2 and not journal_warnings(caught)
    assert study_journal().read_bytes() == b"\xff" * 100, "nothing opened the damaged journal"


def test_journal_growth_per_trial_is_small_and_independent_of_the_grid():
    quick_tune(10)
    before = study_journal().stat().st_size
    quick_tune(30)
    per_trial = (study_journal().stat().st_size - before) / 20
    # A GridSampler stored the whole grid with every trial (58 KB per trial on this 125-candidate grid).
    assert SPACE.enumerate(limit=512) and per_trial < 6_000, per_trial  # measured: 3.4 KB


def test_a_leftover_optuna_lock_file_of_a_killed_writer_does_not_block():
    quick_tune(2)
    Path(str(study_journal()) + ".lock").write_text("")
    started = time.monotonic()
    assert quick_tune(3).trials_run == 1 and time.monotonic() - started < 20


# ------------------------------------------------------------------------------------------------------------
# Budgets and interruption (in process)
# ------------------------------------------------------------------------------------------------------------
def test_a_bigger_budget_adds_the_missing_trials_and_the_same_budget_is_cached():
    assert quick_tune(3).trials_run == 3
    same = RecordingRunner()
    assert quick_tune(3, same).from_cache and same.calls == 0
    bigger = RecordingRunner()
    result = quick_tune(7, bigger)
    first = {json.dumps(c, sort_keys=True) for c in candidates(study_trials())[:3]}
    assert not result.from_cache and result.trials_run == 4 and len(bigger.seen) == 4 + 1
    assert not {json.dumps(c, sort_keys=True) for c in bigger.seen[:-1]} & first, "earlier trials are not re-run"
    assert only_entry().trials_run == 7
    assert quick_tune(5).from_cache, "a smaller budget than the one tuned is answered from the cache"


def test_an_exhausted_grid_is_cached_for_any_budget(monkeypatch):
    small = SPACE.enumerate(limit=10_000)[:4]
    monkeypatch.setattr(SearchSpace, "enumerate", lambda self, limit: small)
    first = quick_tune(200)
    assert first.trials_run < 200 and only_entry().exhausted is True
    assert quick_tune(400).from_cache


def test_ctrl_c_requeues_the_trial_in_flight_and_resume_measures_it():
    runner = RecordingRunner(interrupt_at=2)
    with pytest.raises(KeyboardInterrupt, match="interrupted.*2 finished trials are kept in .*resumes") as raised:
        quick_tune(5, runner)
    assert isinstance(raised.value, TuningInterrupted)
    trials = study_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    (stopped,) = [t for t in trials if t.state == TrialState.PRUNED]
    requeued = [t for t in trials if t.user_attrs.get(REQUEUED) == stopped.number]
    assert len(requeued) == 1 and requeued[0].state == TrialState.WAITING
    assert cache.entries() == {}

    resumed = RecordingRunner()
    assert quick_tune(5, resumed).trials_run == 3
    assert SPACE.candidate(stopped.params) in resumed.seen, "the interrupted candidate is measured on resume"
    assert not [r for r in only_entry().trials if r["error"]], "nothing stored as failed"


def test_legacy_interrupted_records_in_the_cache_are_not_answers():
    quick_tune(2)
    entry = only_entry()
    entry.trials[0].update(error=LEGACY_INTERRUPTED_ERROR, time_ms=None)
    cache.trials_path(entry.key).write_text(json.dumps({"key": entry.key, "trials": entry.trials}))
    journal.discard(study_journal())
    runner = RecordingRunner()
    quick_tune(4, runner)
    assert entry.trials[0]["config"] in runner.seen


# ------------------------------------------------------------------------------------------------------------
# kill -9 at several points of a tuning subprocess, then resume
# ------------------------------------------------------------------------------------------------------------
KILL_TRIALS = 6
KILLED_TUNER = textwrap.dedent(
    """
    import json, os, signal, sys
    os.environ["TRITON_INTERPRET"] = "1"
    import optuna
    from optuna.storages.journal import JournalFileBackend
    import tests.search.helpers as t
    from tritonconv import cache
    from tritonconv.search import SearchSpace

    point, at, mode, record, trials = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    if mode == "tpe":
        SearchSpace.enumerate = lambda self, limit: None

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    class Runner(t.RecordingRunner):
        def benchmark(self, problem, config, tolerance):
            if point == "measure" and self.calls == at:
                open(record, "w").write(json.dumps(config))
                die()
            return super().benchmark(problem, config, tolerance)

    def after_nth(function, check):
        calls = [0]
        def wrapper(*args, **kwargs):
            calls[0] += check(*args)
            if calls[0] == at:
                return die_during(function, *args, **kwargs)
            return function(*args, **kwargs)
        return wrapper

    def die_during(function, *args, **kwargs):
        if point == "ask":
            function(*args, **kwargs)  # the trial is RUNNING, its params not suggested yet
        else:  # half a trial-param record reaches the file, as a kill or a full disk mid-write leaves it
            backend, logs = args
            with open(backend._file_path, "ab") as f:
                f.write(json.dumps(logs[0]).encode()[:30])
        die()

    if point == "ask":
        optuna.Study.ask = after_nth(optuna.Study.ask, lambda study: 1)
    if point == "write":
        JournalFileBackend.append_logs = after_nth(JournalFileBackend.append_logs, lambda b, logs: logs[0]["op_code"] == 5)
    if point == "cache":
        cache.update = lambda *a, **k: die()
    t.quick_tune(trials, Runner())
    """
)


@pytest.mark.parametrize("point,at,mode", [("measure", 2, "grid"), ("measure", 3, "tpe"), ("ask", 4, "grid"),
                                           ("write", 3, "grid"), ("cache", 0, "grid")])
def test_kill_9_then_resume_keeps_every_finished_trial_and_remeasures_the_interrupted_one(point, at, mode, tmp_path, monkeypatch):
    record = tmp_path / "in-flight.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", KILLED_TUNER, point, str(at), mode, str(record), str(KILL_TRIALS)], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert cache.entries() == {}, "nothing was cached by the killed run"
    before = study_trials()
    finished = candidates(before)
    expected = {"measure": at, "ask": at - 1, "cache": KILL_TRIALS}.get(point)  # "write": whatever was complete
    assert len(finished) == (expected if expected is not None else len(finished)) and len(finished) < KILL_TRIALS or point == "cache"

    if mode == "tpe":
        monkeypatch.setattr(SearchSpace, "enumerate", lambda self, limit: None)
    runner = RecordingRunner()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = quick_tune(KILL_TRIALS, runner)
    assert len(journal_warnings(caught)) == (1 if point == "write" else 0)
    after = study_trials()
    assert not [t for t in after if t.state == TrialState.RUNNING]
    assert all(c in candidates(after) for c in finished), "every finished trial is kept"
    measured = runner.seen[:-1]  # the last call re-times the winner
    assert not [c for c in measured if c in finished], "finished trials are not measured again"
    assert result.trials_run == KILL_TRIALS - len(finished) and len(candidates(after)) == KILL_TRIALS
    stopped = [t for t in after if t.state == TrialState.PRUNED and "infeasible" not in t.user_attrs]
    if point in ("measure", "ask", "write"):
        (stopped,) = stopped
        requeued = [t for t in after if t.user_attrs.get(REQUEUED) == stopped.number]
        assert len(requeued) == 1 and requeued[0].state == TrialState.COMPLETE
        assert SPACE.candidate(requeued[0].params) in measured, "the interrupted candidate is measured on resume"
    if point == "measure":
        assert json.loads(record.read_text()) in measured
    entry = only_entry()
    assert entry.trials_run == KILL_TRIALS and not [r for r in entry.trials if r["error"]]


# ------------------------------------------------------------------------------------------------------------
# The command line: Ctrl-C, the interpreter child, the import path
# ------------------------------------------------------------------------------------------------------------
CLI_SHAPE = ["tune", "--c", "4", "--h", "5", "--w", "5", "--k", "8", "--dtype", "float32", "--interpret",
             "--trials", "60", "--early-stop", "1000"]


@pytest.fixture
def console_script(tmp_path):
    """Start `tritonconv tune --interpret` through a launcher like pip's console script (its own directory, not
    the cwd, first on sys.path), without TRITON_INTERPRET, from a directory holding an `optuna.py`.
    `reexec=True`: the launcher imports tritonconv's runtime first, so the command must re-execute itself."""
    bin_dir, work = tmp_path / "bin", tmp_path / "work"
    bin_dir.mkdir()
    work.mkdir()
    marker = tmp_path / "imported-cwd-optuna"
    (work / "optuna.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise SystemExit('./optuna.py was imported')\n")
    env = compiler_env()

    def start(reexec):
        script = bin_dir / ("tritonconv-reexec" if reexec else "tritonconv")
        script.write_text("import sys\n" + ("import tritonconv.runtime\n" if reexec else "")
                          + "from tritonconv.cli import main\nsys.exit(main())\n")
        return subprocess.Popen([sys.executable, str(script), *CLI_SHAPE], cwd=work, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)

    start.marker = marker
    return start


def wait_for_finished_trials(count, proc, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if len(candidates(study_trials())) >= count:
                return
        except (AssertionError, ValueError):  # no journal yet, or no study in it yet
            pass
        time.sleep(0.5)
    raise AssertionError("no trial finished in time")


def children(pid):
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("reexec", [False, True], ids=["in-process", "re-executed"])
def test_ctrl_c_prints_one_line_saying_how_to_resume_and_cwd_modules_are_not_imported(console_script, reexec):
    proc = console_script(reexec)
    wait_for_finished_trials(1, proc)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does: the whole foreground process group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]  # progress lines (not a terminal), then the message
    (line,) = [line for line in lines if "interrupt" in line.lower()]
    assert line == lines[-1] and line.startswith("interrupted:") and "Run the same command again to resume" in line
    assert not console_script.marker.exists(), "./optuna.py of the current directory was imported"
    assert not [t for t in study_trials() if t.state == TrialState.RUNNING]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux")
def test_the_interpreter_child_dies_with_its_parent_and_frees_the_tuning_lock(console_script):
    proc = console_script(reexec=True)
    wait_for_finished_trials(1, proc)
    (child,) = children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while not gone(child) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert gone(child), "the re-executed tuner outlived its parent"
    assert not console_script.marker.exists(), "the re-executed child imported ./optuna.py of the current directory"
    (lock,) = [p for p in journal.studies_dir(cache.cache_dir()).glob("*.lock") if not p.name.endswith(".journal.lock")]
    with FileLock(str(lock), timeout=5):
        pass


def test_cache_clear_keeps_the_journal_of_a_problem_being_tuned_and_removes_the_others():
    quick_tune(2)
    quick_tune(2, problem=OTHER)
    busy, idle = study_journal(), study_journal(OTHER)
    stem = busy.name[: -len(".journal")].rsplit("-", 1)[0]
    with journal.tuning_lock(cache.cache_dir(), stem):  # a tuner of PROBLEM is running
        removed = journal.remove_studies(cache.cache_dir())
    assert removed.removed == 1 and removed.busy == [busy] and busy.exists() and not idle.exists()
    assert quick_tune(4).trials_run == 2, "the kept study resumes"


SLOW_TUNER = textwrap.dedent(
    """
    import os, sys, time
    os.environ["TRITON_INTERPRET"] = "1"
    import tests.search.helpers as t

    class Slow(t.RecordingRunner):
        def benchmark(self, problem, config, tolerance):
            time.sleep(0.3)
            return super().benchmark(problem, config, tolerance)

    t.quick_tune(8, Slow(), problem=t.OTHER if sys.argv[1] == "other" else t.PROBLEM)
    """
)


def test_cache_clear_while_tuners_run_lets_them_finish_into_the_fresh_cache(capsys):
    from tritonconv.cli import main

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    tuners = [subprocess.Popen([sys.executable, "-c", SLOW_TUNER, which], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for which in ("this", "other")]
    wait_for_finished_trials(2, tuners[0])
    assert main(["cache", "clear"]) == 0
    assert "kept" in capsys.readouterr().out
    for tuner in tuners:
        out, err = tuner.communicate(timeout=240)
        assert tuner.returncode == 0 and "Traceback" not in err, err[-3000:]
    entries = cache.entries()
    assert {e.problem.k for e in entries.values()} == {PROBLEM.k, OTHER.k}, "both winners are in the fresh cache"
    assert not [t for t in study_trials() if t.state == TrialState.RUNNING]


def test_a_journal_removed_under_a_running_tuner_stops_it_with_one_clear_error():
    import shutil

    from tritonconv.search import TuningError

    class Remover(RecordingRunner):
        def benchmark(self, problem, config, tolerance):
            if self.calls == 2:
                shutil.rmtree(journal.studies_dir(cache.cache_dir()))
            return super().benchmark(problem, config, tolerance)

    with pytest.raises(TuningError, match=r"study journal .* was removed while .* tune it again") as raised:
        quick_tune(5, Remover())
    assert "\n" not in str(raised.value)
    assert quick_tune(3).trials_run == 3, "the next run starts afresh"


def test_ctrl_c_does_not_reach_the_benchmark_worker():
    """A terminal's Ctrl-C goes to the whole process group; the worker leaves it to the tuner (no traceback of
    its own, and it stays usable until the tuner closes it)."""
    from tritonconv.search import SubprocessRunner

    runner = SubprocessRunner(timer="single", job_timeout_s=120)
    try:
        assert runner.baseline(PROBLEM).ok
        os.kill(runner._process.pid, signal.SIGINT)
        time.sleep(0.5)
        assert runner.baseline(PROBLEM).ok and runner.restarts == 0
    finally:
        runner.close()


def test_cli_a_bigger_trials_budget_adds_trials_instead_of_answering_cached(tmp_path):
    from tritonconv.cli import main

    out = tmp_path / "tune.json"
    shape = ["tune", "--c", "4", "--h", "5", "--w", "5", "--k", "8", "--dtype", "float32", "--interpret", "--json", str(out)]
    record = lambda: json.loads(out.read_text())["records"][0]  # noqa: E731
    assert main([*shape, "--trials", "2"]) == 0 and record()["trials_run"] == 2
    assert main([*shape, "--trials", "2"]) == 0 and record()["from_cache"] is True
    assert main([*shape, "--trials", "3"]) == 0
    assert record()["from_cache"] is False and record()["trials_run"] == 1, "the missing trial is added"
    assert only_entry().trials_run == 3
