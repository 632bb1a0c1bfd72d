"""`tritonconv.conv2d`: F.conv2d's signature and semantics, plus a fused epilogue, on Triton kernels.

The one dispatch path:  conv2d() -> validate -> ConvProblem -> custom op tritonconv::conv2d (tritonconv.ops)
    -> dispatch.run_problem -> config (explicit > cached > default) -> launch.
"""
from __future__ import annotations

import operator
from typing import Any, Optional, Union

import torch

from . import dispatch, ops
from .errors import InvalidInputError, UnsupportedError
from .kernels.base import check_config
from .enums import Activation, DType, Precision
from .problem import ConvProblem, conv_output_size
from .tensor_checks import check_device, check_dtype, check_tensors

IntOrPair = Union[int, tuple[int, int], list[int]]


def _index(value: Any) -> Optional[int]:
    """`value` as an int if it is integer-like (operator.index: int, numpy integer, 0-d integer tensor), like the
    ints F.conv2d accepts; None for anything else, bools included (F.conv2d rejects those too)."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _pair(value: Any, name: str) -> tuple[int, int]:
    values = list(value) if isinstance(value, (tuple, list)) else [value]
    ints = [_index(v) for v in values]
    if len(ints) in (1, 2) and None not in ints:
        return (ints[0], ints[-1])
    raise InvalidInputError(f"{name} must be an int or a pair of ints, got {value!r}")


def make_problem(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    stride: IntOrPair = 1,
    padding: Union[IntOrPair, str] = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    *,
    residual: Optional[torch.Tensor] = None,
    precision: Optional[str] = None,
    activation: Optional[str] = None,
    quantized: bool = False,
) -> ConvProblem:
    """Validate F.conv2d-style arguments (4-D input) and describe them as a ConvProblem; raise clear errors.
    `quantized`: an int8 input and weight with a float bias and residual (tritonconv.quantized checks their dtypes)."""
    check_tensors(input=input, weight=weight, bias=bias, residual=residual)
    if input.dim() != 4:
        raise InvalidInputError(f"input must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {tuple(input.shape)}")
    if weight.dim() != 4:
        raise InvalidInputError(f"weight must be 4-D (K, C/groups, R, S), got shape {tuple(weight.shape)}")
    group_count = _index(groups)
    if group_count is None or group_count < 1:
        raise InvalidInputError(f"groups must be a positive int, got {groups!r}")
    groups = group_count
    stride_hw, dilation_hw = _pair(stride, "stride"), _pair(dilation, "dilation")
    if min(stride_hw) < 1:
        raise InvalidInputError(f"stride must be positive, got {stride!r}")
    if min(dilation_hw) < 1:
        raise InvalidInputError(f"dilation must be positive, got {dilation!r}")
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise InvalidInputError(f"padding must be 'same', 'valid', an int or a pair of ints, got {padding!r}")
        if padding == "same" and stride_hw != (1, 1):
            raise InvalidInputError("padding='same' is not supported for strided convolutions (as in F.conv2d)")
    else:
        padding_hw = _pair(padding, "padding")
        if min(padding_hw) < 0:
            raise InvalidInputError(f"padding must be non-negative, got {padding!r}")
    n, c, h, w = input.shape
    k, c_per_group, r, s = weight.shape
    if c % groups:
        raise InvalidInputError(f"input channels C={c} are not divisible by groups={groups}")
    if k % groups:
        raise InvalidInputError(f"output channels K={k} (weight.shape[0]) are not divisible by groups={groups}")
    if c_per_group * groups != c:
        raise InvalidInputError(
            f"weight shape {tuple(weight.shape)} expects {c_per_group * groups} input channels "
            f"(weight.shape[1] * groups), but input has C={c}"
        )
    if k == 0 or c == 0 or r == 0 or s == 0:
        raise InvalidInputError(f"weight shape {tuple(weight.shape)} and input channels {c} must be non-zero")
    if bias is not None and tuple(bias.shape) != (k,):
        raise InvalidInputError(f"bias must have shape ({k},), got {tuple(bias.shape)}")

    # Padding: ints/pairs are symmetric; "same" pads the total dilation*(R-1) with the extra one at the end.
    if isinstance(padding, str) and padding == "valid":
        pads = ((0, 0), (0, 0))
    elif isinstance(padding, str):  # "same"
        total = (dilation_hw[0] * (r - 1), dilation_hw[1] * (s - 1))
        pads = ((total[0] // 2, total[0] - total[0] // 2), (total[1] // 2, total[1] - total[1] // 2))
    else:
        pads = ((padding_hw[0], padding_hw[0]), (padding_hw[1], padding_hw[1]))
    p = conv_output_size(h, r, stride_hw[0], pads[0][0], pads[0][1], dilation_hw[0])
    q = conv_output_size(w, s, stride_hw[1], pads[1][0], pads[1][1], dilation_hw[1])
    if p <= 0 or q <= 0:
        raise InvalidInputError(
            f"output size {p}x{q} is not positive: input {h}x{w} with padding {pads[0][0]}+{pads[0][1]}, "
            f"{pads[1][0]}+{pads[1][1]} is smaller than the dilated filter "
            f"{dilation_hw[0] * (r - 1) + 1}x{dilation_hw[1] * (s - 1) + 1}"
        )
    if residual is not None and tuple(residual.shape) != (n, k, p, q):
        raise InvalidInputError(f"residual must have the output's shape {(n, k, p, q)}, got {tuple(residual.shape)}")
    if activation is not None and activation not in Activation.names():
        raise InvalidInputError(f"activation must be one of {sorted(Activation.names())} or None, got {activation!r}")
    # Dtypes after the arguments: a bad argument is named whatever the dtype; mismatches before unsupported types.
    for name, t in (("weight", weight), ("bias", bias), ("residual", residual)):
        if t is not None and t.dtype != input.dtype and not (quantized and name != "weight"):
            raise InvalidInputError(f"{name} dtype {t.dtype} does not match input dtype {input.dtype}")
    dtype = DType.from_torch(input.dtype).value if quantized else check_dtype(input, "input")
    check_device({"input": input, "weight": weight, "bias": bias, "residual": residual})
    if precision is not None and precision not in Precision.for_dtype(dtype):
        raise InvalidInputError(f"precision {precision!r} is not available for {dtype}; choose from {Precision.for_dtype(dtype)}")
    if precision is not None and input.device.type == "cuda":
        need, have = Precision(precision).min_capability, torch.cuda.get_device_capability(input.device)
        if have < need:
            raise UnsupportedError(f"precision {precision!r} needs a GPU with compute capability >= "
                                   f"{need[0]}.{need[1]} (fp8 tensor cores); {input.device} has {have[0]}.{have[1]}")

    return ConvProblem(
        n=n, c=c, h=h, w=w, k=k, r=r, s=s, stride_h=stride_hw[0], stride_w=stride_hw[1],
        pad_h=pads[0][0], pad_w=pads[1][0], dilation_h=dilation_hw[0], dilation_w=dilation_hw[1],
        groups=groups, p=p, q=q, dtype=dtype, layout=dispatch.layout_of(input), precision=precision or "",
        output_layout=dispatch.output_layout_of(input, weight),
    )


def conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    stride: IntOrPair = 1,
    padding: Union[IntOrPair, str] = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    *,
    activation: Optional[str] = None,
    residual: Optional[torch.Tensor] = None,
    config: Optional[dict[str, Any]] = None,
    precision: Optional[str] = None,
    backend: str = "auto",
) -> torch.Tensor:
    """2-D convolution with F.conv2d's semantics, computing  activation(conv(input, weight) + bias + residual).

    Args beyond F.conv2d's:
        activation: None/"none", "relu", "relu6", "silu" or "gelu" (exact), applied last.
        residual: a tensor of the output's shape added before the activation (ResNet's identity branch).
        config: an explicit kernel config (a dict; key "family" picks the family, "implicit_gemm" if absent;
            missing keys use the family's default). Without it, a tuned config from the cache is used, else the default heuristic.
        precision: operand precision: "ieee", "tf32", "tf32x3", "fp16", "bf16" for float32 inputs; float16 and
            bfloat16 inputs compute in their own type; "fp8" (any float input, sm_89+ GPUs): e4m3 operands with
            per-tensor scales (see tritonconv.enums.Precision.FP8). Default: what F.conv2d does (tf32 for float32 when
            torch.backends.cudnn.allow_tf32, which is PyTorch's default). Accumulation is always float32.
        backend: "auto" (default) runs the tuned choice, which is cuDNN for problems where tuning measured
            cuDNN faster; "triton" always runs a Triton kernel; "cudnn" always runs F.conv2d + the epilogue.

    The output has the input's dtype and F.conv2d's memory format (channels_last when the input or the weight
    is channels_last). A 3-D (C, H, W)
    input is treated as a batch of one, like F.conv2d.
    """
    unbatched = isinstance(input, torch.Tensor) and input.dim() == 3
    if unbatched:
        input = input.unsqueeze(0)
        if residual is not None:
            residual = residual.unsqueeze(0)
    problem = _validated_problem(input, weight, bias, stride, padding, dilation, groups, residual, precision, activation)
    if not isinstance(backend, str) or backend not in dispatch.BACKENDS:
        raise InvalidInputError(f"backend must be one of {dispatch.BACKENDS}, got {backend!r}")
    if config is not None:
        check_config(config)
    output = ops.call(problem, input, weight, bias, residual, activation or "none", config, backend)
    return output.squeeze(0) if unbatched else output


# Validated problems by argument signature: a repeated call skips make_problem's checks (one dict lookup).
_validated: dict[tuple, ConvProblem] = {}


def _signature(t: Optional[torch.Tensor]) -> Optional[tuple]:
    return None if t is None else (t.shape, t.stride(), t.dtype, t.device)


def _validated_problem(input, weight, bias, stride, padding, dilation, groups, residual, precision, activation) -> ConvProblem:
    """make_problem(...), memoised on everything it depends on (shapes, strides, dtypes, devices, arguments)."""
    if torch.compiler.is_compiling() or not isinstance(input, torch.Tensor) or not isinstance(weight, torch.Tensor):
        return make_problem(input, weight, bias, stride, padding, dilation, groups,
                            residual=residual, precision=precision, activation=activation)
    # repr, not the values: 1, 1.0 and True are equal as keys, but make_problem accepts only the first.
    hyper = repr((stride, padding, dilation, groups, precision, activation))
    try:
        key = (
            _signature(input), _signature(weight), _signature(bias), _signature(residual), hyper,
            precision is None and torch.backends.cudnn.allow_tf32,
        )
    except (RuntimeError, AttributeError, TypeError, NotImplementedError):  # sparse/nested/non-tensor: say which
        return make_problem(input, weight, bias, stride, padding, dilation, groups,
                            residual=residual, precision=precision, activation=activation)
    problem = _validated.get(key)
    if problem is None:
        problem = _validated[key] = make_problem(input, weight, bias, stride, padding, dilation, groups,
                                                 residual=residual, precision=precision, activation=activation)
    return problem
