"""tritonconv.benchmark on the CPU: roofline and peak math with injected timings, the conv benchmark machinery in the Triton interpreter, and the bench scripts' refusal without a GPU.

Every time and peak in this file is SYNTHETIC (injected through `time_fn` or written by hand): nothing here is
a measurement.
"""
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tritonconv import benchmark, results, roofline, suite
from tritonconv.errors import InvalidInputError
from tritonconv.kernels import families_for
from tritonconv.problem import ConvProblem

from .helpers import TOLERANCE, compiler_env

ROOT = Path(__file__).resolve().parent.parent
HAS_GPU = torch.cuda.is_available()
SYNTHETIC_PEAKS = {"flops_per_s": 100e12, "bytes_per_s": 2e12}  # synthetic, for the math only


def synthetic_timer(values):
    """A time_fn that runs the work once (so it must work) and returns the next synthetic time."""
    times = itertools.cycle(values)

    def time_fn(fn):
        fn()
        return next(times)

    return time_fn


# ---- roofline and peaks -------------------------------------------------------------------------------------
def test_floor_is_the_larger_of_compute_and_memory_time():
    assert roofline.floor_ms(200e9, 1e9, SYNTHETIC_PEAKS) == pytest.approx(2.0)  # compute-bound: 200 GFLOP / 100 T
    assert roofline.floor_ms(1e9, 8e9, SYNTHETIC_PEAKS) == pytest.approx(4.0)  # memory-bound: 8 GB / 2 TB/s


def test_roofline_floor_of_a_conv_problem_uses_its_flops_and_min_bytes():
    depthwise = ConvProblem(n=32, c=256, h=56, w=56, k=256, r=3, s=3, pad_h=1, pad_w=1, groups=256)
    dense = ConvProblem(n=32, c=256, h=14, w=14, k=256, r=3, s=3, pad_h=1, pad_w=1)
    for problem in (depthwise, dense):
        expected = 1e3 * max(problem.flops / 100e12, problem.min_bytes / 2e12)
        assert roofline.roofline_floor_ms(problem, SYNTHETIC_PEAKS) == pytest.approx(expected)
    # A depthwise conv does ~9 FLOPs per output element: memory-bound; the dense 3x3 is compute-bound.
    assert depthwise.min_bytes / 2e12 > depthwise.flops / 100e12
    assert dense.flops / 100e12 > dense.min_bytes / 2e12


@pytest.mark.parametrize(
    "dtype, precision, matmul_dtype, tf32",
    [("float16", "", "float16", False), ("float32", "ieee", "float32", False), ("float32", "tf32", "float32", True),
     ("float32", "fp16", "float16", False), ("bfloat16", "", "bfloat16", False)],
)
def test_measure_peaks_math_and_matmul_precision(dtype, precision, matmul_dtype, tf32):
    seen_tf32 = []

    def time_fn(fn):  # synthetic: the copy "takes" 2 ms, the matmul 4 ms
        result = fn()
        seen_tf32.append(torch.backends.cuda.matmul.allow_tf32)
        return 4.0 if result.dim() == 2 else 2.0

    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    peaks = roofline.measure_peaks(dtype, precision, device="cpu", copy_mib=1, matmul_size=32, time_fn=time_fn)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before  # restored
    assert peaks["bytes_per_s"] == pytest.approx(2 * 2**20 / 2e-3)  # read + write bytes
    assert peaks["flops_per_s"] == pytest.approx(2 * 32**3 / 4e-3)
    assert peaks["matmul_dtype"] == matmul_dtype and peaks["tf32"] is tf32
    assert seen_tf32[1] is tf32
    assert peaks["precision"] == (precision or {"float16": "fp16", "bfloat16": "bf16"}.get(dtype))


def test_load_problems_filters_and_converts():
    path = suite.CONV_SUITE  # shipped once, as package data
    assert path.parent == ROOT / "tritonconv" / "suites" and not (ROOT / "bench" / "suites").exists()
    everything = suite.load_problems(path)
    assert len(everything) == len(json.loads(path.read_text())["shapes"])
    r50 = suite.load_problems(path, dtype="fp32", layout="nchw", precision="tf32", shapes=["r50_*"])
    assert r50 and all(name.startswith("r50_") for name, _ in r50)
    assert all(p.dtype == "float32" and p.layout == "nchw" and p.precision == "tf32" for _, p in r50)
    name, conv1 = next((n, p) for n, p in r50 if n == "r50_conv1")
    assert (conv1.c, conv1.r, conv1.stride_h, conv1.pad_h, conv1.p) == (3, 7, 2, 3, 112)
    assert {n for n, _ in suite.load_problems(path, shapes=["*l1_3x3"])} == {"r50_l1_3x3"}
    with pytest.raises(InvalidInputError, match="matches no shape"):  # globs on whole names, not substrings
        suite.load_problems(path, shapes=["l1_3x3"])
    with pytest.raises(InvalidInputError, match="no_such_layer"):
        suite.load_problems(path, shapes=["no_such_layer"])
    with pytest.raises(InvalidInputError, match="dtype"):
        suite.load_problems(path, dtype="int4")


# ---- the conv benchmark machinery, in the interpreter ------------------------------------------------------------
TINY = ConvProblem(n=1, c=4, h=5, w=6, k=8, r=3, s=3, pad_h=1, pad_w=1, dtype="float32", layout="nhwc",
                   precision="ieee")


def check_speedups(record):
    baselines = [e for e in record["results"] if e["role"] == "baseline"]
    best = min(e["ms"] for e in baselines)
    assert record["baseline_ms"] == best
    for entry in record["results"]:
        if entry["ms"] is not None:
            assert entry["speedup"] == pytest.approx(best / entry["ms"])
            assert entry["floor_fraction"] == pytest.approx(record["floor_ms"] / entry["ms"])
            assert entry["tflops"] == pytest.approx(TINY.flops / (entry["ms"] * 1e-3) / 1e12)


def test_bench_problem_times_cudnn_layouts_and_every_family(device):
    record = benchmark.bench_problem(TINY, peaks=SYNTHETIC_PEAKS, name="tiny", device=device,
                                     time_fn=synthetic_timer([3.0, 2.0, 1.0, 0.5]))
    names = [e["name"] for e in record["results"]]
    baseline = "cudnn" if device == "cuda" else "torch_cpu"  # the CPU's baseline is not called cuDNN
    assert names[:2] == [f"{baseline}_nchw", f"{baseline}_nhwc"]
    assert set(names[2:]) == {f.name for f in families_for(TINY)}  # no cache entry: no "tuned"
    assert record["reference"] == "float64" and record["tuned"] is False
    assert record["floor_ms"] == pytest.approx(roofline.roofline_floor_ms(TINY, SYNTHETIC_PEAKS))
    assert record["baseline"] == f"{baseline}_nhwc"  # the faster (synthetic) layout
    for entry in record["results"]:
        assert entry["error"] is None, entry
        assert entry["rel_error"] < TOLERANCE["ieee"], entry
    check_speedups(record)


def test_bench_problem_records_tuned_choice_and_failing_candidates(device, monkeypatch):
    from tritonconv import cache, dispatch, functional, kernels

    real = kernels.get_family("implicit_gemm")

    class Broken(type(real)):
        name = "broken_for_test"

        def launch(self, problem, tensors, config, device=None):
            raise RuntimeError("synthetic launch failure")

    tuned = dict(real.heuristic_configs(TINY)[-1], family="implicit_gemm")
    monkeypatch.setitem(kernels.FAMILIES, "broken_for_test", Broken())
    monkeypatch.setattr(cache, "lookup_config", lambda problem, device, backend="auto", target=None: dict(tuned))
    public_calls = []
    real_conv2d = functional.conv2d
    assert benchmark.conv2d is real_conv2d  # the benchmark times the public tritonconv.conv2d
    monkeypatch.setattr(benchmark, "conv2d", lambda *a, **k: public_calls.append(k) or real_conv2d(*a, **k))
    dispatch.clear_memo()  # the dispatcher must see the patched cache
    try:
        record = benchmark.bench_problem(TINY, peaks=SYNTHETIC_PEAKS, device=device,
                                         time_fn=synthetic_timer([1.0, 2.0]))
    finally:
        dispatch.clear_memo()
    entries = {e["name"]: e for e in record["results"]}
    assert "synthetic launch failure" in entries["broken_for_test"]["error"]
    assert entries["broken_for_test"]["ms"] is None
    assert entries["tuned"]["family"] == "implicit_gemm" and entries["tuned"]["config"] == tuned
    assert entries["tuned"]["rel_error"] < TOLERANCE["ieee"]
    assert public_calls == [dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1, precision="ieee")]
    assert record["tuned"] is True and record["name"] == TINY.key
    check_speedups(record)


def test_bench_problem_poisons_outputs_so_unwritten_results_fail(device, monkeypatch):
    from tritonconv import kernels

    real = kernels.get_family("implicit_gemm")

    class Lazy(type(real)):
        name = "lazy_for_test"

        def launch(self, problem, tensors, config, device=None):  # writes nothing
            pass

    monkeypatch.setitem(kernels.FAMILIES, "lazy_for_test", Lazy())
    record = benchmark.bench_problem(TINY, peaks=SYNTHETIC_PEAKS, device=device, time_fn=synthetic_timer([1.0]))
    lazy = next(e for e in record["results"] if e["name"] == "lazy_for_test")
    assert lazy["rel_error"] == float("inf")


def test_suite_run_writes_results_that_report_renders(device, tmp_path):
    from tritonconv import report

    problems = [("tiny_a", TINY), ("tiny_b", TINY.with_(k=4, stride_h=2, stride_w=2))]
    records, meta = benchmark.run_conv_suite(problems, device=device, families=False,
                                             time_fn=synthetic_timer([2.0, 1.0]), peaks=SYNTHETIC_PEAKS)
    assert [r["name"] for r in records] == ["tiny_a", "tiny_b"]
    assert meta["peaks"] == SYNTHETIC_PEAKS and meta["dtype"] == "float32"
    path = results.write_results(tmp_path / "synthetic.json", records, meta, kind="conv")
    charts = report.render(path, tmp_path / "charts")
    assert {c.name for c in charts} == {"synthetic_roofline.png", "synthetic_tflops.png"}  # no candidates: no speedup


def test_suite_run_measures_peaks_in_the_problems_dtype_when_not_given(device, monkeypatch):
    calls = []

    def fake_peaks(dtype, precision, **kwargs):  # measuring 1 GiB copies on the CPU would be slow
        calls.append((dtype, precision))
        return SYNTHETIC_PEAKS

    monkeypatch.setattr(benchmark, "measure_peaks", fake_peaks)
    records, meta = benchmark.run_conv_suite([("tiny", TINY)], device=device, families=False,
                                             time_fn=synthetic_timer([1.0]))
    assert calls == [("float32", "ieee")]
    assert meta["peaks"] == SYNTHETIC_PEAKS and records[0]["floor_ms"] > 0


# ---- scripts refuse without a GPU ------------------------------------------------------------------------------
SCRIPTS = [["bench/conv.py"], ["-m", "tritonconv.cli", "bench"]] + [
    [f"bench/{name}"] for name in ("gemm.py", "models.py") if (ROOT / "bench" / name).exists()
]


@pytest.mark.skipif(HAS_GPU, reason="checks the behaviour without a GPU")
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: " ".join(s))
def test_bench_scripts_refuse_clearly_without_gpu(script):
    done = subprocess.run([sys.executable, *script], cwd=ROOT, env=compiler_env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "GPU" in done.stdout + done.stderr


@pytest.mark.parametrize(
    "argv, message",
    [(["--dtype", "fp16", "--precision", "tf32"], "not available for fp16"),
     (["--suite", "no/such/suite.json"], "no such file"),
     (["no/such/suite.json"], "no such file"),
     (["--shapes", "no_such_layer"], "matches no shape")],
)
def test_bench_rejects_bad_options_before_looking_for_a_gpu(argv, message, capsys):
    from tritonconv.cli import main as cli_main

    assert cli_main(["bench", *argv]) == 2
    assert message in capsys.readouterr().err


# ---- on a GPU: the real timing path (numbers are only checked for sanity, never against targets) -------------------
@pytest.mark.gpu
def test_real_peaks_and_bench_problem_on_gpu():
    peaks = roofline.measure_peaks("float16", copy_mib=256, matmul_size=4096)
    assert peaks["bytes_per_s"] > 0 and peaks["flops_per_s"] > 0
    problem = ConvProblem(n=2, c=32, h=16, w=16, k=64, r=3, s=3, pad_h=1, pad_w=1)
    record = benchmark.bench_problem(problem, peaks=peaks, name="small")
    assert record["reference"] == "float64"
    for entry in record["results"]:
        assert entry["error"] is None and entry["ms"] > 0, entry
        assert entry["rel_error"] < TOLERANCE["fp16"], entry
    assert [e["name"] for e in record["results"]][:2] == ["cudnn_nchw", "cudnn_nhwc"]
