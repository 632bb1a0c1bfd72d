"""Timing GPU work the same way everywhere (search, benchmarks): medians of CUDA-event timings with the L2
cache flushed between runs (triton.testing.do_bench), or of CUDA-graph replays for launch-bound kernels."""
from __future__ import annotations

from typing import Callable, Literal

TimingMode = Literal["events", "cuda_graph"]
# A timer: the median milliseconds of one call of the function it is given (time_ms, or a test's stand-in).
Timer = Callable[[Callable[[], object]], float]


def time_ms(fn: Callable[[], object], *, mode: TimingMode = "events", warmup_ms: int = 25, rep_ms: int = 100) -> float:
    """Median milliseconds of one call of `fn` on the current CUDA device."""
    import torch
    from triton.testing import do_bench, do_bench_cudagraph

    if not torch.cuda.is_available():
        raise RuntimeError("timing needs a CUDA GPU")
    if mode == "cuda_graph":
        return float(do_bench_cudagraph(fn, rep=rep_ms, return_mode="median"))
    return float(do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median"))
