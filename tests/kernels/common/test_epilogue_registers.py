"""Registers of the few compiled defaults the shared kernel layer (tritonconv/kernels/common/) once made worse.

The common layer's one epilogue took the output offsets as arguments, computed before the bias add; where the
tile's last MMA sits right before the epilogue (implicit_gemm's one unrolled step of a 3x3 depthwise tile,
hopper_implicit_gemm's persistent tile loop) they stayed live across it. Compiled for sm_80/sm_90 without a GPU
(Triton 3.6 + ptxas, in a subprocess: kernels must be imported without TRITON_INTERPRET) the family defaults
below used more registers than before the common layer; each bound is the count before it (commit ef1c4a3^),
reached again by `epilogue.store_pixels` (implicit_gemm) and the late offsets of hopper_implicit_gemm's epilogue.
The count with the early offsets is noted beside each bound, so a bound that would no longer catch them shows.
"""
from __future__ import annotations

import json

import pytest

from tests.helpers import run_compiler_script


# (name, family, ConvProblem fields, target, registers before the common layer, registers with early offsets)
CASES = [
    ("mv2_dw_56 fp16 NHWC, 1 channel per group", "implicit_gemm",
     dict(n=32, c=144, h=56, w=56, k=144, r=3, s=3, pad_h=1, pad_w=1, groups=144, dtype="float16"), 90, 56, 63),
    ("3x3 depthwise x2 fp32, 1 channel per group", "implicit_gemm",
     dict(n=1, c=16, h=224, w=224, k=32, r=3, s=3, pad_h=1, pad_w=1, groups=16, dtype="float32"), 90, 55, 69),
    ("3x3 depthwise fp32, 64-bit offsets", "implicit_gemm",
     dict(n=8192, c=32, h=112, w=112, k=32, r=3, s=3, pad_h=1, pad_w=1, groups=32, dtype="float32"), 80, 80, 84),
    ("11x11 dilated bf16 NCHW", "hopper_implicit_gemm",
     dict(n=32, c=384, h=14, w=320, k=1000, r=11, s=11, pad_h=20, pad_w=20, dilation_h=4, dilation_w=4,
          dtype="bfloat16", layout="nchw"), 90, 128, 158),
]

SCRIPT = r"""
import json, sys
from tritonconv import ConvProblem
from tritonconv.compile import compile_config
from tritonconv.kernels import get_family
from tritonconv.runtime import COMPILE_TARGETS

out = []
for name, family_name, fields, sm in json.loads(sys.argv[1]):
    family, problem, target = get_family(family_name), ConvProblem(**{"layout": "nhwc", **fields}), COMPILE_TARGETS[sm]
    config = family.default_config(problem, target)
    (usage,) = compile_config(family, problem, config, sm, sass=False)
    out.append({"name": name, "config": config, "index_64": problem.needs_int64, **usage.__dict__})
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def compiled() -> dict[str, dict]:
    jobs = json.dumps([(name, family, fields, sm) for name, family, fields, sm, _, _ in CASES])
    return {record["name"]: record for record in run_compiler_script(SCRIPT, jobs)}


@pytest.mark.parametrize("name, family, fields, sm, before, early", CASES, ids=[c[0] for c in CASES])
def test_registers_are_back_at_their_count_before_the_common_layer(compiled, name, family, fields, sm, before, early):
    record = compiled[name]
    assert record["stack_bytes"] == 0, f"{name}: spills {record['stack_bytes']} B"
    assert record["registers"] <= before, (
        f"{name} ({family}, sm_{sm}, {record['config']}): {record['registers']} registers, {before} before the "
        f"common layer ({early} with the output offsets computed before the bias add)"
    )


def test_the_cases_are_the_kernels_that_regressed(compiled):
    """The bounds guard what they name: channel-outer implicit_gemm tiles (1 channel per group), 64-bit offsets
    where the tensor needs them, and the bounds sit below the counts they are meant to catch."""
    for name, family, _, _, before, early in CASES:
        assert before < early, name
        if family == "implicit_gemm":
            assert compiled[name]["config"]["LOOP_ORDER"] == "channel_outer", name
    assert compiled["3x3 depthwise fp32, 64-bit offsets"]["index_64"]
    assert not compiled["mv2_dw_56 fp16 NHWC, 1 channel per group"]["index_64"]
