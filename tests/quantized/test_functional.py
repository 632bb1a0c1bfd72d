"""tritonconv.quantized.conv2d: dequantised (float32) and requantised (int8) outputs against float64 references
of the same quantised values, every argument form, and one-line errors for bad input."""
from __future__ import annotations

import pytest
import torch

import tritonconv
from tritonconv import InvalidInputError, UnsupportedError
from tritonconv import quantized as tq
from tritonconv.problem import ConvProblem

from tests.quantized.helpers import float_reference, quantized_inputs, rel


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("geometry", [
    dict(stride=1, padding=1, dilation=1, groups=1),
    dict(stride=2, padding=(2, 0), dilation=(1, 2), groups=1),
    dict(stride=1, padding="same", dilation=1, groups=4),
])
def test_dequantised_output_matches_float64(geometry, channels_last):
    x, wq, w_scale, bias = quantized_inputs(1, 16, 7, 8, 24, 16 // geometry["groups"], 3, 3, channels_last=channels_last)
    ref = float_reference(x, wq, 0.05, w_scale, bias, **geometry, activation="relu")
    y = tq.conv2d(x, wq, 0.05, w_scale, bias, **geometry, activation="relu")
    assert y.dtype == torch.float32 and y.shape == ref.shape and torch.isfinite(y).all()
    assert y.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert rel(y, ref) < 1e-6  # float32 rounding of the scaling only: the sums are exact


def test_requantised_output_within_one_lsb():
    """int8 output: round half to even of y / out_scale, saturated to [-128, 127]; 1 LSB where float32's y
    falls on the other side of a half-way point than float64's, exact elsewhere."""
    x, wq, w_scale, bias = quantized_inputs(2, 8, 6, 6, 16, 8, 3, 3, seed=1)
    residual = torch.randn(2, 16, 6, 6)
    ref = float_reference(x, wq, 0.02, w_scale, bias, padding=1, residual=residual)
    out_scale = min(ref.max().item(), -ref.min().item()) / 150  # some outputs saturate at both ends
    y_q = tq.conv2d(x, wq, 0.02, w_scale, bias, out_scale, padding=1, residual=residual)
    expected = torch.clamp(torch.round(ref / out_scale), -128, 127)
    assert y_q.dtype == torch.int8
    assert (expected == 127).any() and (expected == -128).any()
    assert (y_q.double() - expected).abs().max() <= 1
    assert (y_q.double() == expected).double().mean() > 0.99


def test_round_half_to_even():
    """Exact half-way values round to the even integer (torch.round's rule), not away from zero."""
    x = torch.ones(1, 1, 1, 8, dtype=torch.int8)
    wq = torch.ones(8, 1, 1, 1, dtype=torch.int8)
    halves = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -127.5])
    y_q = tq.conv2d(x, wq, 1.0, torch.ones(8), halves - 1.0, out_scale=1.0)[0, :, 0, 0]
    assert y_q.tolist() == torch.round(halves).tolist() == [0, 2, 2, -0, -2, -2, 126, -128]


def test_batch1_unbatched_scalar_scales_and_tensor_scale():
    x, wq, w_scale, _ = quantized_inputs(1, 4, 5, 5, 8, 4, 3, 3, seed=2)
    y = tq.conv2d(x[0], wq, torch.tensor(0.1), 0.01)
    ref = float_reference(x, wq, 0.1, torch.full((8,), 0.01))[0]
    assert y.shape == ref.shape and rel(y, ref) < 1e-6


def test_explicit_config_and_cache_path():
    """An explicit config is the int8 family's; without one the tuned config from the cache is used."""
    x, wq, w_scale, bias = quantized_inputs(1, 32, 5, 5, 16, 32, 3, 3, seed=3)
    ref = float_reference(x, wq, 0.1, w_scale, bias, padding=1)
    y = tq.conv2d(x, wq, 0.1, w_scale, bias, padding=1, config={"LOOP_ORDER": "channel_outer", "BLOCK_K": 32})
    assert rel(y, ref) < 1e-6
    with pytest.raises(tritonconv.InvalidConfigError, match="BLOCK_K=16"):
        tq.conv2d(x, wq, 0.1, w_scale, bias, padding=1, config={"BLOCK_K": 16})
    with pytest.raises(tritonconv.InvalidConfigError, match="computes float32"):
        tq.conv2d(x, wq, 0.1, w_scale, bias, padding=1, config={"family": "implicit_gemm"})


def test_tune_an_int8_problem_and_use_the_cached_winner():
    from tritonconv import cache
    from tritonconv.search import tune

    problem = ConvProblem(n=1, c=16, h=4, w=4, k=16, r=3, s=3, pad_h=1, pad_w=1, dtype="int8", layout="nchw")
    result = tune(problem, trials=2, progress=False)
    assert result.family == "int8_implicit_gemm" and result.precision == "int8" and result.rel_error < 1e-6
    assert cache.lookup_config(problem, torch.device("cpu"), "triton")["family"] == "int8_implicit_gemm"
    x, wq, w_scale, bias = quantized_inputs(1, 16, 4, 4, 16, 16, 3, 3, seed=4)
    y = tq.conv2d(x, wq, 0.1, w_scale, bias, padding=1)
    assert rel(y, float_reference(x, wq, 0.1, w_scale, bias, padding=1)) < 1e-6


X8 = torch.ones(1, 4, 5, 5, dtype=torch.int8)
W8 = torch.ones(8, 4, 3, 3, dtype=torch.int8)
S8 = torch.ones(8)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(x_q=X8.float()), InvalidInputError, "x_q must be an int8 tensor"),
    (dict(w_q=W8.to(torch.int32)), InvalidInputError, "w_q must be an int8 tensor"),
    (dict(x_scale=0.0), InvalidInputError, "x_scale must be positive"),
    (dict(x_scale=float("nan")), InvalidInputError, "x_scale must be positive"),
    (dict(x_scale=torch.ones(2)), InvalidInputError, "x_scale must be a positive float or a one-element"),
    (dict(x_scale="0.1"), InvalidInputError, "x_scale must be a positive float"),
    (dict(w_scale=torch.ones(7)), InvalidInputError, r"w_scale must have shape \(8,\)"),
    (dict(w_scale=torch.ones(8, dtype=torch.int32)), InvalidInputError, "w_scale must be a float tensor"),
    (dict(w_scale=torch.tensor([1.0] * 7 + [-1.0])), InvalidInputError, "w_scale must be positive"),
    (dict(w_scale=-2.0), InvalidInputError, "w_scale must be positive"),
    (dict(out_scale=0), InvalidInputError, "out_scale must be positive"),
    (dict(bias=torch.ones(8, dtype=torch.int32)), InvalidInputError, "bias must be float32"),
    (dict(bias=torch.ones(7)), InvalidInputError, r"bias must have shape \(8,\)"),
    (dict(residual=torch.ones(1, 8, 2, 2)), InvalidInputError, "residual must have the output's shape"),
    (dict(groups=3), InvalidInputError, "not divisible by groups"),
    (dict(activation="tanh"), InvalidInputError, "activation must be one of"),
    (dict(stride=0), InvalidInputError, "stride must be positive"),
    (dict(x_q=lambda: torch.quantize_per_tensor(torch.ones(1, 4, 5, 5), 0.1, 0, torch.qint8)), UnsupportedError, "quantized"),
])
@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor")
def test_bad_input_is_one_line_error(kwargs, error, match):
    args = dict(x_q=X8, w_q=W8, x_scale=0.1, w_scale=S8)
    args.update({k: v() if callable(v) else v for k, v in kwargs.items()})
    with pytest.raises(error, match=match) as info:
        tq.conv2d(**args)
    assert "\n" not in str(info.value)


def test_float_conv2d_points_int8_tensors_to_the_quantized_api():
    with pytest.raises(UnsupportedError, match="tritonconv.quantized.conv2d"):
        tritonconv.conv2d(X8, W8)


def test_strided_views_of_every_tensor():
    """Sliced input (channel stride 2), a weight view, a strided bias and a transposed residual: read through
    their strides, the same result as their contiguous copies."""
    x_big, w_big, w_scale, _ = quantized_inputs(1, 16, 6, 6, 16, 8, 3, 3, seed=6)
    x, wq, bias = x_big[:, ::2], w_big.transpose(2, 3), torch.randn(32)[::2]
    residual = torch.randn(1, 16, 4, 4).transpose(2, 3)
    ref = float_reference(x.contiguous(), wq.contiguous(), 0.1, w_scale, bias.contiguous(), residual=residual.contiguous())
    y = tq.conv2d(x, wq, 0.1, w_scale, bias, residual=residual)
    assert not x.is_contiguous() and not wq.is_contiguous() and not bias.is_contiguous()
    assert rel(y, ref) < 1e-6


def test_weight_scales_are_checked_once_per_version():
    """A bad value written into a scale tensor already used is still caught: the check is cached per version."""
    x, wq, w_scale, bias = quantized_inputs(1, 4, 4, 4, 8, 4, 1, 1, seed=7)
    tq.conv2d(x, wq, 0.1, w_scale, bias)
    w_scale[3] = 0.0  # in place: a new version of the tensor
    with pytest.raises(InvalidInputError, match="w_scale must be positive"):
        tq.conv2d(x, wq, 0.1, w_scale, bias)


def test_first_call_tuning_tunes_an_int8_problem():
    from tritonconv import cache

    x, wq, w_scale, bias = quantized_inputs(1, 8, 5, 5, 8, 8, 3, 3, seed=8)
    problem = ConvProblem(n=1, c=8, h=5, w=5, k=8, r=3, s=3, pad_h=1, pad_w=1, dtype="int8", layout="nchw")
    assert cache.lookup_config(problem, torch.device("cpu"), "triton") is None
    with tritonconv.autotune("on-first-call", budget_s=5, trials=2):
        y = tq.conv2d(x, wq, 0.1, w_scale, bias, padding=1)
    assert cache.lookup_config(problem, torch.device("cpu"), "triton")["family"] == "int8_implicit_gemm"
    assert rel(y, float_reference(x, wq, 0.1, w_scale, bias, padding=1)) < 1e-6
