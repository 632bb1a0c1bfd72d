"""`tritonconv.quantized.conv2d`: an int8 convolution with the (de/re)quantisation fused into the kernel.

    y = act(conv(x_q, w_q) * x_scale * w_scale[k] + bias[k] + residual)

computed as exact int32 sums of int8 products (the "int8_implicit_gemm" kernel family), scaled in float32 in the
epilogue. Output: float32 when `out_scale` is None (dequantised), else int8: round half to even of
y / out_scale, saturated to [-128, 127] (requantised). The problem (dtype "int8", precision "int8") goes through
the same key, search (`tritonconv.tune`) and cache as every float conv.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Union

import torch

from ..enums import DType
from ..errors import InvalidInputError
from ..dispatch import empty_output, run_problem
from ..functional import IntOrPair, make_problem
from ..tensor_checks import check_tensors
from ..kernels.base import Quantization, check_config
from ..kernels.int8_implicit_gemm import Int8ImplicitGemmConv
from ..weights import prepare_derived

FAMILY = Int8ImplicitGemmConv.name


def _positive_scale(value: Any, name: str) -> float:
    """A scale given as a number or a one-element tensor, checked positive and finite."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or not value.is_floating_point():
            raise InvalidInputError(f"{name} must be a positive float or a one-element float tensor, got a "
                                    f"{value.dtype} tensor of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{name} must be a positive float, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise InvalidInputError(f"{name} must be positive and finite, got {value!r}")
    return float(value)


def _weight_scales(w_scale: Any, k: int, device: torch.device) -> torch.Tensor:
    """Per-output-channel scales as a float32 [K] tensor on `device` (a number means one scale for every channel)."""
    if not isinstance(w_scale, torch.Tensor):
        return torch.full((k,), _positive_scale(w_scale, "w_scale"), dtype=torch.float32, device=device)
    if not w_scale.is_floating_point():
        raise InvalidInputError(f"w_scale must be a float tensor of shape ({k},), got dtype {w_scale.dtype}")
    if w_scale.dim() == 0:
        w_scale = w_scale.expand(k)
    if tuple(w_scale.shape) != (k,):
        raise InvalidInputError(f"w_scale must have shape ({k},) (one scale per output channel), got {tuple(w_scale.shape)}")
    if w_scale.device != device:
        raise InvalidInputError(f"w_scale is on {w_scale.device}, the tensors on {device}")
    # The values are checked once per version of the tensor (a GPU check waits for the device), then cached.
    return prepare_derived(w_scale, ("checked_scales",), _checked_scales)


def _checked_scales(w_scale: torch.Tensor) -> torch.Tensor:
    if w_scale.device.type != "meta" and not bool(((w_scale > 0) & torch.isfinite(w_scale)).all()):
        raise InvalidInputError("w_scale must be positive and finite in every output channel")
    return w_scale.to(torch.float32).contiguous()


def conv2d(
    x_q: torch.Tensor,
    w_q: torch.Tensor,
    x_scale: Union[float, torch.Tensor],
    w_scale: Union[float, torch.Tensor],
    bias: Optional[torch.Tensor] = None,
    out_scale: Optional[Union[float, torch.Tensor]] = None,
    stride: IntOrPair = 1,
    padding: Union[IntOrPair, str] = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    *,
    activation: Optional[str] = None,
    residual: Optional[torch.Tensor] = None,
    config: Optional[dict[str, Any]] = None,
) -> torch.Tensor:
    """int8 conv2d with F.conv2d's geometry (int/pair stride, padding incl. "same"/"valid", dilation, groups; NCHW
    or channels_last input; a 3-D (C, H, W) input is a batch of one).

    Args:
        x_q: int8 input (N, C, H, W); real value x = x_q * x_scale.
        w_q: int8 weight (K, C/groups, R, S); real value w[k] = w_q[k] * w_scale[k].
        x_scale: the input's scale, a positive float (a one-element tensor works, but reading it waits for its device).
        w_scale: per-output-channel weight scales, a float tensor of shape (K,) (a number: the same for all).
        bias: float bias (K,) in real units, added after dequantisation.
        out_scale: None for a float32 output; a positive float for an int8 output y_q = sat(round(y / out_scale)).
        activation: None, "relu", "relu6", "silu" or "gelu", applied after bias and residual.
        residual: a float tensor of the output's shape in real units, added before the activation.
        config: an explicit kernel config of the "int8_implicit_gemm" family (missing keys: its default).
    """
    check_tensors(x_q=x_q, w_q=w_q, bias=bias, residual=residual)
    unbatched = x_q.dim() == 3
    if unbatched:
        x_q = x_q.unsqueeze(0)
        residual = residual.unsqueeze(0) if residual is not None else None
    for name, t in (("x_q", x_q), ("w_q", w_q)):
        if t.dtype != torch.int8:
            raise InvalidInputError(f"{name} must be an int8 tensor (quantized values), got {t.dtype}; "
                                    f"quantize it with tritonconv.quantized.quantize_tensor")
    for name, t in (("bias", bias), ("residual", residual)):
        if t is not None and DType.from_torch(t.dtype) not in DType.floats():
            raise InvalidInputError(f"{name} must be float32, float16 or bfloat16 (real units), got {t.dtype}")
    problem = make_problem(x_q, w_q, bias, stride, padding, dilation, groups, residual=residual,
                           activation=activation, quantized=True)
    quant = Quantization(
        scale=(_positive_scale(x_scale, "x_scale") * _weight_scales(w_scale, problem.k, x_q.device)).contiguous(),
        out_scale=None if out_scale is None else _positive_scale(out_scale, "out_scale"),
    )
    if config is not None:
        config = {"family": FAMILY, **check_config(config)}
    output = empty_output(problem, x_q)
    if quant.out_scale is not None:
        output = torch.empty_like(output, dtype=torch.int8)
    run_problem(problem, x_q, w_q, bias, residual, activation or "none", config, output=output, backend="triton", quant=quant)
    return output.squeeze(0) if unbatched else output
