"""Tuning throughput: candidates per second and time per problem, split into compile / correctness check / timing.

    python bench/tune_speed.py                      # fake runner (any machine): the tuner and the compile pool only
    python bench/tune_speed.py --runner real        # on a GPU: the real benchmark worker (check + timing on the GPU)

The fake runner answers every candidate at once with a made-up time, so a CPU run measures the compile side
honestly (real sm_90 compiles in the pool, for an emulated H100/H200: 132 SMs, 227 KiB shared memory) and
nothing else. The result projects the time to tune every unique conv of ResNet-50 at batch 32 with the default
budget on a 16-core H200 machine; the projection formula is written into the JSON beside its inputs. Run it
without TRITON_INTERPRET (the pool compiles real kernels).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tritonconv.problem import ConvProblem  # noqa: E402

# (c, hw, k, r, stride): the 23 distinct convs of torchvision's ResNet-50 (v1.5: stride on the 3x3).
RESNET50 = [
    (3, 224, 64, 7, 2),
    (64, 56, 64, 1, 1), (64, 56, 64, 3, 1), (64, 56, 256, 1, 1), (256, 56, 64, 1, 1),
    (256, 56, 128, 1, 1), (128, 56, 128, 3, 2), (128, 28, 512, 1, 1), (256, 56, 512, 1, 2), (512, 28, 128, 1, 1), (128, 28, 128, 3, 1),
    (512, 28, 256, 1, 1), (256, 28, 256, 3, 2), (256, 14, 1024, 1, 1), (512, 28, 1024, 1, 2), (1024, 14, 256, 1, 1), (256, 14, 256, 3, 1),
    (1024, 14, 512, 1, 1), (512, 14, 512, 3, 2), (512, 7, 2048, 1, 1), (1024, 14, 2048, 1, 2), (2048, 7, 512, 1, 1), (512, 7, 512, 3, 1),
]
PROJECTION_CORES = 16
# GPU seconds per candidate when no GPU run measured them (assumptions, labelled so in the output): a screened
# trial is the checked run + do_bench with 5 ms of warm-up and 20 ms of repeats + the worker round trip; each
# problem's best few (retime_top=3) are re-timed with the full timer (25 ms + 100 ms).
ASSUMED_GPU_S_PER_CANDIDATE = 0.05
ASSUMED_GPU_S_PER_RETIME = 0.15
RETIME_TOP = 3


def resnet50_problems(batch: int = 32, dtype: str = "float16", layout: str = "nhwc") -> list[ConvProblem]:
    return [
        ConvProblem(n=batch, c=c, h=hw, w=hw, k=k, r=r, s=r, stride_h=st, stride_w=st, pad_h=r // 2, pad_w=r // 2, dtype=dtype, layout=layout)
        for c, hw, k, r, st in RESNET50
    ]


def spread(items: list, count: int) -> list:
    """`count` items evenly spread over `items` (all of them when count is 0 or larger)."""
    if not count or count >= len(items):
        return items
    return [items[round(i * (len(items) - 1) / max(1, count - 1))] for i in range(count)]


def problem_row(result) -> dict:
    rows = result.timeline
    compiled = [r for r in rows if "compile_s" in r]
    measured = [r for r in rows if r["state"] in ("COMPLETE", "FAIL") and "repeat_of" not in r and "from_cache" not in r]
    total = lambda key: sum(r.get(key, 0.0) or 0.0 for r in rows)  # noqa: E731
    return {
        "problem": result.problem.key, "wall_s": result.wall_time_s, "candidates_compiled": len(compiled),
        "candidates_measured": len(measured), "pruned_before_compile": sum(1 for r in rows if r["state"] == "PRUNED" and "compile_s" not in r),
        "compile_s": total("compile_s"), "check_s": total("check_s"), "time_s": total("time_s"),
        "compiles_in_benchmark_worker": sum(int(r.get("compiles", 0) or 0) for r in rows),
        "candidates_per_s": len(compiled) / result.wall_time_s if result.wall_time_s else None,
        "family": result.family, "best_ms": result.time_ms,
    }


def pool_start_s(workers: int) -> float:
    """Seconds to spawn the compile pool and import Triton, torch and the families in every worker (paid once
    per tune_many call)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from tritonconv.search.compile_pool import _warm_up

    started = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_warm_up) as pool:
        list(pool.map(_pid, range(workers)))
    return time.perf_counter() - started


def _pid(_: int) -> int:
    return os.getpid()


def project(rows: list[dict], workers_here: int, measured_gpu: bool, start_s: float) -> dict:
    """Projection to all 23 unique ResNet-50 convs on a 16-core machine (a projection, not a measurement)."""
    compiled = sum(r["candidates_compiled"] for r in rows)
    per_candidate_compile = sum(r["compile_s"] for r in rows) / max(1, compiled)
    candidates_per_problem = compiled / max(1, len(rows))
    gpu_per_candidate = (
        sum(r["check_s"] + r["time_s"] for r in rows) / max(1, sum(r["candidates_measured"] for r in rows))
        if measured_gpu else ASSUMED_GPU_S_PER_CANDIDATE
    )
    # the tuner's own serial work per candidate: wall time not explained by the pool's parallel compiles or the GPU
    # (the first problem also paid the pool's start, s0, counted once below)
    overhead = statistics.median(
        max(0.0, r["wall_s"] - (start_s if i == 0 else 0.0) - r["compile_s"] / workers_here - r["check_s"] - r["time_s"])
        / max(1, r["candidates_compiled"]) for i, r in enumerate(rows)
    )
    n = len(RESNET50)
    workers = PROJECTION_CORES - 1
    compile_side = n * candidates_per_problem * per_candidate_compile / workers
    retime = ASSUMED_GPU_S_PER_RETIME if not measured_gpu else 3 * gpu_per_candidate
    gpu_side = n * (candidates_per_problem * gpu_per_candidate + RETIME_TOP * retime)
    tuner_side = n * candidates_per_problem * overhead
    return {
        "kind": "projection (not a measurement)",
        "formula": "T = s0 + max(N * C * c / (cores - 1), N * (C * g + 3 * g_full)) + N * C * o, the compile pool and the "
                   "GPU working in parallel",
        "s0_pool_start_s_measured_here": start_s,
        "N_unique_convs": n, "C_candidates_per_problem": candidates_per_problem,
        "c_compile_s_per_candidate_measured_here": per_candidate_compile,
        "g_gpu_s_per_candidate": gpu_per_candidate, "g_full_gpu_s_per_retime": retime,
        "g_source": "measured (real runner)" if measured_gpu else "assumed: no GPU measurement",
        "o_tuner_overhead_s_per_candidate_measured_here": overhead, "cores": PROJECTION_CORES,
        "compile_side_s": compile_side, "gpu_side_s": gpu_side, "tuner_side_s": tuner_side,
        "projected_total_s": start_s + max(compile_side, gpu_side) + tuner_side,
        "caveat": "c was measured on this machine's CPU under its load; the GPU host's cores may compile faster or slower",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runner", choices=("fake", "real"), default="fake")
    parser.add_argument("--problems", type=int, default=3, help="how many of the 23 ResNet-50 convs (spread; 0: all)")
    parser.add_argument("--trials", type=int, default=64, help="trial budget per problem (64 is tune's default)")
    parser.add_argument("--workers", type=int, default=0, help="compile workers (0: tune's default, cores - 1)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--out", default="", help="JSON result file")
    parser.add_argument("--reproject", help="recompute the projection of a saved result file (in place)")
    args = parser.parse_args(argv)
    if args.reproject:
        saved = json.loads(Path(args.reproject).read_text())
        old = saved["projection_resnet50_b32_16_cores"]
        saved["projection_resnet50_b32_16_cores"] = project(saved["problems"], saved["machine"]["compile_workers"],
                                                            saved["runner"] == "real", old["s0_pool_start_s_measured_here"])
        Path(args.reproject).write_text(json.dumps(saved, indent=1))
        print(json.dumps(saved["projection_resnet50_b32_16_cores"], indent=1))
        return 0
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("unset TRITON_INTERPRET: the compile pool builds real kernels", file=sys.stderr)
        return 2
    import tempfile

    import torch

    from tritonconv.runtime import COMPILE_TARGETS, emulated_device
    from tritonconv.search import tune_many
    from tritonconv.search.runner import FakeRunner, SubprocessRunner
    from tritonconv.search.study import default_compile_workers

    workers = args.workers or default_compile_workers()
    problems = spread(resnet50_problems(args.batch), args.problems)
    if args.runner == "real":
        if not torch.cuda.is_available():
            print("--runner real needs a CUDA GPU", file=sys.stderr)
            return 2
        runner, target = SubprocessRunner(), None
    else:
        runner, target = FakeRunner(compile_target=COMPILE_TARGETS[90]), COMPILE_TARGETS[90]
    load_at_start = os.getloadavg()
    start_s = pool_start_s(workers)
    started, rows = time.perf_counter(), []
    with tempfile.TemporaryDirectory() as cache_dir:
        emulate = emulated_device(target) if target else _nothing()
        with emulate:
            # one tune_many call: one compile pool for every problem
            done = tune_many(problems, trials=args.trials, runner=runner, cache=cache_dir, progress=False,
                             compile_workers=workers, resume=False)
        rows = [problem_row(r) for r in done]
    runner.close()
    load = os.getloadavg()
    result = {
        "schema": "tritonconv-tune-speed", "runner": args.runner, "trials_budget": args.trials, "batch": args.batch,
        "machine": {"cpu_count": os.cpu_count(), "compile_workers": workers, "load_average_1_5_15": load,
                    "load_average_at_start": load_at_start,
                    "note": "shared machine: other engineers' jobs ran at the same time" if load[0] > 1 else ""},
        "compile_target": "sm_90 (emulated H100: 132 SMs, 232448 B shared memory per block)" if target else "this GPU",
        "wall_s": time.perf_counter() - started, "problems": rows,
        "candidates_per_s": sum(r["candidates_compiled"] for r in rows) / max(1e-9, sum(r["wall_s"] for r in rows)),
        "projection_resnet50_b32_16_cores": project(rows, workers, args.runner == "real", start_s) if rows else None,
    }
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    print(text)
    return 0


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    sys.exit(main())
