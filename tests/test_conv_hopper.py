"""The Hopper implicit-GEMM family: supports() by capability, numerics in the interpreter (which emulates tensor
descriptors), and real compiles for sm_90 (HGMMA, no spills) beside the GEMM family's sm_80/sm_90 defaults."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tritonconv.functional import empty_output, make_problem
from tritonconv.kernels import ConvTensors, get_family
from tritonconv.kernels.conv_hopper import supports_on

from .helpers import TOLERANCE, random_conv_inputs, reference_conv2d, rel_error


def test_supports_by_capability():
    x, w, _ = random_conv_inputs(1, 16, 6, 6, 8, 16, 3, 3, channels_last=True)
    problem = make_problem(x, w, padding=1, precision="tf32")
    assert "9.0" in supports_on(problem, (8, 0))
    assert supports_on(problem, (9, 0)) is None
    assert supports_on(problem.with_(precision="ieee"), (9, 0))  # no tensor-core MMA for exact fp32
    assert "groups" in supports_on(make_problem(x, torch.randn(8, 8, 3, 3), groups=2, precision="tf32"), (9, 0))
    assert "16 bytes" in supports_on(problem.with_(c=3), (9, 0))
    assert get_family("hopper_implicit_gemm").supports(problem) is not None  # the interpreter reports 0.0


@pytest.mark.parametrize(
    "shape, conv_args, channels_last, dtype, precision",
    [
        ((2, 24, 6, 5, 20, 3, 3), dict(stride=2, padding=1), True, torch.float32, "tf32x3"),
        ((1, 16, 5, 7, 24, 3, 2), dict(padding=(2, 1), dilation=2), False, torch.float32, "fp16"),
        ((2, 8, 4, 4, 16, 1, 1), dict(), True, torch.float16, None),
    ],
    ids=["nhwc-stride2", "nchw-dilated", "fp16-1x1"],
)
def test_numerics_in_interpreter(shape, conv_args, channels_last, dtype, precision):
    n, c, h, w_, k, r, s = shape
    x, w, b = random_conv_inputs(n, c, h, w_, k, c, r, s, dtype=dtype, channels_last=channels_last, seed=c)
    problem = make_problem(x, w, b, **conv_args, precision=precision)
    family = get_family("hopper_implicit_gemm")
    residual = torch.randn(problem.output_shape).to(dtype)
    for tiles in ({"BLOCK_M": 64, "BLOCK_N": 16, "BLOCK_K": 16}, {"BLOCK_M": 64, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 1}):
        out = empty_output(problem, x).fill_(float("nan"))
        for call in family.kernel_calls(problem, ConvTensors(x, w, out, b, residual, "relu"), {**family.default_config(problem), **tiles}):
            call.launch()
        ref = reference_conv2d(x, w, b, **conv_args, activation="relu", residual=residual)
        assert rel_error(out, ref) < TOLERANCE[problem.precision]


COMPILE_SCRIPT = r"""
import json
from tritonconv.compile import compile_config
from tritonconv.kernels.conv_hopper import HopperConv
from tritonconv.kernels.gemm import GemmConv, gemm_default_config
from tritonconv.problem import ConvProblem

records = []
gemm = ConvProblem(n=1, c=1024, h=1, w=4096, k=2048, r=1, s=1, dtype="float16")
for cc in (80, 90):
    config = gemm_default_config(gemm, (cc // 10, 0), 132)
    records.append(("gemm", cc, config["VARIANT"], [u.__dict__ for u in compile_config(GemmConv(), gemm, config, cc)]))
conv = ConvProblem(n=32, c=128, h=28, w=28, k=128, r=3, s=3, pad_h=1, pad_w=1, dtype="float16")
config = HopperConv().default_config(conv)
records.append(("hopper", 90, "", [u.__dict__ for u in compile_config(HopperConv(), conv, config, 90)]))
print(json.dumps(records))
"""


def test_default_configs_compile_for_sm80_and_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    records = {(name, cc): (variant, usage) for name, cc, variant, usage in json.loads(done.stdout.splitlines()[-1])}
    variant, usage = records[("gemm", 80)]
    assert variant == "tiled" and usage[0]["hmma"] > 0 and usage[0]["stack_bytes"] == 0
    variant, usage = records[("gemm", 90)]
    assert variant == "tma_persistent" and usage[0]["hgmma"] > 0 and usage[0]["stack_bytes"] == 0
    _, usage = records[("hopper", 90)]
    assert usage[0]["hgmma"] > 0 and usage[0]["stack_bytes"] == 0
