"""Compiling candidates in parallel worker processes while the GPU benchmarks serially.

Compiling for the current GPU's capability fills Triton's on-disk cache, so the benchmark worker's launch finds
the kernel already built, and the compiled resource usage (register spills, shared memory over the device
limit) rejects candidates before they reach the GPU. Workers must import Triton without TRITON_INTERPRET.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Optional

from ..problem import ConvProblem


def compile_candidate(problem_dict: dict[str, Any], family: str, kernel_config: dict[str, Any], capability: int) -> dict[str, Any]:
    """Worker: compile every launch of (family, config) for `capability`; resource usage or the error."""
    from ..compile import compile_config
    from ..kernels import get_family

    problem = ConvProblem.from_dict(problem_dict)
    try:
        usage = compile_config(get_family(family), problem, kernel_config, capability, bias=False, activation="none")
    except Exception as exc:  # noqa: BLE001 - a failed compile is a recorded result
        return {"ok": False, "error": f"compile failed: {type(exc).__name__}: {str(exc)[:400]}"}
    return {"ok": True, "usage": [u.__dict__ for u in usage]}


@dataclass
class CompileVerdict:
    infeasible: Optional[str] = None  # compiled, but would spill or not fit: never benchmarked
    error: Optional[str] = None  # did not compile
    usage: Optional[list[dict[str, Any]]] = None


class Precompiler:
    """A pool of compile workers for one target capability (e.g. 90) and its shared-memory limit in bytes."""

    def __init__(self, capability: int, shared_memory_limit: int, workers: int = 4, *, reject_spills: bool = True):
        self.capability, self.shared_memory_limit, self.reject_spills = capability, shared_memory_limit, reject_spills
        self.workers = workers
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, problem: ConvProblem, family: str, kernel_config: dict[str, Any]) -> Future:
        return self.pool.submit(compile_candidate, problem.to_dict(), family, kernel_config, self.capability)

    def verdict(self, future: Future) -> CompileVerdict:
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 - a dead compile worker only loses this candidate
            return CompileVerdict(error=f"compile worker failed: {type(exc).__name__}: {exc}")
        if not result["ok"]:
            return CompileVerdict(error=result["error"])
        for usage in result["usage"]:
            if self.reject_spills and usage["stack_bytes"] > 0:
                return CompileVerdict(infeasible=f"spills registers ({usage['stack_bytes']} B of stack)", usage=result["usage"])
            if usage["shared_bytes"] > self.shared_memory_limit:
                return CompileVerdict(
                    infeasible=f"uses {usage['shared_bytes']} B of shared memory, device allows {self.shared_memory_limit}",
                    usage=result["usage"],
                )
        return CompileVerdict(usage=result["usage"])

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
