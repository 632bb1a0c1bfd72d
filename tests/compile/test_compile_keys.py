"""Compile each candidate once: the precompile's cache key is the one Triton's launcher looks up.

For every family (and both targets), the launches the benchmark runner makes (`run_problem` on real CPU tensors,
through Triton's own `JITFunction.run` with a stand-in driver that stops before compiling) must specialise to the
same cache hash as the compile pool's precompile of that candidate on meta tensors. Before the fix only 1 of 67
suite launches matched (ints not divisible by 16 got no empty attribute entry, bools were i1): every candidate
compiled twice. Runs in a subprocess because kernels must be imported without TRITON_INTERPRET=1."""
from __future__ import annotations


import pytest
from tests.helpers import run_compiler_script

SCRIPT = r"""
import json
from tritonconv import ConvProblem
from tritonconv.compile import cache_hash, compile_call, launch_hashes
from tritonconv.dispatch import empty_output, run_problem
from tritonconv.kernels import families_for, get_family
from tritonconv.runtime import COMPILE_TARGETS
from tritonconv.search.compile_pool import candidate_calls

problems = [
    ConvProblem(n=1, c=3, h=13, w=13, k=24, r=3, s=3, stride_h=2, stride_w=2, pad_h=1, pad_w=1, dtype="float16", layout="nhwc"),
    ConvProblem(n=2, c=64, h=14, w=14, k=64, r=3, s=3, pad_h=1, pad_w=1, dtype="float16", layout="nhwc"),
    ConvProblem(n=2, c=64, h=14, w=14, k=64, r=3, s=3, pad_h=1, pad_w=1, dtype="bfloat16", layout="nchw"),
    ConvProblem(n=1, c=32, h=9, w=11, k=32, r=5, s=5, pad_h=2, pad_w=2, groups=32, dtype="bfloat16", layout="nhwc"),
    ConvProblem(n=2, c=64, h=7, w=7, k=64, r=3, s=3, pad_h=1, pad_w=1, groups=8, dtype="float16", layout="nhwc"),
    ConvProblem(n=1, c=48, h=7, w=7, k=40, r=1, s=1, dtype="float32", layout="nchw"),
    ConvProblem(n=1, c=17, h=10, w=10, k=19, r=3, s=3, pad_h=2, pad_w=2, dilation_h=2, dilation_w=2, dtype="float32", layout="nhwc", precision="tf32"),
    ConvProblem(n=1, c=40, h=9, w=9, k=24, r=3, s=3, stride_h=2, stride_w=2, pad_h=1, pad_w=1, dtype="int8", layout="nchw"),
]
rows = []
for cc in (80, 90):
    target = COMPILE_TARGETS[cc]
    for problem in problems:
        x, w = problem.make_tensors("cpu", seed=0)
        for family in families_for(problem, target):
            configs = [family.default_config(problem, target)] + family.heuristic_configs(problem, target)[:2]
            converts = (False, True) if problem.layout == "nchw" else (False,)
            for config in configs:
                for convert in converts:
                    candidate = {"family": family.name, **config, **({"convert_nhwc": True} if convert else {})}
                    with launch_hashes(cc) as launched:
                        run_problem(problem, x, w, None, None, "none", candidate, output=empty_output(problem, x),
                                    backend="triton", target=target)
                    precompiled = [cache_hash(call, cc) for call in candidate_calls(problem, family.name, candidate, target)]
                    rows.append({"sm": cc, "family": family.name, "problem": problem.key, "config": candidate,
                                 "launched": launched, "precompiled": precompiled})
# the precompile really stores the kernel under that hash (one real compile)
h100 = COMPILE_TARGETS[90]
default = {"family": "implicit_gemm", **get_family("implicit_gemm").default_config(problems[0], h100)}
call = candidate_calls(problems[0], "implicit_gemm", default, h100)[0]
compiled_hash = compile_call(call, 90).hash
# the compile pool's binary identity: two ResNet-50 1x1 convs (shapes are runtime ints) share each config's binary,
# a 3x3 conv and another tile do not
from tritonconv.search.compile_pool import binary_key
one = ConvProblem(n=32, c=256, h=56, w=56, k=64, r=1, s=1, dtype="float16", layout="nhwc")
two = ConvProblem(n=32, c=512, h=28, w=28, k=128, r=1, s=1, dtype="float16", layout="nhwc")
three = ConvProblem(n=32, c=256, h=14, w=14, k=256, r=3, s=3, pad_h=1, pad_w=1, dtype="float16", layout="nhwc")
shared = {}
for family in families_for(one, h100):
    config = family.default_config(one, h100)
    other_tile = {**config, "BLOCK_N": config["BLOCK_N"] * 2}
    shared[family.name] = [binary_key(p, family.name, c, h100) for p, c in
                           ((one, config), (two, config), (three, config), (one, other_tile))]
print(json.dumps({"rows": rows, "compiled": compiled_hash, "expected": cache_hash(call, 90), "shared": shared}))
"""


@pytest.fixture(scope="module")
def key_rows():
    return run_compiler_script(SCRIPT)


def test_precompile_key_equals_launch_key_for_every_family(key_rows):
    rows = key_rows["rows"]
    assert {r["family"] for r in rows} >= {"implicit_gemm", "hopper_implicit_gemm", "gemm", "depthwise", "small_group",
                                           "int8_implicit_gemm", "winograd"}
    assert {r["config"]["VARIANT"] for r in rows if r["family"] == "winograd"} == {"fused", "three_kernels"}
    assert {r["sm"] for r in rows} == {80, 90}
    assert any(r["config"].get("convert_nhwc") for r in rows)
    mismatched = [r for r in rows if not r["launched"] or r["launched"] != r["precompiled"]]
    assert not mismatched, mismatched[:3]


def test_precompile_stores_the_kernel_under_that_key(key_rows):
    assert key_rows["compiled"] == key_rows["expected"]


def test_runtime_int_shapes_share_a_binary_and_constexprs_do_not(key_rows):
    assert set(key_rows["shared"]) >= {"implicit_gemm", "hopper_implicit_gemm", "gemm"}
    for family, (one, two, three, other_tile) in key_rows["shared"].items():
        assert one and one == two, family
        assert three != one and other_tile != one, family

