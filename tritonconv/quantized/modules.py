"""`QuantizedConv2d`: a conv module that quantises its float input with a calibrated scale, runs the int8 conv
(int32 accumulation, dequantisation fused) and returns float."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from ..enums import Activation
from ..errors import InvalidInputError
from ..nn import output_shape
from .functional import conv2d
from .quantize import quantize_tensor, quantize_weight


class QuantizedConv2d(nn.Module):
    """y = act(conv(quantize(x, input_scale), weight_q) * input_scale * weight_scale[k] + bias + residual).

    Buffers (in the state_dict): `weight_q` int8 (K, C/groups, R, S), `weight_scale` float32 (K,), `bias` float32
    (K,) or absent, `input_scale` (0-d float). The output is float32, or the input's dtype for float16/bfloat16
    input. Build one from a float `nn.Conv2d` with `from_float(conv, input_scale)`.
    """

    def __init__(self, weight_q: torch.Tensor, weight_scale: torch.Tensor, input_scale: float,
                 bias: Optional[torch.Tensor] = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
                 groups: int = 1, activation: str = "none") -> None:
        super().__init__()
        if activation not in Activation.names():
            raise InvalidInputError(f"activation must be one of {sorted(Activation.names())}, got {activation!r}")
        self.register_buffer("weight_q", weight_q)
        self.register_buffer("weight_scale", weight_scale.to(torch.float32))
        self.register_buffer("input_scale", torch.tensor(float(input_scale), dtype=torch.float32))
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.float32))
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.activation = activation
        self.config: Optional[dict[str, Any]] = None
        self._input_scale = float(input_scale)  # a Python float: no device sync per call

    @classmethod
    def from_float(cls, conv: nn.Conv2d, input_scale: float, *, activation: Optional[str] = None) -> "QuantizedConv2d":
        """Symmetric per-output-channel quantisation of `conv`'s weight; `input_scale` from calibration.
        `activation` defaults to the conv's fused one (a tritonconv.nn.Conv2d's), else none."""
        if conv.padding_mode != "zeros":
            raise InvalidInputError(f"padding_mode {conv.padding_mode!r} is not supported by the int8 conv (zeros only)")
        weight_q, weight_scale = quantize_weight(conv.weight)
        return cls(weight_q, weight_scale, input_scale, conv.bias, conv.stride, conv.padding, conv.dilation,
                   conv.groups, activation or getattr(conv, "activation", "none"))

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._input_scale = float(self.input_scale)

    def extra_repr(self) -> str:
        k, c, r, s = self.weight_q.shape
        text = f"{c * self.groups}, {k}, kernel_size=({r}, {s}), stride={self.stride}, padding={self.padding}"
        text += f", input_scale={self._input_scale:.4g}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return text + (f", activation={self.activation}" if self.activation != "none" else "")

    def forward(self, input: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """activation(dequantised conv + bias + residual). A residual the kernel cannot add (not of the output's
        shape, e.g. broadcasting) is added in PyTorch after the kernel, then the activation."""
        x_q = quantize_tensor(input, self._input_scale)
        fused = residual is None or (input.dim() == 4 and residual.is_floating_point() and tuple(residual.shape) == output_shape(
            input, self.weight_q.shape[0], tuple(self.weight_q.shape[2:]), _pair(self.stride), self.padding, _pair(self.dilation)))
        y = conv2d(x_q, self.weight_q, self._input_scale, self.weight_scale, self.bias, None, self.stride,
                   self.padding, self.dilation, self.groups, activation=self.activation if fused else None,
                   residual=residual if fused else None, config=self.config)
        if not fused:
            y = Activation(self.activation).apply(y + residual)
        return y if input.dtype == torch.float32 else y.to(input.dtype)
