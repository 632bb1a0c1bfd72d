"""Small-group family (block-diagonal MMA and direct FMA modes): randomized correctness vs float64 F.conv2d,
supports() agreement, config-space sanity, and a real compile (sm_80, sm_90) of the defaults."""
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

FAMILY = get_family("small_group")
# (groups, C/groups, K/groups): ResNeXt-like, odd RegNet-like widths, groups not dividing the tile, depthwise.
GROUPINGS = [(4, 4, 4), (3, 8, 8), (5, 3, 2), (2, 12, 24), (7, 1, 3), (3, 5, 7), (6, 2, 2), (2, 9, 17)]
PRECISIONS = [(torch.float32, "ieee"), (torch.float32, "fp16"), (torch.float16, None), (torch.float32, "tf32")]
ACTIVATIONS = Activation.names()


def random_case(seed: int) -> dict:
    rng = random.Random(seed)
    groups, cg, kg = GROUPINGS[seed % len(GROUPINGS)]
    r, s = rng.choice([(3, 3), (3, 3), (1, 1), (2, 2), (1, 3), (3, 1)])
    stride = rng.choice([1, 1, 2, (1, 2)])
    dilation = rng.choice([1, 1, 2, (1, 2)])
    dil = dilation if isinstance(dilation, tuple) else (dilation, dilation)
    padding = "same" if stride == 1 and rng.random() < 0.3 else rng.choice([0, 1, (1, 0), (0, 2)])
    dtype, precision = rng.choice(PRECISIONS)
    return dict(
        n=rng.choice([1, 2]), groups=groups, cg=cg, kg=kg, r=r, s=s,
        h=dil[0] * (r - 1) + rng.randint(2, 6), w=dil[1] * (s - 1) + rng.randint(2, 6),
        stride=stride, padding=padding, dilation=dilation, dtype=dtype, precision=precision,
        channels_last=rng.random() < 0.6, bias=rng.random() < 0.6, residual=rng.random() < 0.4,
        activation=rng.choice(ACTIVATIONS), seed=seed,
    )


def check_case(case: dict, device: str, configs: list[dict] | None = None) -> None:
    groups = case["groups"]
    x, w, b = random_conv_inputs(
        case["n"], groups * case["cg"], case["h"], case["w"], groups * case["kg"], case["cg"], case["r"], case["s"],
        dtype=case["dtype"], device=device, channels_last=case["channels_last"], seed=case["seed"],
    )
    conv_args = (b if case["bias"] else None, case["stride"], case["padding"], case["dilation"], groups)
    problem = make_problem(x, w, *conv_args, precision=case["precision"])
    assert FAMILY.supports(problem) is None and FAMILY in families_for(problem)
    residual = None
    if case["residual"]:
        residual = torch.randn(problem.output_shape, generator=torch.Generator().manual_seed(case["seed"] + 1))
        residual = residual.to(device=device, dtype=case["dtype"])
    ref = reference_conv2d(x, w, *conv_args, activation=case["activation"], residual=residual)
    rng = random.Random(case["seed"])
    if configs is None:  # a random config of each mode among those fast enough for the interpreter
        configs = [
            config
            for mode in ("block_diag", "direct")
            for config in sample_configs(FAMILY, problem, rng, 1, max_programs=2, where=lambda c, mode=mode: c["MODE"] == mode)
        ]
    assert len(configs) >= 2, "several configs per case"
    for config in configs:
        out = run_poisoned(x, w, *conv_args, activation=case["activation"], residual=residual,
                           precision=case["precision"], config={"family": FAMILY.name, **config})
        err = rel_error(out, ref)
        assert err <= TOLERANCE[problem.precision], f"{problem.key} {config}: rel error {err:.2e}"


def test_default_config(device):
    """The default config (small tiles, to fill a GPU) on a problem small enough for the interpreter."""
    for dtype, precision, cg, kg, mode in [(torch.float16, None, 4, 4, "block_diag"), (torch.float32, "ieee", 2, 3, "direct")]:
        case = dict(n=1, groups=4, cg=cg, kg=kg, r=3, s=3, h=4, w=5, stride=1, padding=1, dilation=1, dtype=dtype,
                    precision=precision, channels_last=True, bias=True, residual=False, activation="relu", seed=5)
        x, w, _ = random_conv_inputs(1, 4 * cg, 4, 5, 4 * kg, cg, 3, 3, dtype=dtype)
        default = FAMILY.default_config(make_problem(x, w, None, 1, 1, 1, 4, precision=precision))
        assert default["MODE"] == mode
        check_case(case, device, [default, {**default, "BLOCK_M": 32}])


@pytest.mark.parametrize("seed", range(16))
def test_random_sweep(seed, device):
    check_case(random_case(seed), device)


@pytest.mark.parametrize("mode", ["block_diag", "direct"])
def test_tiles_straddle_groups(mode, device):
    """Kg=6 with BLOCK_N=16: tiles start mid-group, span 3-4 groups, and the last tile is partly masked."""
    case = dict(n=1, groups=5, cg=3, kg=6, r=3, s=3, h=6, w=7, stride=1, padding=1, dilation=1,
                dtype=torch.float32, precision="ieee", channels_last=True, bias=True, residual=True,
                activation="gelu", seed=21)
    configs = [dict(MODE=mode, BLOCK_M=64, BLOCK_N=16, BLOCK_K=16, num_warps=2, num_stages=2),
               dict(MODE=mode, BLOCK_M=32, BLOCK_N=16, BLOCK_K=16, num_warps=4, num_stages=1)]
    check_case(case, device, configs)


@pytest.mark.gpu
def test_bfloat16(device):
    case = dict(n=2, groups=8, cg=4, kg=4, r=3, s=3, h=14, w=14, stride=1, padding=1, dilation=1,
                dtype=torch.bfloat16, precision=None, channels_last=True, bias=True, residual=False,
                activation="relu", seed=3)
    check_case(case, device)


# ---- supports() and dispatch -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "c, k, groups, preferred",
    [(8, 8, 1, None), (16, 16, 4, "small_group"), (8, 8, 8, "depthwise"), (64, 64, 2, "implicit_gemm"),
     (48, 96, 2, "implicit_gemm"), (24, 72, 3, "small_group"), (12, 36, 3, "small_group")],
)
def test_supports_and_preference(c, k, groups, preferred):
    problem = ConvProblem(n=2, c=c, h=9, w=9, k=k, r=3, s=3, pad_h=1, pad_w=1, groups=groups)
    supported = FAMILY.supports(problem) is None
    assert supported == (groups > 1)
    assert (FAMILY in families_for(problem)) == supported
    chosen = dispatch.default_family(problem).name
    if preferred == "small_group":
        assert chosen == "small_group"
    else:
        assert chosen != "small_group"


def test_config_space_sanity():
    for entry in [dict(c=128, k=128, groups=32), dict(c=1024, k=1024, groups=32), dict(c=336, k=336, groups=14)]:
        for dtype, layout in [("float16", "nhwc"), ("float32", "nchw")]:
            problem = ConvProblem(n=32, h=28, w=28, r=3, s=3, pad_h=1, pad_w=1, dtype=dtype, layout=layout, **entry)
            space = FAMILY.space(problem)
            configs = FAMILY.heuristic_configs(problem)
            assert {c["MODE"] for c in configs} == {"block_diag", "direct"}
            for config in configs:
                assert space.violation(problem, config, pruning=False) is None, config
    problem = ConvProblem(n=1, c=16, h=8, w=8, k=16, r=3, s=3, groups=4)
    with pytest.raises(InvalidConfigError, match="tensor-core"):
        FAMILY.complete_config(problem, {"MODE": "block_diag", "BLOCK_N": 8})
    with pytest.raises(InvalidConfigError, match="MODE"):
        FAMILY.complete_config(problem, {"MODE": "winograd"})


def test_defaults_compile_for_sm80_sm90_without_spills():
    suite = {s.name: s for s in load_suite()}
    problems = [
        suite["rx50_g32_56"].problem(dtype="float16", layout="nhwc"),
        suite["rx50_g32_28"].problem(dtype="float32", layout="nchw", precision="ieee"),
        ConvProblem(n=16, c=336, h=28, w=28, k=336, r=3, s=3, pad_h=1, pad_w=1, groups=14, dtype="float16"),
    ]
    results = compile_defaults_in_subprocess("small_group", problems)
    assert len(results) == 2 * len(problems)
    for record in results:
        assert record["stack"] == [0], f"default config spills registers: {record}"
    # ResNeXt's 4-channel groups in NHWC: the block-diagonal A tile is read in 16-byte vectors (only the
    # block-diagonal weight gather stays element-wise).
    rx50 = [r for r in results if r["key"] == problems[0].key]
    assert all(r["wide_loads"] > 0 and r["narrow_loads"] < r["wide_loads"] for r in rx50), rx50
