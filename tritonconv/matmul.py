"""`tritonconv.matmul`: C = activation(A @ B + bias + residual) through the same problem/dispatch/cache path as
conv2d.

C[m, n] = A[m, k] @ B[k, n] is the 1x1 convolution ConvProblem(n=batch, c=k, h=1, w=m, k=n, r=s=1): A is viewed
as an (batch, k, 1, m) input and B^T as the (n, k, 1, 1) weight, both through strides (no copies), so tuning and
the cache work for GEMMs unchanged. A batched B (one per batch) sets `ConvProblem.batched_weight`.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch

from .errors import InvalidInputError
from .dispatch import run_problem
from .tensor_checks import check_device, check_dtype, check_tensors
from .kernels.base import check_config
from .kernels.gemm import GemmConv
from .enums import Activation, Precision, default_matmul_precision
from .problem import ConvProblem
from .runtime import DeviceInfo


def matmul_problem(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    bias: Optional[torch.Tensor] = None,
    residual: Optional[torch.Tensor] = None,
    activation: Optional[str] = None,
    precision: Optional[str] = None,
) -> ConvProblem:
    """Validate matmul arguments and describe them as the equivalent 1x1 ConvProblem; raise clear errors."""
    check_tensors(a=a, b=b, bias=bias, residual=residual)
    if a.dim() < 2:
        raise InvalidInputError(f"a must be at least 2-D [..., m, k], got shape {tuple(a.shape)}")
    if b.dim() not in (2, 3):
        raise InvalidInputError(f"b must be 2-D [k, n] or batched 3-D [B, k, n], got shape {tuple(b.shape)}")
    if b.dim() == 3 and (a.dim() != 3 or a.shape[0] != b.shape[0]):
        raise InvalidInputError(
            f"a batched b {tuple(b.shape)} needs a 3-D a [B, m, k] with the same batch B, got a {tuple(a.shape)}"
        )
    if a.shape[-1] != b.shape[-2]:
        raise InvalidInputError(
            f"inner dimensions differ: a {tuple(a.shape)} has k={a.shape[-1]}, b {tuple(b.shape)} has k={b.shape[-2]}"
        )
    dtype = check_dtype(a, "a")
    for name, t in (("b", b), ("bias", bias), ("residual", residual)):
        if t is not None and t.dtype != a.dtype:
            raise InvalidInputError(f"{name} dtype {t.dtype} does not match a's dtype {a.dtype}")
    check_device({"a": a, "b": b, "bias": bias, "residual": residual})
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    out_shape = (*a.shape[:-1], n)
    if bias is not None and tuple(bias.shape) != (n,):
        raise InvalidInputError(f"bias must have shape ({n},), got {tuple(bias.shape)}")
    if residual is not None and tuple(residual.shape) != out_shape:
        raise InvalidInputError(f"residual must have the output's shape {out_shape}, got {tuple(residual.shape)}")
    if activation is not None and activation not in Activation.names():
        raise InvalidInputError(f"activation must be one of {sorted(Activation.names())} or None, got {activation!r}")
    if precision is not None and precision not in Precision.for_dtype(dtype):
        raise InvalidInputError(f"precision {precision!r} is not available for {dtype}; choose from {Precision.for_dtype(dtype)}")
    batch = math.prod(a.shape[:-2])
    row_major = a.stride(-1) == 1 or k == 1
    b_row_major = b.stride(-1) == 1 and b.stride(-2) != 1 and n > 1  # then the conv weight B^T has K contiguous
    return ConvProblem(
        n=batch, c=k, h=1, w=m, k=n, r=1, s=1, dtype=dtype, layout="nhwc" if row_major else "nchw",
        precision=precision or default_matmul_precision(dtype), batched_weight=b.dim() == 3,
        weight_layout="ck" if b_row_major else "kc",
    )


def _as_conv_input(t: torch.Tensor) -> torch.Tensor:
    """[B, m, c] viewed as an (N=B, C=c, H=1, W=m) conv tensor (a view: strides only)."""
    return t.permute(0, 2, 1).unsqueeze(2)


def matmul(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    bias: Optional[torch.Tensor] = None,
    activation: Optional[str] = None,
    residual: Optional[torch.Tensor] = None,
    config: Optional[dict[str, Any]] = None,
    precision: Optional[str] = None,
    out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """activation(a @ b + bias + residual) on Triton kernels, tuned and cached like conv2d.

    Args:
        a: [..., m, k] (any leading batch dims, any strides).
        b: [k, n] shared by every batch, or [B, k, n] (then a must be [B, m, k]).
        bias: [n], added to every row. residual: a tensor of the output's shape [..., m, n].
        activation: None/"none", "relu", "relu6", "silu" or "gelu" (exact), applied last.
        config: an explicit kernel config (key "family" picks the family, default "gemm"'s heuristic).
        precision: "ieee", "tf32", "tf32x3", "fp16" or "bf16" for float32 inputs. Default: torch.matmul's,
            i.e. TF32 only when torch.backends.cuda.matmul.allow_tf32 is True (PyTorch's default is False, so
            "ieee"). float16/bfloat16 inputs compute in their own type. Accumulation is always float32.

        out: optional contiguous [..., m, n] tensor of a's dtype to write the result into.

    Returns the result [..., m, n] in a's dtype (`out` when given).
    """
    problem = matmul_problem(a, b, bias=bias, residual=residual, activation=activation, precision=precision)
    check_tensors(out=out)
    if config is not None:
        config = {"family": GemmConv.name, **check_config(config)}  # an explicit matmul config means the gemm family by default
    out_shape = (*a.shape[:-2], a.shape[-2], b.shape[-1])
    if out is None:
        out = torch.empty(out_shape, dtype=a.dtype, device=a.device)
    elif tuple(out.shape) != out_shape or out.dtype != a.dtype or out.device != a.device or not out.is_contiguous():
        raise InvalidInputError(
            f"out must be a contiguous {a.dtype} tensor of shape {out_shape} on {a.device}, got "
            f"{out.dtype} {tuple(out.shape)} on {out.device}"
        )
    return run_matmul(problem, a, b, out, bias=bias, activation=activation, residual=residual, config=config)


def run_matmul(
    problem: ConvProblem,
    a: torch.Tensor,
    b: torch.Tensor,
    out: torch.Tensor,
    *,
    bias: Optional[torch.Tensor] = None,
    activation: Optional[str] = None,
    residual: Optional[torch.Tensor] = None,
    config: Optional[dict[str, Any]] = None,
    target: Optional[DeviceInfo] = None,
) -> torch.Tensor:
    """`matmul` after validation: a @ b (the `matmul_problem` of the arguments) with its epilogue into the
    contiguous `out`, through `dispatch.run_problem`, which decides for `target` (None: this process's device)."""
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    result, out = out, out.view(problem.n, m, n)
    if out.numel() == 0:
        return result
    if k == 0:  # empty reduction: the product is zero, only the epilogue remains
        out.zero_()
        out += 0 if bias is None else bias
        out += 0 if residual is None else residual.reshape(out.shape)
        out.copy_(_torch_activation(out, activation))
        return result
    x = _as_conv_input(a.reshape(problem.n, m, k))
    if problem.batched_weight:
        weight = b.permute(0, 2, 1)[..., None, None]  # (B, n, k, 1, 1)
    else:
        weight = b.t()[..., None, None]  # (n, k, 1, 1)
    res = None if residual is None else _as_conv_input(residual.reshape(problem.n, m, n))
    run_problem(
        problem, x, weight, bias, res, activation or "none", config, output=_as_conv_input(out), backend="triton",
        target=target,
    )
    return result


def _torch_activation(y: torch.Tensor, activation: Optional[str]) -> torch.Tensor:
    return Activation.parse(activation).apply(y)
