"""`tritonconv::conv2d`: the conv as a PyTorch custom op, so that torch.compile, CUDA graphs and autograd see one
opaque, well-described operation.

    tritonconv.conv2d -> validate (make_problem) -> torch.ops.tritonconv.conv2d -> dispatch.run_problem -> launch

* The op's arguments are schema-friendly: tensors, int lists, ints and strings (an explicit config travels as a
  JSON string). The problem is rebuilt from them inside the op (memoised, no re-validation).
* The fake (meta) implementation gives the exact output shape and strides (F.conv2d's memory-format rule:
  channels_last when the input or the weight is), so torch.compile(fullgraph=True) traces converted models without graph breaks.
* Dispatch never synchronises with the GPU and never tunes: it uses the cached (or default) config, so a warmed-up
  call can be captured in a CUDA graph and replayed.
* Autograd: the backward pass goes through the fused epilogue (activation derivative, residual and bias
  gradients in PyTorch ops) and then uses ATen's `convolution_backward` (cuDNN on a GPU) for the input and
  weight gradients. Triton kernels are used for the forward pass only; SiLU/GELU recompute their pre-activation
  with one extra forward launch (ReLU/ReLU6 derive their mask from the saved output).
"""
from __future__ import annotations

import json
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F

from . import dispatch
from .enums import Activation, DType
from .problem import ConvProblem, conv_output_size

OP_NAME = "tritonconv::conv2d"

# (shapes, dtype, layout, hyper-parameters, precision) -> ConvProblem; filled by the op and by `register_problem`.
_problems: dict[tuple, ConvProblem] = {}
_configs: dict[str, dict[str, Any]] = {}


def explicit_padding(problem: ConvProblem) -> list[int]:
    """[top, left, bottom, right] padding of `problem` (asymmetric for padding="same" with an even filter)."""
    return [problem.pad_h, problem.pad_w, problem.pad_bottom, problem.pad_right]


def _problem_key(input: torch.Tensor, weight: torch.Tensor, stride, padding, dilation, groups, precision) -> tuple:
    return (
        tuple(input.shape), tuple(weight.shape), input.dtype, dispatch.layout_of(input),
        dispatch.output_layout_of(input, weight), tuple(stride), tuple(padding), tuple(dilation), groups, precision,
    )


def register_problem(problem: ConvProblem, input: torch.Tensor, weight: torch.Tensor) -> None:
    """Remember a validated problem so the op finds it with one dict lookup."""
    key = _problem_key(
        input, weight, (problem.stride_h, problem.stride_w), explicit_padding(problem),
        (problem.dilation_h, problem.dilation_w), problem.groups, problem.precision,
    )
    _problems.setdefault(key, problem)


def _problem_for(input, weight, stride, padding, dilation, groups, precision) -> ConvProblem:
    key = _problem_key(input, weight, stride, padding, dilation, groups, precision)
    problem = _problems.get(key)
    if problem is None:
        n, c, h, w = input.shape
        k, _, r, s = weight.shape
        top, left, bottom, right = padding
        problem = ConvProblem(
            n=n, c=c, h=h, w=w, k=k, r=r, s=s, stride_h=stride[0], stride_w=stride[1], pad_h=top, pad_w=left,
            dilation_h=dilation[0], dilation_w=dilation[1], groups=groups,
            p=conv_output_size(h, r, stride[0], top, bottom, dilation[0]),
            q=conv_output_size(w, s, stride[1], left, right, dilation[1]),
            dtype=DType.from_torch(input.dtype).value, layout=dispatch.layout_of(input), precision=precision,
            output_layout=dispatch.output_layout_of(input, weight),
        )
        _problems[key] = problem
    return problem


def _parse_config(config: Optional[str]) -> Optional[dict[str, Any]]:
    if config is None:
        return None
    parsed = _configs.get(config)
    if parsed is None:
        parsed = _configs[config] = json.loads(config)
    return parsed


def config_to_json(config: Optional[dict[str, Any]]) -> Optional[str]:
    """An explicit config as the op's string argument (sorted keys, so equal configs give equal strings)."""
    return None if config is None else json.dumps(config, sort_keys=True)


@torch.library.custom_op(OP_NAME, mutates_args=())
def conv2d_op(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    residual: Optional[torch.Tensor],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    activation: str,
    precision: str,
    config: Optional[str],
    backend: str,
) -> torch.Tensor:
    """activation(conv2d(input, weight) + bias + residual) for already-validated arguments.

    padding is [top, left, bottom, right]; precision is a resolved operand precision ("tf32", "fp16", ...);
    config is an explicit kernel config as JSON, or None for the cached/default choice.
    """
    problem = _problem_for(input, weight, stride, padding, dilation, groups, precision)
    return dispatch.run_problem(
        problem, input, weight, bias, residual, activation, _parse_config(config), backend=backend
    )


@conv2d_op.register_fake
def _conv2d_fake(input, weight, bias, residual, stride, padding, dilation, groups, activation, precision, config, backend):
    n, _, h, w = input.shape
    k, _, r, s = weight.shape
    top, left, bottom, right = padding
    p = conv_output_size(h, r, stride[0], top, bottom, dilation[0])
    q = conv_output_size(w, s, stride[1], left, right, dilation[1])
    channels_last = dispatch.output_layout_of(input, weight) == "nhwc"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return input.new_empty((n, k, p, q)).contiguous(memory_format=memory_format)


# ------------------------------------------------------------------------------------------------------------
# Autograd
# ------------------------------------------------------------------------------------------------------------
def _setup_context(ctx, inputs, output) -> None:
    input, weight, bias, residual, stride, padding, dilation, groups, activation, precision, config, backend = inputs
    ctx.hyper = (list(stride), list(padding), list(dilation), groups, activation, precision, config, backend)
    ctx.has_bias, ctx.has_residual = bias is not None, residual is not None
    saved_output = output if Activation(activation).grad_from == "output" else None
    ctx.save_for_backward(input, weight, bias, residual, saved_output)


def _preactivation_grad(ctx, grad: torch.Tensor) -> torch.Tensor:
    """d loss / d (conv + bias + residual), i.e. through the fused activation."""
    input, weight, bias, residual, output = ctx.saved_tensors
    stride, padding, dilation, groups, activation, precision, config, backend = ctx.hyper
    rule = Activation(activation)
    if rule.grad_from == "preactivation":
        z = conv2d_op(input, weight, bias, residual, stride, padding, dilation, groups, "none", precision, config, backend)
        return rule.grad(grad, z)
    return rule.grad(grad, output)


def _backward(ctx, grad: torch.Tensor):
    input, weight, _, _, _ = ctx.saved_tensors
    stride, padding, dilation, groups = ctx.hyper[:4]
    grad_z = _preactivation_grad(ctx, grad)
    need_input, need_weight, need_bias, need_residual = ctx.needs_input_grad[:4]

    grad_input = grad_weight = grad_bias = grad_residual = None
    if need_residual:
        grad_residual = grad_z
    if need_bias:
        grad_bias = grad_z.sum(dim=(0, 2, 3))
    if need_input or need_weight:
        top, left, bottom, right = padding
        x, aten_padding = input, [top, left]
        if (top, left) != (bottom, right):  # ATen pads symmetrically: pad explicitly, then crop the gradient
            x, aten_padding = F.pad(input, (left, right, top, bottom)), [0, 0]
        grad_x, grad_weight, _ = torch.ops.aten.convolution_backward(
            grad_z.to(input.dtype), x, weight, None, stride, aten_padding, dilation, False, [0, 0], groups,
            [need_input, need_weight, False],
        )
        if need_input:
            grad_input = grad_x
            if x is not input:
                h, w = input.shape[2:]
                grad_input = grad_x[:, :, top:top + h, left:left + w]
    return grad_input, grad_weight, grad_bias, grad_residual, None, None, None, None, None, None, None, None


conv2d_op.register_autograd(_backward, setup_context=_setup_context)


_PLAIN_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)


def _plain_eager_call(*tensors: Optional[torch.Tensor]) -> bool:
    """True when nothing observes the op: no compile/trace, no dispatch or functorch mode, no tensor subclass
    (fake, functional, DTensor), and no input that autograd must track."""
    if (
        torch.compiler.is_compiling() or torch.jit.is_tracing() or torch._C._len_torch_dispatch_stack()
        or torch._C._is_torch_function_mode_enabled() or torch._C._are_functorch_transforms_active()
    ):
        return False
    grad = torch.is_grad_enabled()
    for t in tensors:
        if t is not None and (type(t) not in _PLAIN_TENSOR_TYPES or (grad and t.requires_grad)):
            return False
    return True


def call(
    problem: ConvProblem,
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    residual: Optional[torch.Tensor],
    activation: str,
    config: Optional[dict[str, Any]],
    backend: str,
) -> torch.Tensor:
    """Run a validated `problem` through the custom op (what `tritonconv.conv2d` does after validation).

    Plain eager calls that need no autograd skip the op's dispatcher round trip (tens of microseconds of Python
    per call) and run its implementation directly: the same `run_problem`, the same result.
    """
    if _plain_eager_call(input, weight, bias, residual):
        return dispatch.run_problem(problem, input, weight, bias, residual, activation, config, backend=backend)
    if not torch.compiler.is_compiling():
        register_problem(problem, input, weight)
    return conv2d_op(
        input, weight, bias, residual, (problem.stride_h, problem.stride_w), explicit_padding(problem),
        (problem.dilation_h, problem.dilation_w), problem.groups, activation, problem.precision,
        config_to_json(config), backend,
    )
