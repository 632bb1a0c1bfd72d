"""Whole-model benchmark on this GPU: torchvision CNNs (random weights, fp16, channels_last) run as
    eager (cuDNN)  |  converted + tuned tritonconv  |  torch.compile (default)  |  converted + torch.compile
in ONE process, outputs checked against the float32 eager model, plus tritonconv's per-call dispatch overhead
and a CUDA-graph capture/replay check of a converted model.

    python bench/models.py [--models resnet50,resnext50_32x4d,mobilenet_v2,convnext_tiny,deeplabv3_resnet50]
                           [--batch 32,1] [--trials 32] [--no-compile] [--out bench/results/models_<gpu>.json]

Needs a CUDA GPU and torchvision (exits 2 with a message otherwise). Writes the JSON (results schema of
tritonconv.benchmark, kind "models") and PNG charts next to it.
"""
from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

MODELS = {  # name -> torchvision factory path
    "resnet50": "torchvision.models:resnet50",
    "resnext50_32x4d": "torchvision.models:resnext50_32x4d",
    "mobilenet_v2": "torchvision.models:mobilenet_v2",
    "convnext_tiny": "torchvision.models:convnext_tiny",
    "deeplabv3_resnet50": "torchvision.models.segmentation:deeplabv3_resnet50",
}
INPUT_HW = {"deeplabv3_resnet50": (520, 520)}
TOLERANCE = 3e-2  # fp16 whole-model relative error vs the float32 model (errors compound over ~50 layers)


def _tensor(output: Any) -> torch.Tensor:
    return output["out"] if isinstance(output, dict) else output


def measure_dispatch_overhead(calls: int = 2000) -> dict[str, float]:
    """Host time per call (microseconds) of tritonconv.conv2d and F.conv2d on a tiny fp16 channels_last conv,
    launched back to back (launch-bound, so the host path is what is measured)."""
    import tritonconv

    x = torch.randn(1, 16, 8, 8, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)
    w = torch.randn(16, 16, 3, 3, device="cuda", dtype=torch.float16)

    def per_call_us(fn: Callable[[], object]) -> float:
        for _ in range(20):
            fn()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
        return (time.perf_counter() - start) / calls * 1e6

    with torch.no_grad():
        ours = per_call_us(lambda: tritonconv.conv2d(x, w, padding=1))
        torch_us = per_call_us(lambda: F.conv2d(x, w, padding=1))
    return {"tritonconv_us_per_call": ours, "f_conv2d_us_per_call": torch_us, "overhead_us": ours - torch_us}


def cuda_graph_check(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """Capture a converted model's forward in a CUDA graph, replay it on new data, compare with eager."""
    from tritonconv.reference import rel_error

    try:
        with torch.no_grad():
            static_x = x.clone()
            model(static_x)  # warm-up outside the capture: compile kernels, prepare weights
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = _tensor(model(static_x))
            static_x.copy_(torch.randn_like(static_x))
            graph.replay()
            torch.cuda.synchronize()
            error = rel_error(static_out, _tensor(model(static_x)))
        return {"ok": error < 1e-3, "rel_error": error}
    except Exception as exc:  # noqa: BLE001 - the check reports any failure instead of aborting the benchmark
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def bench_model(name: str, batch: int, args: argparse.Namespace, time_ms: Callable) -> dict[str, Any]:
    import tritonconv
    from tritonconv.reference import rel_error
    from tritonconv.results import result_entry
    from tritonconv.commands.tune_model import load_factory

    torch.manual_seed(0)
    model = load_factory(MODELS[name])().eval().cuda()
    h, w = INPUT_HW.get(name, (224, 224))
    x32 = torch.randn(batch, 3, h, w, device="cuda")
    with torch.no_grad():
        reference = _tensor(model(x32)).float()
    model = model.half().to(memory_format=torch.channels_last)
    x = x32.half().contiguous(memory_format=torch.channels_last)

    tuning = tritonconv.tune_model(model, x, dtype=torch.float16, trials=args.trials, progress=True)
    converted = tritonconv.convert(model)
    variants: dict[str, Callable[[], Any]] = {"eager_cudnn": model, "tritonconv": converted}
    if not args.no_compile:
        variants["compile"] = torch.compile(model)
        variants["tritonconv_compile"] = torch.compile(converted)

    results, baseline_ms = [], None
    with torch.no_grad():
        for variant, fn in variants.items():
            try:
                error = rel_error(_tensor(fn(x)), reference)  # also the warm-up (and compile) call
                ms = time_ms(functools.partial(fn, x))
                failure = None if error < TOLERANCE else f"relative error {error:.3g} > {TOLERANCE}"
            except Exception as exc:  # noqa: BLE001 - one failing variant must not hide the others
                ms, error, failure = None, None, f"{type(exc).__name__}: {exc}"
            if variant == "eager_cudnn":
                baseline_ms = ms
            role = "baseline" if variant == "eager_cudnn" else "candidate"
            results.append(result_entry(variant, ms, role=role, baseline_ms=baseline_ms, rel_error=error, error=failure))
    report = converted.tritonconv_report
    return {
        "name": f"{name}_b{batch}", "model": name, "batch": batch, "baseline": "eager_cudnn", "results": results,
        "conv_layers": len(tuning.layers), "distinct_problems": len(tuning.results),
        "tuning_wall_time_s": tuning.wall_time_s, "conv_time_speedup": tuning.speedup,
        "converted": len(report.converted), "skipped": report.skipped, "folded_batchnorms": len(report.folded_batchnorms),
        "fused_activations": len(report.fused_activations), "fused_residuals": len(report.fused_residuals),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated names (default: all)")
    parser.add_argument("--batch", default="32,1", help="comma-separated batch sizes (default %(default)s)")
    parser.add_argument("--trials", type=int, default=32, help="tuning trials per distinct conv problem")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default bench/results/models_<gpu>.json)")
    args = parser.parse_args(argv)

    if not torch.cuda.is_available():
        print("bench/models.py needs a CUDA GPU (none found): it times whole models on the GPU.", file=sys.stderr)
        return 2
    try:
        import torchvision  # noqa: F401
    except ImportError:
        print("bench/models.py needs torchvision: pip install torchvision", file=sys.stderr)
        return 2
    unknown = set(args.models.split(",")) - set(MODELS)
    if unknown:
        print(f"unknown model(s) {sorted(unknown)}; choose from {list(MODELS)}", file=sys.stderr)
        return 2

    from tritonconv.results import write_results
    from tritonconv.report import render
    from tritonconv.timing import time_ms

    torch.backends.cudnn.benchmark = True
    meta: dict[str, Any] = {"dtype": "float16", "layout": "nhwc", "trials": args.trials,
                            "dispatch_overhead": measure_dispatch_overhead()}
    records = []
    for name in args.models.split(","):
        for batch in (int(b) for b in args.batch.split(",")):
            print(f"== {name} batch {batch}", flush=True)
            records.append(bench_model(name, batch, args, time_ms))
    # CUDA graphs: a tuned, converted ResNet-50 (or the first model) at batch 1, captured and replayed.
    import tritonconv
    from tritonconv.commands.tune_model import load_factory

    first = "resnet50" if "resnet50" in args.models.split(",") else args.models.split(",")[0]
    graph_model = tritonconv.convert(load_factory(MODELS[first])().eval().cuda().half().to(memory_format=torch.channels_last))
    h, w = INPUT_HW.get(first, (224, 224))
    graph_x = torch.randn(1, 3, h, w, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)
    meta["cuda_graph"] = {"model": first, **cuda_graph_check(graph_model, graph_x)}

    gpu = torch.cuda.get_device_name().replace(" ", "_")
    out = args.out or HERE / "results" / f"models_{gpu}.json"
    path = write_results(out, records, meta, kind="models")
    render(path, path.parent)
    print(f"dispatch overhead: {meta['dispatch_overhead']}")
    print(f"CUDA graph replay: {meta['cuda_graph']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
