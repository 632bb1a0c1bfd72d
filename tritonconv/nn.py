"""`tritonconv.nn.Conv2d`: a drop-in `torch.nn.Conv2d` whose forward runs `tritonconv.conv2d`.

Same constructor, parameters and state_dict as `torch.nn.Conv2d`. Beyond it, `tritonconv.convert` may set a fused
epilogue: `activation` (applied after bias and residual) and the `residual` forward argument.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .enums import Activation
from .errors import InvalidInputError
from .functional import conv2d
from .problem import conv_output_size


def output_shape(input: torch.Tensor, out_channels: int, kernel_size: tuple[int, int], stride: tuple[int, int],
                 padding: Any, dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """The (N, K, P, Q) a conv module's forward gives a 4-D `input` (padding: an int, a pair, "same" or "valid")."""
    n, _, h, w = input.shape
    if padding == "same":
        return n, out_channels, h, w
    pad = (0, 0) if padding == "valid" else (padding, padding) if isinstance(padding, int) else padding
    return (
        n, out_channels,
        conv_output_size(h, kernel_size[0], stride[0], pad[0], pad[0], dilation[0]),
        conv_output_size(w, kernel_size[1], stride[1], pad[1], pad[1], dilation[1]),
    )


class Conv2d(nn.Conv2d):
    """`torch.nn.Conv2d` computed by tritonconv (tuned config from the cache, else the default heuristic).

    Extra attributes (not part of the state_dict):
        activation: fused activation "none", "relu", "relu6", "silu" or "gelu".
        precision: operand precision for float32 (None: what F.conv2d does; see `tritonconv.conv2d`).
        backend: "auto", "triton" or "cudnn" (see `tritonconv.conv2d`).
        config: an explicit kernel config dict, or None for the cached/default one.

    padding_mode "reflect"/"replicate"/"circular" pads in PyTorch first, as `torch.nn.Conv2d` does.
    """

    def __init__(self, *args: Any, activation: str = "none", **kwargs: Any) -> None:
        try:
            super().__init__(*args, **kwargs)
        except (TypeError, ValueError) as error:  # torch.nn.Conv2d's own checks (groups, padding, ...)
            raise InvalidInputError(f"Conv2d: {error}") from None
        self._init_tritonconv(activation)

    def _init_tritonconv(self, activation: str = "none") -> None:
        if activation not in Activation.names():
            raise InvalidInputError(f"activation must be one of {sorted(Activation.names())}, got {activation!r}")
        self.activation = activation
        self.precision: Optional[str] = None
        self.backend = "auto"
        self.config: Optional[dict[str, Any]] = None

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, *, activation: str = "none") -> "Conv2d":
        """A tritonconv Conv2d sharing `conv`'s parameters, buffers and hooks (no copy)."""
        if not isinstance(conv, nn.Conv2d):
            raise InvalidInputError(f"expected a torch.nn.Conv2d, got {type(conv).__name__}")
        new = cls.__new__(cls)
        # Own copies of the parameter/buffer/hook dicts, holding the same tensors.
        new.__dict__.update({k: v.copy() if isinstance(v, dict) else v for k, v in conv.__dict__.items()})
        new._init_tritonconv(activation)
        return new

    def extra_repr(self) -> str:
        extra = super().extra_repr()
        if self.activation != "none":
            extra += f", activation={self.activation}"
        return extra

    def _fusable_residual(self, input: torch.Tensor, residual: torch.Tensor, padding: Any) -> bool:
        """The kernel adds a residual of exactly the output's shape and dtype; anything else (broadcasting,
        another dtype) is added in PyTorch instead."""
        if input.dim() != 4 or residual.dtype != input.dtype:
            return False
        return tuple(residual.shape) == output_shape(input, self.out_channels, self.kernel_size, self.stride, padding, self.dilation)

    def forward(self, input: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """activation(conv(input) + bias + residual)."""
        padding: Any = self.padding
        if self.padding_mode != "zeros":
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        if residual is not None and not self._fusable_residual(input, residual, padding):
            y = conv2d(input, self.weight, self.bias, self.stride, padding, self.dilation, self.groups,
                       config=self.config, precision=self.precision, backend=self.backend)
            return Activation(self.activation).apply(y + residual)
        return conv2d(
            input, self.weight, self.bias, self.stride, padding, self.dilation, self.groups,
            activation=self.activation, residual=residual, config=self.config, precision=self.precision,
            backend=self.backend,
        )
