"""Every bad input raises a documented tritonconv error naming the problem; never a wrong answer or a crash."""
from __future__ import annotations

import pytest
import torch

import tritonconv
import tritonconv.tensor_checks as tensor_checks
from tritonconv.errors import InvalidConfigError, InvalidInputError, UnsupportedError

from .helpers import random_conv_inputs


@pytest.fixture
def xw(device):
    x, w, b = random_conv_inputs(2, 4, 8, 8, 6, 4, 3, 3, device=device)
    return x, w, b


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(stride=0), InvalidInputError, "stride must be positive"),
        (dict(stride=(1, -1)), InvalidInputError, "stride must be positive"),
        (dict(dilation=0), InvalidInputError, "dilation must be positive"),
        (dict(padding=-1), InvalidInputError, "padding must be non-negative"),
        (dict(padding="full"), InvalidInputError, "padding must be 'same', 'valid'"),
        (dict(padding="same", stride=2), InvalidInputError, "not supported for strided"),
        (dict(stride=(1, 2, 3)), InvalidInputError, "stride must be an int or a pair"),
        (dict(groups=0), InvalidInputError, "groups must be a positive int"),
        (dict(groups=3), InvalidInputError, "not divisible by groups=3"),
        (dict(groups=2), InvalidInputError, "expects 8 input channels"),
        (dict(dilation=4), InvalidInputError, "output size .* is not positive"),
        (dict(activation="tanh"), InvalidInputError, "activation must be one of"),
        (dict(precision="tf32"), None, None),
        (dict(precision="int8"), InvalidInputError, "precision 'int8' is not available for float32"),
        (dict(backend="cublas"), InvalidInputError, "backend must be one of"),
        (dict(config={"BLOCK_Q": 16}), InvalidConfigError, "has no parameter"),
        (dict(config={"BLOCK_M": 48}), InvalidConfigError, "BLOCK_M=48 is not one of"),
        (dict(config={"family": "fft"}), InvalidConfigError, "unknown kernel family 'fft'"),
        (dict(config={"convert_nhwc": "yes"}), InvalidConfigError, "convert_nhwc='yes'"),
    ],
)
def test_bad_arguments(xw, kwargs, error, match):
    x, w, b = xw
    if error is None:
        tritonconv.conv2d(x, w, b, **kwargs)
        return
    with pytest.raises(error, match=match):
        tritonconv.conv2d(x, w, b, **kwargs)


def test_kernel_config_breaking_a_hard_constraint_is_rejected(xw, monkeypatch):
    x, w, b = xw
    from tritonconv import runtime

    small = runtime.DeviceInfo("tiny-gpu", (8, 0), 1, 16 * 1024, 0)
    monkeypatch.setattr("tritonconv.kernels.base.device_info", lambda *a: small)
    with pytest.raises(InvalidConfigError, match="shared memory"):
        tritonconv.conv2d(x, w, b, config={"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64, "num_stages": 4})


def test_wrong_ranks(xw):
    x, w, b = xw
    with pytest.raises(InvalidInputError, match="input must be 4-D"):
        tritonconv.conv2d(x[0, 0], w)
    with pytest.raises(InvalidInputError, match="weight must be 4-D"):
        tritonconv.conv2d(x, w[0])


def test_weight_shape_not_matching(xw):
    x, w, b = xw
    with pytest.raises(InvalidInputError, match="expects 3 input channels"):
        tritonconv.conv2d(x, w[:, :3])
    with pytest.raises(InvalidInputError, match="bias must have shape"):
        tritonconv.conv2d(x, w, b[:5])
    with pytest.raises(InvalidInputError, match="residual must have the output's shape"):
        tritonconv.conv2d(x, w, b, residual=torch.randn(2, 6, 8, 8, device=x.device))


def test_dtype_mismatch(xw):
    x, w, b = xw
    with pytest.raises(InvalidInputError, match="weight dtype torch.float16 does not match input dtype torch.float32"):
        tritonconv.conv2d(x, w.half())
    with pytest.raises(InvalidInputError, match="bias dtype"):
        tritonconv.conv2d(x, w, b.half())


@pytest.mark.parametrize("dtype, match", [(torch.float64, "float64"), (torch.int32, "torch.int32"), (torch.int8, "torch.int8")])
def test_unsupported_dtypes(dtype, match, device):
    x = torch.ones(1, 2, 4, 4, device=device).to(dtype)
    w = torch.ones(3, 2, 3, 3, device=device).to(dtype)
    with pytest.raises(UnsupportedError, match=match):
        tritonconv.conv2d(x, w)


def test_cpu_tensors_without_interpreter_name_the_fix(monkeypatch):
    monkeypatch.setattr(tensor_checks, "INTERPRET", False)
    x, w, _ = random_conv_inputs(1, 2, 4, 4, 2, 2, 1, 1)
    with pytest.raises(InvalidInputError, match="TRITON_INTERPRET=1"):
        tritonconv.conv2d(x, w)


def test_tensors_on_different_devices(xw):
    x, w, _ = xw
    with pytest.raises(InvalidInputError, match="one device"):
        tritonconv.conv2d(x, w.to("meta"))


def test_errors_are_also_standard_exception_types(xw):
    """Callers catching ValueError / NotImplementedError (like code written for F.conv2d) still work."""
    x, w, _ = xw
    with pytest.raises(ValueError):
        tritonconv.conv2d(x, w, groups=3)
    with pytest.raises(NotImplementedError):
        tritonconv.conv2d(x.double(), w.double())


def test_integer_like_hyper_parameters_are_accepted_like_f_conv2d(device):
    """numpy and 0-d tensor integers pass operator.index, so F.conv2d takes them; so does tritonconv."""
    import numpy as np

    from .helpers import TOLERANCE, reference_conv2d, rel_error

    x, w, b = random_conv_inputs(1, 4, 7, 6, 6, 2, 3, 3, device=device)
    for kwargs in (
        dict(stride=np.int64(2), groups=np.int64(2)),
        dict(stride=(np.int32(2), 1), padding=np.int64(1), dilation=(1, np.int64(2)), groups=2),
        dict(stride=torch.tensor(2), padding=[np.int16(1)], groups=torch.tensor(2)),
    ):
        out = tritonconv.conv2d(x, w, b, **kwargs, precision="ieee")
        assert rel_error(out, reference_conv2d(x, w, b, **kwargs)) <= TOLERANCE["ieee"], kwargs
        if any(isinstance(v, torch.Tensor) for v in kwargs.values()):
            continue  # torch.nn.Conv2d's constructor itself takes no tensors
        module = tritonconv.nn.Conv2d(4, 6, 3, **kwargs)
        assert module(x).shape == torch.nn.Conv2d(4, 6, 3, **kwargs)(x).shape


@pytest.mark.parametrize("kwargs", [dict(stride=True), dict(groups=True), dict(stride=2.0), dict(groups=2.0),
                                    dict(padding=(1.0, 1)), dict(dilation=(True, 1))])
def test_bool_and_float_hyper_parameters_are_rejected_like_f_conv2d(xw, kwargs):
    x, w, b = xw
    with pytest.raises(TypeError):  # what F.conv2d raises
        torch.nn.functional.conv2d(x, w, b, **kwargs)
    with pytest.raises(InvalidInputError, match=f"{next(iter(kwargs))} must be"):
        tritonconv.conv2d(x, w, b, **kwargs)


INTERPRETER_BF16 = "Triton interpreter .*bf16"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is about the Triton interpreter (CPU runs)")
def test_bf16_matrix_products_are_refused_in_the_interpreter():
    """The interpreter computes tl.dot on bf16 operands wrongly (relative error ~1e10): every path that would run
    one raises a tritonconv error saying so; bf16 paths without tl.dot (depthwise, small_group's direct FMA)
    still compute, correctly."""
    from tritonconv.errors import TritonConvError

    from .helpers import TOLERANCE, reference_conv2d, rel_error

    x, w, b = random_conv_inputs(1, 8, 6, 6, 8, 8, 3, 3, seed=2)
    refused = [
        lambda: tritonconv.conv2d(x.bfloat16(), w.bfloat16(), b.bfloat16(), padding=1),
        lambda: tritonconv.conv2d(x, w, b, padding=1, precision="bf16"),
        lambda: tritonconv.conv2d(x.bfloat16(), w[:, :, :1, :1].bfloat16().contiguous()),  # 1x1: gemm family
        lambda: tritonconv.conv2d(x.bfloat16(), w.bfloat16(), padding=1, config={"family": "implicit_gemm"}),
        lambda: tritonconv.conv2d(x.bfloat16(), w[:, :4].bfloat16(), groups=2,
                                  config={"family": "small_group", "MODE": "block_diag"}),
        lambda: tritonconv.nn.Conv2d(8, 8, 3).bfloat16()(x.bfloat16()),
        lambda: tritonconv.matmul(torch.randn(5, 8).bfloat16(), torch.randn(8, 3).bfloat16()),
        lambda: tritonconv.matmul(torch.randn(5, 8), torch.randn(8, 3), precision="bf16"),
        lambda: tritonconv.matmul(torch.randn(2, 5, 8), torch.randn(2, 8, 3), precision="bf16"),
    ]
    for call in refused:
        with pytest.raises(TritonConvError, match=INTERPRETER_BF16):
            call()
    depthwise_w = w[:, :1].contiguous()
    out = tritonconv.conv2d(x.bfloat16(), depthwise_w.bfloat16(), b.bfloat16(), padding=1, groups=8)
    assert rel_error(out, reference_conv2d(x.bfloat16(), depthwise_w.bfloat16(), b.bfloat16(), 1, 1, 1, 8)) \
        <= TOLERANCE["bf16"]
    direct = tritonconv.conv2d(x, w[:, :2].contiguous(), b, padding=1, groups=4, precision="bf16",
                               config={"family": "small_group", "MODE": "direct"})
    assert rel_error(direct, reference_conv2d(x, w[:, :2], b, 1, 1, 1, 4)) <= TOLERANCE["bf16"]
