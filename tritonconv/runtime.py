"""Where kernels run: a CUDA GPU, or the CPU through the Triton interpreter (TRITON_INTERPRET=1)."""
from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from typing import Iterator, Optional

import torch

# Triton decides at decoration time whether @triton.jit functions are interpreted, so read the flag once.
INTERPRET: bool = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@dataclass(frozen=True)
class DeviceInfo:
    """What a kernel config depends on: the GPU model, its compute capability and size."""

    name: str
    capability: tuple[int, int]
    sm_count: int
    shared_memory_per_block: int  # opt-in maximum, bytes
    total_memory: int

    @property
    def fingerprint(self) -> str:
        return f"{self.name}|sm{self.capability[0]}{self.capability[1]}|{self.sm_count}sms"


INTERPRETER_DEVICE = DeviceInfo(
    name="triton-interpreter", capability=(0, 0), sm_count=1, shared_memory_per_block=1 << 30, total_memory=0
)


@functools.lru_cache(maxsize=None)
def _cuda_device_info(index: int) -> DeviceInfo:
    props = torch.cuda.get_device_properties(index)
    smem = getattr(props, "shared_memory_per_block_optin", 0) or 48 * 1024
    return DeviceInfo(props.name, (props.major, props.minor), props.multi_processor_count, smem, props.total_memory)


# The GPUs `tritonconv.compile` builds for without one, so families choose the spaces and defaults they would
# choose there (capability, SM count, opt-in shared memory per block).
COMPILE_TARGETS: dict[int, DeviceInfo] = {
    80: DeviceInfo("NVIDIA A100-SXM4-80GB (emulated)", (8, 0), 108, 166912, 0),
    90: DeviceInfo("NVIDIA H100 80GB HBM3 (emulated)", (9, 0), 132, 232448, 0),
}
_emulated: Optional[DeviceInfo] = None


@contextlib.contextmanager
def emulated_device(info: DeviceInfo) -> Iterator[DeviceInfo]:
    """Within the block, device_info() with no device or a non-CUDA one answers `info` (also on a machine with a
    GPU, which is then never queried): only for compiling for a target."""
    global _emulated
    previous, _emulated = _emulated, info
    try:
        yield info
    finally:
        _emulated = previous


def device_info(device: torch.device | str | int | None = None) -> DeviceInfo:
    """Properties of `device` (default: the current CUDA device, or the interpreter on a CPU tensor)."""
    if device is None:
        if _emulated is not None:  # compiling for a target: never query (or initialise) a real GPU
            return _emulated
        if torch.cuda.is_available():
            return _cuda_device_info(torch.cuda.current_device())
        return INTERPRETER_DEVICE
    device = torch.device(device) if not isinstance(device, int) else torch.device("cuda", device)
    if device.type == "cuda":
        return _cuda_device_info(device.index if device.index is not None else torch.cuda.current_device())
    return _emulated or INTERPRETER_DEVICE


def gpu_available() -> bool:
    return torch.cuda.is_available()
