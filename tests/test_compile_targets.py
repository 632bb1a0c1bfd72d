"""Compile-only checks without a GPU: the real Triton compiler (TTIR -> PTX -> cubin via ptxas) must accept the
implicit-GEMM family's default configs for sm_80 and sm_90, without register spills, with tensor-core MMA
instructions (HGMMA on Hopper, HMMA on Ampere). Catches code the lenient interpreter accepts but the compiler
rejects. Runs in a subprocess because kernels must be imported without TRITON_INTERPRET=1."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests import REPO
from tests.helpers import compiler_env, run_compiler_script

SHAPES = "r50_conv1,r50_l1_3x3,rx50_g32_28,dl_aspp_d12"

INT64_SCRIPT = """
import json, sys
from tritonconv import ConvProblem
from tritonconv.compile import compile_config
from tritonconv.kernels import get_family
family = get_family("implicit_gemm")
problem = ConvProblem(4096, 64, 112, 112, 64, 3, 3, pad_h=1, pad_w=1, dtype="float16")
assert problem.needs_int64
usage = compile_config(family, problem, family.default_config(problem), 90)[0]
print(json.dumps(usage.__dict__))
"""


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("compile") / "records.json"
    cmd = [
        sys.executable, "-m", "tritonconv.compile", "--shapes", SHAPES, "--families", "implicit_gemm",
        "--dtypes", "float16,float32", "--targets", "80,90", "--jobs", "2", "--json", str(out),
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=compiler_env(), capture_output=True, text=True, timeout=900)
    assert out.exists(), proc.stdout + proc.stderr
    return proc, json.loads(out.read_text())["records"]  # a results file (kind "compile"), one row per kernel


def test_default_configs_compile_for_sm80_and_sm90(compiled):
    proc, records = compiled
    failures = [r for r in records if not r["ok"]]
    assert not failures, failures
    assert proc.returncode == 0
    assert {r["sm"] for r in records} == {80, 90}


def test_default_configs_do_not_spill_on_hopper(compiled):
    _, records = compiled
    spills = [(r["problem"], r["usage"][0]["stack_bytes"]) for r in records if r["sm"] == 90 and r["usage"][0]["stack_bytes"]]
    assert not spills


def test_tensor_cores_are_used(compiled):
    _, records = compiled
    for r in records:
        usage = r["usage"][0]
        if r["sm"] == 90:
            assert usage["hgmma"] > 0, r["problem"]
        else:
            assert usage["hmma"] > 0 and usage["hgmma"] == 0, r["problem"]


def test_64bit_indexing_variant_compiles():
    usage = run_compiler_script(INT64_SCRIPT)
    assert usage["hgmma"] > 0


def test_compile_sweeps_see_the_target_device():
    """Defaults compiled for sm_90 are the ones an H100 would get (its families, SMs and shared memory)."""
    from tritonconv import ConvProblem
    from tritonconv.kernels import families_for
    from tritonconv.runtime import COMPILE_TARGETS, INTERPRETER_DEVICE, device_info, emulated_device

    problem = ConvProblem(n=8, c=64, h=28, w=28, k=64, r=3, s=3, pad_h=1, pad_w=1, dtype="float16")
    with emulated_device(COMPILE_TARGETS[90]) as h100:
        assert device_info() == device_info("meta") == h100 and h100.capability == (9, 0)
        assert "hopper_implicit_gemm" in {f.name for f in families_for(problem)}
    with emulated_device(COMPILE_TARGETS[80]):
        assert "hopper_implicit_gemm" not in {f.name for f in families_for(problem)}
    assert device_info("cpu") == INTERPRETER_DEVICE


def test_random_problems_cover_the_claimed_features_and_are_valid():
    from tritonconv.compile import random_problems

    problems = random_problems(60, seed=3)
    assert problems == random_problems(60, seed=3) and len(problems) == 60
    assert all(p.p > 0 and p.q > 0 and p.c % p.groups == 0 and p.k % p.groups == 0 for p in problems)
    assert {p.layout for p in problems} == {"nhwc", "nchw"}
    assert {p.dtype for p in problems} == {"float16", "bfloat16", "float32"}
    assert any(p.is_depthwise for p in problems) and any(1 < p.groups < p.c for p in problems)
    assert any(p.stride_h > 1 for p in problems) and any(p.dilation_h > 1 for p in problems)
    assert any(p.r != p.s for p in problems)


def test_compile_listing_marks_spilling_kernels():
    """`python -m tritonconv.compile` must not list a default that spills registers as "ok"."""
    from tritonconv.commands.compile import record_line

    usage = {"registers": 255, "stack_bytes": 96, "shared_bytes": 0, "hgmma": 4, "hmma": 0}
    record = {"ok": True, "sm": 90, "family": "implicit_gemm", "problem": "p", "usage": [usage]}
    assert record_line(record).startswith("SPILL")
    assert record_line({**record, "usage": [{**usage, "stack_bytes": 0}]}).startswith("ok ")
    assert record_line({**record, "ok": False, "error": "boom"}).startswith("FAIL") and "boom" in record_line(
        {**record, "ok": False, "error": "boom"})
