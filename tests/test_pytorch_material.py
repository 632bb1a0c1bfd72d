"""PyTorch's own test material for conv2d, run through tritonconv (material from tests/pytorch_material.py):

* every OpInfo `nn.functional.conv2d` sample input, float32 and float16, through `tritonconv.conv2d` vs float64
  F.conv2d, with input/weight/bias gradients for the samples that require them;
* every OpInfo error input: a tritonconv error whose message names the problem;
* every common_nn Conv2d module test through `tritonconv.nn.Conv2d` and through `convert()` (inside a
  Sequential with a SiLU, which convert fuses into the epilogue; smooth, so fp16 rounding flips no ReLU mask):
  forward and input gradient vs the float64 module.

A part the installed torch lacks is skipped with the reason. Failures are collected per case and reported together.
"""
from __future__ import annotations

import copy
import hashlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from filelock import FileLock

import tritonconv
from tritonconv.errors import TritonConvError
from tritonconv.functional import make_problem
from tritonconv.enums import DType, default_precision

from .helpers import TOLERANCE, rel_error

DTYPES = {"float32": torch.float32, "float16": torch.float16}
GRAD_TOLERANCE = {torch.float32: 1e-4, torch.float16: TOLERANCE["fp16"]}

# OpInfo error_regex -> what tritonconv's message must say about the same problem.
ERROR_MESSAGES = {
    "should be the same": r"dtype .* does not match",
    "non-positive stride is not supported": r"stride must be positive",
    "negative padding is not supported": r"padding must be non-negative",
    "dilation should be greater than zero": r"dilation must be positive",
    "Expected 3-dimensional input for 3-dimensional weight": r"weight must be 4-D",
    "expected weight to be at least 3 at dimension 0": r"groups=3",
    "non-positive groups is not supported": r"groups must be a positive int",
}


@pytest.fixture(scope="session")
def material(tmp_path_factory) -> dict:
    """The extracted material, made once per test session (shared by xdist workers through a file lock)."""
    script = Path(__file__).with_name("pytorch_material.py")
    found = importlib.util.find_spec("expecttest") is not None  # torch.testing._internal needs it
    version = hashlib.sha256(script.read_bytes() + f"{torch.__version__} {found}".encode()).hexdigest()[:12]
    path = tmp_path_factory.getbasetemp().parent / f"pytorch-conv2d-material-{version}.pt"
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            subprocess.run([sys.executable, str(script), str(path)], check=True, timeout=600)
    return torch.load(path, weights_only=False)


def _part(material: dict, name: str) -> dict:
    part = material[name]
    if "missing" in part:
        pytest.skip(part["missing"])
    return part


def _float64(value):
    return value.detach().double() if isinstance(value, torch.Tensor) else value


def _leaves(sample: dict) -> list[torch.Tensor]:
    tensors = [sample["input"], *sample["args"]]
    return [t for t in tensors if isinstance(t, torch.Tensor) and t.requires_grad]


def _check_sample(sample: dict, dtype: torch.dtype) -> None:
    x, args, kwargs = sample["input"], sample["args"], sample["kwargs"]
    batched = x.unsqueeze(0) if x.dim() == 3 else x
    problem = make_problem(batched, args[0], *args[1:], **kwargs)
    ref = F.conv2d(_float64(x), *map(_float64, args), **kwargs)
    out = tritonconv.conv2d(x, *args, **kwargs)
    assert out.shape == ref.shape and out.dtype == dtype
    assert rel_error(out, ref) <= TOLERANCE[problem.precision], f"forward error {rel_error(out, ref):.3g}"
    leaves = _leaves(sample)
    if not leaves:
        return
    grad_out = torch.randn(ref.shape, generator=torch.Generator().manual_seed(0))
    grads = torch.autograd.grad(out, leaves, grad_out.to(dtype))
    leaves64 = [t.detach().double().requires_grad_() for t in leaves]
    swap = {id(t): t64 for t, t64 in zip(leaves, leaves64)}
    x64, *args64 = (swap.get(id(t), _float64(t)) for t in (x, *args))
    ref_grads = torch.autograd.grad(F.conv2d(x64, *args64, **kwargs), leaves64, grad_out.double())
    for index, (grad, ref_grad) in enumerate(zip(grads, ref_grads)):
        error = rel_error(grad, ref_grad)
        assert error <= GRAD_TOLERANCE[dtype], f"gradient {index} error {error:.3g}"


@pytest.mark.parametrize("dtype_name", DTYPES)
def test_opinfo_conv2d_samples_and_gradients(material, dtype_name):
    samples = _part(material, "opinfo")["samples"].get(str(DTYPES[dtype_name]))
    if not samples:
        pytest.skip(f"the OpInfo has no {dtype_name} samples on this torch")
    failures = []
    for sample in samples:
        try:
            _check_sample(sample, DTYPES[dtype_name])
        except (AssertionError, TritonConvError) as error:
            failures.append(f"{sample['desc'][:300]}: {type(error).__name__}: {error}".splitlines()[0])
    assert not failures, f"{len(failures)} of {len(samples)} samples failed:\n" + "\n".join(failures)


def test_opinfo_conv2d_error_inputs_raise_tritonconv_errors_naming_the_problem(material):
    errors = _part(material, "opinfo")["errors"]
    if not errors:
        pytest.skip("the OpInfo has no error inputs on this torch")
    failures = []
    for case in errors:
        expected = ERROR_MESSAGES.get(case["regex"])
        try:
            tritonconv.conv2d(case["input"], *case["args"], **case["kwargs"])
        except TritonConvError as error:
            # A case this table does not know (a newer torch) must at least not be blamed on the dtype.
            if expected is not None and not re.search(expected, str(error)):
                failures.append(f"{case['regex']!r}: message {str(error)!r} does not match {expected!r}")
            elif expected is None and "tritonconv supports float32" in str(error):
                failures.append(f"{case['regex']!r}: blamed on the dtype: {error}")
        except Exception as error:  # noqa: BLE001 - anything but a tritonconv error is a failure
            failures.append(f"{case['regex']!r}: raised {type(error).__name__}: {error}")
        else:
            failures.append(f"{case['regex']!r}: no error raised for {case['desc'][:200]}")
    assert not failures, "\n".join(failures)


def _converted(module: torch.nn.Module, how: str) -> torch.nn.Module:
    if how == "nn.Conv2d":
        return tritonconv.nn.Conv2d.from_conv(module)
    model = tritonconv.convert(torch.nn.Sequential(module, torch.nn.SiLU()).eval())
    report = model.tritonconv_report
    assert report.converted == ["0"] and not report.skipped, report.summary()
    assert report.fused_activations == {"0": "silu"}, report.summary()
    return model


@pytest.mark.parametrize("how", ["nn.Conv2d", "convert"])
@pytest.mark.parametrize("dtype_name", DTYPES)
def test_common_nn_conv2d_module_tests(material, dtype_name, how):
    """Forward and input gradient of every common_nn Conv2d module test vs the float64 module."""
    dtype = DTYPES[dtype_name]
    cases = _part(material, "common_nn")["cases"]
    failures = []
    for case in cases:
        reference = case["module"]
        if how == "convert":
            reference = torch.nn.Sequential(reference, torch.nn.SiLU())
        x64 = case["input"].detach().requires_grad_()
        ref = reference(x64)
        grad_out = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        (ref_grad,) = torch.autograd.grad(ref, x64, grad_out) if ref.numel() else (torch.zeros_like(x64),)
        try:
            model = _converted(copy.deepcopy(case["module"]).to(dtype), how)
            x = case["input"].to(dtype).requires_grad_()
            out = model(x)
            assert out.shape == ref.shape and out.dtype == dtype
            if not ref.numel():
                continue
            tolerance = TOLERANCE[default_precision(DType.from_torch(dtype).value)]
            assert rel_error(out, ref) <= tolerance, f"forward error {rel_error(out, ref):.3g}"
            (grad,) = torch.autograd.grad(out, x, grad_out.to(dtype))
            assert rel_error(grad, ref_grad) <= max(tolerance, GRAD_TOLERANCE[dtype]), "input gradient"
        except (AssertionError, TritonConvError) as error:
            failures.append(f"{case['name']}: {type(error).__name__}: {error}".splitlines()[0])
    assert not failures, f"{len(failures)} of {len(cases)} module tests failed:\n" + "\n".join(failures)
