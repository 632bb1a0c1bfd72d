"""Real torchvision models through `convert()` (random weights, eval mode, tiny inputs), layer by layer:

1. the converted model, with every tritonconv conv computing through PyTorch (backend="cudnn": F.conv2d and the
   same fused epilogue), matches the original model: BatchNorm folding, activation and residual fusion;
2. every converted conv, fed the input (and residual) it received in that forward pass, computes with its
   Triton kernel (the default dispatch, output NaN-poisoned) what it computed through PyTorch, within the
   precision's tolerance. Identical layers (same problem, epilogue) run once;
3. every nn.Conv2d of the original model is either converted or listed as skipped with a reason.

torchvision is optional for the library; CI installs it (.ci/setup.sh) and imports it through
tests/torchvision_models.py. In the interpreter the Triton layers of a full model take minutes, so CI checks a
fixed subset of each model's distinct layers (the first conv and the cheapest strided 1x1, other strided,
grouped and dense one); `--deep` checks all of them.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import tritonconv
from tritonconv.nn import Conv2d, output_shape
from tritonconv.enums import Precision, default_precision
from tritonconv.reference import rel_error

from .sweeps.run import poisoned_outputs
from .torchvision_models import import_torchvision

torchvision = import_torchvision()
pytestmark = pytest.mark.skipif(torchvision is None, reason="torchvision is not installed")

MODELS = ("resnet18", "resnext50_32x4d", "mobilenet_v2", "efficientnet_b0", "regnet_y_400mf", "convnext_tiny",
          "deeplabv3_resnet50")
INPUTS = {"batch1-nchw": (1, False), "batch2-channels_last": (2, True)}
SIZE = 32


def _output(y):
    return y["out"] if isinstance(y, dict) else y


def _record_calls(model: nn.Module) -> list[tuple[str, Conv2d, tuple, dict]]:
    calls = []
    for name, module in model.named_modules():
        if isinstance(module, Conv2d):
            module.register_forward_pre_hook(
                lambda mod, args, kwargs, name=name: calls.append((name, mod, args, kwargs)), with_kwargs=True
            )
    return calls


def _layer_key(module: Conv2d, args: tuple, kwargs: dict) -> tuple:
    x = args[0]
    residual = args[1] if len(args) > 1 else kwargs.get("residual")
    return (tuple(x.shape), x.stride(), tuple(module.weight.shape), module.stride, module.padding, module.dilation,
            module.groups, module.activation, residual is not None and residual.stride())


def _macs(call) -> int:
    _, module, args, _ = call
    _, _, p, q = output_shape(args[0], module.out_channels, module.kernel_size, module.stride, module.padding,
                              module.dilation)
    return args[0].shape[0] * p * q * module.weight.numel()


def _selected(calls: list, deep: bool) -> list:
    """The distinct layers of a forward pass: all with `deep`; else the first conv and the cheapest layer of each
    kind present (strided 1x1, other strided, grouped, dense stride 1), as the interpreter is slow."""
    distinct, seen = [], set()
    for call in calls:
        key = _layer_key(*call[1:])
        if key not in seen:
            seen.add(key)
            distinct.append(call)
    if deep:
        return distinct
    kinds = {
        "strided 1x1": lambda m: m.stride != (1, 1) and m.kernel_size == (1, 1),
        "strided": lambda m: m.stride != (1, 1) and m.kernel_size != (1, 1),
        "grouped": lambda m: m.groups > 1,
        "dense": lambda m: m.stride == (1, 1) and m.groups == 1,
    }
    picked = distinct[:1]
    for matches in kinds.values():
        candidates = sorted((c for c in distinct[1:] if matches(c[1]) and c not in picked), key=_macs)
        picked += candidates[:1]
    return picked


@pytest.mark.parametrize("inputs", INPUTS)
@pytest.mark.parametrize("name", MODELS)
def test_converted_model_matches_layer_by_layer(name, inputs, deep):
    batch, channels_last = INPUTS[inputs]
    torch.manual_seed(0)
    backbone = {"weights_backbone": None} if name.startswith("deeplab") else {}  # else it downloads ImageNet weights
    model = torchvision.models.get_model(name, weights=None, **backbone).eval()
    converted = tritonconv.convert(model)
    report = converted.tritonconv_report
    convs = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert set(report.converted) | set(report.skipped) == convs, "every conv is converted or listed as skipped"
    assert all(isinstance(reason, str) and reason for reason in report.skipped.values())

    x = torch.randn(batch, 3, SIZE, SIZE)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        model, converted = model.to(memory_format=torch.channels_last), converted.to(memory_format=torch.channels_last)
    calls = _record_calls(converted)
    for module in converted.modules():
        if isinstance(module, Conv2d):
            module.backend = "cudnn"
    with torch.no_grad():
        expected = _output(model(x)).double()
        through_torch = _output(converted(x))
        assert rel_error(through_torch, expected) < 1e-4, "conversion (folding, fusion) changed the model"
        for layer, module, args, kwargs in _selected(calls, deep):
            reference = module(*args, **kwargs).double()
            module.backend = "triton"
            with poisoned_outputs():
                out = module(*args, **kwargs)
            module.backend = "cudnn"
            tolerance = Precision(module.precision or default_precision("float32")).tolerance
            assert out.shape == reference.shape and out.stride() == reference.stride(), layer
            assert rel_error(out, reference) < tolerance, f"{name} layer {layer}: {tuple(args[0].shape)}"
