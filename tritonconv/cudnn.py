"""The cuDNN path: F.conv2d plus the same epilogue in PyTorch ops. Used where tuning measured cuDNN faster
(backend="auto") or explicitly (backend="cudnn"), and as the baseline every tuned problem is timed against."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .enums import Activation
from .kernels.base import Config, ConvTensors
from .problem import ConvProblem
from .runtime import DeviceInfo

def cudnn_conv2d(problem: ConvProblem, tensors: ConvTensors) -> torch.Tensor:
    """F.conv2d for `problem` (explicit asymmetric padding handled) followed by act(y + bias + residual). A
    batched weight (one per image: a batched matmul, always 1x1) goes to cuBLAS through torch.matmul instead."""
    x = tensors.input
    if problem.batched_weight:
        y = torch.matmul(tensors.weight.flatten(2), x.flatten(2)).view(problem.output_shape)  # [n,k,c] @ [n,c,h*w]
        return _epilogue(y if tensors.bias is None else y + tensors.bias[:, None, None], tensors)
    bottom, right = problem.pad_bottom, problem.pad_right
    if (bottom, right) != (problem.pad_h, problem.pad_w):
        x = F.pad(x, (problem.pad_w, right, problem.pad_h, bottom))
        padding: tuple[int, int] = (0, 0)
    else:
        padding = (problem.pad_h, problem.pad_w)
    y = F.conv2d(
        x, tensors.weight, tensors.bias, (problem.stride_h, problem.stride_w), padding,
        (problem.dilation_h, problem.dilation_w), problem.groups,
    )
    return _epilogue(y, tensors)


def _epilogue(y: torch.Tensor, tensors: ConvTensors) -> torch.Tensor:
    if tensors.residual is not None:
        y = y + tensors.residual
    return Activation(tensors.activation).apply(y)


class CudnnConv:
    """Duck-types the part of KernelFamily the dispatcher uses; not a Triton family, never searched over."""

    name = "cudnn"

    def launch(
        self, problem: ConvProblem, tensors: ConvTensors, config: Optional[Config] = None, device: Optional[DeviceInfo] = None,
    ) -> list:
        """F.conv2d into the output; `device` (the dispatcher's target) changes nothing: cuDNN picks its own."""
        tensors.output.copy_(cudnn_conv2d(problem, tensors))
        return []
