"""`tritonconv.convert`: run a model's convolutions on tritonconv, folding and fusing what follows them.

1. Every `torch.nn.Conv2d` (at any depth) becomes a `tritonconv.nn.Conv2d` sharing its parameters, unless it
   cannot run on tritonconv (float64/integer weights, a subclass with its own forward): those stay and are
   listed in the report with the reason.
2. When the model traces with torch.fx, the graph is searched for
       conv -> BatchNorm2d (eval mode)           : folded into the conv's weight and bias,
       conv -> ReLU/ReLU6/SiLU/GELU              : fused into the conv's epilogue,
       conv -> add(conv_out, identity) [-> act]  : fused as conv(x, residual=identity, activation=act),
   each only where the intermediate result has no other user and the conv module is called once. If the
   graph changed, the result is the traced `torch.fx.GraphModule` (same submodules, rewritten forward).
   When tracing fails, conv -> BatchNorm2d -> activation runs inside `nn.Sequential`s are fused instead
   (BN and activation modules become `nn.Identity`) and the model keeps its class.
The report (`ConversionReport`) is attached to the returned model as `model.tritonconv_report`.
"""
from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch
import torch.fx
from torch import nn

from .enums import Activation, DType, Precision
from .errors import InvalidInputError, TritonConvError
from .nn import Conv2d
from .quantized import QuantizedConv2d, scale_for
from .quantized.calibration import QuantizationAccuracy, calibrate, compare_outputs

# What convert(precision=...) accepts: the float operand precisions and "int8" (quantized convs).
CONVERT_PRECISIONS: tuple[str, ...] = Precision.for_dtype("float32") + Precision.for_dtype("int8")


@dataclass
class ConversionReport:
    """What `convert` did: converted and skipped convs (with reasons), folds and fusions (by module name)."""

    converted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    folded_batchnorms: dict[str, str] = field(default_factory=dict)  # conv name -> BatchNorm2d name
    fused_activations: dict[str, str] = field(default_factory=dict)  # conv name -> activation
    fused_residuals: list[str] = field(default_factory=list)
    traced: bool = False
    trace_error: Optional[str] = None
    precision: Optional[str] = None  # the precision the convs were set to (None: each conv's default)
    input_scales: dict[str, float] = field(default_factory=dict)  # int8: conv name -> calibrated input scale
    accuracy: Optional[QuantizationAccuracy] = None  # int8: the converted model vs the float one, calibration inputs

    def summary(self) -> str:
        lines = [
            f"converted {len(self.converted)} conv(s), skipped {len(self.skipped)}; folded "
            f"{len(self.folded_batchnorms)} BatchNorm2d, fused {len(self.fused_activations)} activation(s) and "
            f"{len(self.fused_residuals)} residual add(s)"
            + ("" if self.traced else f" (torch.fx tracing failed: {self.trace_error}; Sequential fusion only)")
        ]
        if self.precision == "int8":
            lines.append(f"  int8: {len(self.input_scales)} conv(s) quantized (per-channel weights, min-max "
                         f"calibrated inputs)" + (f"; {self.accuracy.summary()}" if self.accuracy else ""))
        lines += [f"  skipped {name}: {reason}" for name, reason in self.skipped.items()]
        return "\n".join(lines)

    __str__ = summary


def convert(
    model: nn.Module,
    *,
    fold_bn: bool = True,
    fuse_activations: bool = True,
    fuse_residuals: bool = True,
    inplace: bool = False,
    precision: Optional[str] = None,
    calibration: Optional[Sequence[Any]] = None,
) -> nn.Module:
    """A model computing the same outputs with tritonconv convolutions (see the module docstring).

    fold_bn folds eval-mode BatchNorm2d layers into the preceding conv (a BatchNorm in training mode is kept);
    fuse_activations / fuse_residuals fuse following activations / residual adds into the conv's epilogue.
    inplace=False (the default) converts a deep copy and leaves `model` untouched.
    precision: None (each conv's default, as tritonconv.conv2d), a float operand precision ("ieee", "tf32",
    "tf32x3", "fp16", "bf16", "fp8": set on every converted conv), or "int8": after the float conversion (folds and
    fusions included) every converted conv becomes a `tritonconv.quantized.QuantizedConv2d` with symmetric
    per-output-channel int8 weights and an int8 input whose scale comes from a min-max calibration pass (the
    largest |input| each conv sees) of the float model over `calibration`, a list of example inputs (tensors,
    or tuples of the model's arguments). The report then holds each conv's input scale and the accuracy of the
    converted model against the float model on the calibration inputs (`report.accuracy`).
    """
    if not isinstance(model, nn.Module):
        raise InvalidInputError(f"convert takes a torch.nn.Module, got {type(model).__name__}")
    if precision is not None and precision not in CONVERT_PRECISIONS:
        raise InvalidInputError(f"precision must be None or one of {', '.join(CONVERT_PRECISIONS)}, got {precision!r}")
    if calibration is not None and precision != "int8":
        raise InvalidInputError("calibration is only used with precision='int8'")
    if precision == "int8":
        max_abs, references = calibrate(model, calibration)  # on the float model as given, before any change
    if not inplace:
        model = copy.deepcopy(model)
    report = ConversionReport(precision=precision)
    model = _convert_float(model, report, fold_bn, fuse_activations, fuse_residuals)
    if precision == "int8":
        model = _quantize_convs(model, report, max_abs)
        report.accuracy = compare_outputs(model, calibration, references)
    elif precision is not None:
        for module in model.modules():
            if isinstance(module, Conv2d):
                module.precision = precision
    _attach(model, report)
    return model


def _convert_float(model: nn.Module, report: ConversionReport, fold_bn: bool, fuse_activations: bool,
                   fuse_residuals: bool) -> nn.Module:
    if type(model) is nn.Conv2d:  # a bare conv: nothing to fuse with
        reason = _unsupported_reason(model)
        if reason:
            report.skipped[""] = reason
        else:
            model = Conv2d.from_conv(model)
            report.converted.append("")
        return model

    _replace_convs(model, report)
    if fold_bn or fuse_activations or fuse_residuals:
        try:
            graph_module = torch.fx.GraphModule(model, _Tracer().trace(model), model.__class__.__name__)
            report.traced = True
        except Exception as error:  # noqa: BLE001 - any tracing failure means "use the fallback"
            report.trace_error = f"{type(error).__name__}: {error}".splitlines()[0][:200]
            _fuse_sequentials(model, report, fold_bn=fold_bn, fuse_activations=fuse_activations)
        else:
            if _fuse_graph(graph_module, report, fold_bn, fuse_activations, fuse_residuals):
                graph_module.graph.lint()
                graph_module.recompile()
                graph_module.delete_all_unused_submodules()  # the folded BatchNorms, fused activations
                model = graph_module
    return model


def _attach(model: nn.Module, report: ConversionReport) -> None:
    object.__setattr__(model, "tritonconv_report", report)


def _quantize_convs(model: nn.Module, report: ConversionReport, max_abs: dict[str, float]) -> nn.Module:
    """Every converted conv replaced by its QuantizedConv2d (input scale from the max|input| calibrated under its
    name; a conv shared by several parents stays shared); convs the calibration never reached, or that cannot
    be quantized, stay float and are listed as skipped. Returns the model (a bare conv is itself replaced)."""
    replaced: dict[int, Optional[nn.Module]] = {}

    def quantized(name: str, conv: Conv2d) -> Optional[nn.Module]:
        if id(conv) not in replaced:
            replaced[id(conv)] = None
            if name not in max_abs:
                report.skipped.setdefault(name, "not reached by the calibration inputs: kept in float")
            else:
                try:
                    replaced[id(conv)] = QuantizedConv2d.from_float(conv, scale_for(max_abs[name]))
                    report.input_scales[name] = replaced[id(conv)]._input_scale
                except TritonConvError as error:
                    report.skipped.setdefault(name, f"kept in float: {error}")
        return replaced[id(conv)]

    if isinstance(model, Conv2d):
        return quantized("", model) or model
    for parent_name, parent in list(model.named_modules(remove_duplicate=False)):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, Conv2d):
                replacement = quantized(f"{parent_name}.{child_name}" if parent_name else child_name, child)
                if replacement is not None:
                    setattr(parent, child_name, replacement)
    return model


# ------------------------------------------------------------------------------------------------------------
# Replacing the convs
# ------------------------------------------------------------------------------------------------------------
def _unsupported_reason(conv: nn.Module) -> Optional[str]:
    if type(conv) is not nn.Conv2d:
        return f"{type(conv).__name__} is a subclass of nn.Conv2d with its own behaviour"
    dtype = DType.from_torch(conv.weight.dtype)
    if dtype is None or dtype.quantized:
        return f"weight dtype {conv.weight.dtype} is not supported (float32, float16 and bfloat16 are)"
    if conv.bias is not None and conv.bias.dtype != conv.weight.dtype:
        return f"bias dtype {conv.bias.dtype} differs from weight dtype {conv.weight.dtype}"
    return None


def _replace_convs(model: nn.Module, report: ConversionReport) -> None:
    """Swap nn.Conv2d children for tritonconv Conv2d everywhere; a conv shared by several parents stays shared."""
    replaced: dict[int, Conv2d] = {}
    for parent_name, parent in list(model.named_modules(remove_duplicate=False)):
        for child_name, child in list(parent.named_children()):
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            if isinstance(child, Conv2d):
                if id(child) not in replaced:
                    report.converted.append(name)
                    replaced[id(child)] = child
                continue
            if not isinstance(child, nn.Conv2d):
                continue
            if id(child) not in replaced:
                reason = _unsupported_reason(child)
                if reason:
                    report.skipped.setdefault(name, reason)
                    continue
                replaced[id(child)] = Conv2d.from_conv(child)
                report.converted.append(name)
            setattr(parent, child_name, replaced[id(child)])


# ------------------------------------------------------------------------------------------------------------
# Folding BatchNorm
# ------------------------------------------------------------------------------------------------------------
def _foldable_batchnorm(conv: Conv2d, bn: nn.Module) -> bool:
    return (
        type(bn) is nn.BatchNorm2d and not bn.training and bn.running_mean is not None
        and bn.num_features == conv.out_channels
    )


@torch.no_grad()
def fold_batchnorm(conv: Conv2d, bn: nn.BatchNorm2d) -> None:
    """conv <- bn(conv): w' = w * g / sqrt(var + eps),  b' = (b - mean) * g / sqrt(var + eps) + beta (in float64)."""
    weight = conv.weight.double()
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    bias = (bias - bn.running_mean.double()) * scale
    if bn.bias is not None:
        bias = bias + bn.bias.double()
    requires_grad = conv.weight.requires_grad
    conv.weight = nn.Parameter((weight * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype), requires_grad)
    conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad)


# ------------------------------------------------------------------------------------------------------------
# Graph fusion (torch.fx)
# ------------------------------------------------------------------------------------------------------------
class _Tracer(torch.fx.Tracer):
    """Keeps tritonconv convs as leaves (fx would otherwise trace into them: they live outside torch.nn)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, Conv2d) or super().is_leaf_module(m, module_qualified_name)


def _sole_user(node: torch.fx.Node) -> Optional[torch.fx.Node]:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _only_tensor_arg(node: torch.fx.Node, source: torch.fx.Node) -> bool:
    """`node` takes `source` as its first argument and no other graph value."""
    return bool(node.args) and node.args[0] is source and node.all_input_nodes == [source]


def _activation_of(node: torch.fx.Node, source: torch.fx.Node, modules: dict[str, nn.Module]) -> Optional[str]:
    """The activation name if `node` applies a fusable activation to `source` and nothing else."""
    if not _only_tensor_arg(node, source):
        return None
    activation = None
    if node.op == "call_module":
        activation = Activation.of_module(modules[node.target])
    elif node.op == "call_function":
        activation = Activation.of_function(node.target, node.args, node.kwargs)
    elif node.op == "call_method" and len(node.args) == 1 and not node.kwargs:
        activation = Activation.of_method(node.target)
    return None if activation is None else activation.value


def _residual_of(node: torch.fx.Node, source: torch.fx.Node) -> Optional[torch.fx.Node]:
    """The other operand if `node` is `source + other` (other a graph value; no alpha), else None."""
    if node.kwargs or len(node.args) != 2:
        return None
    a, b = node.args
    if node.op == "call_function" and node.target in (operator.add, torch.add):
        pass
    elif node.op == "call_function" and node.target is operator.iadd:
        if a is not source:  # `identity += conv_out` would mutate the identity branch
            return None
    elif node.op == "call_method" and node.target == "add":
        pass
    elif node.op == "call_method" and node.target == "add_":
        if a is not source:
            return None
    else:
        return None
    other = b if a is source else a if b is source else None
    if not isinstance(other, torch.fx.Node) or other is source:
        return None
    return other


def _depends_on(node: torch.fx.Node, ancestor: torch.fx.Node) -> bool:
    stack, seen = [node], set()
    while stack:
        current = stack.pop()
        if current is ancestor:
            return True
        if current in seen:
            continue
        seen.add(current)
        stack.extend(current.all_input_nodes)
    return False


def _fuse_graph(
    gm: torch.fx.GraphModule, report: ConversionReport, fold_bn: bool, fuse_activations: bool, fuse_residuals: bool
) -> bool:
    """Rewrite conv -> bn -> (add) -> act chains in place; True if anything changed."""
    graph, modules = gm.graph, dict(gm.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    changed = False

    def absorb(node: torch.fx.Node, into: torch.fx.Node) -> None:
        nonlocal changed
        node.replace_all_uses_with(into)
        graph.erase_node(node)
        changed = True

    for conv_node in list(graph.nodes):
        if conv_node.op != "call_module" or not isinstance(modules.get(conv_node.target), Conv2d):
            continue
        conv: Conv2d = modules[conv_node.target]
        if calls[conv_node.target] != 1 or conv.activation != "none" or len(conv_node.args) != 1 or conv_node.kwargs:
            continue
        name = conv_node.target
        user = _sole_user(conv_node)
        if fold_bn and user is not None and user.op == "call_module":
            bn = modules[user.target]  # shared BatchNorms fold too: in eval mode they are stateless
            if _foldable_batchnorm(conv, bn) and _only_tensor_arg(user, conv_node):
                fold_batchnorm(conv, bn)
                report.folded_batchnorms[name] = user.target
                absorb(user, conv_node)
                user = _sole_user(conv_node)
        if user is None:
            continue
        identity = _residual_of(user, conv_node) if fuse_residuals else None
        if identity is not None and not _depends_on(identity, conv_node):
            if identity not in _ancestors_before(conv_node):
                identity.append(conv_node)  # move the conv after its residual's producer
            conv_node.args = (conv_node.args[0], identity)
            report.fused_residuals.append(name)
            absorb(user, conv_node)
            user = _sole_user(conv_node)
            if user is None:
                continue
        activation = _activation_of(user, conv_node, modules) if fuse_activations else None
        if activation is not None:
            conv.activation = activation
            report.fused_activations[name] = activation
            absorb(user, conv_node)
    return changed


def _ancestors_before(node: torch.fx.Node) -> set:
    """Nodes that come before `node` in the graph's order."""
    before, current = set(), node.prev
    while current.op != "root":
        before.add(current)
        current = current.prev
    return before


# ------------------------------------------------------------------------------------------------------------
# Fallback without tracing: conv -> bn -> act inside nn.Sequential
# ------------------------------------------------------------------------------------------------------------
def _fuse_sequentials(model: nn.Module, report: ConversionReport, *, fold_bn: bool, fuse_activations: bool) -> None:
    uses: dict[int, int] = {}
    for _, module in model.named_modules(remove_duplicate=False):
        uses[id(module)] = uses.get(id(module), 0) + 1
    names = {id(m): name for name, m in model.named_modules()}
    for seq in model.modules():
        if type(seq) is not nn.Sequential:
            continue
        children = list(seq.named_children())
        for i, (_, conv) in enumerate(children):
            if not isinstance(conv, Conv2d) or uses[id(conv)] != 1 or conv.activation != "none":
                continue
            j = i + 1
            if fold_bn and j < len(children) and _foldable_batchnorm(conv, children[j][1]) and uses[id(children[j][1])] == 1:
                fold_batchnorm(conv, children[j][1])
                report.folded_batchnorms[names[id(conv)]] = names[id(children[j][1])]
                setattr(seq, children[j][0], nn.Identity())
                j += 1
            if fuse_activations and j < len(children):
                module = children[j][1]
                fused = Activation.of_module(module)
                activation = None if fused is None else fused.value
                if activation is not None and uses[id(module)] == 1:
                    conv.activation = activation
                    report.fused_activations[names[id(conv)]] = activation
                    setattr(seq, children[j][0], nn.Identity())
