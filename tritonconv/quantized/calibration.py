"""Min-max calibration of activation scales and the accuracy of a quantised model against its float original.

`calibrate` runs the float model over the user's example inputs with forward pre-hooks on every `nn.Conv2d` and
records the largest input magnitude each conv saw (min-max: the symmetric range [-max|x|, max|x|] maps onto
[-127, 127]; no percentile clipping or histogram search). `compare_outputs` measures how far the int8 model's
outputs are from the float model's on the same inputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from ..errors import InvalidInputError
from ..reference import rel_error


@dataclass(frozen=True)
class QuantizationAccuracy:
    """The int8 model's outputs vs the float model's on the calibration inputs (float64, all float outputs of
    an example flattened together): per example the relative error ||q - f|| / ||f||; its max and mean over the
    examples; and the largest elementwise |q - f| relative to the largest |f|."""

    max_rel_error: float
    mean_rel_error: float
    max_abs_error_vs_range: float
    examples: int

    def summary(self) -> str:
        return (f"int8 vs float on {self.examples} calibration input(s): relative error max {self.max_rel_error:.3g}, "
                f"mean {self.mean_rel_error:.3g}; max |error| {self.max_abs_error_vs_range:.3g} of the output range")


def as_args(example: Any) -> tuple:
    """One calibration example as the model's positional arguments (a tensor, or a tuple/list of arguments)."""
    return tuple(example) if isinstance(example, (tuple, list)) else (example,)


def check_calibration(calibration: Any) -> list[tuple]:
    if calibration is None:
        raise InvalidInputError("precision='int8' needs calibration=[example inputs...] to choose activation scales")
    if isinstance(calibration, torch.Tensor) or not isinstance(calibration, (list, tuple)) or not calibration:
        raise InvalidInputError("calibration must be a non-empty list of example inputs (tensors, or tuples of "
                                f"the model's arguments), got {type(calibration).__name__}")
    examples = [as_args(example) for example in calibration]
    for i, args in enumerate(examples):
        if not any(isinstance(a, torch.Tensor) and a.is_floating_point() for a in args):
            raise InvalidInputError(f"calibration[{i}] has no float tensor: each example is the model's input(s)")
    return examples


def calibrate(model: nn.Module, calibration: Sequence[Any]) -> tuple[dict[str, float], list[Any]]:
    """Run `model` (no grad) over the examples; returns (the largest |input| each nn.Conv2d saw, by qualified
    name; the model's outputs, one per example). Convs the examples never reach are absent."""
    examples = check_calibration(calibration)
    max_abs: dict[str, float] = {}
    handles = []

    def observer(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            seen = float(args[0].detach().abs().max()) if args[0].numel() else 0.0
            max_abs[name] = max(seen, max_abs.get(name, 0.0))
        return hook

    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_pre_hook(observer(name)))
    try:
        with torch.no_grad():
            outputs = [model(*args) for args in examples]
    finally:
        for handle in handles:
            handle.remove()
    return max_abs, outputs


def _flat(output: Any) -> torch.Tensor:
    leaves = [t.detach().double().flatten() for t in tree_leaves(output) if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if not leaves:
        raise InvalidInputError("the model's output has no float tensor to compare")
    return torch.cat([leaf.cpu() for leaf in leaves])


def compare_outputs(model: nn.Module, calibration: Sequence[Any], references: Sequence[Any]) -> QuantizationAccuracy:
    """Run the (quantised) `model` on the examples and compare with the float `references` (see QuantizationAccuracy)."""
    rel, abs_vs_range = [], []
    with torch.no_grad():
        for args, reference in zip(check_calibration(calibration), references):
            out, ref = _flat(model(*args)), _flat(reference)
            rel.append(rel_error(out, ref))
            abs_vs_range.append(((out - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item())
    return QuantizationAccuracy(max(rel), sum(rel) / len(rel), max(abs_vs_range), len(rel))
