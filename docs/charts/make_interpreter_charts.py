"""Regenerate the charts in docs/charts/ from a real run in the Triton interpreter on the CPU (no GPU needed):

    python docs/charts/make_interpreter_charts.py

Tunes five tiny conv problems (3 trials each), benchmarks each against PyTorch's CPU conv in both layouts and
every kernel family's default config, and renders both results files with `tritonconv report`. The times are
CPU wall-clock times of the interpreter, so they say nothing about GPU performance; the charts say so."""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")  # before tritonconv imports Triton
os.environ.setdefault("TRITONCONV_CACHE_DIR", tempfile.mkdtemp(prefix="tritonconv-charts-"))  # fresh tuning

import torch  # noqa: E402

from tritonconv import benchmark, report  # noqa: E402
from tritonconv.roofline import measure_peaks  # noqa: E402
from tritonconv.problem import ConvProblem  # noqa: E402
from tritonconv.results import tune_record, write_results  # noqa: E402
from tritonconv.search import tune_many  # noqa: E402

OUT = Path(__file__).resolve().parent
PROBLEMS = [  # suite-style names; float32 NHWC, batch 1
    ("tiny_3x3", ConvProblem(n=1, c=8, h=8, w=8, k=16, r=3, s=3, pad_h=1, pad_w=1, dtype="float32")),
    ("tiny_3x3_s2", ConvProblem(n=1, c=8, h=8, w=8, k=16, r=3, s=3, stride_h=2, stride_w=2, pad_h=1, pad_w=1,
                                dtype="float32")),
    ("tiny_1x1", ConvProblem(n=1, c=16, h=6, w=6, k=16, r=1, s=1, dtype="float32")),
    ("tiny_dw_3x3", ConvProblem(n=1, c=8, h=8, w=8, k=8, r=3, s=3, pad_h=1, pad_w=1, groups=8, dtype="float32")),
    ("tiny_g2_3x3", ConvProblem(n=1, c=8, h=6, w=6, k=8, r=3, s=3, pad_h=1, pad_w=1, groups=2, dtype="float32")),
]


def cpu_time_ms(fn) -> float:
    """Median wall-clock of three runs after a warm-up (the interpreter has no CUDA events)."""
    fn()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    # One thread: with two, PyTorch's CPU conv (the baseline) spins on a busy machine and its times jump ~1000x.
    torch.set_num_threads(1)
    problems = [p.with_(precision="ieee") for _, p in PROBLEMS]
    names = [name for name, _ in PROBLEMS]
    started = time.perf_counter()
    results = tune_many(problems, trials=3, retime_top=1)
    tune_path = write_results(OUT / "interpreter_tune.json", [tune_record(r, n) for n, r in zip(names, results)],
                              {"wall_time_s": time.perf_counter() - started, "baseline": "torch CPU"}, kind="tune")
    peaks = measure_peaks("float32", "ieee", device="cpu", copy_mib=64, matmul_size=512,
                                    time_fn=cpu_time_ms)
    records, meta = benchmark.run_conv_suite(list(zip(names, problems)), device="cpu", time_fn=cpu_time_ms,
                                             peaks=peaks)
    conv_path = write_results(OUT / "interpreter_conv.json", records, meta, kind="conv")
    for path in (tune_path, conv_path):
        report.render(path, OUT)


if __name__ == "__main__":
    main()
