"""Depthwise / channel-multiplier family: randomized correctness vs float64 F.conv2d, supports() agreement,
config-space sanity, and a real compile (sm_80, sm_90) of the defaults in a subprocess without the interpreter."""
import random

import pytest
import torch

from tests.helpers import TOLERANCE, random_conv_inputs, reference_conv2d, rel_error, run_poisoned, sample_configs
from tests.kernels.helpers import compile_defaults_in_subprocess
from tritonconv import dispatch
from tritonconv.enums import Activation
from tritonconv.errors import InvalidConfigError
from tritonconv.functional import make_problem
from tritonconv.kernels import families_for, get_family
from tritonconv.problem import ConvProblem
from tritonconv.suite import load_suite

FAMILY = get_family("depthwise")
FILTERS = [(3, 3), (3, 3), (3, 3), (5, 5), (1, 7), (7, 1), (2, 2), (1, 1)]
PRECISIONS = [(torch.float32, "ieee"), (torch.float32, "fp16"), (torch.float16, None), (torch.float32, "tf32")]
ACTIVATIONS = Activation.names()


def random_case(seed: int) -> dict:
    """A small depthwise conv with random (odd) sizes, filter, stride, dilation, padding, layout and epilogue."""
    rng = random.Random(seed)
    r, s = rng.choice(FILTERS)
    stride = rng.choice([1, 1, 2, (1, 2), (2, 1)])
    dilation = rng.choice([1, 1, 2, (2, 1)])
    dilation_hw = dilation if isinstance(dilation, tuple) else (dilation, dilation)
    if stride == 1 and rng.random() < 0.4:
        padding = "same"  # asymmetric for even filters: one more at the bottom/right
    else:
        padding = rng.choice([0, 1, (r // 2, s // 2), (1, 0), (2, 3)])
    dtype, precision = rng.choice(PRECISIONS)
    return dict(
        n=rng.choice([1, 2]), c=rng.choice([2, 3, 5, 6, 12, 17]), multiplier=rng.choice([1, 1, 2, 3]),
        h=dilation_hw[0] * (r - 1) + rng.randint(3, 9), w=dilation_hw[1] * (s - 1) + rng.randint(3, 9), r=r, s=s,
        stride=stride, padding=padding, dilation=dilation, dtype=dtype, precision=precision,
        channels_last=rng.random() < 0.6, bias=rng.random() < 0.6, residual=rng.random() < 0.4,
        activation=rng.choice(ACTIVATIONS), seed=seed,
    )


def check_case(case: dict, device: str, configs_per_case: int = 2, max_programs: int = 6) -> None:
    x, w, b = random_conv_inputs(
        case["n"], case["c"], case["h"], case["w"], case["c"] * case["multiplier"], 1, case["r"], case["s"],
        dtype=case["dtype"], device=device, channels_last=case["channels_last"], seed=case["seed"],
    )
    bias = b if case["bias"] else None
    conv_args = (bias, case["stride"], case["padding"], case["dilation"], case["c"])
    problem = make_problem(x, w, *conv_args, precision=case["precision"])
    assert FAMILY.supports(problem) is None
    assert FAMILY in families_for(problem)
    residual = None
    if case["residual"]:
        residual = torch.randn(problem.output_shape, generator=torch.Generator().manual_seed(case["seed"] + 1))
        residual = residual.to(device=device, dtype=case["dtype"])  # NCHW even when the output is NHWC
    ref = reference_conv2d(x, w, *conv_args, activation=case["activation"], residual=residual)
    for config in sample_configs(FAMILY, problem, random.Random(case["seed"]), configs_per_case, max_programs):
        out = run_poisoned(
            x, w, *conv_args, activation=case["activation"], residual=residual,
            precision=case["precision"], config=config,
        )
        assert out.shape == ref.shape
        assert out.is_contiguous(memory_format=torch.channels_last) == (problem.layout == "nhwc")
        err = rel_error(out, ref)
        assert err <= TOLERANCE[problem.precision], f"{problem.key} {config}: rel error {err:.2e}"


@pytest.mark.parametrize("seed", range(14))
def test_random_sweep(seed, device):
    check_case(random_case(seed), device)


@pytest.mark.parametrize(
    "r, s, padding, stride, dilation",
    [
        ((2, 2), None, "same", 1, 1),  # even filter: pads 0 top/left, 1 bottom/right
        ((4, 3), None, "same", 1, (2, 1)),
        ((1, 7), None, (0, 3), 2, 1),
        ((3, 3), None, 0, 3, 1),  # stride larger than the filter: skipped input pixels
    ],
    ids=["same-2x2", "same-4x3-dil", "1x7-s2", "3x3-s3"],
)
def test_edge_padding_and_strides(r, s, padding, stride, dilation, device):
    r, s = r
    case = dict(
        n=1, c=9, multiplier=1, h=11, w=10, r=r, s=s, stride=stride, padding=padding, dilation=dilation,
        dtype=torch.float32, precision="ieee", channels_last=True, bias=True, residual=False, activation=None,
        seed=100 + r * 10 + s,
    )
    check_case(case, device)


def test_large_filter_runtime_loop(device):
    """A 9x9 filter (81 taps) takes the runtime-loop path instead of the unrolled one."""
    case = dict(
        n=1, c=3, multiplier=2, h=10, w=9, r=9, s=9, stride=1, padding=4, dilation=1,
        dtype=torch.float16, precision=None, channels_last=False, bias=True, residual=True, activation="silu",
        seed=7,
    )
    check_case(case, device, configs_per_case=1, max_programs=1)


def test_default_config(device):
    """The default config (small pixel tiles, to fill a GPU) on a problem small enough for the interpreter."""
    x, w, b = random_conv_inputs(1, 4, 5, 6, 4, 1, 3, 3, device=device, channels_last=True, seed=11)
    problem = make_problem(x, w, b, 1, 1, 1, 4, precision="ieee")
    config = {"family": "depthwise", **FAMILY.default_config(problem)}
    out = run_poisoned(x, w, b, 1, 1, 1, 4, activation="relu6", precision="ieee", config=config)
    assert rel_error(out, reference_conv2d(x, w, b, 1, 1, 1, 4, activation="relu6")) <= TOLERANCE["ieee"]


@pytest.mark.gpu
def test_bfloat16(device):
    case = dict(
        n=2, c=16, multiplier=1, h=14, w=14, r=3, s=3, stride=1, padding=1, dilation=1, dtype=torch.bfloat16,
        precision=None, channels_last=True, bias=True, residual=False, activation="relu", seed=3,
    )
    check_case(case, device)


# ---- supports() and dispatch -------------------------------------------------------------------------------
SWEEP = [
    dict(c=4, k=4, groups=4), dict(c=4, k=8, groups=4), dict(c=8, k=8, groups=1), dict(c=8, k=8, groups=4),
    dict(c=8, k=16, groups=2), dict(c=1, k=4, groups=1), dict(c=5, k=15, groups=5),
]


@pytest.mark.parametrize("shape", SWEEP, ids=lambda d: f"c{d['c']}k{d['k']}g{d['groups']}")
def test_supports_matches_depthwise(shape):
    problem = ConvProblem(n=2, h=9, w=9, r=3, s=3, pad_h=1, pad_w=1, **shape)
    supported = FAMILY.supports(problem) is None
    assert supported == (shape["groups"] == shape["c"] > 1)
    assert (FAMILY in families_for(problem)) == supported
    if supported:
        assert dispatch.default_family(problem) is FAMILY  # preference beats the implicit GEMM untuned


def test_config_space_sanity():
    for layout in ("nhwc", "nchw"):
        for dtype in ("float16", "float32"):
            problem = ConvProblem(n=32, c=144, h=56, w=56, k=144, r=3, s=3, pad_h=1, pad_w=1, groups=144,
                                  dtype=dtype, layout=layout)
            space = FAMILY.space(problem)
            for config in FAMILY.heuristic_configs(problem):
                assert space.violation(problem, config) is None, config
            assert FAMILY.default_config(problem) == FAMILY.heuristic_configs(problem)[0]
    problem = ConvProblem(n=1, c=8, h=8, w=8, k=8, r=3, s=3, groups=8)
    with pytest.raises(InvalidConfigError, match="BLOCK_C"):
        FAMILY.complete_config(problem, {"BLOCK_C": 3})
    with pytest.raises(InvalidConfigError, match="registers"):
        FAMILY.complete_config(problem, {"BLOCK_P": 16, "BLOCK_Q": 64, "BLOCK_C": 256, "num_warps": 1})


# ---- real compilation for GPU targets, in a process without the interpreter --------------------------------
def test_defaults_compile_for_sm80_sm90_without_spills():
    suite = {s.name: s for s in load_suite()}
    problems = [
        suite["mv2_dw_112"].problem(dtype="float16", layout="nhwc"),
        suite["mv2_dw_56s2"].problem(dtype="float16", layout="nchw"),
        # 64-bit indexing (> 2^31 elements) and a channel multiplier with a 7x7 filter; meta tensors cost nothing.
        ConvProblem(n=64, c=512, h=256, w=256, k=1024, r=7, s=7, pad_h=3, pad_w=3, groups=512, dtype="float16"),
    ]
    assert problems[-1].needs_int64
    results = compile_defaults_in_subprocess("depthwise", problems)
    assert len(results) == 2 * len(problems)
    for record in results:
        assert record["stack"] == [0], f"default config spills registers: {record}"
        if record["layout"] == "nhwc" and record["multiplier"] == 1:  # channels contiguous: 16-byte vector loads
            assert record["wide_loads"] > 0 and record["narrow_loads"] == 0, record
