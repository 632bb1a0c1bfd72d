"""Benchmark runners: run one candidate on scratch buffers, check it against the float64 reference, time it.

`Runner` is the seam the search talks to. `SubprocessRunner` (the production default on a GPU) benchmarks in a
spawned worker process, so a candidate that crashes the CUDA context (illegal address, segfault) kills only the
worker, which is restarted; `InProcessRunner` runs in the calling process (the Triton interpreter, tests).
"""
from __future__ import annotations

import functools
import math
import multiprocessing
import signal
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional, Protocol, Union

import torch

from ..baseline import fastest, time_cudnn
from ..problem import ConvProblem
from ..reference import rel_error
from ..runtime import INTERPRETER_DEVICE, DeviceInfo, device_info
from ..timing import Timer

# Below this many milliseconds launch overhead dominates event timing; "auto" then replays a CUDA graph.
SMALL_KERNEL_MS = 0.05
# CUDA errors after which the context is unusable: the worker must be restarted.
STICKY_CUDA_ERRORS = ("illegal memory access", "illegal address", "unspecified launch failure", "misaligned address", "CUDA error")


@dataclass
class Measurement:
    """Outcome of one benchmark: a time for a correct candidate, or an error saying why there is none."""

    time_ms: Optional[float] = None
    rel_error: Optional[float] = None
    error: Optional[str] = None
    crashed: bool = False  # the worker process died or hung; it was restarted
    check_s: Optional[float] = None  # wall seconds of the checked run (kernel load, or a compile the precompile missed)
    time_s: Optional[float] = None  # wall seconds spent timing
    compiles: Optional[int] = None  # Triton compiles (on-disk cache misses) during this job; 0 when precompiled

    @property
    def ok(self) -> bool:
        return self.error is None and self.time_ms is not None


class Runner(Protocol):
    """Runs and times candidates. `device` is where kernels run ("cuda" or "cpu" for the interpreter); an
    optional `target` (a `DeviceInfo`; without one, `device`'s) is the GPU the search tunes for, the one home of
    that choice, read only through `runner_target`: its fingerprint keys the cache entry, and the search space,
    the families, the compile pool and each candidate's run decide for it (a real runner's is the device its
    kernels run on; FakeRunner's any `DeviceInfo`)."""

    device: str

    def benchmark(self, problem: ConvProblem, config: dict[str, Any], tolerance: float) -> Measurement: ...

    def baseline(self, problem: ConvProblem) -> Measurement: ...

    def close(self) -> None: ...


# ------------------------------------------------------------------------------------------------------------
# Timers
# ------------------------------------------------------------------------------------------------------------
def wall_timer(fn: Callable[[], object], reps: int = 3) -> float:
    """Median wall-clock milliseconds (CPU / interpreter runs: not a GPU performance number)."""
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def events_timer(fn: Callable[[], object]) -> float:
    from ..timing import time_ms

    return time_ms(fn)


def cuda_graph_timer(fn: Callable[[], object]) -> float:
    from ..timing import time_ms

    return time_ms(fn, mode="cuda_graph")


def auto_timer(fn: Callable[[], object]) -> float:
    """CUDA-event medians, re-timed as CUDA-graph replays for kernels short enough to be launch-bound."""
    t = events_timer(fn)
    return cuda_graph_timer(fn) if t < SMALL_KERNEL_MS else t


def screening_timer(fn: Callable[[], object]) -> float:
    """The search's quick look: `auto_timer` with 5 ms of warm-up and 20 ms of repeats instead of 25 and 100
    (about a fifth of the GPU time per candidate); the few best are re-timed with the full timer."""
    from ..timing import time_ms

    t = time_ms(fn, warmup_ms=5, rep_ms=20)
    return time_ms(fn, mode="cuda_graph", rep_ms=20) if t < SMALL_KERNEL_MS else t


def single_run_timer(fn: Callable[[], object]) -> float:
    """One wall-clock run (the interpreter: the correctness run before it was the warm-up)."""
    return wall_timer(fn, reps=1)


TIMERS: dict[str, Timer] = {
    "events": events_timer, "cuda_graph": cuda_graph_timer, "auto": auto_timer, "screen": screening_timer, "wall": wall_timer,
    "single": single_run_timer,
}


def runner_target(runner: Runner) -> DeviceInfo:
    """The GPU `runner` tunes for: its `target`, or the device its kernels run on (a custom runner need not
    have a `target`)."""
    return getattr(runner, "target", None) or device_info(runner.device)


def default_device() -> str:
    from ..runtime import INTERPRET

    return "cuda" if torch.cuda.is_available() and not INTERPRET else "cpu"


class _RunsOnItsDevice:
    """`target` of a runner that tunes for the device its kernels run on (`device`)."""

    device: str

    @property
    def target(self) -> DeviceInfo:
        return device_info(self.device)


# ------------------------------------------------------------------------------------------------------------
# The work itself (runs in whichever process the runner chose)
# ------------------------------------------------------------------------------------------------------------
class Bench:
    """Scratch inputs + reference per problem, and the checked, timed run of a candidate config (launched for
    `target`; None: the device it runs on)."""

    def __init__(self, device: str, timer: Timer, screen_timer: Optional[Timer] = None, target: Optional[DeviceInfo] = None):
        self.device, self.timer, self.screen_timer, self.target = device, timer, screen_timer or timer, target
        self._data: dict[ConvProblem, Any] = {}

    def data(self, problem: ConvProblem):
        from .reference import ProblemData

        key = problem.with_(precision="ieee")  # inputs and reference do not depend on the precision
        if key not in self._data:
            self._data.clear()  # one problem at a time: scratch buffers of big layers are large
            self._data[key] = ProblemData.make(problem, self.device)
        return self._data[key]

    def _sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def candidate(self, problem: ConvProblem, config: dict[str, Any], tolerance: float, *, screen: bool = False) -> Measurement:
        """Run into a NaN-poisoned output, check the relative error, and only then time it (with the screening
        timer when `screen`)."""
        from ..dispatch import empty_output, run_problem

        data = self.data(problem)
        out = empty_output(problem, data.input).fill_(float("nan"))

        def run() -> None:
            run_problem(problem, data.input, data.weight, None, None, "none", config, output=out, backend="triton",
                        target=self.target)

        started = time.perf_counter()
        run()
        self._sync()
        err = rel_error(out, data.reference)
        check_s = time.perf_counter() - started
        if not err <= tolerance:
            return Measurement(rel_error=err, error=f"wrong result: relative error {err:.3g} > tolerance {tolerance:.3g}", check_s=check_s)
        started = time.perf_counter()
        time_ms = (self.screen_timer if screen else self.timer)(run)
        return Measurement(time_ms=time_ms, rel_error=err, check_s=check_s, time_s=time.perf_counter() - started)

    def baseline(self, problem: ConvProblem) -> Measurement:
        """cuDNN in both layouts, the faster kept (tritonconv.baseline); on a CPU it is PyTorch's CPU conv."""
        data = self.data(problem)
        timings = time_cudnn(problem, data.input, data.weight, data.reference, self.timer)
        best = fastest(timings)
        if best is None:
            raise timings[0].exception  # type: ignore[misc]  # _guarded turns it into an error (or a crash)
        return Measurement(time_ms=best.ms, rel_error=best.rel_error)


class CompileCounter:
    """Counts Triton's real compiles (on-disk cache misses) and its cache hits in this process, through
    Triton's compilation listener: a candidate the precompile built counts 0 misses here."""

    def __init__(self) -> None:
        self.misses = self.hits = 0
        try:
            from triton import knobs
        except ImportError:  # pragma: no cover - triton is a dependency
            return
        previous = knobs.compilation.listener

        def listener(*, cache_hit: bool, **kwargs: Any) -> None:
            self.misses += 0 if cache_hit else 1
            self.hits += 1 if cache_hit else 0
            if previous is not None:
                previous(cache_hit=cache_hit, **kwargs)

        knobs.compilation.listener = listener


def _guarded(fn: Callable[[], Measurement], counter: Optional[CompileCounter] = None) -> Measurement:
    before = counter.misses if counter else 0
    try:
        m = fn()
    except Exception as exc:  # noqa: BLE001 - any failure of a candidate is a recorded result, not a stop
        m = Measurement(error=f"{type(exc).__name__}: {str(exc)[:400]}")
    if counter is not None:
        m.compiles = counter.misses - before
    return m


# ------------------------------------------------------------------------------------------------------------
# Runners
# ------------------------------------------------------------------------------------------------------------
class InProcessRunner(_RunsOnItsDevice):
    """Benchmarks in this process: the Triton interpreter on a CPU (wall-clock times) or a GPU without isolation.

    `timer` is a name from TIMERS or any callable taking a zero-argument function and returning milliseconds.
    """

    def __init__(self, timer: Union[str, Timer, None] = None, device: Optional[str] = None):
        self.device = device or default_device()
        screen = TIMERS["screen"] if timer is None and self.device == "cuda" else None
        timer = timer or ("auto" if self.device == "cuda" else "single")
        self.bench = Bench(self.device, TIMERS[timer] if isinstance(timer, str) else timer, screen, self.target)
        self.compiles = CompileCounter() if self.device == "cuda" else None
        self.screening = False  # set by the search: its trials use the screening timer, the re-timing does not

    def benchmark(self, problem: ConvProblem, config: dict[str, Any], tolerance: float) -> Measurement:
        return _guarded(lambda: self.bench.candidate(problem, config, tolerance, screen=self.screening), self.compiles)

    def baseline(self, problem: ConvProblem) -> Measurement:
        return _guarded(lambda: self.bench.baseline(problem), self.compiles)

    def close(self) -> None:
        pass


class FakeRunner:
    """A zero-cost runner: every candidate "runs" at once with a deterministic made-up time (a hash of the
    config), so a study measures only the tuner's own work and the compile pool (`target`: the GPU the search
    and the precompile decide and build for, e.g. a `runtime.COMPILE_TARGETS` entry; by default the interpreter,
    which compiles nothing). For tuning-throughput benchmarks on any machine; never a performance number."""

    device = "cpu"

    def __init__(self, target: Optional[DeviceInfo] = None):
        self.target = target if target is not None else INTERPRETER_DEVICE

    def benchmark(self, problem: ConvProblem, config: dict[str, Any], tolerance: float) -> Measurement:
        import hashlib
        import json

        digest = hashlib.sha256(json.dumps([problem.key, config], sort_keys=True, default=str).encode()).digest()
        return Measurement(time_ms=0.5 + digest[0] / 255.0, rel_error=0.0, check_s=0.0, time_s=0.0, compiles=0)

    def baseline(self, problem: ConvProblem) -> Measurement:
        return Measurement(time_ms=1.0, rel_error=0.0, check_s=0.0, time_s=0.0, compiles=0)

    def close(self) -> None:
        pass


WorkerHook = Callable[[str, ConvProblem, dict[str, Any]], None]


def _worker_main(conn, timer: Union[str, Timer], hook: Optional[WorkerHook], screen_timer: Optional[str] = None) -> None:
    """Benchmark worker loop: ("candidate"|"screen"|"baseline", problem dict, config, tolerance) -> Measurement dict."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group: the tuner reports it, closes us
    bench = Bench(default_device(), TIMERS[timer] if isinstance(timer, str) else timer, TIMERS[screen_timer] if screen_timer else None)
    compiles = CompileCounter()
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        kind, problem_dict, config, tolerance = message
        problem = ConvProblem.from_dict(problem_dict)
        job = functools.partial(_run_job, bench, hook, kind, problem, config, tolerance)
        conn.send(asdict(_guarded(job, compiles)))


def _run_job(bench: Bench, hook: Optional[WorkerHook], kind: str, problem: ConvProblem,
             config: dict[str, Any], tolerance: float) -> Measurement:
    if hook is not None:
        hook(kind, problem, config)
    if kind == "baseline":
        return bench.baseline(problem)
    return bench.candidate(problem, config, tolerance, screen=kind == "screen")


class SubprocessRunner(_RunsOnItsDevice):
    """Benchmarks in a spawned worker process, restarted after it dies, hangs or hits a sticky CUDA error.

    `timer`/`hook` must be picklable (a TIMERS name, module-level functions); `hook(kind, problem, config)` runs in
    the worker before each job (fault injection in tests).

    Hang timeout per job: once a baseline (cuDNN) job has run, a candidate may take `compile_bound_s` (a compile
    the precompile missed) plus `timeout_factor` times the baseline job's wall time, capped at `job_timeout_s`;
    before any baseline, `job_timeout_s`.
    """

    def __init__(self, timer: Union[str, Timer, None] = None, *, hook: Optional[WorkerHook] = None, job_timeout_s: float = 300.0,
                 compile_bound_s: float = 60.0, timeout_factor: float = 10.0):
        self.device = default_device()
        self.screen_timer = "screen" if timer is None and self.device == "cuda" else None
        self.timer = timer or ("auto" if self.device == "cuda" else "single")
        self.hook, self.job_timeout_s = hook, job_timeout_s
        self.screening = False  # set by the search: its trials use the screening timer, the re-timing does not
        self.compile_bound_s, self.timeout_factor = compile_bound_s, timeout_factor
        self.baseline_job_s: Optional[float] = None
        self.restarts = 0
        self._process = None
        self._conn = None

    def candidate_timeout_s(self) -> float:
        """The hang timeout of the next candidate job (see the class docstring)."""
        if self.baseline_job_s is None:
            return self.job_timeout_s
        return min(self.job_timeout_s, self.compile_bound_s + self.timeout_factor * self.baseline_job_s)

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_worker_main, args=(child, self.timer, self.hook, self.screen_timer), daemon=True)
        self._process.start()
        child.close()

    def _stop(self) -> None:
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(5)
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None

    def _call(self, kind: str, problem: ConvProblem, config: dict[str, Any], tolerance: float) -> Measurement:
        return self._send(kind, problem, config, tolerance)()

    def _send(self, kind: str, problem: ConvProblem, config: dict[str, Any], tolerance: float) -> Callable[[], Measurement]:
        """Hand the job to the worker; the returned function waits for its Measurement (at most the hang
        timeout, counted from now)."""
        if self._process is None or not self._process.is_alive():
            self._start()
        limit = self.job_timeout_s if kind == "baseline" else self.candidate_timeout_s()
        started = time.perf_counter()
        try:
            self._conn.send((kind, problem.to_dict(), config, tolerance))
        except (BrokenPipeError, ConnectionResetError, OSError):
            return self._died

        def receive() -> Measurement:
            try:
                if not self._conn.poll(max(0.0, limit - (time.perf_counter() - started))):
                    self._stop()
                    self.restarts += 1
                    return Measurement(error=f"benchmark hung for more than {limit:g} s; worker restarted", crashed=True)
                result = Measurement(**self._conn.recv())
            except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
                return self._died()
            if kind == "baseline" and result.ok:
                self.baseline_job_s = time.perf_counter() - started
            if result.error and any(s in result.error for s in STICKY_CUDA_ERRORS):
                self._stop()  # the CUDA context is poisoned; the next job gets a fresh worker
                self.restarts += 1
                result.crashed = True
            return result

        return receive

    def _died(self) -> Measurement:
        self._process.join(5)
        code = self._process.exitcode
        self._stop()
        self.restarts += 1
        return Measurement(error=f"benchmark worker died (exit code {code}); restarted", crashed=True)

    def benchmark(self, problem: ConvProblem, config: dict[str, Any], tolerance: float) -> Measurement:
        return self.start_benchmark(problem, config, tolerance)()

    def start_benchmark(self, problem: ConvProblem, config: dict[str, Any], tolerance: float) -> Callable[[], Measurement]:
        """`benchmark` in two halves: the worker starts on the candidate now, the returned function waits for
        its Measurement (the tuner asks for its next candidates in between)."""
        return self._send("screen" if self.screening else "candidate", problem, config, tolerance)

    def baseline(self, problem: ConvProblem) -> Measurement:
        return self._call("baseline", problem, {}, math.inf)

    def close(self) -> None:
        if self._conn is not None and self._process is not None and self._process.is_alive():
            try:
                self._conn.send(None)
                self._process.join(5)
            except OSError:
                pass
        self._stop()

    def __del__(self) -> None:
        self._stop()
