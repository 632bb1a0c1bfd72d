"""Symmetric int8 quantisation: q = clamp(round_half_even(x / scale), -127, 127), scale = max|x| / 127."""
from __future__ import annotations

import math

import torch

from ..errors import InvalidInputError

QMAX = 127  # symmetric range [-127, 127]: -128 is never produced, so negating a quantised value never overflows


def scale_for(max_abs: float) -> float:
    """The scale that maps [-max_abs, max_abs] onto [-127, 127]; 1.0 for an all-zero range (any scale is exact)."""
    max_abs = float(max_abs)
    if not math.isfinite(max_abs) or max_abs < 0:
        raise InvalidInputError(f"cannot quantize a range with maximum magnitude {max_abs!r}: it must be finite")
    return max_abs / QMAX if max_abs > 0 else 1.0


def quantize_tensor(x: torch.Tensor, scale: float) -> torch.Tensor:
    """`x` (float) as int8 with one `scale` for the whole tensor (memory format kept)."""
    if not x.is_floating_point():
        raise InvalidInputError(f"quantize_tensor takes a float tensor, got {x.dtype}")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise InvalidInputError(f"scale must be a positive finite number, got {scale!r}")
    return torch.clamp(torch.round(x.float() / scale), -QMAX, QMAX).to(torch.int8)


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel quantisation of a conv weight (K, C/groups, R, S): (int8 weight, float32
    scales [K]) with scale[k] = max|weight[k]| / 127."""
    if not weight.is_floating_point() or weight.dim() != 4:
        raise InvalidInputError(f"quantize_weight takes a 4-D float weight, got {weight.dtype} of shape {tuple(weight.shape)}")
    w = weight.detach().float()
    max_abs = w.abs().amax(dim=(1, 2, 3))
    if not torch.isfinite(max_abs).all():
        raise InvalidInputError("weight has NaN or infinite values: it cannot be quantized")
    scales = torch.where(max_abs > 0, max_abs / QMAX, torch.ones_like(max_abs))
    w_q = torch.clamp(torch.round(w / scales[:, None, None, None]), -QMAX, QMAX).to(torch.int8)
    return w_q, scales.contiguous()
