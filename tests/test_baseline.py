"""tritonconv.baseline: cuDNN (PyTorch's conv on a CPU) timed once per layout, checked against the reference
first, the same for the tuner's runner and the conv benchmark; and tritonconv.reference, the one error measure."""
import functools

import pytest
import torch

from tests.helpers import reference_conv2d
from tritonconv.baseline import cudnn_allows_tf32, fastest, time_cudnn
from tritonconv.problem import ConvProblem
from tritonconv.reference import reference_conv, rel_error
from tritonconv.search import InProcessRunner

PROBLEM = ConvProblem(n=1, c=4, h=5, w=6, k=8, r=3, s=2, pad_h=1, pad_w=0, stride_w=2, dtype="float32",
                      layout="nchw", precision="ieee")


def _inputs():
    x, w = PROBLEM.make_tensors("cpu", seed=3)
    return x, w, reference_conv(PROBLEM, x, w)


def test_reference_is_pytorchs_float64_conv():
    x, w = PROBLEM.make_tensors("cpu", seed=3)
    ref = reference_conv(PROBLEM, x, w)
    assert ref.dtype == torch.float64 and ref.shape == (1, 8, 5, 3)
    independent = reference_conv2d(x, w, None, (1, 2), (1, 0))
    assert torch.allclose(ref, independent, rtol=0, atol=1e-12)
    assert reference_conv(PROBLEM, x, w, torch.float32).dtype == torch.float32


def test_rel_error_is_relative_in_the_references_dtype_and_infinite_for_unwritten_outputs():
    ref = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    assert rel_error(ref.float(), ref) < 1e-7
    assert rel_error(2 * ref, ref) == pytest.approx(1.0)
    poisoned = ref.clone()
    poisoned[0, 0, 0, 0] = float("nan")
    assert rel_error(poisoned, ref) == float("inf")
    assert rel_error(ref, ref.float()) == 0.0  # compared in float32, the reference's dtype


def test_time_cudnn_checks_then_times_both_layouts():
    x, w, ref = _inputs()
    seen = []

    def timer(fn):
        assert isinstance(fn, functools.partial)
        tensors = fn.args[1]
        seen.append((tensors.input.is_contiguous(memory_format=torch.channels_last),
                     tensors.weight.is_contiguous(memory_format=torch.channels_last)))
        return 2.0 if not seen[-1][0] else 1.0

    timings = time_cudnn(PROBLEM, x, w, ref, timer)
    assert [t.layout for t in timings] == ["nchw", "nhwc"]
    assert seen == [(False, False), (True, True)]
    assert all(t.exception is None and t.rel_error < 1e-6 and not t.tf32 for t in timings)
    assert fastest(timings).layout == "nhwc"


def test_a_failing_layout_is_recorded_and_the_other_still_runs():
    x, w, ref = _inputs()
    calls = []

    def timer(fn):
        calls.append(fn)
        if len(calls) == 1:
            raise RuntimeError("synthetic cuDNN failure")
        return 1.5

    nchw, nhwc = time_cudnn(PROBLEM, x, w, ref, timer)
    assert nchw.ms is None and nchw.error == "RuntimeError: synthetic cuDNN failure"
    assert nhwc.ms == 1.5 and nhwc.error is None
    assert fastest([nchw]) is None


def test_the_runners_baseline_is_the_faster_layout_and_an_error_when_none_ran():
    runner = InProcessRunner(timer=lambda fn: 3.0 if fn.args[1].input.is_contiguous() else 0.5)
    measured = runner.baseline(PROBLEM)
    assert measured.ok and measured.time_ms == 0.5 and measured.rel_error < 1e-6

    def broken(fn):
        raise RuntimeError("no algorithm")

    failed = InProcessRunner(timer=broken).baseline(PROBLEM)
    assert not failed.ok and "no algorithm" in failed.error


def test_tf32_only_for_tf32_like_float32_precisions():
    assert cudnn_allows_tf32(PROBLEM.with_(precision="tf32"))
    assert not cudnn_allows_tf32(PROBLEM) and not cudnn_allows_tf32(PROBLEM.with_(precision="tf32x3"))
    assert not cudnn_allows_tf32(PROBLEM.with_(dtype="float16", precision="fp16"))



def test_a_quantized_problem_is_compared_with_the_float_conv_of_the_same_values():
    problem = PROBLEM.with_(dtype="int8", precision="int8")
    x, w = problem.make_tensors("cpu", seed=1)
    assert x.dtype == torch.int8 and x.abs().sum() > 0
    ref = reference_conv(problem, x, w)
    timings = time_cudnn(problem, x, w, ref, lambda fn: 1.0)
    assert all(t.exception is None and t.rel_error < 1e-6 for t in timings)  # float32 of int8 products: exact-ish
    assert fastest(timings).ms == 1.0


def test_the_error_measure_and_the_suite_files_have_one_home_in_the_library():
    from tests import REPO

    found = {str(p.relative_to(REPO)) for p in (REPO / "tritonconv").rglob("*.py") if "norm() /" in p.read_text()}
    assert found == {"tritonconv/reference.py"}, f"a relative error computed outside tritonconv.reference: {found}"
    copies = [str(p.relative_to(REPO)) for p in [*(REPO / "tritonconv").rglob("*.py"), *(REPO / "bench").glob("*.py")]
              if '"suites"' in p.read_text() and p.name != "suite.py"]
    assert not copies, f"suite files located outside tritonconv.suite: {copies}"
