"""tritonconv.runtime: which device kernels see (a CUDA GPU, or the interpreter on the CPU), its fingerprint
(the key tuned winners are stored under), the compile targets, and re-running the CLI under the interpreter."""
from __future__ import annotations

import os

import pytest
import torch

from tritonconv import runtime
from tritonconv.runtime import COMPILE_TARGETS, INTERPRETER_DEVICE, DeviceInfo, device_info, run_cli_interpreted


def test_the_interpret_flag_is_read_from_the_environment_at_import():
    assert runtime.INTERPRET == (os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the answer without a GPU")
def test_without_a_gpu_every_device_is_the_interpreter():
    assert device_info() is INTERPRETER_DEVICE
    assert device_info("cpu") is INTERPRETER_DEVICE and device_info(torch.device("cpu")) is INTERPRETER_DEVICE
    assert INTERPRETER_DEVICE.capability == (0, 0) and INTERPRETER_DEVICE.sm_count == 1


@pytest.mark.gpu
def test_a_gpu_reports_its_own_properties():
    props = torch.cuda.get_device_properties(0)
    info = device_info(0)
    assert info == device_info("cuda:0") and info.capability == (props.major, props.minor)
    assert info.sm_count == props.multi_processor_count and info.total_memory == props.total_memory


def test_the_fingerprint_names_model_capability_and_size():
    info = DeviceInfo("NVIDIA L4", (8, 9), 58, 101376, 0)
    assert info.fingerprint == "NVIDIA L4|sm89|58sms"
    assert info.fingerprint != DeviceInfo("NVIDIA L4", (8, 9), 60, 101376, 0).fingerprint
    assert INTERPRETER_DEVICE.fingerprint == "triton-interpreter|sm00|1sms"


def test_compile_targets_are_the_gpus_their_keys_name():
    assert set(COMPILE_TARGETS) == {80, 90}
    for arch, info in COMPILE_TARGETS.items():
        assert info.capability == (arch // 10, arch % 10) and info.sm_count > 100
        assert info.shared_memory_per_block > 160 * 1024
    assert len({info.fingerprint for info in COMPILE_TARGETS.values()}) == len(COMPILE_TARGETS)


def test_the_cli_reruns_itself_under_the_interpreter_and_returns_the_childs_exit_code(monkeypatch, capfd):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # the child gets it from run_cli_interpreted
    assert run_cli_interpreted(["info"]) == 0
    out = capfd.readouterr().out
    assert "active (TRITON_INTERPRET=1)" in out and "triton-interpreter" in out
    assert run_cli_interpreted(["tune", "--c", "4"]) == 2  # bad usage
    assert "missing" in capfd.readouterr().err
