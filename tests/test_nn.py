"""tritonconv.nn.Conv2d: a drop-in nn.Conv2d (constructor, state_dict, padding modes, fused epilogue)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tritonconv
from tritonconv.nn import Conv2d

from .helpers import TOLERANCE, rel_error


def _pair(seed=0, **kwargs):
    """A torch nn.Conv2d and a tritonconv Conv2d with the same (random, non-zero) parameters."""
    torch.manual_seed(seed)
    reference = nn.Conv2d(**kwargs)
    ours = Conv2d(**kwargs)
    ours.load_state_dict(reference.state_dict())
    ours.precision = "ieee"
    return reference, ours


def _check(reference, ours, x, tol=TOLERANCE["ieee"], **forward):
    expected = reference.double()(x.double())
    assert rel_error(ours(x, **forward), expected) < tol


def test_same_constructor_and_state_dict():
    ref, ours = _pair(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, bias=False)
    assert isinstance(ours, nn.Conv2d)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), ref.state_dict().values()))
    with pytest.raises(tritonconv.InvalidInputError, match="activation"):
        Conv2d(4, 4, 3, activation="tanh")


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
def test_padding_modes(device, padding_mode):
    ref, ours = _pair(in_channels=3, out_channels=4, kernel_size=3, padding=(1, 2), padding_mode=padding_mode,
                      dilation=(1, 2))
    x = torch.randn(1, 3, 6, 7)
    _check(ref, ours.to(device), x.to(device))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(in_channels=4, out_channels=8, kernel_size=(2, 3), padding="same", groups=2),
        dict(in_channels=4, out_channels=4, kernel_size=3, stride=2, padding="valid", groups=4, bias=False),
    ],
    ids=["grouped_same", "depthwise_valid"],
)
def test_forward_matches_torch_with_several_configs(device, kwargs):
    ref, ours = _pair(**kwargs)
    ours.to(device)
    x = torch.randn(2, 4, 6, 5, device=device).contiguous(memory_format=torch.channels_last)
    for config in (None, {"family": "implicit_gemm", "BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16,
                          "LOOP_ORDER": "channel_outer", "WEIGHT_LAYOUT": "kcrs", "num_warps": 2}):
        ours.config = config
        out = ours(x)
        assert out.is_contiguous(memory_format=torch.channels_last)
        _check(ref, ours, x)
    _check(ref, ours, x[0])  # unbatched input


def test_fused_activation_and_residual(device):
    ref, ours = _pair(in_channels=4, out_channels=4, kernel_size=3, padding=1)
    ours.to(device)
    ours.activation = "relu6"
    x = torch.randn(2, 4, 5, 5, device=device)
    residual = 4 * torch.randn(2, 4, 5, 5, device=device)
    expected = F.relu6(ref.double()(x.double()) + residual.double())
    assert rel_error(ours(x, residual), expected) < TOLERANCE["ieee"]
    assert "activation=relu6" in repr(ours)
    # A residual that only broadcasts to the output is added in PyTorch, still before the activation.
    per_channel = torch.randn(1, 4, 1, 1, device=device)
    expected = F.relu6(ref.double()(x.double()) + per_channel.double())
    assert rel_error(ours(x, per_channel), expected) < TOLERANCE["ieee"]


def test_from_conv_shares_parameters():
    conv = nn.Conv2d(3, 4, 3)
    ours = Conv2d.from_conv(conv, activation="silu")
    assert ours.weight is conv.weight and ours.bias is conv.bias and ours.activation == "silu"
    ours.bias = None  # own parameter dict: the original keeps its bias
    assert conv.bias is not None
