"""The stages of bench/gpu_session.sh: one stage per call, each writing JSON lines into --out as it goes.

    python3 bench/gpu_session.py STAGE --out DIR --deadline SECONDS [--dry-run]

Stages (the most important answers first): env (versions, deps, precompile == launch key), correctness (the
differential sweep on real compiles), speed (cuDNN NCHW/NHWC vs every family's default, TFLOP/s, roofline
fraction), tuning (one study under a hard budget with its per-trial compile/check/time timeline, vs an exhaustive
sweep), extras (matmul vs cuBLAS, CUDA-graph capture and replay, a converted model vs eager), algorithms (issue 16's
Winograd family and int8 quantized conv, and fp8, vs cuDNN fp16 on ResNet-50's 3x3
layers; its lines go into extras.jsonl). Each stage stops
starting new work when its deadline is near; every line is flushed when written, so a kill keeps what finished.
`--dry-run`: the CPU (Triton interpreter where kernels run; stage env compiles without it), tiny shapes, the
same stages and files.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FILES = {"env": "session.jsonl", "correctness": "correctness.jsonl", "speed": "speed.jsonl", "tuning": "tuning.jsonl",
         "extras": "extras.jsonl", "algorithms": "extras.jsonl"}  # + pytest.log (written by the shell script): six files


class Stage:
    """One stage's JSON-lines file and its deadline."""

    def __init__(self, name: str, out: Path, deadline_s: float, dry_run: bool):
        self.name, self.dry_run = name, dry_run
        self.start = time.monotonic()
        self.end = self.start + deadline_s
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / FILES[name]
        self._file = self.path.open("a")

    def emit(self, kind: str, **fields: Any) -> None:
        row = {"stage": self.name, "kind": kind, "t_s": round(time.monotonic() - self.start, 3), **fields}
        self._file.write(json.dumps(row, default=_jsonable) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def left(self) -> float:
        return self.end - time.monotonic()

    def close(self) -> None:
        self._file.close()


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "__dict__"):
        return {k: v for k, v in vars(value).items() if not k.startswith("_")}
    return str(value)


def _guard(stage: Stage, what: str, fn: Callable[[], Any]) -> Any:
    """Run one item; a failure becomes an error line and the stage goes on."""
    started = time.perf_counter()
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - a stage reports every failure and continues
        stage.emit("error", item=what, error=f"{type(exc).__name__}: {str(exc)[:600]}", seconds=time.perf_counter() - started,
                   traceback=traceback.format_exc()[-1500:])
        return None


def _device(dry_run: bool) -> str:
    return "cpu" if dry_run else "cuda"


def _wall_ms(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1e3


# ------------------------------------------------------------------------------------------------------------
# Stage 0: environment and the precompile == launch key check
# ------------------------------------------------------------------------------------------------------------
KEY_PROBLEMS = (  # one per family (Hopper TMA on a stride-1 NHWC layer), odd sizes so ints are not all divisible by 16
    dict(n=1, c=3, h=13, w=13, k=24, r=3, s=3, stride_h=2, stride_w=2, pad_h=1, pad_w=1, layout="nhwc"),
    dict(n=2, c=64, h=14, w=14, k=64, r=3, s=3, pad_h=1, pad_w=1, layout="nhwc"),
    dict(n=1, c=32, h=9, w=11, k=32, r=5, s=5, pad_h=2, pad_w=2, groups=32, layout="nhwc"),
    dict(n=2, c=64, h=7, w=7, k=64, r=3, s=3, pad_h=1, pad_w=1, groups=8, layout="nhwc"),
    dict(n=1, c=48, h=7, w=7, k=40, r=1, s=1, layout="nchw"),
)


def stage_env(stage: Stage) -> None:
    import importlib.metadata as md
    import platform

    import torch
    import triton

    deps = {}
    for name in ("optuna", "platformdirs", "colorlog", "filelock", "rich", "sqlalchemy", "alembic", "torchvision", "pytest"):
        try:
            deps[name] = md.version(name)
        except md.PackageNotFoundError:
            deps[name] = None
    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__, "triton": triton.__version__,
                            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(), "deps": deps,
                            "cpu_count": os.cpu_count(), "dry_run": stage.dry_run,
                            "interpret": os.environ.get("TRITON_INTERPRET", "")}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, capability=f"{props.major}.{props.minor}", sm_count=props.multi_processor_count,
                    memory_gib=round(props.total_memory / 2**30, 1))
    stage.emit("env", **info)
    _guard(stage, "key check", lambda: _key_check(stage))


def _key_check(stage: Stage) -> None:
    """Every family's precompile hash equals the launch's: on a GPU, the hash of the kernel the real launch
    returns (and the launch compiles nothing); on the CPU, Triton's launcher run up to the compile."""
    import torch

    from tritonconv import ConvProblem
    from tritonconv.kernels import families_for
    from tritonconv.runtime import COMPILE_TARGETS, device_info
    from tritonconv.search.runner import CompileCounter

    on_gpu = torch.cuda.is_available() and not stage.dry_run
    target = device_info("cuda") if on_gpu else COMPILE_TARGETS[90]  # the GPU every family decides for
    counter = CompileCounter()
    counter_compiled: list[bool] = []
    for spec in KEY_PROBLEMS:
        problem = ConvProblem(dtype="float16", **spec)
        x, w = problem.make_tensors("cuda" if on_gpu else "cpu", seed=0)
        for family in families_for(problem, target):
            if stage.left() < 10:
                stage.emit("deadline", item="key check")
                return
            _guard(stage, f"key {family.name} {problem.key}", lambda f=family, p=problem, x=x, w=w: _key_row(
                stage, f, p, x, w, target, on_gpu, counter, counter_compiled))


def _key_row(stage: Stage, family, problem, x, w, target, on_gpu: bool, counter, counter_compiled: list[bool]) -> None:
    from tritonconv.compile import cache_hash, compile_call, launch_hashes, resource_usage
    from tritonconv.dispatch import empty_output, run_problem
    from tritonconv.search.compile_pool import candidate_calls

    cc = target.capability[0] * 10 + target.capability[1]
    config = {"family": family.name, **family.default_config(problem, target)}
    started = time.perf_counter()
    calls = candidate_calls(problem, family.name, config, target)
    # the precompile, as the compile pool does it (on the CPU one real compile proves the hash; the
    # others are hashed only)
    compiled = [compile_call(call, cc) for call in calls] if on_gpu or not counter_compiled else []
    counter_compiled.append(bool(compiled))
    precompiled = [cache_hash(call, cc) for call in calls]
    compile_s = time.perf_counter() - started
    usage = [resource_usage(k, sass=False).__dict__ for k in compiled]
    before = counter.misses
    if on_gpu:
        kernels = family.launch(problem, _tensors(problem, x, w), {k: v for k, v in config.items() if k != "family"}, target)
        launched = [k.hash for k in kernels]
    else:
        with launch_hashes(cc) as launched:
            run_problem(problem, x, w, None, None, "none", config, output=empty_output(problem, x), backend="triton",
                        target=target)
    stage.emit("key", family=family.name, problem=problem.key, match=launched == precompiled
               and all(k.hash == h for k, h in zip(compiled, precompiled)),
               precompiled=precompiled, launched=launched, compiled_hash=[k.hash for k in compiled],
               compiles_at_launch=counter.misses - before, compile_s=compile_s, usage=usage, sm=cc)


def _tensors(problem, x, w):
    from tritonconv.dispatch import empty_output
    from tritonconv.kernels import ConvTensors

    return ConvTensors(x, w, empty_output(problem, x), None, None, "none")


# ------------------------------------------------------------------------------------------------------------
# Stage 1: the differential sweeps (tests/sweeps) on real compiles, one process per sweep
# ------------------------------------------------------------------------------------------------------------
SWEEPS = ("implicit_gemm", "hopper_implicit_gemm", "gemm", "depthwise", "small_group", "matmul", "dispatch")
DRY_SWEEPS = ("implicit_gemm", "dispatch")


def stage_correctness(stage: Stage, workers: int, cases: int) -> None:
    """`python -m tests.sweeps --sweep S` for every sweep in parallel (up to `workers` at once; each family's own
    random problems: bf16, Hopper TMA/gather, split-K, fused epilogues, batch 1, both layouts, views), every
    result line copied into correctness.jsonl as it appears; at the deadline the unfinished sweeps are stopped."""
    import subprocess
    import tempfile

    device = _device(stage.dry_run)
    sweeps = DRY_SWEEPS if stage.dry_run else SWEEPS
    per_sweep = max(1, cases // len(sweeps))
    configs = "0" if stage.dry_run else "2"
    stage.emit("plan", sweeps=list(sweeps), cases_per_sweep=per_sweep, random_configs_per_case=int(configs), device=device,
               workers=workers, module="tests.sweeps")
    scratch = Path(tempfile.mkdtemp(prefix="gpu-session-sweeps-"))
    queue, running, offsets = list(sweeps), {}, {}
    counts: dict[str, int] = {}

    def drain(name: str) -> None:
        path = scratch / f"{name}.jsonl"
        if not path.exists():
            return
        with path.open() as f:
            f.seek(offsets.get(name, 0))
            for line in f:
                if not line.endswith("\n"):
                    break
                offsets[name] = offsets.get(name, 0) + len(line)
                row = json.loads(line)
                counts[row.get("status", "?")] = counts.get(row.get("status", "?"), 0) + 1
                row["case_kind"] = row.pop("kind", None)
                row.pop("stage", None)
                stage.emit("case", sweep=name, **row)

    try:
        while (queue or running) and stage.left() > 2:
            while queue and len(running) < workers:
                name = queue.pop(0)
                cmd = [sys.executable, "-m", "tests.sweeps", "--sweep", name, "--device", device, "--cases", str(per_sweep),
                       "--configs", configs, "--seed", "13", "--out", str(scratch / f"{name}.jsonl")]
                running[name] = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=(scratch / f"{name}.err").open("w"))
            time.sleep(0.5)
            for name, process in list(running.items()):
                drain(name)
                if process.poll() is not None:
                    drain(name)
                    err = (scratch / f"{name}.err").read_text()[-800:]
                    stage.emit("sweep_done", sweep=name, rc=process.returncode, stderr_tail=err if process.returncode not in (0, 1) else "")
                    del running[name]
    finally:
        for name, process in running.items():
            process.kill()
            drain(name)
            stage.emit("sweep_stopped", sweep=name, reason="stage deadline")
        stage.emit("summary", statuses=counts, not_started=queue)


# ------------------------------------------------------------------------------------------------------------
# Stage 2: speed on representative fp16 NHWC layers
# ------------------------------------------------------------------------------------------------------------
SPEED_LAYERS = {  # name: ConvProblem fields (fp16, NHWC)
    "dense_3x3": dict(n=32, c=128, h=28, w=28, k=128, r=3, s=3, pad_h=1, pad_w=1),
    "strided_3x3": dict(n=32, c=128, h=56, w=56, k=128, r=3, s=3, stride_h=2, stride_w=2, pad_h=1, pad_w=1),
    "pointwise_1x1": dict(n=32, c=1024, h=14, w=14, k=256, r=1, s=1),
    "depthwise_3x3": dict(n=32, c=144, h=56, w=56, k=144, r=3, s=3, pad_h=1, pad_w=1, groups=144),
    "depthwise_5x5": dict(n=32, c=240, h=28, w=28, k=240, r=5, s=5, pad_h=2, pad_w=2, groups=240),
    "depthwise_7x7": dict(n=32, c=384, h=14, w=14, k=384, r=7, s=7, pad_h=3, pad_w=3, groups=384),
    "resnext_g32": dict(n=32, c=256, h=28, w=28, k=256, r=3, s=3, pad_h=1, pad_w=1, groups=32),
    "dilated_d4": dict(n=8, c=512, h=28, w=28, k=512, r=3, s=3, pad_h=4, pad_w=4, dilation_h=4, dilation_w=4),
    "stem_c3_7x7": dict(n=32, c=3, h=224, w=224, k=64, r=7, s=7, stride_h=2, stride_w=2, pad_h=3, pad_w=3),
    "batch1_3x3": dict(n=1, c=256, h=14, w=14, k=256, r=3, s=3, pad_h=1, pad_w=1),
}
TINY_SPEED_LAYERS = {
    "dense_3x3": dict(n=1, c=8, h=6, w=6, k=8, r=3, s=3, pad_h=1, pad_w=1),
    "depthwise_3x3": dict(n=1, c=8, h=6, w=6, k=8, r=3, s=3, pad_h=1, pad_w=1, groups=8),
    "pointwise_1x1": dict(n=1, c=16, h=4, w=4, k=8, r=1, s=1),
}


def stage_speed(stage: Stage) -> None:
    from tritonconv import ConvProblem
    from tritonconv.benchmark import bench_problem
    from tritonconv.roofline import measure_peaks

    device = _device(stage.dry_run)
    time_fn = _wall_ms if stage.dry_run else None
    sizes = dict(copy_mib=1, matmul_size=64) if stage.dry_run else {}
    peaks = measure_peaks("float16", device=device, **sizes, **({"time_fn": time_fn} if time_fn else {}))
    stage.emit("peaks", **peaks)
    layers = TINY_SPEED_LAYERS if stage.dry_run else SPEED_LAYERS
    for name, spec in layers.items():
        if stage.left() < 12:
            stage.emit("deadline", not_run=[n for n in layers if n not in _emitted(stage, "layer")])
            return
        problem = ConvProblem(dtype="float16", layout="nhwc", **spec)
        record = _guard(stage, name, lambda p=problem, n=name: bench_problem(
            p, peaks=peaks, name=n, device=device, tuned=False, **({"time_fn": time_fn} if time_fn else {})))
        if record is not None:
            stage.emit("layer", **record)


def _emitted(stage: Stage, kind: str) -> list[str]:
    rows = [json.loads(line) for line in stage.path.read_text().splitlines() if line.strip()]
    return [r.get("name") for r in rows if r.get("kind") == kind]


# ------------------------------------------------------------------------------------------------------------
# Stage 3: one real tuning study under a hard budget, and an exhaustive sweep of the same space to compare
# ------------------------------------------------------------------------------------------------------------
def stage_tuning(stage: Stage, trials: int) -> None:
    import tempfile

    from tritonconv import ConvProblem
    from tritonconv.search import DEFAULTS, InProcessRunner, SubprocessRunner, tune
    from tritonconv.search.space import SearchSpace

    if stage.dry_run:
        problem = ConvProblem(n=1, c=8, h=6, w=6, k=8, r=3, s=3, pad_h=1, pad_w=1, dtype="float16", layout="nhwc")
        runner = InProcessRunner()
    else:
        problem = ConvProblem(n=32, c=256, h=14, w=14, k=256, r=3, s=3, pad_h=1, pad_w=1, dtype="float16", layout="nhwc")
        runner = SubprocessRunner()
    stage.emit("plan", problem=problem.key, trials=trials, runner=type(runner).__name__)
    try:
        with tempfile.TemporaryDirectory() as cache_dir:
            budget = max(5.0, 0.45 * stage.left())
            result = tune(problem, trials=trials, timeout=budget, runner=runner, cache=cache_dir, progress=False, resume=False,
                          retime_top=1 if stage.dry_run else DEFAULTS.retime_top)
        measured = [r for r in result.timeline if r["state"] in ("COMPLETE", "FAIL") and "repeat_of" not in r]
        for row in result.timeline:
            stage.emit("trial", **row)
        stage.emit("tuned", family=result.family, config=result.config, time_ms=result.time_ms, cudnn_ms=result.cudnn_time_ms,
                   speedup=result.speedup, trials_measured=len(measured), wall_s=result.wall_time_s)
        space = SearchSpace(problem, precisions=(problem.precision,))
        if stage.dry_run:  # enumerating the interpreter's unbounded space takes long: its seeds stand in
            feasible = space.seeds()[:2]
        else:
            feasible = space.enumerate(limit=20000) or []
        total = len(feasible)
        stage.emit("exhaustive_plan", feasible=total, dry_run_seeds_only=stage.dry_run)
        import random

        random.Random(0).shuffle(feasible)  # a sweep cut short by the deadline is still an unbiased sample
        _exhaustive(stage, runner, space, feasible, result.time_ms, len(measured), total)
    finally:
        runner.close()


def _exhaustive(stage: Stage, runner, space, feasible: list[dict[str, Any]], tuned_ms: float, tuned_trials: int, total: int) -> None:
    """Measure every feasible candidate (precompiled ahead on a GPU) until the deadline; the best against the study's."""
    from tritonconv.enums import Precision
    from tritonconv.search.api import precompiler_for

    precompiler = precompiler_for(runner, None)
    best, measured = None, 0
    try:
        futures = [precompiler.submit(space.problem_for(c), c["family"], c) if precompiler else None for c in feasible]
        tolerance = Precision(space.problem.precision).tolerance
        for candidate, future in zip(feasible, futures):
            if stage.left() < 3:
                break
            if future is not None:
                verdict = precompiler.verdict(future, timeout=max(1.0, stage.left() - 3))
                if verdict.infeasible or verdict.error:
                    continue
            m = runner.benchmark(space.problem_for(candidate), candidate, tolerance)
            measured += 1
            if m.ok and (best is None or m.time_ms < best[1]):
                best = (candidate, m.time_ms)
    finally:
        if precompiler:
            precompiler.close()
    complete = measured == total
    stage.emit("exhaustive", measured=measured, planned=len(feasible), feasible=total, complete=complete,
               best_config=best[0] if best else None, best_ms=best[1] if best else None, tuned_ms=tuned_ms,
               tuned_within=(tuned_ms / best[1] - 1) if best else None, tuned_trials=tuned_trials,
               trial_fraction=tuned_trials / max(1, total))


# ------------------------------------------------------------------------------------------------------------
# Stage 4: matmul vs cuBLAS, CUDA-graph capture and replay, a converted model vs eager
# ------------------------------------------------------------------------------------------------------------
def stage_extras(stage: Stage) -> None:
    import torch

    device = _device(stage.dry_run)
    time_fn = _wall_ms if stage.dry_run else _events_ms
    shapes = [(16, 32, 8)] if stage.dry_run else [(4096, 4096, 4096), (8192, 1024, 4096), (256, 4096, 4096), (32768, 256, 64)]
    for m, n, k in shapes:
        if stage.left() < 8:
            break
        _guard(stage, f"matmul {m}x{n}x{k}", lambda m=m, n=n, k=k: _matmul(stage, device, time_fn, m, n, k))
    if device == "cuda" and stage.left() > 8:
        _guard(stage, "cuda graph", lambda: _cuda_graph(stage))
    else:
        stage.emit("cuda_graph", skipped="no CUDA device" if device != "cuda" else "deadline")
    if stage.left() > 10 or stage.dry_run:
        _guard(stage, "converted model", lambda: _converted_model(stage, device, time_fn))
    del torch


def _events_ms(fn: Callable[[], object]) -> float:
    from tritonconv.timing import time_ms

    return time_ms(fn)


def _matmul(stage: Stage, device: str, time_fn, m: int, n: int, k: int) -> None:
    import torch

    import tritonconv
    from tritonconv.reference import rel_error

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=gen).to(device=device, dtype=torch.float16)
    b = torch.randn(k, n, generator=gen).to(device=device, dtype=torch.float16)
    ref = a.double() @ b.double()
    ours = tritonconv.matmul(a, b)
    cublas = torch.matmul(a, b)
    ms_ours, ms_cublas = time_fn(lambda: tritonconv.matmul(a, b)), time_fn(lambda: torch.matmul(a, b))
    flops = 2 * m * n * k
    stage.emit("matmul", shape=[m, n, k], tritonconv_ms=ms_ours, cublas_ms=ms_cublas,
               tritonconv_tflops=flops / ms_ours / 1e9, cublas_tflops=flops / ms_cublas / 1e9, speedup=ms_cublas / ms_ours,
               rel_error=rel_error(ours, ref), cublas_rel_error=rel_error(cublas, ref))


def _cuda_graph(stage: Stage) -> None:
    import torch

    import tritonconv
    from tritonconv.reference import rel_error

    x = torch.randn(8, 64, 28, 28, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)
    w = torch.randn(64, 64, 3, 3, device="cuda", dtype=torch.float16)
    static_x = x.clone()
    tritonconv.conv2d(static_x, w, padding=1, activation="relu")  # warm-up outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = tritonconv.conv2d(static_x, w, padding=1, activation="relu")
    static_x.copy_(torch.randn_like(static_x))
    graph.replay()
    torch.cuda.synchronize()
    eager = tritonconv.conv2d(static_x, w, padding=1, activation="relu")
    replay_ms = _events_ms(graph.replay)
    eager_ms = _events_ms(lambda: tritonconv.conv2d(static_x, w, padding=1, activation="relu"))
    stage.emit("cuda_graph", rel_error=rel_error(static_out, eager.double()), ok=rel_error(static_out, eager.double()) < 1e-3,
               replay_ms=replay_ms, eager_ms=eager_ms)


def _converted_model(stage: Stage, device: str, time_fn) -> None:
    import torch
    from torch import nn

    import tritonconv
    from tritonconv.reference import rel_error

    torch.manual_seed(0)
    try:
        if stage.dry_run:
            raise ImportError("dry run: a tiny model")
        import torchvision

        model, batch, name = torchvision.models.resnet18(), 8, "torchvision resnet18"
    except ImportError:
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 1), nn.ReLU())
        batch, name = 1, "tiny conv-bn-relu"
    model = model.eval().to(device)
    hw = 8 if stage.dry_run else 224
    x32 = torch.randn(batch, 3, hw, hw, device=device)
    with torch.no_grad():
        ref = model(x32).double()
        dtype = torch.float32 if device == "cpu" else torch.float16
        model = model.to(dtype=dtype, memory_format=torch.channels_last)
        x = x32.to(dtype).contiguous(memory_format=torch.channels_last)
        converted = tritonconv.convert(model)
        out = converted(x)
        eager_ms, ours_ms = time_fn(lambda: model(x)), time_fn(lambda: converted(x))
    stage.emit("model", model=name, batch=batch, dtype=str(dtype), eager_ms=eager_ms, tritonconv_ms=ours_ms,
               speedup=eager_ms / ours_ms, rel_error=rel_error(out, ref), untuned="default configs (no tuning in this stage)")


# ------------------------------------------------------------------------------------------------------------
# ResNet-50's stride-1 3x3 convs at batch 32 (Winograd's domain), fp16 NHWC
ALGORITHM_LAYERS = {"r50_3x3_64_56": (32, 64, 56), "r50_3x3_128_28": (32, 128, 28), "r50_3x3_256_14": (32, 256, 14)}
TINY_ALGORITHM_LAYERS = {"tiny_3x3_8_6": (1, 8, 6)}


def stage_algorithms(stage: Stage) -> None:
    """Per layer: cuDNN fp16 (NHWC) against each Winograd tile's default config, the int8 quantized conv (int8
    operands, per-channel weight scales, float output) and fp8; each with
    its relative error against float64 (int8: against the float64 conv of the original, unquantised tensors)."""
    from tritonconv.enums import Precision

    device = _device(stage.dry_run)
    time_fn = _events_ms
    fp8 = Precision.FP8.value
    stage.emit("plan", layers=list(TINY_ALGORITHM_LAYERS if stage.dry_run else ALGORITHM_LAYERS), fp8=fp8)
    for name, (n, c, hw) in (TINY_ALGORITHM_LAYERS if stage.dry_run else ALGORITHM_LAYERS).items():
        if stage.left() < 10:
            stage.emit("deadline", not_run=name)
            break
        _guard(stage, name, lambda name=name, n=n, c=c, hw=hw: _algorithms(stage, name, n, c, hw, device, time_fn, fp8))


def _algorithms(stage: Stage, name: str, n: int, c: int, hw: int, device: str, time_fn, fp8: str) -> None:
    import torch
    import torch.nn.functional as F

    import tritonconv
    from tritonconv.reference import rel_error
    from tritonconv.kernels import get_family
    from tritonconv.problem import ConvProblem
    from tritonconv.quantized import conv2d as int8_conv2d
    from tritonconv.quantized import quantize_tensor, quantize_weight, scale_for

    dtype = "float32" if stage.dry_run else "float16"  # the interpreter: float32 (its fp16 dots are emulated)
    problem = ConvProblem(n=n, c=c, h=hw, w=hw, k=c, r=3, s=3, pad_h=1, pad_w=1, dtype=dtype, layout="nhwc")
    x, w = problem.make_tensors(device, seed=0)
    reference = F.conv2d(x.double(), w.double(), padding=1)
    flops = problem.flops
    rows = []

    def timed(algorithm: str, run: Callable[[], Any], **extra: Any) -> None:
        """Check, then time one algorithm; a failure is its row (the others still run)."""
        try:
            started = time.perf_counter()
            out = run()
            if device == "cuda":
                torch.cuda.synchronize()
            # the dry run's interpreter: the checked run's wall time is the time (a second run would double the stage)
            ms = (time.perf_counter() - started) * 1e3 if stage.dry_run else time_fn(run)
        except Exception as exc:  # noqa: BLE001 - recorded, not fatal
            rows.append({"algorithm": algorithm, "error": f"{type(exc).__name__}: {str(exc)[:300]}", **extra})
            return
        rows.append({"algorithm": algorithm, "ms": ms, "tflops": flops / ms / 1e9,
                     "rel_error": rel_error(out, reference), **extra})

    with torch.backends.cudnn.flags(enabled=True, benchmark=True):
        timed("cudnn_fp16" if device == "cuda" else "torch_cpu", lambda: F.conv2d(x, w, padding=1))
    winograd = get_family("winograd")
    refused = winograd.refusal(problem)
    if refused:
        rows.append({"algorithm": "winograd", "skipped": refused})
    else:
        # the family's own sizing of each tile (F(4,3)'s fused kernel needs smaller tiles than F(2,3)'s)
        fused = {}
        for heuristic in winograd.heuristic_configs(problem):
            if heuristic["VARIANT"] == "fused":
                fused.setdefault(heuristic["TILE"], heuristic)
        for tile, heuristic in sorted(fused.items()):  # F(2x2,3x3) and F(4x4,3x3)
            config = {"family": "winograd", **heuristic}
            timed(f"winograd_F{tile}x3", lambda config=config: tritonconv.conv2d(x, w, padding=1, config=config), config=config)
    x_scale = scale_for(x.abs().max().item())
    x_q, (w_q, w_scale) = quantize_tensor(x, x_scale), quantize_weight(w)
    timed("int8", lambda: int8_conv2d(x_q, w_q, x_scale, w_scale, padding=1),
          note="error includes the quantisation of input and weight")
    timed(fp8, lambda: tritonconv.conv2d(x, w, padding=1, precision=fp8))
    baseline = rows[0].get("ms")
    for row in rows if baseline else ():
        if row.get("ms"):
            row["speedup_vs_baseline"] = baseline / row["ms"]
    stage.emit("algorithm", layer=name, problem=problem.key, results=rows)


# ------------------------------------------------------------------------------------------------------------
def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=sorted(FILES))
    parser.add_argument("--out", required=True)
    parser.add_argument("--deadline", type=float, required=True, help="seconds this stage may take")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--workers", type=int, default=0, help="stage correctness: worker processes")
    parser.add_argument("--cases", type=int, default=0, help="stage correctness: how many cases")
    parser.add_argument("--trials", type=int, default=0, help="stage tuning: trial budget")
    args = parser.parse_args(argv)
    stage = Stage(args.stage, Path(args.out), args.deadline, args.dry_run)
    stage.emit("start", deadline_s=args.deadline, pid=os.getpid())
    try:
        if args.stage == "env":
            stage_env(stage)
        elif args.stage == "correctness":
            stage_correctness(stage, args.workers or (2 if args.dry_run else 7), args.cases or (2 if args.dry_run else 105))
        elif args.stage == "speed":
            stage_speed(stage)
        elif args.stage == "tuning":
            stage_tuning(stage, args.trials or (2 if args.dry_run else 48))
        elif args.stage == "algorithms":
            stage_algorithms(stage)
        else:
            stage_extras(stage)
    except Exception as exc:  # noqa: BLE001 - the stage's failure is a line in its file; the session goes on
        stage.emit("error", error=f"{type(exc).__name__}: {str(exc)[:600]}", traceback=traceback.format_exc()[-2000:])
        stage.emit("end", ok=False)
        return 1
    stage.emit("end", ok=True)
    stage.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
