"""Compiling candidates in parallel worker processes while the GPU benchmarks serially.

The workers compile for the benchmark GPU's capability under the exact cache key Triton's launcher looks up
(`tritonconv.compile.launch_specialization`), so the benchmark worker's launch finds each candidate already built
(one compile per candidate), and the compiled resource usage (register spills, shared memory over the device
limit) rejects candidates before they reach the GPU. The workers are spawned and never touch CUDA: they see the
benchmark GPU through `emulated_device` (its capability, SM count and shared memory), so families choose the
launches they would choose there. One pool serves every problem of a `tune_many` / `tune_model` call.
"""
from __future__ import annotations

import multiprocessing
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


def candidate_calls(problem: ConvProblem, family: str, config: dict[str, Any]) -> Sequence[KernelCall]:
    """The launches the benchmark runner makes for a candidate (no bias, no residual, no activation; an NCHW
    input converted to channels_last when the config says `convert_nhwc`), on meta tensors."""
    from ..compile import meta_tensors
    from ..kernels import get_family

    kernel_config = {k: v for k, v in config.items() if k not in ("family", "convert_nhwc", "precision")}
    convert = bool(config.get("convert_nhwc")) and problem.layout == "nchw"
    tensors = meta_tensors(problem, bias=False, activation="none", convert_nhwc=convert)
    return get_family(family).kernel_calls(problem, tensors, kernel_config)


def compile_candidate(problem_dict: dict[str, Any], family: str, config: dict[str, Any], device: DeviceInfo) -> dict[str, Any]:
    """Worker: compile every launch of (family, config) for `device`; resource usage (no SASS) or the error."""
    from ..compile import compile_call, resource_usage
    from ..runtime import emulated_device

    started = time.perf_counter()
    problem = ConvProblem.from_dict(problem_dict)
    capability = device.capability[0] * 10 + device.capability[1]
    try:
        with emulated_device(device):
            usage = [resource_usage(compile_call(call, capability), sass=False) for call in candidate_calls(problem, family, config)]
    except Exception as exc:  # noqa: BLE001 - a failed compile is a recorded result
        return {"ok": False, "error": f"compile failed: {type(exc).__name__}: {str(exc)[:400]}", "compile_s": time.perf_counter() - started}
    return {"ok": True, "usage": [u.__dict__ for u in usage], "compile_s": time.perf_counter() - started}


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
    compile_s: float = 0.0  # the worker's time compiling this candidate (0 when it failed before)


class Precompiler:
    """A pool of compile workers for one target device (its capability and shared-memory limit).

    `submit` returns at once; `verdict` waits for that candidate. Keep one Precompiler across problems (the
    workers' imports are paid once); `close` when done.
    """

    def __init__(self, device: DeviceInfo, workers: int = 4, *, reject_spills: bool = True, compile_timeout_s: float = 120.0):
        self.device, self.reject_spills, self.workers = device, reject_spills, max(1, workers)
        self.compile_timeout_s = compile_timeout_s  # a candidate compiling longer than this is failed
        self.shared_memory_limit = device.shared_memory_per_block
        self.pool = self._new_pool()

    def submit(self, problem: ConvProblem, family: str, config: dict[str, Any]) -> Future:
        """Start compiling; a broken pool (a worker died) is replaced once per failure, the candidate retried."""
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

    def verdict(self, future: Future, timeout: Optional[float] = None) -> CompileVerdict:
        try:
            result = future.result(timeout)
        except FutureTimeout:
            future.cancel()
            return CompileVerdict(error=f"compile took more than {timeout:g} s")
        except Exception as exc:  # noqa: BLE001 - a dead compile worker only loses this candidate
            return CompileVerdict(error=f"compile worker failed: {type(exc).__name__}: {exc}")
        seconds = float(result.get("compile_s", 0.0))
        if not result["ok"]:
            return CompileVerdict(error=result["error"], compile_s=seconds)
        for usage in result["usage"]:
            if self.reject_spills and usage["stack_bytes"] > 0:
                return CompileVerdict(infeasible=f"spills registers ({usage['stack_bytes']} B of stack)", usage=result["usage"], compile_s=seconds)
            if usage["shared_bytes"] > self.shared_memory_limit:
                return CompileVerdict(
                    infeasible=f"uses {usage['shared_bytes']} B of shared memory, device allows {self.shared_memory_limit}",
                    usage=result["usage"], compile_s=seconds,
                )
        return CompileVerdict(usage=result["usage"], compile_s=seconds)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
