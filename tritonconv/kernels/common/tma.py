"""Tensor descriptors (TMA) and what compute capability 9.0+ adds, for the families that build for it."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import triton

from ...runtime import INTERPRET

TMA_ALIGNMENT = 16  # bytes: tensor-descriptor base pointers and leading strides


def hopper(capability: tuple[int, int]) -> bool:
    """TMA and warpgroup MMA (sm_90+)."""
    return capability >= (9, 0)


def warp_specializes(capability: tuple[int, int]) -> bool:
    """Whether `tl.range(..., warp_specialize=True)` splits warps into producer/consumer partitions. Triton 3.6
    does so only from sm_100: on sm_90 it makes no partitions (no `ttg.warp_specialize` in the compiled TTGIR,
    checked in tests/compile/test_compile_targets.py), so offering it there would only double the search."""
    return capability >= (10, 0)


def _tma_allocator(size: int, alignment: int, stream: Optional[int]) -> torch.Tensor:
    """Global scratch for device-side tensor descriptors (Triton asks for it at launch)."""
    return torch.empty(size, device="cuda", dtype=torch.int8)


def tma_aligned(tensor: torch.Tensor, strides: Sequence[int]) -> bool:
    """Whether TMA may read `tensor` through a descriptor with these leading (non-unit) element strides: each, and
    the base pointer (not known for meta tensors), 16-byte aligned."""
    elem = tensor.element_size()
    return all((stride * elem) % TMA_ALIGNMENT == 0 for stride in strides) and (
        tensor.device.type == "meta" or tensor.data_ptr() % TMA_ALIGNMENT == 0
    )


def enable_device_descriptors() -> None:
    """Kernels that build tensor descriptors on the device need an allocator; set it (cheap, per context)."""
    if not INTERPRET:
        triton.set_allocator(_tma_allocator)
