"""Weights re-laid-out for a kernel (KRSC or KCRS, optionally cast), and biases made contiguous, prepared once and
cached per tensor.

The cache is keyed by the weight tensor object (weakly) and its in-place version counter, so an optimizer step
or `copy_` invalidates it, and a freed weight frees its prepared copies.
"""
from __future__ import annotations

import weakref
from typing import Callable, Optional

import torch

WEIGHT_LAYOUTS = ("krsc", "kcrs", "rsck")  # rsck: output channels fastest (depthwise/direct kernels)
# id(weight) -> (weak reference to weight, {(*kind, version, data_ptr): prepared tensor}).
# Keyed by identity: tensors compare elementwise, so they cannot be ordinary dict keys.
_prepared: dict[int, tuple[weakref.ref, dict]] = {}


def _entries_for(weight: torch.Tensor) -> dict:
    slot = _prepared.get(id(weight))
    if slot is None or slot[0]() is not weight:
        ident = id(weight)
        slot = (weakref.ref(weight, lambda _: _prepared.pop(ident, None)), {})
        _prepared[ident] = slot
    return slot[1]


def prepare_weight(weight: torch.Tensor, layout: str, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """`weight` (K, C/g, R, S) stored with `layout` as its physical order; logical shape unchanged.

    Kernels index the result through its strides, so only the memory order differs between layouts.
    """
    if layout not in WEIGHT_LAYOUTS:
        raise ValueError(f"unknown weight layout {layout!r}; expected one of {WEIGHT_LAYOUTS}")
    dtype = dtype or weight.dtype
    return prepare_derived(weight, (layout, dtype), lambda w: _relayout(w, layout, dtype))


def prepare_derived(weight: torch.Tensor, kind: tuple, make: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """`make(weight)`, computed once per weight version and `kind` (a hashable description of what `make`
    derives: a layout, a Winograd transform) and cached like the layouts."""
    if weight.device.type == "meta" or torch.compiler.is_compiling():
        return make(weight)
    key = (*kind, weight._version, weight.data_ptr())
    entries = _entries_for(weight)
    prepared = entries.get(key)
    if prepared is None:
        for stale in [k for k in entries if k[-2:] != key[-2:]]:  # older versions of this weight
            del entries[stale]
        prepared = make(weight.detach())
        entries[key] = prepared
    return prepared


def quantize_per_tensor(t: torch.Tensor, dtype: torch.dtype = torch.float8_e4m3fn) -> tuple[torch.Tensor, torch.Tensor]:
    """(t / scale cast to `dtype`, scale) with scale = max|t| / the largest finite `dtype` value (448 for e4m3), a
    one-element float32 tensor on t's device, so the largest magnitude maps to that value (an all-zero t gets a
    tiny scale, not 0). The layout (strides) of a dense t is kept. Computed by torch, which rounds to nearest even, as the GPU does."""
    scale = (t.detach().abs().amax().float().clamp_min(1e-30) / torch.finfo(dtype).max).reshape(1)
    return (t.detach() / scale).to(dtype), scale


def prepare_scaled_weight(weight: torch.Tensor, dtype: torch.dtype = torch.float8_e4m3fn) -> tuple[torch.Tensor, torch.Tensor]:
    """`quantize_per_tensor(weight)`, computed once per weight version and cached like the layouts (kernels
    re-lay out the quantized tensor with `prepare_weight`, cached per quantized tensor in turn)."""
    return prepare_derived(weight, ("scaled", dtype), lambda w: quantize_per_tensor(w, dtype))


def contiguous_vector(vector: torch.Tensor) -> torch.Tensor:
    """A 1-D tensor (a bias) with unit stride: itself when it has one, else a contiguous copy prepared once per
    tensor version (kernels read a bias as `ptr + index`; a slice, an expanded scalar or a matrix column has
    another stride)."""
    if vector.is_contiguous():
        return vector
    if vector.device.type == "meta" or torch.compiler.is_compiling():
        return vector.contiguous()
    key = ("contiguous", vector.dtype, vector._version, vector.data_ptr())
    entries = _entries_for(vector)
    prepared = entries.get(key)
    if prepared is None:
        entries.clear()  # older versions of this view
        prepared = entries[key] = vector.detach().contiguous()
    return prepared


def _relayout(weight: torch.Tensor, layout: str, dtype: torch.dtype) -> torch.Tensor:
    w = weight.to(dtype)
    if layout == "krsc":
        return w.contiguous(memory_format=torch.channels_last)
    if layout == "rsck":
        return w.permute(2, 3, 1, 0).contiguous().permute(3, 2, 0, 1)
    return w.contiguous()
