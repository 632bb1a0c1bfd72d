"""The family interface's scaled precision, fp8 (e4m3) operands with per-tensor scales (kernels.base:
`KernelFamily.precisions`, `scaled_operands`, `scaled_precision_reason`; the kernels' `epilogue.dequantize`): the
interpreter probe that decides how it is computed here, correctness vs a torch emulation of the scaling (tight) and vs float64 (the precision's tolerance) for the
implicit-GEMM and GEMM families, the cached weight scale, selection through conv2d / nn / convert / tune and
`--precision auto`, refusals (sm_80, families without fp8 kernels), and sm_90 compiles that use fp8 wgmma."""
from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tritonconv
from tests.helpers import random_conv_inputs, rel_error, run_compiler_script, run_poisoned
from tritonconv import dispatch
from tritonconv.enums import Activation, Precision
from tritonconv.errors import InvalidConfigError, UnsupportedError
from tritonconv.functional import make_problem
from tritonconv.kernels import families_for, get_family
from tritonconv.runtime import COMPILE_TARGETS, INTERPRET
from tritonconv.search import InProcessRunner, tune
from tritonconv.weights import prepare_scaled_weight, quantize_per_tensor

FP8 = Precision.FP8
SMALL = {"family": "implicit_gemm", "BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "num_warps": 2, "num_stages": 1}
# Output rounding of the input dtype on top of the exact float32 accumulation of the emulated products.
OUTPUT_ROUNDING = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}


def test_interpreter_probe_fp8_dot_exact_but_float_to_fp8_cast_wrong():
    """Why the launchers quantize with torch: the interpreter multiplies fp8 operands loaded from memory exactly,
    but its own float -> e4m3 cast drops the carry when a value rounds up to the next power of two (1.99 -> 1.0)."""
    import triton
    import triton.language as tl

    if not INTERPRET:
        pytest.skip("a probe of the Triton interpreter")

    @triton.jit
    def dot_kernel(a_ptr, b_ptr, c_ptr, cast_ptr, CAST: tl.constexpr):
        r = tl.arange(0, 16)
        a = tl.load(a_ptr + r[:, None] * 16 + r[None, :])
        b = tl.load(b_ptr + r[:, None] * 16 + r[None, :])
        tl.store(c_ptr + r[:, None] * 16 + r[None, :], tl.dot(a, b, out_dtype=tl.float32))
        if CAST:
            v = tl.load(cast_ptr + r)
            tl.store(cast_ptr + r, v.to(tl.float8e4nv).to(tl.float32))

    gen = torch.Generator().manual_seed(0)
    a = (torch.randn(16, 16, generator=gen) * 3).to(torch.float8_e4m3fn)
    b = torch.randn(16, 16, generator=gen).to(torch.float8_e4m3fn)
    c = torch.full((16, 16), float("nan"))
    values = torch.tensor([1.9868, -1.9976, -7.84, 0.3, 1.1, 3.3, 7.7, 15.3] * 2)
    cast = values.clone()
    dot_kernel[(1,)](a, b, c, cast, CAST=True)
    assert torch.equal(c.double(), a.double() @ b.double())
    wrong = cast != values.to(torch.float8_e4m3fn).float()
    assert wrong[:3].all() and cast[0] == 1.0  # 1.9868 rounds to 2.0; the interpreter gives 1.0


def _quantized_in_torch(x, w, b, residual, activation, **kwargs):
    """The fp8 math in torch: per-tensor quantization as the launcher does it, products of the quantized
    values in float64, scales, then the epilogue."""
    x_q, x_scale = quantize_per_tensor(x)
    w_q, w_scale = quantize_per_tensor(w)
    z = F.conv2d(x_q.double(), w_q.double(), None, **kwargs) * (x_scale.double() * w_scale.double())
    z = z + b.double()[:, None, None] + (0 if residual is None else residual.double())
    return Activation.parse(activation).apply(z)


def _exact(x, w, b, residual, activation, **kwargs):
    z = F.conv2d(x.double(), w.double(), b.double(), **kwargs) + (0 if residual is None else residual.double())
    return Activation.parse(activation).apply(z)


CASES = [  # (shape n, c, h, w, k, r, conv kwargs, config, dtype, channels_last, residual, activation)
    ((1, 16, 6, 5, 16, 3), dict(padding=1), SMALL, torch.float32, False, True, "relu"),
    ((2, 8, 5, 5, 24, 3), dict(padding=1, stride=2), SMALL, torch.float16, True, False, "gelu"),
    ((1, 16, 5, 6, 8, 3), dict(padding=2, dilation=2), {**SMALL, "LOOP_ORDER": "filter_outer",
                                                       "WEIGHT_LAYOUT": "krsc"}, torch.bfloat16, True, True, "silu"),
    ((2, 32, 4, 4, 24, 1), {}, {"family": "gemm"}, torch.float32, True, True, None),
    ((1, 64, 3, 5, 16, 1), {}, {"family": "gemm", "SPLIT_K": 2, "VARIANT": "tiled", "BLOCK_K": 16}, torch.float16,
     False, False,
     "relu6"),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[2]['family']}-{str(c[3])[6:]}-{i}" for i, c in enumerate(CASES)])
def test_fp8_conv_matches_the_scaled_emulation_and_float64(case):
    (n, c, h, w, k, r), kwargs, config, dtype, channels_last, with_residual, activation = case
    x, wt, b = random_conv_inputs(n, c, h, w, k, c, r, r, dtype=dtype, channels_last=channels_last, seed=n + c + k)
    x = x * 5  # scales far from 1: a missing or doubled scale cannot pass
    out_shape = F.conv2d(x.float(), wt.float(), None, **kwargs).shape
    residual = torch.randn(out_shape, generator=torch.Generator().manual_seed(1)).to(dtype) if with_residual else None
    out = run_poisoned(x, wt, b, activation=activation, residual=residual, precision="fp8", config=config, **kwargs)
    assert out.dtype == dtype
    in_torch = _quantized_in_torch(x, wt, b, residual, activation, **kwargs)
    assert rel_error(out, in_torch) <= OUTPUT_ROUNDING[dtype], "the kernel's scaling differs from the torch quantization"
    error = rel_error(out, _exact(x, wt, b, residual, activation, **kwargs))
    assert 1e-3 < error <= FP8.tolerance, error  # really fp8 operands, and within the measured error


def test_weight_scale_is_computed_once_per_weight_version():
    w = torch.randn(8, 4, 3, 3)
    first = prepare_scaled_weight(w)
    assert prepare_scaled_weight(w) is first
    assert first[1].item() == pytest.approx(w.abs().max().item() / 448)
    with torch.no_grad():
        w.mul_(2)  # an optimizer step: new version, new scale
    second = prepare_scaled_weight(w)
    assert second is not first and second[1].item() == pytest.approx(2 * first[1].item())
    zero_q, zero_scale = quantize_per_tensor(torch.zeros(4, 4))
    assert zero_scale.item() > 0 and not zero_q.float().any()


def test_fp8_is_selectable_through_conv2d_nn_and_convert():
    x, wt, b = random_conv_inputs(1, 16, 5, 5, 16, 16, 3, 3, seed=3)
    exact = _exact(x, wt, b, None, None, padding=1)
    out = tritonconv.conv2d(x, wt, b, padding=1, precision="fp8")
    assert 1e-3 < rel_error(out, exact) <= FP8.tolerance
    model = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
    converted = tritonconv.convert(model, precision="fp8")
    assert all(m.precision == "fp8" for m in converted.modules() if isinstance(m, tritonconv.nn.Conv2d))
    with torch.no_grad():
        got, expected = converted(x), model(x)
    assert 1e-3 < rel_error(got, expected.double()) <= FP8.tolerance


def test_tune_fp8_and_auto_admits_fp8_only_under_its_measured_error(tmp_path):
    from tritonconv.search.plan import search_plan

    problem = make_problem(*random_conv_inputs(1, 16, 4, 4, 16, 16, 1, 1)[:2])
    assert "fp8" not in search_plan(problem, "auto", None, "native").precisions  # default tf32/ieee tolerance
    assert "fp8" not in search_plan(problem, "auto", 1e-2, "native").precisions
    assert "fp8" in search_plan(problem, "auto", FP8.auto_min_tolerance, "native").precisions
    result = tune(problem, trials=2, precision="fp8", cache=str(tmp_path), progress=False, early_stop=None,
                  runner=InProcessRunner())
    assert result.problem.precision == "fp8" and result.family in ("gemm", "implicit_gemm")
    assert 1e-3 < result.rel_error <= FP8.tolerance


def test_fp8_refused_below_sm89_and_by_families_without_fp8_kernels():
    problem = make_problem(*random_conv_inputs(1, 16, 6, 6, 16, 16, 3, 3)[:2], padding=1, precision="fp8")
    a100, h100 = COMPILE_TARGETS[80], COMPILE_TARGETS[90]
    assert families_for(problem, a100) == []
    with pytest.raises(UnsupportedError, match=r"fp8.*compute capability >= 8.9.*8\.0") as error:
        dispatch.default_family(problem, a100)
    assert "\n" not in str(error.value)
    assert {"implicit_gemm", "hopper_implicit_gemm"} <= {f.name for f in families_for(problem, h100)}
    depthwise = make_problem(*random_conv_inputs(1, 4, 6, 6, 4, 1, 3, 3)[:2], padding=1, groups=4, precision="fp8")
    assert {f.name for f in families_for(depthwise)} == {"implicit_gemm"}
    with pytest.raises(InvalidConfigError, match="no fp8 kernels"):
        tritonconv.config.resolve_config(depthwise, {"family": "depthwise"})
    assert get_family("winograd").precisions == get_family("depthwise").precisions
    assert "fp8" not in get_family("winograd").precisions


COMPILE_SCRIPT = r"""
import json, re, subprocess, tempfile
from tritonconv import ConvProblem
from tritonconv.compile import compile_call, cuda_tool, meta_tensors
from tritonconv.kernels import families_for
from tritonconv.runtime import COMPILE_TARGETS

problems = [
    ConvProblem(n=2, c=64, h=14, w=14, k=64, r=3, s=3, pad_h=1, pad_w=1, dtype="float16", layout="nhwc", precision="fp8"),
    ConvProblem(n=1, c=64, h=7, w=7, k=96, r=1, s=1, dtype="float32", layout="nchw", precision="fp8"),
]
rows = []
for sm in (80, 90):
    target = COMPILE_TARGETS[sm]
    for problem in problems:
        families = families_for(problem, target)
        rows.append({"sm": sm, "r": problem.r, "family": None, "families": len(families)})
        for family in families:
            config = family.default_config(problem, target)
            for call in family.kernel_calls(problem, meta_tensors(problem), config, target):
                compiled = compile_call(call, sm)
                with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
                    f.write(compiled.asm["cubin"])
                    f.flush()
                    sass = subprocess.run([cuda_tool("cuobjdump"), "--dump-sass", f.name], capture_output=True,
                                          text=True, check=True).stdout
                rows.append({"sm": sm, "r": problem.r, "family": family.name,
                             "mma": sorted(set(re.findall(r"\b[A-Z]+MMA\.[\w.]+", sass)))})
print(json.dumps(rows))
"""


def test_fp8_kernels_compile_to_fp8_wgmma_on_sm90_and_are_refused_for_sm80():
    """Compiled without the interpreter: every fp8 kernel the sm_90 families launch multiplies with QGMMA (Hopper's
    fp8 warpgroup MMA) on E4M3 x E4M3 operands with float32 accumulation; for sm_80 no family takes fp8."""
    rows = run_compiler_script(COMPILE_SCRIPT, timeout=900)
    assert [row["families"] for row in rows if row["sm"] == 80] == [0, 0]
    kernels = [row for row in rows if row["sm"] == 90 and row["family"]]
    assert {(row["r"], row["family"]) for row in kernels} >= {
        (3, "implicit_gemm"), (3, "hopper_implicit_gemm"), (1, "gemm"), (1, "implicit_gemm"),
    }
    for row in kernels:
        assert row["mma"] and all(m.startswith("QGMMA.") and m.endswith(".F32.E4M3.E4M3") for m in row["mma"]), row
