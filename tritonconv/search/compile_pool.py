"""Compiling candidates in parallel worker processes while the GPU benchmarks serially.

The workers compile for the benchmark GPU's capability under the exact cache key Triton's launcher looks up
(`tritonconv.compile.launch_specialization`), so the benchmark worker's launch finds each candidate already built
(one compile per candidate), and the compiled resource usage (register spills, shared memory over the device
limit) rejects candidates before they reach the GPU. The workers are spawned and never touch CUDA: they see the
benchmark GPU (the search's `Runner.target`) as the `DeviceInfo` record passed to each family (its capability, SM
count and shared memory), so families choose the launches they would choose there. One pool serves every problem of a `tune_many` / `tune_model` call, and a
binary is compiled once per pool: a candidate whose launches have the cache hashes of one submitted before (in
this problem or an earlier one; shapes that are runtime ints specialise alike) shares that compile job.

Each job reports its wall time and its CPU time (the worker's own plus its finished child processes': ptxas,
cuobjdump), and how many of its launches Triton found in its on-disk cache.
"""
from __future__ import annotations

import multiprocessing
import resource
import signal
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from ..kernels.base import KernelCall
from ..problem import ConvProblem
from ..runtime import DeviceInfo


def candidate_calls(
    problem: ConvProblem, family: str, config: dict[str, Any], device: Optional[DeviceInfo] = None,
) -> Sequence[KernelCall]:
    """The launches the benchmark runner makes for a candidate on `device` (no bias, no residual, no activation;
    an NCHW input converted to channels_last when the config says `convert_nhwc`), on meta tensors."""
    from ..compile import meta_tensors
    from ..kernels import get_family

    kernel_config = {k: v for k, v in config.items() if k not in ("family", "convert_nhwc", "precision")}
    convert = bool(config.get("convert_nhwc")) and problem.layout == "nchw"
    tensors = meta_tensors(problem, bias=False, activation="none", convert_nhwc=convert)
    return get_family(family).kernel_calls(problem, tensors, kernel_config, device)


def _capability(device: DeviceInfo) -> int:
    return device.capability[0] * 10 + device.capability[1]


def binary_key(problem: ConvProblem, family: str, config: dict[str, Any], device: DeviceInfo) -> Optional[tuple[str, ...]]:
    """The Triton cache hashes of the candidate's launches on `device` (what its compile job produces), or None
    where they cannot be known here (kernels imported for the interpreter, a config the family refuses)."""
    from ..compile import cache_hash

    try:
        return tuple(cache_hash(call, _capability(device)) for call in candidate_calls(problem, family, config, device))
    except Exception:  # noqa: BLE001 - the compile job itself reports what is wrong with the candidate
        return None


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished children (ptxas and cuobjdump run as
    child processes of the compile): a compile's cost on a core of its own, whatever else the machine runs."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


_cache_lookups: Optional[Any] = None  # this worker's CompileCounter (Triton's compilation listener), once


def compile_candidate(problem_dict: dict[str, Any], family: str, config: dict[str, Any], device: DeviceInfo) -> dict[str, Any]:
    """Worker: compile every launch of (family, config) for `device`; resource usage (no SASS) or the error,
    with the job's wall and CPU seconds and Triton's on-disk cache hits and misses."""
    global _cache_lookups
    from ..compile import compile_call, resource_usage
    from .runner import CompileCounter

    if _cache_lookups is None:
        _cache_lookups = CompileCounter()
    started, cpu_started = time.perf_counter(), cpu_seconds()
    hits, misses = _cache_lookups.hits, _cache_lookups.misses

    def timing() -> dict[str, Any]:
        return {"compile_s": time.perf_counter() - started, "compile_cpu_s": cpu_seconds() - cpu_started,
                "cache_hits": _cache_lookups.hits - hits, "cache_misses": _cache_lookups.misses - misses}

    problem = ConvProblem.from_dict(problem_dict)
    try:
        calls = candidate_calls(problem, family, config, device)
        usage = [resource_usage(compile_call(call, _capability(device)), sass=False) for call in calls]
    except Exception as exc:  # noqa: BLE001 - a failed compile is a recorded result
        return {"ok": False, "error": f"compile failed: {type(exc).__name__}: {str(exc)[:400]}", **timing()}
    return {"ok": True, "usage": [u.__dict__ for u in usage], **timing()}


def _warm_up() -> None:
    """Import Triton, torch and every family in a fresh worker (so the first candidate does not pay for it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group: the tuner reports it, closes us
    from .. import compile as _compile  # noqa: F401
    from ..kernels import FAMILIES  # noqa: F401


@dataclass
class CompileVerdict:
    infeasible: Optional[str] = None  # compiled, but would spill or not fit: never benchmarked
    error: Optional[str] = None  # did not compile
    usage: Optional[list[dict[str, Any]]] = None
    compile_s: float = 0.0  # the worker's wall time compiling this candidate (0 when it failed before, or shared)
    compile_cpu_s: float = 0.0  # its CPU time (worker + ptxas/cuobjdump children)
    cache_hits: int = 0  # launches Triton found compiled in its on-disk cache
    shared: bool = False  # the same binary was compiled for an earlier candidate: no work for this one

    def attrs(self) -> dict[str, Any]:
        """The trial attributes recording this compile (the study's timeline)."""
        if self.shared:
            return {"compile_s": 0.0, "compile_cpu_s": 0.0, "compile_shared": True}
        return {"compile_s": self.compile_s, "compile_cpu_s": self.compile_cpu_s, "compile_cache_hits": self.cache_hits}


@dataclass
class PoolStats:
    """What the pool compiled, every job counted once (also those no candidate waited for: prefetched seeds of a
    problem that was never tuned, candidates in flight when a search stopped)."""

    jobs: int = 0  # compile jobs submitted
    shared: int = 0  # candidates that reused a job of the same binary instead
    prefetched: int = 0  # jobs submitted ahead for the next problem's seeds
    finished: int = 0  # jobs that ran to the end (the rest were cancelled before they started, or are running)
    compile_s: float = 0.0  # wall seconds of the finished jobs, summed
    compile_cpu_s: float = 0.0  # their CPU seconds (worker + ptxas/cuobjdump children), summed
    cache_hits: int = 0  # launches Triton found in its on-disk cache
    cache_misses: int = 0  # launches Triton compiled

    def count(self, future: Future) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        result = future.result()
        self.finished += 1
        self.compile_s += float(result.get("compile_s", 0.0))
        self.compile_cpu_s += float(result.get("compile_cpu_s", 0.0))
        self.cache_hits += int(result.get("cache_hits", 0))
        self.cache_misses += int(result.get("cache_misses", 0))


@dataclass
class CompileJob:
    """A submitted candidate: its compile job's future, possibly shared with an earlier candidate."""

    future: Future
    shared: bool = False

    def cancel(self) -> bool:
        """Cancel the compile unless it is shared (then the candidate that submitted it decides)."""
        return False if self.shared else self.future.cancel()


class Precompiler:
    """A pool of compile workers for one target device (its capability and shared-memory limit).

    `submit` returns at once; `verdict` waits for that candidate. Keep one Precompiler across problems (the
    workers' imports are paid once, and each binary is compiled once); `close` when done. `stats` counts the
    jobs and their cost. `upcoming` (set by tune_many: the next problem's seed candidates) is submitted by
    `prefetch`, which the search calls once it has asked its last candidate, so the pool does not idle while the
    last candidates are measured and the next problem starts.
    """

    def __init__(self, device: DeviceInfo, workers: int = 4, *, reject_spills: bool = True, compile_timeout_s: float = 120.0):
        self.device, self.reject_spills, self.workers = device, reject_spills, max(1, workers)
        self.compile_timeout_s = compile_timeout_s  # a candidate compiling longer than this is failed
        self.shared_memory_limit = device.shared_memory_per_block
        self.pool = self._new_pool()
        self.stats = PoolStats()
        self.upcoming: list[tuple[ConvProblem, str, dict[str, Any]]] = []
        self._by_binary: dict[tuple[str, ...], Future] = {}
        self._unclaimed: set[tuple[str, ...]] = set()  # prefetched binaries no candidate has asked for yet

    def submit(self, problem: ConvProblem, family: str, config: dict[str, Any]) -> CompileJob:
        """Start compiling, or share the job of an earlier candidate with the same binary (unless that job was
        cancelled or its worker failed)."""
        key = binary_key(problem, family, config, self.device)
        earlier = self._live_job(key)
        if earlier is not None:
            if key in self._unclaimed:  # prefetched for this candidate: its compile is this candidate's cost
                self._unclaimed.discard(key)
                return CompileJob(earlier)
            self.stats.shared += 1
            return CompileJob(earlier, shared=True)
        return CompileJob(self._new_job(key, problem, family, config))

    def prefetch(self) -> None:
        """Submit the `upcoming` candidates (once) whose binaries are not compiled or compiling yet."""
        upcoming, self.upcoming = self.upcoming, []
        for problem, family, config in upcoming:
            key = binary_key(problem, family, config, self.device)
            if key is not None and self._live_job(key) is None:
                self._new_job(key, problem, family, config)
                self.stats.prefetched += 1
                self._unclaimed.add(key)

    def _live_job(self, key: Optional[tuple[str, ...]]) -> Optional[Future]:
        """The job compiling (or that compiled) this binary, unless it was cancelled or its worker failed."""
        future = self._by_binary.get(key) if key is not None else None
        if future is None or future.cancelled() or (future.done() and future.exception() is not None):
            return None
        return future

    def _new_job(self, key: Optional[tuple[str, ...]], problem: ConvProblem, family: str, config: dict[str, Any]) -> Future:
        future = self._start(problem, family, config)
        self.stats.jobs += 1
        future.add_done_callback(self.stats.count)
        if key is not None:
            self._by_binary[key] = future
        return future

    def _start(self, problem: ConvProblem, family: str, config: dict[str, Any]) -> Future:
        """Submit one compile job; a broken pool (a worker died) is replaced once per failure, the job retried."""
        try:
            return self.pool.submit(compile_candidate, problem.to_dict(), family, config, self.device)
        except BrokenProcessPool:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._new_pool()
            try:
                return self.pool.submit(compile_candidate, problem.to_dict(), family, config, self.device)
            except BrokenProcessPool as exc:  # the workers cannot start at all: every candidate fails with this
                failed: Future = Future()
                failed.set_exception(exc)
                return failed

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_warm_up)

    def verdict(self, job: CompileJob, timeout: Optional[float] = None) -> CompileVerdict:
        try:
            result = job.future.result(timeout)
        except FutureTimeout:
            job.future.cancel()
            return CompileVerdict(error=f"compile took more than {timeout:g} s")
        except Exception as exc:  # noqa: BLE001 - a dead compile worker only loses this candidate
            return CompileVerdict(error=f"compile worker failed: {type(exc).__name__}: {exc}")
        cost = {"compile_s": float(result.get("compile_s", 0.0)), "compile_cpu_s": float(result.get("compile_cpu_s", 0.0)),
                "cache_hits": int(result.get("cache_hits", 0)), "shared": job.shared}
        if not result["ok"]:
            return CompileVerdict(error=result["error"], **cost)
        for usage in result["usage"]:
            if self.reject_spills and usage["stack_bytes"] > 0:
                return CompileVerdict(infeasible=f"spills registers ({usage['stack_bytes']} B of stack)", usage=result["usage"], **cost)
            if usage["shared_bytes"] > self.shared_memory_limit:
                return CompileVerdict(
                    infeasible=f"uses {usage['shared_bytes']} B of shared memory, device allows {self.shared_memory_limit}",
                    usage=result["usage"], **cost,
                )
        return CompileVerdict(usage=result["usage"], **cost)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
