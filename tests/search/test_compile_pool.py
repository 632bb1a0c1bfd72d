"""The tuner's compile side: one compile pool for every problem of a tune_many call, candidates compiled ahead
of the runner (pipelined), the per-trial compile / check / time timeline, and the adaptive hang timeout."""
from __future__ import annotations

from concurrent.futures import Future

from tritonconv.problem import ConvProblem
from tritonconv.runtime import COMPILE_TARGETS
from tritonconv.search import api as search_api
from tritonconv.search import tune_many
from tritonconv.search.compile_pool import CompileVerdict
from tritonconv.search.runner import FakeRunner, SubprocessRunner


class RecordingPrecompiler:
    """Stands in for the compile pool: records when candidates are submitted, compiles nothing."""

    instances: list["RecordingPrecompiler"] = []

    def __init__(self, device, workers=4, **_):
        self.device, self.workers, self.compile_timeout_s = device, 2, 1.0
        self.events: list[tuple[str, str]] = []
        self.closed, self.upcoming = False, []
        RecordingPrecompiler.instances.append(self)

    def submit(self, problem, family, config):
        self.events.append(("submit", f"{problem.key}|{sorted(config.items())}"))
        future: Future = Future()
        future.set_result(None)
        return future

    def verdict(self, future, timeout=None):
        return CompileVerdict(usage=[], compile_s=0.25)

    def prefetch(self):
        self.upcoming = []

    def close(self):
        self.closed = True


class RecordingRunner(FakeRunner):
    def __init__(self, pool_events):
        super().__init__(target=COMPILE_TARGETS[90])
        self.pool_events = pool_events

    def benchmark(self, problem, config, tolerance):
        self.pool_events().append(("measure", f"{problem.key}|{sorted(config.items())}"))
        return super().benchmark(problem, config, tolerance)


def test_one_pool_for_all_problems_compiled_ahead_of_the_runner(monkeypatch, tmp_path):
    RecordingPrecompiler.instances.clear()
    monkeypatch.setattr(search_api, "Precompiler", RecordingPrecompiler)
    runner = RecordingRunner(lambda: RecordingPrecompiler.instances[0].events)
    problems = [
        ConvProblem(n=1, c=16, h=8, w=8, k=16, r=3, s=3, pad_h=1, pad_w=1, dtype="float16", layout="nhwc"),
        ConvProblem(n=2, c=8, h=6, w=6, k=24, r=1, s=1, dtype="float16", layout="nhwc"),
    ]
    results = tune_many(problems, trials=6, runner=runner, cache=str(tmp_path), progress=False, early_stop=None)
    assert len(RecordingPrecompiler.instances) == 1 and RecordingPrecompiler.instances[0].closed
    events = RecordingPrecompiler.instances[0].events
    submitted = [key for kind, key in events if kind == "submit"]
    measured = [key for kind, key in events if kind == "measure"]
    assert {key.split("|")[0] for key in submitted} == {p.key for p in problems}
    first_measure = next(i for i, (kind, _) in enumerate(events) if kind == "measure")
    assert first_measure >= 2  # pipelined: more than one candidate was compiling before the first measurement
    searched = measured[: len(submitted)]
    assert all(key in submitted for key in searched)  # nothing reached the runner without being precompiled
    for result in results:
        rows = [r for r in result.timeline if r["state"] == "COMPLETE" and "repeat_of" not in r]
        assert rows and all(r["compile_s"] == 0.25 and r["check_s"] == 0.0 and r["time_s"] == 0.0 for r in rows)


def test_candidate_hang_timeout_follows_the_baseline():
    runner = SubprocessRunner(job_timeout_s=300, compile_bound_s=60, timeout_factor=10)
    assert runner.candidate_timeout_s() == 300  # no baseline yet
    runner.baseline_job_s = 2.0
    assert runner.candidate_timeout_s() == 80
    runner.baseline_job_s = 50.0
    assert runner.candidate_timeout_s() == 300
    runner.close()


class ScreeningRunner(FakeRunner):
    """Records which timer each call used: the search screens, only the best few get the full timer."""

    def __init__(self):
        super().__init__()
        self.screening, self.calls = False, []

    def benchmark(self, problem, config, tolerance):
        self.calls.append("screen" if self.screening else "full")
        return super().benchmark(problem, config, tolerance)


def test_search_screens_and_retimes_only_the_best_with_the_full_timer(tmp_path):
    runner = ScreeningRunner()
    problem = ConvProblem(n=1, c=16, h=8, w=8, k=16, r=3, s=3, pad_h=1, pad_w=1, dtype="float16", layout="nhwc")
    result = tune_many([problem], trials=8, runner=runner, cache=str(tmp_path), progress=False, retime_top=3, early_stop=None)[0]
    assert runner.calls.count("screen") >= 5 and runner.calls.count("full") == 3
    assert runner.calls[-3:] == ["full"] * 3 and not runner.screening  # the re-timing comes after the search
    assert result.time_ms > 0


# ---- one compile per binary: candidates whose launches hash alike share one compile job ------------------------
def _fake_compile(calls: list):
    def compile_candidate(problem_dict, family, config, device):
        calls.append((problem_dict["c"], family, tuple(sorted(config.items()))))
        if config.get("explode"):
            raise RuntimeError("worker died")
        return {"ok": True, "usage": [{"stack_bytes": 0, "shared_bytes": 0}], "compile_s": 0.5, "compile_cpu_s": 0.4,
                "cache_hits": 0, "cache_misses": 1}
    return compile_candidate


def _thread_precompiler(monkeypatch, calls: list):
    from concurrent.futures import ThreadPoolExecutor

    from tritonconv.search import compile_pool

    monkeypatch.setattr(compile_pool, "compile_candidate", _fake_compile(calls))
    # the binary: the config alone (as for problems whose shapes are runtime ints)
    monkeypatch.setattr(compile_pool, "binary_key", lambda problem, family, config, device: (family, str(sorted(config.items()))))
    monkeypatch.setattr(compile_pool.Precompiler, "_new_pool", lambda self: ThreadPoolExecutor(1))
    return compile_pool


def test_a_binary_is_compiled_once_and_shared(monkeypatch):
    calls: list = []
    compile_pool = _thread_precompiler(monkeypatch, calls)
    pool = compile_pool.Precompiler(COMPILE_TARGETS[90], workers=1)
    a = ConvProblem(n=1, c=16, h=8, w=8, k=16, r=1, s=1, dtype="float16", layout="nhwc")
    b = a.with_(c=32)
    first = pool.submit(a, "gemm", {"BLOCK_M": 64})
    again = pool.submit(b, "gemm", {"BLOCK_M": 64})  # another problem, the same binary
    other = pool.submit(b, "gemm", {"BLOCK_M": 128})
    verdicts = [pool.verdict(job, timeout=10) for job in (first, again, other)]
    assert (pool.stats.jobs, pool.stats.shared) == (2, 1) and len(calls) == 2
    assert [v.shared for v in verdicts] == [False, True, False] and all(v.usage for v in verdicts)
    assert verdicts[0].attrs() == {"compile_s": 0.5, "compile_cpu_s": 0.4, "compile_cache_hits": 0}
    assert verdicts[1].attrs() == {"compile_s": 0.0, "compile_cpu_s": 0.0, "compile_shared": True}  # no second cost
    assert not again.cancel() and not first.future.cancelled()  # a sharer never cancels the owner's compile

    # a job whose worker failed, or that was cancelled before it ran, is not shared: the binary is compiled again
    boom = pool.submit(a, "gemm", {"explode": 1})
    assert pool.verdict(boom, timeout=10).error
    calls.clear()
    retried = pool.submit(a, "gemm", {"explode": 1})
    assert not retried.shared and pool.verdict(retried, timeout=10).error and len(calls) == 1
    pool.close()


def test_tune_many_compiles_each_binary_once_across_problems(monkeypatch, tmp_path):
    calls: list = []
    compile_pool = _thread_precompiler(monkeypatch, calls)
    problems = [  # the same seed configs (defaults and heuristics follow C and K)
        ConvProblem(n=1, c=32, h=8, w=8, k=16, r=1, s=1, dtype="float16", layout="nhwc"),
        ConvProblem(n=2, c=32, h=6, w=6, k=16, r=1, s=1, dtype="float16", layout="nhwc"),
    ]
    made = []
    real = compile_pool.Precompiler
    monkeypatch.setattr(search_api, "Precompiler", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    results = tune_many(problems, trials=6, runner=FakeRunner(target=COMPILE_TARGETS[90]), cache=str(tmp_path),
                        progress=False, early_stop=None, compile_workers=1)
    rows = [r for result in results for r in result.timeline if "compile_s" in r]
    shared = [r for r in rows if r.get("compile_shared")]
    pool = made[0]
    assert len(calls) == pool.stats.jobs == len(rows) - len(shared) and pool.stats.shared == len(shared)
    assert len({c[1:] for c in calls}) == len(calls)  # no binary compiled twice
    assert shared and all(r["compile_s"] == 0.0 for r in shared)  # the second problem's seeds reuse the first's
    assert all(r["compile_cpu_s"] == 0.4 for r in rows if not r.get("compile_shared"))


def test_compile_cpu_time_counts_the_child_processes():
    """ptxas runs as a child of the compile worker: its CPU time is part of the compile's cost."""
    import subprocess
    import sys
    import time

    from tritonconv.search.compile_pool import cpu_seconds

    total, own = cpu_seconds(), time.process_time()
    subprocess.run([sys.executable, "-c", "x = 0\nfor i in range(2_000_000): x += i"], check=True)
    child = (cpu_seconds() - total) - (time.process_time() - own)
    assert child >= 0.05


def test_next_problems_seeds_compile_while_the_last_candidates_are_measured(monkeypatch, tmp_path):
    calls: list = []
    compile_pool = _thread_precompiler(monkeypatch, calls)
    events: list[tuple[str, int]] = []
    start = compile_pool.Precompiler._start
    monkeypatch.setattr(compile_pool.Precompiler, "_start",
                        lambda self, problem, family, config: events.append(("submit", problem.c)) or start(self, problem, family, config))

    class Runner(FakeRunner):
        def benchmark(self, problem, config, tolerance):
            events.append(("measure", problem.c))
            return super().benchmark(problem, config, tolerance)

    problems = [ConvProblem(n=1, c=16, h=8, w=8, k=16, r=1, s=1, dtype="float16", layout="nhwc"),
                ConvProblem(n=1, c=32, h=8, w=8, k=16, r=1, s=1, dtype="float16", layout="nhwc")]  # other seeds
    pool = compile_pool.Precompiler(COMPILE_TARGETS[90], workers=1)
    results = tune_many(problems, trials=6, runner=Runner(target=COMPILE_TARGETS[90]), cache=str(tmp_path),
                        progress=False, early_stop=None, precompiler=pool)
    first_ahead = events.index(("submit", 32))
    last_of_first = len(events) - 1 - events[::-1].index(("measure", 16))
    assert first_ahead < last_of_first - 3  # before the first problem's last searched candidates and its re-timing
    assert pool.stats.prefetched > 0 and pool.stats.jobs == len(calls)
    second = [r for r in results[1].timeline if "compile_s" in r]
    assert second[0]["compile_s"] == 0.5 and not second[0].get("compile_shared")  # a prefetched job costs its candidate

    # problems the cache answers are neither tuned nor prefetched: no compile at all
    calls.clear()
    tune_many(problems, trials=6, runner=Runner(target=COMPILE_TARGETS[90]), cache=str(tmp_path),
              progress=False, early_stop=None, precompiler=pool)
    assert calls == []
    pool.close()


def test_the_next_candidates_are_asked_for_while_the_gpu_worker_measures(monkeypatch, tmp_path):
    RecordingPrecompiler.instances.clear()
    monkeypatch.setattr(search_api, "Precompiler", RecordingPrecompiler)
    events = lambda: RecordingPrecompiler.instances[0].events  # noqa: E731

    class OverlappingRunner(FakeRunner):
        """Like the GPU worker process: start_benchmark hands the job over, the returned function waits."""

        def start_benchmark(self, problem, config, tolerance):
            events().append(("start", ""))
            measurement = self.benchmark(problem, config, tolerance)
            return lambda: events().append(("wait", "")) or measurement

    problem = ConvProblem(n=1, c=16, h=8, w=8, k=16, r=3, s=3, pad_h=1, pad_w=1, dtype="float16", layout="nhwc")
    result = tune_many([problem], trials=8, runner=OverlappingRunner(target=COMPILE_TARGETS[90]),
                       cache=str(tmp_path), progress=False, early_stop=None)[0]
    kinds = [kind for kind, _ in events()]
    between = [kinds[i + 1:kinds.index("wait", i)] for i, kind in enumerate(kinds) if kind == "start"]
    assert any("submit" in asked for asked in between)  # asked and submitted while the measurement ran
    assert kinds.count("start") == kinds.count("wait") == kinds.count("submit")  # each candidate measured once
    assert result.trials_run == 8 and kinds.count("submit") <= 8  # the budget holds with the overlap


def hang_in_worker(kind, problem, config):
    """Worker hook: a candidate that never finishes."""
    if kind != "baseline":
        import time

        time.sleep(600)


def test_a_started_benchmark_that_hangs_restarts_the_worker():
    problem = ConvProblem(n=1, c=4, h=5, w=5, k=4, r=1, s=1, dtype="float32", layout="nhwc")
    runner = SubprocessRunner(timer="single", hook=hang_in_worker, job_timeout_s=8)
    try:
        waiting = runner.start_benchmark(problem, {"family": "gemm"}, 1e-3)
        measurement = waiting()
    finally:
        runner.close()
    assert measurement.crashed and "hung for more than 8 s" in measurement.error and runner.restarts == 1
