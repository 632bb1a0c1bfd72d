"""QuantizedConv2d and the symmetric quantisation it uses."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tritonconv import InvalidInputError
from tritonconv.quantized import QuantizedConv2d, quantize_tensor, quantize_weight, scale_for


def test_quantize_weight_is_symmetric_per_output_channel():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(6, 3, 3, 3, generator=gen) * torch.tensor([1e-3, 1, 10, 0.5, 2, 3])[:, None, None, None]
    w_q, scales = quantize_weight(w)
    assert w_q.dtype == torch.int8 and scales.dtype == torch.float32 and scales.shape == (6,)
    assert torch.equal(w_q.abs().amax(dim=(1, 2, 3)), torch.full((6,), 127, dtype=torch.int8))  # each channel's max
    assert torch.allclose(scales, w.abs().amax(dim=(1, 2, 3)) / 127)
    # reconstruction error at most half a step per channel
    assert ((w_q.float() * scales[:, None, None, None] - w).abs() <= scales[:, None, None, None] / 2 + 1e-7).all()


def test_quantize_tensor_rounds_half_to_even_and_saturates_symmetrically():
    q = quantize_tensor(torch.tensor([0.5, 1.5, -2.5, 200.0, -200.0]), 1.0)
    assert q.tolist() == [0, 2, -2, 127, -127]
    assert scale_for(0.0) == 1.0 and scale_for(127.0) == 1.0
    with pytest.raises(InvalidInputError, match="scale must be a positive finite number"):
        quantize_tensor(torch.ones(2), 0.0)
    with pytest.raises(InvalidInputError, match="finite"):
        scale_for(float("inf"))
    with pytest.raises(InvalidInputError, match="NaN"):
        quantize_weight(torch.full((2, 1, 1, 1), float("nan")))


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_module_matches_the_float_conv_within_the_quantisation_error(channels_last):
    """Against F.conv2d in float64 of the float weights and input: the int8 rounding of both, a few 1e-3."""
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2)
    x = torch.randn(1, 8, 9, 9)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    q = QuantizedConv2d.from_float(conv, scale_for(x.abs().max()), activation="relu")
    y = q(x)
    ref = F.relu(F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), 2, 1, 1, 2))
    err = ((y.double() - ref).norm() / ref.norm()).item()
    assert y.dtype == torch.float32 and 1e-4 < err < 1e-2
    assert y.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert q(x.half()).dtype == torch.float16  # float16 in, float16 out


def test_state_dict_round_trip_keeps_the_scales():
    conv = nn.Conv2d(4, 8, 1)
    q = QuantizedConv2d.from_float(conv, 0.05)
    restored = QuantizedConv2d(torch.zeros_like(q.weight_q), torch.ones(8), 1.0, torch.zeros(8))
    restored.load_state_dict(q.state_dict())
    x = torch.randn(1, 4, 3, 3)
    assert restored._input_scale == pytest.approx(0.05) and torch.equal(restored(x), q(x))


def test_padding_modes_other_than_zeros_are_refused():
    with pytest.raises(InvalidInputError, match="padding_mode 'reflect'"):
        QuantizedConv2d.from_float(nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"), 0.1)


def test_a_residual_the_kernel_cannot_add_is_added_in_pytorch():
    """A broadcasting residual (one value per channel) is added after the kernel, before the activation."""
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 8, 3, padding=1)
    x, residual = torch.randn(1, 4, 5, 5), torch.randn(1, 8, 1, 1)
    q = QuantizedConv2d.from_float(conv, scale_for(x.abs().max()), activation="relu")
    ref = F.relu(F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1) + residual.double())
    y = q(x, residual)
    full = q(x, residual.expand(1, 8, 5, 5).contiguous())  # the fused path: the same values
    assert ((y.double() - ref).norm() / ref.norm()).item() < 1e-2
    assert torch.allclose(y, full, atol=1e-5)
