"""Where kernels run: a CUDA GPU, or the CPU through the Triton interpreter (TRITON_INTERPRET=1)."""
from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

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


# The GPUs `tritonconv.compile` builds for without one. A family handed one of these records (the `device`
# argument of its methods) chooses the spaces, defaults and launches it would choose there (capability, SM count,
# opt-in shared memory per block), and nothing asks torch.cuda.
COMPILE_TARGETS: dict[int, DeviceInfo] = {
    80: DeviceInfo("NVIDIA A100-SXM4-80GB (emulated)", (8, 0), 108, 166912, 0),
    90: DeviceInfo("NVIDIA H100 80GB HBM3 (emulated)", (9, 0), 132, 232448, 0),
}


def device_info(device: torch.device | str | int | None = None) -> DeviceInfo:
    """Properties of `device`, the device kernels run on (default: the current CUDA device, else the Triton
    interpreter; a CPU or meta device: the interpreter). Deciding for another GPU means passing its record
    (e.g. a `COMPILE_TARGETS` entry) to the families and the dispatcher, not asking here."""
    if device is None:
        if torch.cuda.is_available():
            return _cuda_device_info(torch.cuda.current_device())
        return INTERPRETER_DEVICE
    device = torch.device(device) if not isinstance(device, int) else torch.device("cuda", device)
    if device.type == "cuda":
        return _cuda_device_info(device.index if device.index is not None else torch.cuda.current_device())
    return INTERPRETER_DEVICE


def gpu_available() -> bool:
    return torch.cuda.is_available()


# ------------------------------------------------------------------------------------------------------------
# Running the command line again under the interpreter
# ------------------------------------------------------------------------------------------------------------
# The child's entry point: never the current directory first on the import path (a ./optuna.py must not be
# imported), the directory holding this package last (it is found when it was only importable from there).
_CHILD_CODE = (
    "import sys\n"
    "if not sys.flags.safe_path: del sys.path[0]\n"
    "sys.path.append({package_parent!r})\n"
    "from tritonconv.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Optional[Callable[[], None]]:
    """A preexec_fn making the child get SIGTERM when this process dies (Linux prctl); None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork: the child only calls it
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def run_cli_interpreted(cli_args: list[str]) -> int:
    """Run `tritonconv <cli_args>` in a child process with TRITON_INTERPRET=1 (Triton reads it when kernels are
    defined, i.e. when tritonconv is imported) and return its exit code. The child dies with this process; Ctrl-C
    reaches it (same process group) and it reports it, while this process waits without a traceback of its own."""
    package_parent = str(Path(__file__).resolve().parent.parent)
    command = [sys.executable, "-c", _CHILD_CODE.format(package_parent=package_parent), *cli_args]
    child = subprocess.Popen(command, env={**os.environ, "TRITON_INTERPRET": "1"}, preexec_fn=_die_with_parent())
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        code = child.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    return 128 - code if code < 0 else code
