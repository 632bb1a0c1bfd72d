"""Winograd family F(2x2,3x3) / F(4x4,3x3): interpreter correctness vs float64 for every tile, variant (fused,
three kernels) and claimed precision (NaN-poisoned outputs, padding 0/1/2, tiles hanging over odd edges, batch 1,
NCHW and NHWC, fused epilogue) with the measured error bounds asserted; supports() refusals; a seeded sweep over
the claimed range; the weight-transform cache; the search rejecting a faster candidate above tolerance; a float64
emulation of the algorithm with operands rounded to tf32/bf16 (which the interpreter cannot compute); and a real
compile for sm_80 / sm_90 whose GEMM uses tensor cores."""
from __future__ import annotations

import json
import random

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import (
    run_compiler_script,
    TOLERANCE,
    random_conv_inputs,
    reference_conv2d,
    rel_error,
    run_poisoned,
)
from tritonconv import cache, dispatch
from tritonconv.errors import InvalidConfigError
from tritonconv.functional import make_problem
from tritonconv.kernels import families_for, get_family
from tritonconv.kernels.winograd import G_MATRIX, transform_weight
from tritonconv.problem import ConvProblem
from tritonconv.runtime import INTERPRET

FAMILY = get_family("winograd")

# Largest ||y - ref|| / ||ref|| measured on this machine (interpreter; tf32/tf32x3 are computed as ieee float32
# there) over random inputs, with headroom; the README's Winograd row quotes the measured values.
BOUND = {
    (2, "ieee"): 5e-7, (4, "ieee"): 3e-6, (2, "tf32"): 5e-7, (2, "tf32x3"): 5e-7, (4, "tf32x3"): 3e-6,
    (2, "fp16"): 1.5e-3, (4, "fp16"): 8e-3,
}
# (input dtype, precision) pairs the interpreter runs; bf16 only compiles (see the compile test).
PRECISIONS = [(torch.float32, "ieee"), (torch.float32, "tf32"), (torch.float32, "tf32x3"), (torch.float16, None),
              (torch.float32, "fp16")]
# (n, c, h, w, k, padding, channels_last, bias, residual, activation): odd sizes so tiles overhang the edges.
CASES = [
    (1, 5, 7, 9, 6, 1, False, True, False, "relu"),
    (2, 3, 5, 6, 4, 0, True, False, True, "none"),
    (1, 4, 6, 5, 3, 2, True, True, True, "silu"),
]


def run_case(case, dtype, precision, config, *, groups=1, seed=0):
    n, c, h, w, k, padding, channels_last, bias, residual, activation = case
    x, wt, b = random_conv_inputs(n, c, h, w, k, c // groups, 3, 3, dtype=dtype, channels_last=channels_last, seed=seed)
    b = b if bias else None
    problem = make_problem(x, wt, b, 1, padding, 1, groups, precision=precision)
    res = None
    if residual:
        res = torch.randn(problem.output_shape, generator=torch.Generator().manual_seed(seed + 1)).to(dtype)
    out = run_poisoned(x, wt, b, 1, padding, 1, groups, activation=activation, residual=res, precision=precision,
                       config={"family": "winograd", **config})
    ref = reference_conv2d(x, wt, b, 1, padding, 1, groups, activation=activation, residual=res)
    assert out.shape == ref.shape
    return problem, rel_error(out, ref)


# Every claimed (tile, precision) with the fused variant, and the three-kernel variant with both tiles; each case
# (padding 0, 1 and 2, odd sizes whose last tiles overhang the output, batch 1 and 2) meets both tiles.
VARIANTS = [("fused", tile, dtype, precision) for tile in (2, 4) for dtype, precision in PRECISIONS
            if not (tile == 4 and precision == "tf32")]
VARIANTS += [("three_kernels", tile, dtype, precision) for tile in (2, 4) for dtype, precision in PRECISIONS[::3]]


@pytest.mark.parametrize("index", range(len(VARIANTS)))
def test_every_variant_tile_and_precision_matches_float64(index):
    variant, tile, dtype, precision = VARIANTS[index]
    case = CASES[index % len(CASES)]
    config = {"VARIANT": variant, "TILE": tile, "BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "num_warps": 4}
    problem, err = run_case(case, dtype, precision, config)
    assert FAMILY.supports(problem) is None
    assert err <= BOUND[(tile, problem.precision)], f"{problem.key} {variant} F({tile},3): {err:.3g}"
    assert err <= TOLERANCE[problem.precision]


def test_property_sweep_over_the_claimed_range():
    """Seeded random problems within supports() (groups, asymmetric padding, both layouts, every interpreter
    precision) with a random config from the family's own space (hard constraints only)."""
    rng = random.Random(16)
    for seed in range(6):
        groups = rng.choice([1, 1, 2])
        c, k = (groups * rng.randint(8, 10), groups * rng.randint(8, 10)) if groups > 1 else (rng.randint(1, 6), rng.randint(1, 6))
        padding = rng.choice([0, 1, 2, 3, (0, 1), (2, 0)])
        pads = padding if isinstance(padding, tuple) else (padding, padding)
        h, w = rng.randint(max(1, 3 - 2 * pads[0]), 8), rng.randint(max(1, 3 - 2 * pads[1]), 8)
        dtype, precision = rng.choice(PRECISIONS)
        case = (rng.choice([1, 2]), c, h, w, k, padding, rng.random() < 0.5, rng.random() < 0.5, rng.random() < 0.5,
                rng.choice(["none", "relu", "relu6", "gelu"]))
        x, wt, _ = random_conv_inputs(1, c, h, w, k, c // groups, 3, 3, dtype=dtype)
        problem = make_problem(x, wt, None, 1, padding, 1, groups, precision=precision)
        assert FAMILY.supports(problem) is None and FAMILY in families_for(problem)
        space = FAMILY.space(problem)
        while True:
            config = {p.name: rng.choice(p.choices) for p in space.params}
            config.update(BLOCK_M=rng.choice([16, 32]), num_stages=rng.choice([1, 2]))
            if space.violation(problem, config, pruning=False) is None:
                break
        problem, err = run_case(case, dtype, precision, config, groups=groups, seed=seed)
        assert err <= BOUND[(config["TILE"], problem.precision)], f"{problem.key} {config}: {err:.3g}"


@pytest.mark.parametrize("change,reason", [
    (dict(r=5, s=5, pad_h=2, pad_w=2), "3x3"), (dict(r=1, s=3), "3x3"), (dict(stride_h=2), "stride 1"),
    (dict(dilation_w=2), "dilation 1"), (dict(groups=2000, c=16000, k=16000), "grid"),
    (dict(groups=2, c=8, k=16), "channels per group"), (dict(groups=8, k=64), "channels per group"),
])
def test_supports_refuses_outside_its_range(change, reason):
    problem = ConvProblem(n=1, c=8, h=9, w=9, k=8, r=3, s=3, pad_h=1, pad_w=1, dtype="float32").with_(**change)
    refusal = FAMILY.supports(problem)
    assert refusal and reason in refusal
    assert FAMILY not in families_for(problem)
    with pytest.raises(InvalidConfigError, match="winograd.*does not support"):
        dispatch.resolve_config(problem, {"family": "winograd"})


@pytest.mark.skipif(not INTERPRET, reason="the interpreter's bf16 tl.dot")
def test_bf16_is_refused_in_the_interpreter():
    problem = ConvProblem(n=1, c=8, h=9, w=9, k=8, r=3, s=3, pad_h=1, pad_w=1, dtype="bfloat16")
    assert "bf16" in FAMILY.supports(problem)
    assert "bf16" in FAMILY.supports(problem.with_(dtype="float32", precision="bf16"))


def test_space_states_the_tiles_per_precision():
    base = ConvProblem(n=1, c=8, h=9, w=9, k=8, r=3, s=3, pad_h=1, pad_w=1, dtype="float32")
    tiles = {p: FAMILY.space(base.with_(precision=p)).param("TILE").choices for p in ("ieee", "tf32", "tf32x3", "fp16", "bf16")}
    assert tiles == {"ieee": (2, 4), "tf32": (2,), "tf32x3": (2, 4), "fp16": (2, 4), "bf16": (2,)}
    with pytest.raises(InvalidConfigError, match="TILE=4"):
        FAMILY.complete_config(base.with_(precision="tf32"), {"TILE": 4})
    assert all(c["TILE"] == 2 for c in FAMILY.heuristic_configs(base.with_(precision="tf32")))


def test_never_the_untuned_default():
    for problem in (ConvProblem(n=1, c=64, h=56, w=56, k=64, r=3, s=3, pad_h=1, pad_w=1),
                    ConvProblem(n=1, c=8, h=5, w=5, k=8, r=3, s=3, dtype="float32")):
        assert FAMILY in families_for(problem)
        assert dispatch.default_family(problem).name != "winograd"


def test_weight_transform_cached_per_weight_version():
    x, w, _ = random_conv_inputs(1, 4, 6, 6, 5, 4, 3, 3)
    u = transform_weight(w, 2, 1, torch.float32)
    assert transform_weight(w, 2, 1, torch.float32) is u
    assert transform_weight(w, 4, 1, torch.float32) is not u
    assert u.shape == (16, 5, 4)
    config = {"family": "winograd", "TILE": 2, "BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16}
    with torch.no_grad():
        w.mul_(-2.0)  # an in-place update (an optimizer step) must not reuse the old transform
    assert transform_weight(w, 2, 1, torch.float32) is not u
    out = run_poisoned(x, w, None, 1, 1, precision="ieee", config=config)
    assert rel_error(out, reference_conv2d(x, w, None, 1, 1)) <= BOUND[(2, "ieee")]


# ---- the search: a faster candidate above tolerance never wins -------------------------------------------------
class _FavourF43:
    """Real run and error check (the interpreter's), synthetic times that make Winograd F(4,3) the fastest."""

    def __init__(self):
        from tritonconv.search import InProcessRunner

        self.inner = InProcessRunner(timer=lambda fn: (fn(), 1.0)[1])
        self.device, self.target = self.inner.device, self.inner.target
        self.seen = []

    def benchmark(self, problem, config, tolerance):
        m = self.inner.benchmark(problem, config, tolerance)
        self.seen.append((dict(config), m))
        if m.ok:
            m.time_ms = 0.1 if config.get("TILE") == 4 else 0.5 if config["family"] == "winograd" else 1.0
        return m

    def baseline(self, problem):
        from tritonconv.search import Measurement

        return Measurement(error="no baseline")

    def close(self):
        pass


def test_a_winograd_candidate_above_tolerance_never_wins():
    from tritonconv.search import SearchSpace, tune

    problem = ConvProblem(n=1, c=16, h=6, w=6, k=16, r=3, s=3, pad_h=1, pad_w=1, dtype="float16", layout="nhwc")
    runner = _FavourF43()
    base = {"family": "winograd", **FAMILY.default_config(problem), "BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16,
            "num_warps": 4}
    f23, f43 = (runner.inner.benchmark(problem, {**base, "TILE": t}, float("inf")).rel_error for t in (2, 4))
    assert f43 > 2 * f23, (f23, f43)
    tolerance = (f23 * f43) ** 0.5  # F(2,3) within, F(4,3) above
    cache.invalidate()
    try:
        seeds = SearchSpace(problem, precisions=(problem.precision,)).seeds()  # every family's defaults and heuristics
        assert any(seed["family"] == "winograd" and seed["TILE"] == 4 for seed in seeds)
        result = tune(problem, trials=len(seeds), tolerance=tolerance, runner=runner, progress=False, early_stop=None,
                      retime_top=1, cache=False)
    finally:
        cache.invalidate()
    rejected = [m for config, m in runner.seen if config.get("TILE") == 4]
    assert rejected and all(not m.ok and "tolerance" in m.error for m in rejected)
    assert result.family == "winograd" and result.config["TILE"] == 2
    assert result.rel_error <= tolerance


# ---- float64 emulation: tf32 and bf16, which the interpreter cannot compute ----------------------------------
B_T = {2: [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
       4: [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0],
           [0, 4, 0, -5, 0, 1]]}
A_T = {2: [[1, 1, 1, 0], [0, 1, -1, -1]], 4: [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]}


def _tf32(t: torch.Tensor) -> torch.Tensor:
    bits = t.float().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32).double()  # round to 10 mantissa bits


ROUNDING = {"exact": lambda t: t, "tf32": _tf32, "fp16": lambda t: t.half().double(), "bf16": lambda t: t.bfloat16().double()}


def emulated_winograd(x: torch.Tensor, w: torch.Tensor, padding: int, tile: int, rounding: str) -> torch.Tensor:
    """The family's algorithm in float64 with the GEMM operands V and U rounded as the tensor cores see them."""
    n, _, h, width = x.shape
    alpha = tile + 2
    bt, at, g = (torch.tensor(m, dtype=torch.float64) for m in (B_T[tile], A_T[tile], G_MATRIX[tile]))
    p, q = h + 2 * padding - 2, width + 2 * padding - 2
    th, tw = -(-p // tile), -(-q // tile)
    padded = F.pad(x, (padding, tw * tile + 2 - width - padding, padding, th * tile + 2 - h - padding))
    d = padded.unfold(2, alpha, tile).unfold(3, alpha, tile)  # n c th tw alpha alpha
    v = ROUNDING[rounding](torch.einsum("ai,ncxyij,bj->abnxyc", bt, d, bt))
    u = ROUNDING[rounding](torch.einsum("ar,kcrs,bs->abck", g, w, g))
    m = torch.einsum("abnxyc,abck->abnxyk", v, u)
    y = torch.einsum("ia,abnxyk,jb->nkxiyj", at, m, at).reshape(n, w.shape[0], th * tile, tw * tile)
    return y[:, :, :p, :q]


def test_rounded_transform_errors_per_precision():
    """Exact in float64 (the transform matrices are right); with rounded operands, the README's numbers: tf32
    F(4,3) exceeds its default tolerance and bf16 F(4,3) reaches it (so their spaces keep to F(2,3)), fp16 F(4,3)
    stays well within."""
    worst: dict[tuple[int, str], float] = {}
    for seed, (n, c, h, width, k) in enumerate([(1, 16, 8, 8, 16), (2, 32, 6, 10, 24), (1, 64, 14, 14, 64)]):
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(n, c, h, width, generator=gen, dtype=torch.float64)
        w = torch.randn(k, c, 3, 3, generator=gen, dtype=torch.float64) / (9 * c) ** 0.5
        for padding in (0, 1):
            ref = F.conv2d(x, w, padding=padding)
            for tile in (2, 4):
                for rounding in ROUNDING:
                    err = ((emulated_winograd(x, w, padding, tile, rounding) - ref).norm() / ref.norm()).item()
                    worst[(tile, rounding)] = max(worst.get((tile, rounding), 0.0), err)
    assert worst[(2, "exact")] < 1e-13 and worst[(4, "exact")] < 1e-13
    for rounding in ("tf32", "fp16", "bf16"):
        assert worst[(2, rounding)] < TOLERANCE[rounding] / 3, (rounding, worst[(2, rounding)])
    assert worst[(4, "tf32")] > TOLERANCE["tf32"] and worst[(4, "bf16")] > TOLERANCE["bf16"] * 0.8  # at the edge
    assert worst[(4, "fp16")] < TOLERANCE["fp16"] / 2


# ---- real compile for sm_80 / sm_90 ---------------------------------------------------------------------------
COMPILE_SCRIPT = r"""
import json, sys
from tritonconv import ConvProblem
from tritonconv.compile import compile_config
from tritonconv.kernels import get_family
from tritonconv.runtime import COMPILE_TARGETS
family = get_family("winograd")
rows = []
for cc, n, dtype, layout, precision, variant, tile in json.loads(sys.argv[1]):
    size = 128 if n > 64 else 28
    problem = ConvProblem(n=n, c=256 if n > 64 else 64, h=size, w=size, k=64, r=3, s=3, pad_h=1, pad_w=1, dtype=dtype,
                          layout=layout, precision=precision)
    configs = family.heuristic_configs(problem, COMPILE_TARGETS[cc])
    config = next(c for c in configs if (c["VARIANT"], c["TILE"]) == (variant, tile))
    usage = compile_config(family, problem, config, cc, residual=True)
    rows.append({"sm": cc, "problem": problem.key, "variant": variant, "int64": problem.needs_int64,
                 "usage": [u.__dict__ for u in usage]})
print(json.dumps(rows))
"""
# (sm, batch, dtype, layout, precision, variant, tile) of heuristic configs; batch 512 is a 2^31-element input: the
# 64-bit indexing variant.
COMPILED = [(80, 2, "float16", "nhwc", "", "fused", 2), (80, 2, "float32", "nchw", "tf32", "three_kernels", 2),
            (90, 2, "bfloat16", "nchw", "", "fused", 2), (90, 512, "float16", "nhwc", "", "fused", 4)]


def test_compiles_for_sm80_and_sm90_with_tensor_cores_and_no_spills():
    rows = run_compiler_script(COMPILE_SCRIPT, json.dumps(COMPILED))
    assert len(rows) == len(COMPILED) and [row["int64"] for row in rows] == [False] * 3 + [True]
    for row in rows:
        transform_in, gemm, *transform_out = row["usage"]  # the three-kernel variant's output transform last
        assert len(transform_out) == (row["variant"] == "three_kernels")
        assert all(u["stack_bytes"] == 0 for u in row["usage"]), row
        if row["sm"] == 90:
            assert gemm["hgmma"] > 0 or gemm["hmma"] > 0, row
        else:
            assert gemm["hmma"] > 0 and gemm["hgmma"] == 0, row
        assert all(u["hmma"] == u["hgmma"] == 0 for u in [transform_in, *transform_out])
