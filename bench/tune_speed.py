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
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tritonconv.problem import ConvProblem  # noqa: E402
from tritonconv.search.options import DEFAULTS  # noqa: E402

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
# problem's best few (retime_top=3) are re-timed with the full timer (25 ms + 100 ms), and cuDNN is timed
# with it in both layouts.
ASSUMED_GPU_S_PER_CANDIDATE = 0.05
ASSUMED_GPU_S_PER_RETIME = 0.15
ASSUMED_GPU_S_PER_BASELINE = 0.3  # cuDNN in both layouts with the full timer, once per problem
RETIME_TOP = DEFAULTS.retime_top


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


def problem_row(result, trials: int) -> dict:
    rows = result.timeline
    owned = [r for r in rows if "compile_s" in r and not r.get("compile_shared")]
    shared = [r for r in rows if r.get("compile_shared")]
    measured = [r for r in rows if r["state"] in ("COMPLETE", "FAIL") and "repeat_of" not in r and "from_cache" not in r]
    total = lambda key, of=rows: sum(r.get(key, 0.0) or 0.0 for r in of)  # noqa: E731
    return {
        "problem": result.problem.key, "wall_s": result.wall_time_s, "trials_run": result.trials_run,
        "stopped_early": result.trials_run < trials,
        "candidates_compiled": len(owned), "candidates_sharing_a_binary": len(shared), "candidates_measured": len(measured),
        "pruned_before_compile": sum(1 for r in rows if r["state"] == "PRUNED" and "infeasible" in r and "compile_s" not in r),
        "in_flight_when_the_search_stopped": sum(1 for r in rows if r["state"] == "PRUNED" and "infeasible" not in r and "compile_s" not in r),
        "compile_s": total("compile_s", owned), "compile_cpu_s": total("compile_cpu_s", owned),
        "triton_cache_hits": int(total("compile_cache_hits", owned)),
        "check_s": total("check_s"), "time_s": total("time_s"),
        "compiles_in_benchmark_worker": sum(int(r.get("compiles", 0) or 0) for r in rows),
        "family": result.family, "best_ms": result.time_ms,
    }


def pool_start_s(workers: int) -> tuple[float, float]:
    """Wall seconds to spawn the compile pool and import Triton, torch and the families in every worker (paid
    once per pool), and the CPU seconds per worker it took."""
    import multiprocessing
    import resource
    from concurrent.futures import ProcessPoolExecutor

    from tritonconv.search.compile_pool import _warm_up

    started, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_warm_up) as pool:
        list(pool.map(_pid, range(workers)))
        wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers have exited and been waited for
    return wall, (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / workers


def _pid(_: int) -> int:
    return os.getpid()


def project(measured: dict, measured_gpu: bool) -> dict:
    """Projection to all 23 unique ResNet-50 convs on a 16-core machine (a projection, not a measurement).

    Every quantity is measured here except the GPU seconds per candidate (g, g_full, g_base: assumed without a
    GPU run). The compile side is CPU time: on the 16-core machine each of the 15 compile workers has a core of
    its own, so a job's CPU seconds (worker + ptxas/cuobjdump children) are its wall seconds there, whatever the
    load on this machine. The tuner process (Optuna, the journal, the launch hashes) works in series with the
    GPU worker and in parallel with the compile pool; the next problem's seeds compile while a problem's last
    candidates are measured (prefetch), so only the first problem waits for a first compile.
    """
    rows, pool = measured["problems"], measured["compile_pool"]
    p = len(rows)
    n = len(RESNET50)
    workers = PROJECTION_CORES - 1
    cpu_per_problem = pool["compile_cpu_s"] / p  # every job the pool ran: also prefetched and stopped-search ones
    cpu_per_job = pool["compile_cpu_s"] / max(1, pool["finished"])
    measured_per_problem = sum(r["candidates_measured"] for r in rows) / p
    tuner_cpu_per_problem = measured["tuner_process_cpu_s"] / p
    if measured_gpu:
        g = sum(r["check_s"] + r["time_s"] for r in rows) / max(1, sum(r["candidates_measured"] for r in rows))
        g_full, g_base = 3 * g, 6 * g
    else:
        g, g_full, g_base = ASSUMED_GPU_S_PER_CANDIDATE, ASSUMED_GPU_S_PER_RETIME, ASSUMED_GPU_S_PER_BASELINE
    # a search that stops early (no new best for early_stop trials) drops its candidates in flight: here at most
    # `workers_here` were compiling, there up to 15; the extra ones are wasted jobs this run could not see
    early = sum(r["stopped_early"] for r in rows) / p
    waste_per_problem = early * max(0, workers - measured["machine"]["compile_workers"]) * cpu_per_job
    compile_side = n * (cpu_per_problem + waste_per_problem) / workers
    in_series = n * (measured_per_problem * g + RETIME_TOP * g_full + g_base + tuner_cpu_per_problem)
    # the tuner's asks (Optuna's sampling, launch hashes, submits) run while the GPU worker measures: their share f
    # of the tuner's CPU seconds, measured with the real compiles or in a --tuner-only run (tuner_split)
    split = measured.get("tuner_split")
    f = split["ask_fraction"] if split else (measured["tuner_ask_cpu_s"] / measured["tuner_process_cpu_s"]
                                             if measured.get("tuner_ask_cpu_s") else None)
    gpu_chain = in_series if f is None else n * (max(measured_per_problem * g, f * tuner_cpu_per_problem)
                                                  + (1 - f) * tuner_cpu_per_problem + RETIME_TOP * g_full + g_base)
    s0 = measured["pool_start_cpu_s_per_worker"]
    return {
        "kind": "projection (not a measurement)",
        "formula": "T = s0 + c_job + max(N * (K + W) / (cores - 1), N * (max(M * g, f * P) + (1 - f) * P + 3 * g_full + g_base)); "
                   "upper bound without any overlap: s0 + N * (K + W) / (cores - 1) + N * (M * g + P + 3 * g_full + g_base)",
        "terms": {
            "s0": "compile pool start: CPU seconds of one worker's spawn and imports (they start in parallel, a core "
                  "each); the tuner process's own start (import torch) is not counted",
            "W": "compile CPU seconds per problem wasted when a search stops early with 15 compiles in flight instead "
                 "of the workers here: fraction of problems stopped early * (15 - workers here) * c_job",
            "c_job": "CPU seconds of one compile job (the first problem's first candidate waits for one)",
            "K": "compile CPU seconds per problem: every job the pool ran, divided by the problems measured",
            "M": "candidates measured (benchmarked) per problem",
            "P": "CPU seconds of the tuner process per problem (Optuna ask/tell, journal, launch hashes, study set-up)",
            "f": "share of P spent asking for and submitting candidates, which overlaps the GPU worker's measurement "
                 "(tuner_split); without it f = 0 (the tuner in series with the GPU)",
            "g, g_full, g_base": "GPU seconds per screened candidate, per full re-timing, per cuDNN baseline (both layouts)",
        },
        "N_unique_convs": n, "cores": PROJECTION_CORES,
        "s0_pool_start_cpu_s_measured_here": s0, "pool_start_wall_s_here": measured["pool_start_s"],
        "c_job_compile_cpu_s_measured_here": cpu_per_job,
        "K_compile_cpu_s_per_problem_measured_here": cpu_per_problem,
        "W_wasted_compile_cpu_s_per_problem": waste_per_problem,
        "fraction_of_problems_stopped_early": early,
        "M_measured_candidates_per_problem": measured_per_problem,
        "P_tuner_cpu_s_per_problem_measured_here": tuner_cpu_per_problem,
        "g_gpu_s_per_candidate": g, "g_full_gpu_s_per_retime": g_full, "g_base_gpu_s_per_baseline": g_base,
        "g_source": "measured (real runner)" if measured_gpu else "assumed: no GPU measurement",
        "f_ask_share_of_tuner_cpu": f,
        "compile_side_s": compile_side, "gpu_and_tuner_side_s": gpu_chain, "gpu_and_tuner_side_s_tuner_in_series": in_series,
        "projected_total_s": s0 + cpu_per_job + max(compile_side, gpu_chain),
        "projected_total_s_tuner_in_series": s0 + cpu_per_job + max(compile_side, in_series),
        "upper_bound_without_overlap_s": s0 + compile_side + in_series,
        "caveat": "CPU seconds were measured on this machine's cores; the GPU host's cores may compile faster or "
                  "slower. K from a subset of the 23 convs undercounts the binaries they share with the others "
                  "(a conservative K).",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runner", choices=("fake", "real"), default="fake")
    parser.add_argument("--problems", type=int, default=3, help="how many of the 23 ResNet-50 convs (spread; 0: all)")
    parser.add_argument("--trials", type=int, default=DEFAULTS.trials, help="trial budget per problem (tune's default)")
    parser.add_argument("--workers", type=int, default=0, help="compile workers (0: tune's default, cores - 1)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--warm-triton-cache", action="store_true",
                        help="keep Triton's own cache directory (default: an empty one, so nothing compiled before counts)")
    parser.add_argument("--tuner-only", action="store_true",
                        help="compile nothing (every candidate compiles instantly): measures the tuner process alone")
    parser.add_argument("--tuner-split", default="",
                        help="with --reproject: a --tuner-only result whose ask share of the tuner's CPU time goes into "
                             "the projection (the asks overlap the GPU worker)")
    parser.add_argument("--chunk", type=int, default=0,
                        help="problems per tune_many call, the file rewritten after each (0: one call for all)")
    parser.add_argument("--out", default="", help="JSON result file")
    parser.add_argument("--reproject", help="recompute the projection of a saved result file (in place)")
    args = parser.parse_args(argv)
    if args.reproject:
        saved = json.loads(Path(args.reproject).read_text())
        if args.tuner_split:
            split = json.loads(Path(args.tuner_split).read_text())
            saved["tuner_split"] = {"source": Path(args.tuner_split).name, "problems_measured": split["problems_measured"],
                                    "tuner_process_cpu_s": split["tuner_process_cpu_s"],
                                    "tuner_ask_cpu_s": split["tuner_ask_cpu_s"],
                                    "ask_fraction": split["tuner_ask_cpu_s"] / split["tuner_process_cpu_s"]}
        saved["projection_resnet50_b32_16_cores"] = project(saved, saved["runner"] == "real")
        Path(args.reproject).write_text(json.dumps(saved, indent=1))
        print(json.dumps(saved["projection_resnet50_b32_16_cores"], indent=1))
        return 0
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("unset TRITON_INTERPRET: the compile pool builds real kernels", file=sys.stderr)
        return 2
    import tempfile

    if not args.warm_triton_cache:  # before any worker starts: they inherit it
        os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="tune_speed_triton_")
    import torch

    from tritonconv.runtime import COMPILE_TARGETS
    from tritonconv.search import tune_many
    from tritonconv.search.compile_pool import Precompiler
    from tritonconv.search.runner import FakeRunner, SubprocessRunner
    from tritonconv.search.options import default_compile_workers

    workers = args.workers or default_compile_workers()
    problems = spread(resnet50_problems(args.batch), args.problems)
    if args.runner == "real":
        if not torch.cuda.is_available():
            print("--runner real needs a CUDA GPU", file=sys.stderr)
            return 2
        runner, target = SubprocessRunner(), None
    else:
        runner, target = FakeRunner(target=COMPILE_TARGETS[90]), COMPILE_TARGETS[90]
    load_at_start = os.getloadavg()
    start_s, start_cpu_s = pool_start_s(workers)
    pool = (_NoCompile if args.tuner_only else Precompiler)(runner.target, workers)
    asks = _time_the_asks()
    started, cpu_started, done = time.perf_counter(), time.process_time(), []
    chunk = args.chunk or len(problems)
    with tempfile.TemporaryDirectory() as cache_dir:
        for first in range(0, len(problems), chunk):
            # one compile pool for every problem (and within a tune_many call, the next problem's seeds ahead);
            # the runner's target is the GPU the search decides for
            done += tune_many(problems[first:first + chunk], trials=args.trials, runner=runner, cache=cache_dir,
                              progress=False, precompiler=pool, resume=False)
            result = _result(args, workers, load_at_start, start_s, start_cpu_s, pool, done, target,
                             time.perf_counter() - started, time.process_time() - cpu_started, asks[0])
            if args.out:  # after every chunk: a run cut short keeps what it measured
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_text(json.dumps(result, indent=1))
    pool.close()
    runner.close()
    print(json.dumps(result, indent=1))
    return 0


def _commit() -> str | None:
    """The checkout's commit (None outside a git checkout)."""
    import subprocess

    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, check=False)
    return done.stdout.strip() or None


def _time_the_asks() -> list[float]:
    """Count the tuner process's CPU seconds in asking for candidates (Optuna's sampling, the feasibility check)
    and submitting them (launch hashes): the work that overlaps the GPU worker's measurement."""
    from tritonconv.search import compile_pool, loop

    spent = [0.0]

    def timed(fn):
        def wrapper(*args, **kwargs):
            started = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[0] += time.process_time() - started
        return wrapper

    loop.ask = timed(loop.ask)
    compile_pool.Precompiler.submit = timed(compile_pool.Precompiler.submit)
    return spent


def _no_compile():
    from concurrent.futures import Future

    from tritonconv.search.compile_pool import Precompiler

    class NoCompile(Precompiler):
        """Every candidate compiles at once, to nothing (--tuner-only)."""

        def _start(self, problem, family, config):
            done: Future = Future()
            done.set_result({"ok": True, "usage": [], "compile_s": 0.0, "compile_cpu_s": 0.0, "cache_hits": 0, "cache_misses": 0})
            return done

    return NoCompile


def _NoCompile(*args, **kwargs):  # noqa: N802 - a class made on first use (imports tritonconv)
    return _no_compile()(*args, **kwargs)


def _result(args, workers: int, load_at_start, start_s: float, start_cpu_s: float, pool, done: list, target,
            wall: float, tuner_cpu: float, ask_cpu: float) -> dict:
    rows = [problem_row(r, args.trials) for r in done]
    load = os.getloadavg()
    stats = dataclasses.asdict(pool.stats)
    result = {
        "schema": "tritonconv-tune-speed", "runner": args.runner, "trials_budget": args.trials, "batch": args.batch,
        "machine": {"cpu_count": os.cpu_count(), "compile_workers": workers, "load_average_1_5_15": load,
                    "load_average_at_start": load_at_start,
                    "note": "shared machine: other engineers' jobs ran at the same time" if load[0] > 1 else ""},
        "compile_target": "sm_90 (emulated H100: 132 SMs, 232448 B shared memory per block)" if target else "this GPU",
        "triton_cache": "warm (the user's)" if args.warm_triton_cache else "empty at the start",
        "problems_measured": [r["problem"] for r in rows],
        "tune_many_calls": -(-len(rows) // (args.chunk or len(rows))),
        "commit": _commit(),
        "mode": "tuner only: nothing compiled" if args.tuner_only else "real compiles",
        "wall_s": wall, "tuner_process_cpu_s": tuner_cpu, "tuner_ask_cpu_s": ask_cpu, "pool_start_s": start_s, "pool_start_cpu_s_per_worker": start_cpu_s,
        "cpu_time_note": "compile_cpu_s: user + system CPU seconds of the compile worker and its ptxas/cuobjdump "
                         "children per job; compile_s: the same jobs' wall seconds on this (loaded) machine. On a "
                         "machine with a core per worker, CPU seconds are the per-core cost.",
        "compile_pool": {**stats, "binary_share_rate": stats["shared"] / max(1, stats["shared"] + stats["jobs"]),
                         "triton_cache_hit_rate": stats["cache_hits"] / max(1, stats["cache_hits"] + stats["cache_misses"])},
        "problems": rows,
        "projection_resnet50_b32_16_cores": None,
    }
    result["projection_resnet50_b32_16_cores"] = project(result, args.runner == "real") if rows else None
    return result


if __name__ == "__main__":
    sys.exit(main())
