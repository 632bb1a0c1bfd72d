"""What the int8 tests share: random quantised inputs, the float64 reference of the same quantised values and the
relative error against it."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def quantized_inputs(n, c, h, w, k, cpg, r, s, *, channels_last=False, seed=0):
    """Random int8 input and weight over the full range, per-channel weight scales, a float bias."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(-128, 128, (n, c, h, w), generator=gen, dtype=torch.int8)
    wq = torch.randint(-128, 128, (k, cpg, r, s), generator=gen, dtype=torch.int8)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w_scale = torch.rand(k, generator=gen) * 2e-3 + 1e-4
    bias = torch.randn(k, generator=gen)
    return x, wq, w_scale, bias


def float_reference(x, wq, x_scale, w_scale, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
                    activation=None, residual=None) -> torch.Tensor:
    """float64: act(conv(x * x_scale, w * w_scale) + bias + residual)."""
    w = wq.double() * w_scale.double()[:, None, None, None]
    y = F.conv2d(x.double() * x_scale, w, None if bias is None else bias.double(), stride, padding, dilation, groups)
    if residual is not None:
        y = y + residual.double()
    return {None: y, "relu": F.relu(y), "gelu": F.gelu(y), "relu6": F.relu6(y)}[activation]


def rel(out, ref) -> float:
    return ((out.double() - ref).norm() / ref.norm()).item()
