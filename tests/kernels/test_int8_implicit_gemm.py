"""The int8 implicit-GEMM family: int8 x int8 products accumulated in int32, checked exactly against integer
sums computed by torch on the CPU (float64 holds every int32 sum exactly).

The Triton interpreter computes int8 `tl.dot` exactly (checked first, below, with sums beyond int16 and 2^24),
so the kernel itself runs here. The tensor-core instructions (IMMA on sm_80, IGMMA on sm_90) are checked by
compiling for those targets (a subprocess without the interpreter)."""
from __future__ import annotations

import itertools
import random

import pytest
import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from tests.helpers import run_compiler_script, sample_configs

from tritonconv import ConvProblem
from tritonconv.dispatch import empty_output, run_problem
from tritonconv.kernels import families_for, get_family
from tritonconv.kernels.base import Quantization

FAMILY = get_family("int8_implicit_gemm")


@triton.jit
def _int8_dot_probe(a_ptr, b_ptr, c_ptr, M: tl.constexpr, N: tl.constexpr, K: tl.constexpr, BK: tl.constexpr):
    rm, rn, rk = tl.arange(0, M), tl.arange(0, N), tl.arange(0, BK)
    acc = tl.zeros((M, N), dtype=tl.int32)
    for k0 in range(0, K, BK):
        a = tl.load(a_ptr + rm[:, None] * K + (k0 + rk)[None, :])
        b = tl.load(b_ptr + (k0 + rk)[:, None] * N + rn[None, :])
        acc = tl.dot(a, b, acc, out_dtype=tl.int32)
    tl.store(c_ptr + rm[:, None] * N + rn[None, :], acc)


def test_interpreter_computes_int8_dot_exactly():
    """Random int8 and the extremes (-128, 127): sums up to 2^25 (beyond int16 and float32's 2^24) exact."""
    m, n, k = 16, 16, 2048
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(-128, 128, (m, k), generator=gen, dtype=torch.int8)
    b = torch.randint(-128, 128, (k, n), generator=gen, dtype=torch.int8)
    a[0], a[1], b[:, 0], b[:, 1] = -128, 127, -128, 127
    c = torch.full((m, n), -7, dtype=torch.int32)
    _int8_dot_probe[(1,)](a, b, c, m, n, k, 64)
    expected = a.long() @ b.long()
    assert expected.abs().max() == 128 * 128 * k
    assert torch.equal(c.long(), expected)


def integer_reference(x, w, stride=1, padding=0, dilation=1, groups=1) -> torch.Tensor:
    """The exact int32 sums of the conv (float64 holds them exactly), on the CPU."""
    return F.conv2d(x.double().cpu(), w.double().cpu(), None, stride, padding, dilation, groups)


def run_int8(problem: ConvProblem, x, w, config=None, quant=None, bias=None, residual=None, activation="none"):
    """The family's output written into a NaN-poisoned float32 buffer (unit scales when `quant` is None)."""
    out = empty_output(problem, x).fill_(float("nan"))
    config = {"family": FAMILY.name, **(config or {})}
    return run_problem(problem, x, w, bias, residual, activation, config, output=out, backend="triton", quant=quant)


CASES = [  # (n, c, h, w, k, r, s, stride, pad, dilation, groups)
    (1, 40, 7, 6, 20, 3, 3, (2, 1), (1, 2), (1, 2), 1),   # batch 1, asymmetric stride/padding/dilation
    (2, 3, 9, 9, 8, 3, 3, 1, 1, 1, 1),                   # a 3-channel stem
    (1, 64, 5, 5, 33, 1, 1, 2, 0, 1, 1),                 # strided 1x1, odd K
    (2, 16, 6, 7, 24, 3, 3, 1, 2, 2, 4),                 # grouped, dilated, padding beyond the filter's reach
    (1, 8, 5, 5, 16, 3, 3, 1, 1, 1, 8),                  # depthwise with a channel multiplier of 2
]


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("loop", ["filter_outer", "channel_outer"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:7])) + f"_g{c[-1]}")
def test_exact_int32_sums(case, loop, layout):
    n, c, h, w_, k, r, s, stride, pad, dil, groups = case
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    problem = ConvProblem(n=n, c=c, h=h, w=w_, k=k, r=r, s=s, stride_h=pair(stride)[0], stride_w=pair(stride)[1],
                          pad_h=pair(pad)[0], pad_w=pair(pad)[1], dilation_h=pair(dil)[0], dilation_w=pair(dil)[1],
                          groups=groups, dtype="int8", layout=layout)
    x, w = problem.make_tensors("cpu", seed=hash(case) % 1000)
    assert x.dtype == torch.int8 and x.min() < -100 and x.max() > 100  # the full int8 range
    out = run_int8(problem, x, w, {"LOOP_ORDER": loop})
    expected = integer_reference(x, w, stride, pad, dil, groups)
    assert expected.abs().max() < 2**24  # float32 output holds these sums exactly
    assert out.dtype == torch.float32 and out.shape == expected.shape
    assert out.is_contiguous(memory_format=torch.channels_last) == (layout == "nhwc")
    assert torch.equal(out.double(), expected)


def test_extreme_values_sum_beyond_float32_precision():
    """All -128 x -128 over C*R*S = 1152 taps (1.9e7 > 2^24): the float32 output is the int32 sum, rounded once."""
    problem = ConvProblem(n=1, c=128, h=3, w=3, k=16, r=3, s=3, pad_h=1, pad_w=1, dtype="int8", layout="nhwc")
    x = torch.full((1, 128, 3, 3), -128, dtype=torch.int8).contiguous(memory_format=torch.channels_last)
    w = torch.full((16, 128, 3, 3), -128, dtype=torch.int8)
    w[1::2] = 127
    out = run_int8(problem, x, w)
    expected = integer_reference(x, w, padding=1)
    assert expected.abs().max() > 2**24
    assert torch.equal(out.double(), expected.float().double())  # float32 rounding of the exact sum


def test_random_configs_of_the_space_are_exact():
    problem = ConvProblem(n=1, c=48, h=6, w=6, k=40, r=3, s=3, pad_h=1, pad_w=1, stride_h=2, stride_w=2,
                          groups=2, dtype="int8", layout="nhwc")
    x, w = problem.make_tensors("cpu", seed=3)
    expected = integer_reference(x, w, 2, 1, 1, 2)
    configs = sample_configs(FAMILY, problem, random.Random(0), 4)
    assert len(configs) >= 3
    for config in configs:
        assert torch.equal(run_int8(problem, x, w, config).double(), expected), config


def test_scaled_epilogue_and_requantisation():
    """Dequantised: acc * x_scale * w_scale[k] + bias + residual, then the activation (float32 vs float64);
    requantised: round half to even of y / out_scale, saturated, exactly (the float32 y rounds the same way
    here except within 1e-4 of a half-way point, where 1 LSB is allowed)."""
    problem = ConvProblem(n=2, c=24, h=5, w=5, k=16, r=3, s=3, pad_h=1, pad_w=1, dtype="int8", layout="nchw")
    x, w = problem.make_tensors("cpu", seed=5)
    gen = torch.Generator().manual_seed(5)
    scale = torch.rand(16, generator=gen) * 1e-3 + 1e-4
    bias, residual = torch.randn(16, generator=gen), torch.randn(2, 16, 5, 5, generator=gen)
    y_ref = F.silu(integer_reference(x, w, padding=1) * scale.double()[:, None, None] + bias.double()[:, None, None] + residual.double())
    out = run_int8(problem, x, w, quant=Quantization(scale), bias=bias, residual=residual, activation="silu")
    assert ((out.double() - y_ref).abs().max() / y_ref.abs().max()).item() < 1e-6

    out_scale = 0.01
    outputs = []
    for poison in (77, -77):  # every int8 is a valid output: two different fills must give the same result
        q = torch.full(problem.output_shape, poison, dtype=torch.int8)
        run_problem(problem, x, w, bias, residual, "silu", {"family": FAMILY.name}, output=q, backend="triton",
                    quant=Quantization(scale, out_scale))
        outputs.append(q)
    assert torch.equal(outputs[0], outputs[1])
    expected = torch.clamp(torch.round(y_ref / out_scale), -128, 127)
    near_half = ((y_ref / out_scale).frac().abs() - 0.5).abs() < 1e-4
    assert (expected == 127).any()  # saturation is exercised
    assert torch.equal(q.double()[~near_half], expected[~near_half])
    assert (q.double() - expected).abs().max() <= 1


def test_float_families_never_get_int8_problems():
    problem = ConvProblem(n=1, c=16, h=4, w=4, k=16, r=3, s=3, dtype="int8")
    assert [f.name for f in families_for(problem)] == ["int8_implicit_gemm"]
    float_problem = problem.with_(dtype="float32", precision="")
    assert "int8" in FAMILY.supports(float_problem) and FAMILY not in families_for(float_problem)


COMPILE_SCRIPT = r"""
import json
from tritonconv import ConvProblem
from tritonconv.compile import compile_call, meta_tensors
from tritonconv.compile_report import read_compiled
from tritonconv.kernels import get_family
from tritonconv.runtime import COMPILE_TARGETS

family = get_family("int8_implicit_gemm")
problems = [
    ConvProblem(n=8, c=64, h=28, w=28, k=128, r=3, s=3, pad_h=1, pad_w=1, dtype="int8", layout="nhwc"),
    ConvProblem(n=8, c=3, h=64, w=64, k=32, r=7, s=7, stride_h=2, stride_w=2, pad_h=3, pad_w=3, dtype="int8", layout="nchw"),
]
rows = []
for cc in (80, 90):
    target = COMPILE_TARGETS[cc]
    for problem in problems:
        config = family.default_config(problem, target)
        for requantize in (False, True):
            tensors = meta_tensors(problem, residual=True, scales=True, requantize=requantize)
            call = family.kernel_calls(problem, tensors, config, target)[0]
            _, summary, log = read_compiled(compile_call(call, cc), cc)
            rows.append({"sm": cc, "problem": problem.label, "config": config, "requantize": requantize,
                         "mma": summary.mma_kind, "loop_mma": summary.loop_mma, "spill": log.spill_stores})
print(json.dumps(rows))
"""


@pytest.fixture(scope="module")
def compiled_rows():
    return run_compiler_script(COMPILE_SCRIPT)


def test_compiles_to_integer_tensor_core_mma(compiled_rows):
    """sm_80: IMMA (mma.sync m16n8k32 s8); sm_90: IGMMA (integer warpgroup MMA), in the main loop, no spills."""
    assert {(r["sm"], r["requantize"]) for r in compiled_rows} == {(80, False), (80, True), (90, False), (90, True)}
    for row in compiled_rows:
        assert row["mma"] == {80: "IMMA", 90: "IGMMA"}[row["sm"]], row
        assert row["loop_mma"] > 0 and row["spill"] == 0, row


def _random_case(rng: random.Random) -> tuple[ConvProblem, dict]:
    groups = rng.choice([1, 1, 2, 3])
    c, k = groups * rng.choice([1, 3, 5, 16, 33]), groups * rng.choice([1, 7, 16, 24])
    r, s = rng.choice([(1, 1), (3, 3), (5, 5), (1, 3), (2, 3)])
    stride, dil = (rng.choice([1, 2, 3]), rng.choice([1, 2])), (rng.choice([1, 2]), rng.choice([1, 3]))
    pad = (rng.choice([0, 1, 3]), rng.choice([0, 2]))
    h, w = rng.choice([1, 4, 7]) + dil[0] * (r - 1), rng.choice([1, 5, 8]) + dil[1] * (s - 1)
    problem = ConvProblem(n=rng.choice([1, 1, 2]), c=c, h=h, w=w, k=k, r=r, s=s, stride_h=stride[0],
                          stride_w=stride[1], pad_h=pad[0], pad_w=pad[1], dilation_h=dil[0], dilation_w=dil[1],
                          groups=groups, dtype="int8", layout=rng.choice(["nchw", "nhwc"]))
    space = FAMILY.space(problem)  # any config the hard constraints allow, pruned (wasteful) ones included
    configs = space.feasible(problem, [dict(zip(space.names, v)) for v in itertools.product(*(p.choices for p in space.params))])
    return problem, rng.choice(configs)


@pytest.mark.parametrize("seed", range(8))
def test_random_problems_and_configs_are_exact(seed):
    """Seeded random geometry (stride, padding, dilation, rectangular and even filters, groups, batch 1,
    1-pixel outputs, both layouts) with a random feasible config: the exact int32 sums, NaN-poisoned output."""
    rng = random.Random(seed)
    problem, config = _random_case(rng)
    x, w = problem.make_tensors("cpu", seed=seed)
    out = run_int8(problem, x, w, config)
    expected = integer_reference(x, w, (problem.stride_h, problem.stride_w), (problem.pad_h, problem.pad_w),
                                 (problem.dilation_h, problem.dilation_w), problem.groups)
    assert torch.equal(out.double(), expected), (problem.key, config)
