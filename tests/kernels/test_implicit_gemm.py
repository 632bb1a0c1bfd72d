"""Randomized correctness sweep of tritonconv.conv2d (implicit-GEMM family) against float64 F.conv2d.

Cases are drawn from a seeded generator over every feature the family claims: batch, channels (1, 3, odd),
non-square spatial sizes and 1x1 outputs, 1x1/3x3/5x5/7x7/1x7/7x1 filters, stride 1-3, padding (ints, pairs,
"same", "valid", larger than the filter), dilation 1-4, groups (1, 2, 4, depthwise, channel multiplier), NCHW and
NHWC inputs, float32 (ieee/tf32/tf32x3/fp16/bf16-free) and float16 inputs, bias, activation and residual, and
a random config from the family's space beside the default. Outputs are poisoned with NaN before every launch.
"""
from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

import tritonconv
from tritonconv.enums import Activation
from tritonconv.functional import make_problem
from tritonconv.kernels import get_family

from tests.helpers import TOLERANCE, random_conv_inputs, reference_conv2d, rel_error, run_poisoned

FILTERS = [(1, 1), (3, 3), (5, 5), (7, 7), (1, 7), (7, 1), (2, 3)]
ACTIVATIONS = Activation.names()
SMALL_TILES = {"BLOCK_M": (16, 32, 64), "BLOCK_N": (16, 32, 64), "BLOCK_K": (16, 32, 64)}


def _draw_case(rng: random.Random, index: int) -> dict:
    groups_kind = rng.choice(["dense", "dense", "g2", "g4", "depthwise", "multiplier"])
    cpg = rng.choice([1, 2, 3, 5, 8, 16, 19])
    groups = {"dense": 1, "g2": 2, "g4": 4, "depthwise": rng.choice([3, 8]), "multiplier": rng.choice([2, 5])}[groups_kind]
    if groups_kind in ("depthwise", "multiplier"):
        cpg = 1
    c = cpg * groups
    kpg = rng.choice([1, 2, 3, 8, 17, 32]) if groups_kind != "depthwise" else 1
    if groups_kind == "multiplier":
        kpg = rng.choice([2, 3])
    r, s = rng.choice(FILTERS)
    h, w = rng.randint(1, 12), rng.randint(1, 12)
    stride = rng.choice([1, 1, 2, 3, (1, 2), (3, 1)])
    dilation = rng.choice([1, 1, 1, 2, 3, 4, (2, 1)])
    padding = rng.choice([0, 1, 2, (1, 0), (0, 3), 9, "valid", "same"])
    if padding == "same" and stride not in (1, (1, 1)):
        padding = 1
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    sh, sw = pair(stride)
    dh, dw = pair(dilation)
    if isinstance(padding, str):
        ph = pw = 0 if padding == "valid" else None
    else:
        ph, pw = pair(padding)
    # Grow the input until the output is at least 1x1.
    if ph is not None:
        h = max(h, dh * (r - 1) + 1 - 2 * ph)
        w = max(w, dw * (s - 1) + 1 - 2 * pw)
    dtype, precision = rng.choice(
        [(torch.float32, "ieee"), (torch.float32, "ieee"), (torch.float32, "tf32"), (torch.float32, "tf32x3"),
         (torch.float32, "fp16"), (torch.float16, "fp16"), (torch.float16, None)]
    )
    return dict(
        id=index, n=rng.choice([1, 1, 2, 3]), c=c, h=h, w=w, k=kpg * groups, cpg=cpg, r=r, s=s, stride=stride,
        padding=padding, dilation=dilation, groups=groups, dtype=dtype, precision=precision,
        channels_last=rng.random() < 0.5, bias=rng.random() < 0.6, activation=rng.choice(ACTIVATIONS),
        residual=rng.random() < 0.3, random_config=rng.random() < 0.6, config_seed=rng.randrange(1 << 30),
    )


CASES = [_draw_case(random.Random(1234 + i), i) for i in range(240)]


def _case_id(case: dict) -> str:
    return (
        f"{case['id']}-n{case['n']}c{case['c']}h{case['h']}w{case['w']}k{case['k']}-{case['r']}x{case['s']}"
        f"-st{case['stride']}-p{case['padding']}-d{case['dilation']}-g{case['groups']}"
        f"-{str(case['dtype'])[6:]}-{case['precision']}-{'nhwc' if case['channels_last'] else 'nchw'}"
    )


def _random_config(problem, seed: int) -> dict:
    """A random config from the family's space (small tiles keep the interpreter fast), hard constraints met."""
    family = get_family("implicit_gemm")
    space = family.space(problem)
    rng = random.Random(seed)
    for _ in range(100):
        config = {p.name: rng.choice(SMALL_TILES.get(p.name, p.choices)) for p in space.params}
        if space.violation(problem, config, pruning=False) is None:
            return {"family": "implicit_gemm", **config}
    raise AssertionError("no feasible random config found")


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_conv2d_matches_float64_reference(case, device):
    x, w, b = random_conv_inputs(
        case["n"], case["c"], case["h"], case["w"], case["k"], case["cpg"], case["r"], case["s"],
        dtype=case["dtype"], device=device, channels_last=case["channels_last"], seed=case["id"],
    )
    bias = b if case["bias"] else None
    args = (case["stride"], case["padding"], case["dilation"], case["groups"])
    ref_no_res = reference_conv2d(x, w, bias, *args)
    residual = None
    if case["residual"]:
        residual = torch.randn(ref_no_res.shape, generator=torch.Generator().manual_seed(7)).to(x.device, x.dtype)
    ref = reference_conv2d(x, w, bias, *args, activation=case["activation"], residual=residual)
    config = None
    if case["random_config"]:
        problem = make_problem(x, w, bias, *args, precision=case["precision"])
        config = _random_config(problem, case["config_seed"])
    out = run_poisoned(
        x, w, bias, *args, activation=case["activation"], residual=residual, precision=case["precision"], config=config
    )
    assert out.shape == ref.shape and out.dtype == x.dtype
    precision = case["precision"] or ("fp16" if case["dtype"] == torch.float16 else "ieee")
    assert rel_error(out, ref) <= TOLERANCE[precision], f"config={config}"


@pytest.mark.parametrize("loop_order", ["filter_outer", "channel_outer"])
@pytest.mark.parametrize("weight_layout", ["krsc", "kcrs"])
def test_smoke_every_loop_order_and_weight_layout(loop_order, weight_layout, device):
    x, w, b = random_conv_inputs(2, 6, 9, 7, 4, 3, 3, 2, device=device, channels_last=True)
    config = {"LOOP_ORDER": loop_order, "WEIGHT_LAYOUT": weight_layout, "BLOCK_K": 16, "GROUP_M": 1}
    out = run_poisoned(x, w, b, 2, (1, 0), (1, 2), 2, precision="ieee", config=config)
    assert rel_error(out, reference_conv2d(x, w, b, 2, (1, 0), (1, 2), 2)) <= TOLERANCE["ieee"]


@pytest.mark.parametrize("r, s", [(8, 8), (5, 13), (9, 9)])
def test_filter_outer_loop_with_more_taps_than_a_mask_word(r, s, device):
    """The filter-outer loop marks each row's in-image taps in one 64-bit word: 8x8 uses its sign bit, 65 and more
    taps (5x13, 9x9) check the tap's bounds per step (shifting past bit 63 dropped those taps: wrong outputs)."""
    x, w, b = random_conv_inputs(1, 16, 10, 11, 16, 16, r, s, device=device, channels_last=True)
    config = {"LOOP_ORDER": "filter_outer", "WEIGHT_LAYOUT": "krsc", "BLOCK_M": 64, "BLOCK_N": 16, "BLOCK_K": 16,
              "GROUP_M": 1, "num_warps": 4, "num_stages": 2}
    padding = (r // 2, s // 2)
    out = run_poisoned(x, w, b, 1, padding, 1, 1, precision="ieee", config={"family": "implicit_gemm", **config})
    assert rel_error(out, reference_conv2d(x, w, b, 1, padding)) <= TOLERANCE["ieee"]


def test_smoke_public_conv2d_matches_f_conv2d(device):
    x, w, b = random_conv_inputs(2, 4, 8, 8, 6, 4, 3, 3, device=device)
    out = tritonconv.conv2d(x, w, b, padding=1, precision="ieee", activation="relu")
    assert rel_error(out, reference_conv2d(x, w, b, 1, 1, activation="relu")) <= TOLERANCE["ieee"]


@pytest.mark.parametrize("channels_last", [False, True])
def test_output_keeps_input_memory_format(channels_last, device):
    x, w, _ = random_conv_inputs(1, 4, 5, 6, 8, 4, 3, 3, device=device, channels_last=channels_last)
    out = tritonconv.conv2d(x, w, padding=1, precision="ieee")
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def test_non_contiguous_input_view_is_read_through_strides(device):
    base, w, b = random_conv_inputs(2, 8, 10, 12, 4, 4, 3, 3, device=device)
    x = base[:, ::2, 1:, ::2]  # every other channel, a cropped and strided view
    out = run_poisoned(x, w, b, 1, 1, precision="ieee")
    assert rel_error(out, reference_conv2d(x, w, b, 1, 1)) <= TOLERANCE["ieee"]


def test_unbatched_3d_input_like_f_conv2d(device):
    x, w, b = random_conv_inputs(1, 3, 7, 7, 5, 3, 3, 3, device=device)
    out = tritonconv.conv2d(x[0], w, b, padding="same", precision="ieee")
    assert out.shape == (5, 7, 7)
    assert rel_error(out, reference_conv2d(x[0], w, b, 1, "same")) <= TOLERANCE["ieee"]


def test_empty_batch_returns_empty_output(device):
    x, w, _ = random_conv_inputs(1, 3, 7, 7, 5, 3, 3, 3, device=device)
    out = tritonconv.conv2d(x[:0], w)
    assert out.shape == (0, 5, 5, 5)


def test_residual_in_another_layout_than_the_output(device):
    x, w, b = random_conv_inputs(2, 4, 6, 6, 8, 4, 3, 3, device=device, channels_last=True)
    residual = torch.randn(2, 8, 6, 6, device=device)  # NCHW while the output is NHWC
    out = run_poisoned(x, w, b, 1, 1, activation="relu", residual=residual, precision="ieee")
    ref = reference_conv2d(x, w, b, 1, 1, activation="relu", residual=residual)
    assert rel_error(out, ref) <= TOLERANCE["ieee"]


def test_cudnn_backend_computes_the_same_function(device):
    x, w, b = random_conv_inputs(2, 4, 6, 7, 6, 2, 2, 3, device=device)
    out = tritonconv.conv2d(x, w, b, 1, "same", 2, 2, backend="cudnn", activation="silu")
    ref = reference_conv2d(x, w, b, 1, "same", 2, 2, activation="silu")
    assert rel_error(out, ref) <= 1e-5


def test_default_config_is_a_heuristic_of_the_problem():
    family = get_family("implicit_gemm")
    big = tritonconv.ConvProblem(32, 256, 56, 56, 256, 3, 3, pad_h=1, pad_w=1, dtype="float16")
    stem = tritonconv.ConvProblem(32, 3, 224, 224, 64, 7, 7, 2, 2, 3, 3, dtype="float16")
    tiny = tritonconv.ConvProblem(1, 64, 7, 7, 64, 3, 3, pad_h=1, pad_w=1, dtype="float16")
    assert family.default_config(big)["BLOCK_M"] == 128 and family.default_config(big)["BLOCK_N"] == 128
    assert family.default_config(stem)["LOOP_ORDER"] == "channel_outer"  # C=3: no padding C up to BLOCK_K
    assert family.default_config(big)["LOOP_ORDER"] == "filter_outer"
    assert family.default_config(tiny)["BLOCK_M"] < 128  # shrunk so that the grid fills the GPU
    for problem in (big, stem, tiny):
        assert family.space(problem).violation(problem, family.default_config(problem), pruning=False) is None


def test_problem_key_is_stable_and_counts_work():
    p = tritonconv.ConvProblem(2, 8, 9, 9, 16, 3, 3, 2, 2, 1, 1, 1, 1, 2, dtype="float32", layout="nchw", precision="ieee")
    assert p.key == "n2_c8_h9_w9_k16_r3_s3_st2x2_pad1x1_out5x5_dil1x1_g2_float32_nchw_ieee"
    assert p == tritonconv.ConvProblem.from_dict(p.to_dict()) and hash(p) == hash(tritonconv.ConvProblem.from_dict(p.to_dict()))
    assert p.flops == 2 * (2 * 5 * 5) * 16 * (4 * 3 * 3)
    assert p.min_bytes == (2 * 8 * 9 * 9 + 16 * 4 * 9 + 2 * 16 * 5 * 5) * 4
    assert not p.needs_int64
    assert tritonconv.ConvProblem(4096, 64, 112, 112, 64, 3, 3, pad_h=1, pad_w=1).needs_int64


def test_int64_indexing_is_selected_for_huge_tensors():
    """A launch description for a >2^31-element problem turns on 64-bit offsets (checked without allocating)."""
    from tritonconv.compile import meta_tensors

    problem = tritonconv.ConvProblem(4096, 64, 112, 112, 64, 3, 3, pad_h=1, pad_w=1)
    family = get_family("implicit_gemm")
    (call,) = family.kernel_calls(problem, meta_tensors(problem), family.default_config(problem))
    assert call.constexprs["INDEX_64"] is True


def _nhwc_storage(n, c, h, w):
    """A channels_last tensor whose strides say so even where the shape is ambiguous (C=1, 1x1 images)."""
    return torch.randn(n, h, w, c).permute(0, 3, 1, 2)


# (name, input, weight, groups): memory-format corner cases of F.conv2d's rule (input OR weight channels_last,
# by their strides as torch.Tensor.suggest_memory_format reads them).
MEMORY_FORMAT_CASES = [
    ("c1_channels_last_input", lambda: _nhwc_storage(2, 1, 5, 6), lambda: torch.randn(4, 1, 3, 3), 1),
    ("c1_channels_last_batch1", lambda: torch.empty(1, 1, 5, 6, memory_format=torch.channels_last).normal_(),
     lambda: torch.randn(4, 1, 3, 3), 1),
    ("channels_last_weight", lambda: torch.randn(2, 3, 5, 6), lambda: _nhwc_storage(4, 3, 3, 3), 1),
    ("both_channels_last", lambda: _nhwc_storage(1, 3, 5, 6), lambda: _nhwc_storage(4, 3, 3, 3), 1),
    ("ambiguous_1x1_weight", lambda: torch.randn(2, 3, 5, 6), lambda: _nhwc_storage(4, 3, 1, 1), 1),
    ("channel_sliced_nhwc", lambda: _nhwc_storage(2, 6, 5, 6)[:, ::2], lambda: torch.randn(4, 3, 3, 3), 1),
    ("spatial_sliced_nhwc", lambda: _nhwc_storage(2, 3, 6, 6)[:, :, ::2], lambda: torch.randn(4, 3, 3, 3), 1),
    ("one_pixel_nhwc", lambda: _nhwc_storage(2, 3, 1, 1), lambda: torch.randn(4, 3, 1, 1), 1),
    ("depthwise_channels_last_weight", lambda: torch.randn(2, 4, 5, 6), lambda: _nhwc_storage(8, 1, 3, 3), 4),
    ("grouped_nhwc", lambda: _nhwc_storage(2, 4, 5, 6), lambda: torch.randn(6, 2, 3, 3), 2),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("make_x,make_w,groups", [c[1:] for c in MEMORY_FORMAT_CASES],
                         ids=[c[0] for c in MEMORY_FORMAT_CASES])
def test_output_memory_format_matches_f_conv2d(make_x, make_w, groups, dtype):
    """The output's strides are those F.conv2d (CPU, same tensors) gives, for the real op, the fake kernel
    (meta tensors) and nn.Conv2d; values match float64 too."""
    torch.manual_seed(0)
    x, w = make_x().to(dtype), make_w().to(dtype)
    assert x.dtype == dtype and w.dtype == dtype
    truth = F.conv2d(x.float(), w.float(), None, 1, 1, 1, groups)  # .float() keeps the strides
    out = tritonconv.conv2d(x, w, None, 1, 1, 1, groups)
    assert out.stride() == truth.stride(), (x.stride(), w.stride())
    assert rel_error(out, reference_conv2d(x, w, None, 1, 1, 1, groups)) <= TOLERANCE["fp16"]
    meta = tritonconv.conv2d(x.to("meta"), w.to("meta"), None, 1, 1, 1, groups)
    assert meta.device.type == "meta" and meta.shape == truth.shape and meta.stride() == truth.stride()
    with torch.no_grad():
        module = tritonconv.nn.Conv2d(x.shape[1], w.shape[0], w.shape[2:], padding=1, groups=groups, bias=False)
        module.weight.data = w
        assert module(x).stride() == truth.stride()


def _strided_biases(k: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(k)
    return {
        "every_other": torch.randn(2 * k, generator=gen)[::2],
        "expanded": torch.randn(1, generator=gen).expand(k),
        "matrix_column": torch.randn(k, 3, generator=gen)[:, 1],
    }


# (n, c, h, w, k, groups, r, s): problems the gemm, depthwise, small_group and implicit_gemm families support.
BIAS_PROBLEMS = [(1, 6, 5, 4, 8, 1, 1, 1), (2, 4, 5, 5, 8, 4, 3, 3), (1, 8, 5, 6, 8, 4, 3, 3)]


@pytest.mark.parametrize("shape,channels_last", list(zip(BIAS_PROBLEMS, (False, True, False))),
                         ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else ("nhwc" if v else "nchw"))
def test_non_contiguous_bias_and_residual_in_every_family(shape, channels_last):
    """A bias view with a non-unit stride (a slice, an expanded scalar, a matrix column) is read as the values
    it shows, in every family that supports the problem; so is a non-contiguous residual view."""
    from tritonconv.kernels import families_for

    n, c, h, w, k, groups, r, s = shape
    x, wt, _ = random_conv_inputs(n, c, h, w, k, c // groups, r, s, channels_last=channels_last, seed=k)
    pad = 0 if (r, s) == (1, 1) else 1  # the gemm family runs unpadded 1x1 convs
    problem = make_problem(x, wt, None, 1, pad, 1, groups, precision="ieee")
    families = [f.name for f in families_for(problem)]
    residual = torch.randn(n, problem.p, k, 2 * problem.q).permute(0, 2, 1, 3)[..., ::2]  # neither NCHW nor NHWC
    for name, bias in _strided_biases(k).items():
        assert not bias.is_contiguous()
        ref = reference_conv2d(x, wt, bias, 1, pad, 1, groups, activation="relu", residual=residual)
        for family in families:
            out = run_poisoned(x, wt, bias, 1, pad, 1, groups, activation="relu", residual=residual, precision="ieee",
                               config={"family": family})
            assert rel_error(out, ref) <= TOLERANCE["ieee"], (name, family)
        out = tritonconv.conv2d(x, wt, bias, 1, pad, 1, groups, precision="ieee", activation="relu", residual=residual)
        assert rel_error(out, ref) <= TOLERANCE["ieee"], (name, "default dispatch")


# (n, c, h, w, k, groups, r, s) covering the families that run in the interpreter, as in BIAS_PROBLEMS.
INDEX_PROBLEMS = BIAS_PROBLEMS


@pytest.mark.parametrize("shape", INDEX_PROBLEMS, ids=lambda s: "x".join(map(str, s)))
def test_int64_indexing_is_decided_from_the_largest_offset_of_each_view(shape):
    """A view with few elements but a huge stride (largest element offset >= 2^31) gets 64-bit offsets in every
    family; the same problem on dense tensors keeps 32-bit ones (meta tensors: nothing is allocated)."""
    from tritonconv.compile import meta_tensors
    from tritonconv.kernels import ConvTensors, families_for
    from tritonconv.kernels.base import max_element_offset

    n, c, h, w, k, groups, r, s = shape
    pad = 0 if (r, s) == (1, 1) else 1
    problem = tritonconv.ConvProblem(2, c, h, w, k, r, s, pad_h=pad, pad_w=pad, groups=groups, dtype="float32",
                                     layout="nchw", precision="ieee")
    assert not problem.needs_int64
    dense = meta_tensors(problem, residual=True)
    far = 2**31 // 3  # one image step: the second image of a batch of 2 starts past 2^31 - 1 only with 3 of them
    huge_input = torch.empty_strided((2, c, h, w), (3 * far, h * w, w, 1), device="meta")
    huge_residual = torch.empty_strided(problem.output_shape, (3 * far, problem.p * problem.q, problem.q, 1),
                                        device="meta")
    assert huge_input.numel() < 10_000 and max_element_offset(huge_input) > 2**31 - 1
    families = families_for(problem)
    assert families
    for family in families:
        config = family.default_config(problem)
        assert not any(call.constexprs["INDEX_64"] for call in family.kernel_calls(problem, dense, config))
        for view in ("input", "residual"):
            tensors = ConvTensors(**{**vars(dense), view: huge_input if view == "input" else huge_residual})
            calls = family.kernel_calls(problem, tensors, config)
            assert all(call.constexprs["INDEX_64"] for call in calls), (family.name, view)


def test_int64_indexing_of_a_strided_view_computes_correctly(monkeypatch):
    """The 64-bit path chosen for a strided view (threshold lowered so a small view crosses it) is correct."""
    import tritonconv.kernels.base as base
    from tritonconv.kernels import families_for

    monkeypatch.setattr(base, "INT32_MAX", 2000)
    launched = []
    real_launch = base.KernelCall.launch
    monkeypatch.setattr(base.KernelCall, "launch", lambda call: launched.append(call.constexprs["INDEX_64"])
                        or real_launch(call))
    for n, c, h, w, k, groups, r, s in INDEX_PROBLEMS:
        x, wt, b = random_conv_inputs(n, c, h, w, k, c // groups, r, s, seed=c)
        x = torch.zeros(*x.shape, 40).select(-1, 7).copy_(x)  # stride 40: the largest offset crosses 2000
        assert max(x.numel(), wt.numel(), n * k * h * w) < 2000 < base.max_element_offset(x)
        pad = 0 if (r, s) == (1, 1) else 1
        problem = make_problem(x, wt, b, 1, pad, 1, groups, precision="ieee")
        ref = reference_conv2d(x, wt, b, 1, pad, 1, groups, activation="gelu")
        for family in families_for(problem):
            launched.clear()
            out = run_poisoned(x, wt, b, 1, pad, 1, groups, activation="gelu", precision="ieee",
                               config={"family": family.name})
            assert launched and all(launched), family.name
            assert rel_error(out, ref) <= TOLERANCE["ieee"], family.name
