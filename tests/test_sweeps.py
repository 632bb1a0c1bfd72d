"""Differential sweeps per kernel family, of matmul and of the dispatcher's own choices (tests/sweeps).

Each case is drawn at random from the range the family's supports() claims and run through the public API with
the family's default config and random feasible configs from its own space, outputs NaN-poisoned, against
float64 F.conv2d / torch.matmul. Invariant: supports(p) is None => every feasible config is correct on p; a
problem a family refuses is never routed to it (families_for, default dispatch, search space, explicit config).
A fixed-seed subset runs by default; `pytest --deep` runs thousands of cases (see tests/conftest.py).
"""
from __future__ import annotations

import random

import pytest
import torch

from tritonconv.kernels import FAMILIES
from tritonconv.runtime import INTERPRET

from .sweeps.cases import draw_conv_case
from .sweeps.run import (
    SWEEPS,
    SweepOptions,
    emulated_target,
    routing_violations,
    run_sweep,
    summarize,
)

CI_CASES = {"implicit_gemm": 8, "depthwise": 6, "small_group": 6, "gemm": 8, "hopper_implicit_gemm": 6, "winograd": 4,
            "matmul": 8, "dispatch": 8}
DEEP_CASES = 500
CHUNKS = 2  # each sweep split in two tests, so pytest-xdist spreads them


@pytest.mark.parametrize("chunk", range(CHUNKS))
@pytest.mark.parametrize("sweep", SWEEPS)
def test_differential_sweep(sweep, chunk, deep, capsys, device):
    cases = (DEEP_CASES if deep else CI_CASES[sweep]) // CHUNKS
    results = list(run_sweep(sweep, cases, seed=1000 + chunk, options=SweepOptions(device=device)))
    failed = [r for r in results if r.failed]
    checked = [r for r in results if r.status in ("ok", "known")]
    with capsys.disabled():
        if deep:
            print(f"\n{sweep}[{chunk}]: {cases} cases, {summarize(results)}")
    assert checked, f"the {sweep} sweep checked nothing: {summarize(results)}"
    assert not failed, "\n".join(
        f"{r.kind}:{r.family} {r.mode} {r.status} err={r.rel_error} tol={r.tolerance} {r.problem} {r.config} "
        f"{r.detail}\n  case={r.case}" for r in failed[:10]
    )


def claims(family: str, problem, capability) -> bool:
    """What the README says each family covers (the spec the supports() answers are checked against)."""
    if family == "int8_implicit_gemm":  # quantized inputs only (tritonconv.quantized); the sweeps draw floats
        return problem.dtype == "int8" and not problem.batched_weight
    if problem.batched_weight:
        return family == "gemm"
    if INTERPRET and problem.operand_dtype == torch.bfloat16 and family in ("implicit_gemm", "gemm", "winograd"):
        return False  # the interpreter computes bf16 tl.dot wrongly: refused there (small_group keeps to FMA)
    if family == "depthwise":
        return problem.groups == problem.c > 1
    if family == "small_group":
        return problem.groups >= 2
    if family == "gemm":
        unpadded = (problem.p, problem.q) == ((problem.h - 1) // problem.stride_h + 1, (problem.w - 1) // problem.stride_w + 1)
        return (problem.r, problem.s) == (1, 1) and problem.groups == 1 and (problem.pad_h, problem.pad_w) == (0, 0) and unpadded
    if family == "hopper_implicit_gemm":
        row_bytes = problem.gemm_k * problem.operand_dtype.itemsize
        fp8_offsets = problem.precision != "fp8" or problem.c % 16 == 0  # 1-byte TMA box offsets rs * C + c0
        return (capability >= (9, 0) and problem.groups == 1 and problem.precision in ("tf32", "fp16", "bf16", "fp8")
                and row_bytes % 16 == 0 and fp8_offsets)
    if family == "winograd":
        few_channels = problem.groups > 1 and min(problem.c_per_group, problem.k_per_group) < 8
        return ((problem.r, problem.s, problem.stride_h, problem.stride_w, problem.dilation_h, problem.dilation_w)
                == (3, 3, 1, 1, 1, 1) and 36 * problem.groups <= 65535 and not few_channels)
    return True  # implicit_gemm: everything


@pytest.mark.parametrize("emulate", [None, 90])
def test_supports_refuses_outside_the_claimed_range_and_refused_problems_are_never_routed(emulate, deep, device):
    """Problems drawn from every family's range, judged by every family: a family accepts exactly what it
    claims, and for each refusal (with a reason string) nothing routes the problem to the family."""
    from tritonconv.functional import make_problem
    from tritonconv.runtime import device_info

    from .sweeps.cases import make_conv_tensors

    if emulate and not INTERPRET:
        pytest.skip("capability emulation is for the interpreter")
    rng = random.Random(7 + (emulate or 0))
    refused = 0
    target = emulated_target(emulate)
    capability = (target or device_info(device)).capability
    for _ in range(1000 if deep else 60):
        case = draw_conv_case(rng.choice(list(FAMILIES)), rng, interpreter=INTERPRET)
        t = make_conv_tensors(case, device)
        problem = make_problem(t.input, t.weight, t.bias, **case.conv_args, residual=t.residual, precision=case.precision)
        for name, family in FAMILIES.items():
            reason = family.supports(problem, target)
            if claims(name, problem, capability):
                assert reason is None, f"{name} refuses {problem.key} it claims: {reason}"
                continue
            assert isinstance(reason, str) and reason, f"{name} accepts {problem.key} outside its range"
            refused += 1
            assert not routing_violations(problem, family, target), (name, problem.key)
    assert refused > 20


def test_importing_the_matmul_module_keeps_tritonconv_matmul_the_function():
    """Found by the matmul sweep: `from tritonconv.matmul import ...` before the first use of the lazy package
    attribute bound the submodule to `tritonconv.matmul` ("'module' object is not callable")."""
    import subprocess
    import sys

    code = "import tritonconv; from tritonconv.matmul import matmul_problem; assert callable(tritonconv.matmul)"
    subprocess.run([sys.executable, "-c", code], check=True, env={**__import__("os").environ, "TRITON_INTERPRET": "1"})
