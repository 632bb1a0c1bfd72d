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
from tritonconv.runtime import COMPILE_TARGETS
family = get_family("implicit_gemm")
problem = ConvProblem(4096, 64, 112, 112, 64, 3, 3, pad_h=1, pad_w=1, dtype="float16")
assert problem.needs_int64
usage = compile_config(family, problem, family.default_config(problem, COMPILE_TARGETS[90]), 90)[0]
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


def test_families_decide_for_the_target_they_are_given():
    """Defaults compiled for sm_90 are the ones an H100 would get (its families, SMs and shared memory); the
    device tensors live on (CPU, meta) is this process's, never a target."""
    from tritonconv import ConvProblem
    from tritonconv.kernels import families_for
    from tritonconv.runtime import COMPILE_TARGETS, INTERPRETER_DEVICE, device_info

    problem = ConvProblem(n=8, c=64, h=28, w=28, k=64, r=3, s=3, pad_h=1, pad_w=1, dtype="float16")
    h100, a100 = COMPILE_TARGETS[90], COMPILE_TARGETS[80]
    assert h100.capability == (9, 0) and a100.capability == (8, 0)
    assert "hopper_implicit_gemm" in {f.name for f in families_for(problem, h100)}
    assert "hopper_implicit_gemm" not in {f.name for f in families_for(problem, a100)}
    assert device_info("cpu") == device_info("meta") == INTERPRETER_DEVICE


def test_deciding_for_an_explicit_target_never_queries_the_gpu(monkeypatch, tmp_path):
    """The compile children (and `compile --jobs`) run on CUDA machines and must not touch CUDA (a forked child
    that did would fail): every family method, the search space, the compile pool's launches and the dispatcher's
    choice for a `DeviceInfo` passed in answer without asking torch.cuda."""
    import torch

    from tritonconv import ConvProblem, cache, dispatch
    from tritonconv.compile import meta_tensors
    from tritonconv.kernels import families_for
    from tritonconv.runtime import COMPILE_TARGETS, device_info
    from tritonconv.search.compile_pool import candidate_calls
    from tritonconv.search.space import SearchSpace

    def no_cuda(*_args, **_kwargs):
        raise AssertionError("queried CUDA while deciding for a target")

    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(tmp_path))  # an empty cache: the dispatcher's own choice
    for name in ("is_available", "current_device", "get_device_properties", "device_count"):
        monkeypatch.setattr(torch.cuda, name, no_cuda)
    with pytest.raises(AssertionError, match="queried CUDA"):  # the patch bites: the process's device is asked
        device_info()
    problem = ConvProblem(n=2, c=64, h=14, w=14, k=64, r=3, s=3, pad_h=1, pad_w=1, dtype="float16", layout="nhwc")
    for target in COMPILE_TARGETS.values():
        families = families_for(problem, target)
        assert ("hopper_implicit_gemm" in {f.name for f in families}) == (target.capability >= (9, 0))
        for family in families:
            for config in [family.default_config(problem, target), *family.heuristic_configs(problem, target)]:
                assert family.space(problem, target).violation(problem, config, pruning=False) is None
                assert family.kernel_calls(problem, meta_tensors(problem), config, target)
                assert candidate_calls(problem, family.name, {"family": family.name, **config}, target)
        assert SearchSpace(problem, precisions=(problem.precision,), device=target).seeds()
        chosen, config = dispatch.select(problem, None, torch.device("cpu"), "triton", target)
        assert chosen is dispatch.default_family(problem, target) and config == chosen.default_config(problem, target)
        explicit = {"family": chosen.name, **config}
        assert dispatch.select(problem, explicit, torch.device("cpu"), "triton", target) == (chosen, config)


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
