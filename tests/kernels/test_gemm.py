"""1x1 convolutions on the "gemm" family vs float64 F.conv2d: NCHW/NHWC, strided gathers, split-K, epilogue."""
from __future__ import annotations

import pytest
import torch

import tritonconv

from tritonconv.errors import InvalidConfigError
from tritonconv.dispatch import default_family
from tritonconv.functional import make_problem
from tritonconv.kernels import get_family
from tritonconv.kernels.common.checks import MAX_GRID_YZ
from tritonconv.problem import ConvProblem
from tritonconv.runtime import COMPILE_TARGETS

from tests.helpers import TOLERANCE, random_conv_inputs, reference_conv2d, rel_error, run_poisoned

GEMM_CONFIGS = [
    {"family": "gemm"},
    {"family": "gemm", "BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "GROUP_M": 1},
    {"family": "gemm", "BLOCK_M": 32, "BLOCK_N": 16, "BLOCK_K": 16, "SPLIT_K": 2},
]


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("stride", [1, 2, (3, 1)])
@pytest.mark.parametrize("config", GEMM_CONFIGS, ids=["default", "t16", "split2"])
def test_1x1_conv_matches_reference(channels_last, stride, config):
    x, w, b = random_conv_inputs(2, 35, 7, 5, 19, 35, 1, 1, channels_last=channels_last, seed=len(str(stride)))
    problem = make_problem(x, w, b, stride)
    residual = torch.randn(problem.output_shape)
    if channels_last:
        residual = residual.contiguous(memory_format=torch.channels_last)
    out = run_poisoned(x, w, b, stride, activation="relu", residual=residual, precision="ieee", config=config)
    ref = reference_conv2d(x, w, b, stride, activation="relu", residual=residual)
    assert rel_error(out, ref) < TOLERANCE["ieee"]
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last


@pytest.mark.parametrize("dtype,precision", [(torch.float16, None), (torch.float32, "fp16")])
def test_half_precisions(dtype, precision):
    x, w, b = random_conv_inputs(3, 24, 4, 6, 40, 24, 1, 1, dtype=dtype, channels_last=True, seed=3)
    for config in GEMM_CONFIGS[1:]:
        out = run_poisoned(x, w, b, activation="gelu", precision=precision, config=config)
        assert rel_error(out, reference_conv2d(x, w, b, activation="gelu")) < TOLERANCE["fp16"]


def test_supports_agrees_with_problem_kinds():
    gemm = get_family("gemm")
    x, w, _ = random_conv_inputs(1, 16, 6, 6, 8, 16, 1, 1)
    assert gemm.supports(make_problem(x, w, stride=2, dilation=3)) is None  # dilation is irrelevant for 1x1
    assert default_family(make_problem(x, w)).name == "gemm"
    assert "1x1" in gemm.supports(make_problem(x, torch.randn(8, 16, 3, 3)))
    assert "padding" in gemm.supports(make_problem(x, w, padding=1))
    assert "groups" in gemm.supports(make_problem(x, torch.randn(8, 8, 1, 1), groups=2))
    with pytest.raises(InvalidConfigError, match="does not support"):
        run_poisoned(x, w, padding=1, config={"family": "gemm"})


@pytest.mark.parametrize("layout,batched", [("nchw", False), ("nhwc", True)])
def test_refuses_one_image_past_the_grid_axis_it_walks(layout, batched):
    """NCHW inputs and batched weights take one grid row (axis 1) per image: up to MAX_GRID_YZ of them;
    NHWC rows of one weight are flattened into axis 0 instead."""
    gemm = get_family("gemm")
    most = ConvProblem(n=MAX_GRID_YZ, c=16, h=2, w=2, k=8, r=1, s=1, layout=layout, batched_weight=batched)
    assert gemm.supports(most, COMPILE_TARGETS[80]) is None
    assert gemm.supports(most.with_(n=MAX_GRID_YZ + 1), COMPILE_TARGETS[80]) == (
        f"more than {MAX_GRID_YZ} batches in the launch grid")
    assert gemm.supports(most.with_(n=MAX_GRID_YZ + 1, layout="nhwc", batched_weight=False), COMPILE_TARGETS[80]) is None


def test_space_constraints_and_heuristics():
    gemm = get_family("gemm")
    x, w, _ = random_conv_inputs(1, 40, 3, 3, 8, 40, 1, 1)
    problem = make_problem(x, w)
    space = gemm.space(problem)
    assert "SPLIT_K" in space.violation(problem, {**gemm.default_config(problem), "BLOCK_K": 32, "SPLIT_K": 4})
    configs = gemm.heuristic_configs(problem)
    assert configs[0] == gemm.default_config(problem)
    assert all(space.violation(problem, c, pruning=False) is None for c in configs)


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_strided_1x1_every_batch_and_family(n, channels_last, dtype):
    """Strided 1x1 convs (ResNet's downsample shortcut) at batch 1 and 2: rows must be decoded whenever the
    stride makes them non-linear, whatever the batch (batch 1 once read them as flat rows: garbage)."""
    from tritonconv.kernels import families_for

    precision = "ieee" if dtype == torch.float32 else None
    tolerance = TOLERANCE["ieee" if dtype == torch.float32 else "fp16"]
    for case, (h, w, stride) in enumerate([(8, 8, 2), (7, 9, (2, 1)), (6, 5, (1, 3)), (5, 4, 3)]):
        x, wt, b = random_conv_inputs(n, 12, h, w, 20, 12, 1, 1, dtype=dtype, channels_last=channels_last, seed=case)
        problem = make_problem(x, wt, b, stride, precision=precision)
        residual = torch.randn(problem.output_shape).to(dtype)
        ref = reference_conv2d(x, wt, b, stride, activation="relu", residual=residual)
        out = tritonconv.conv2d(x, wt, b, stride, activation="relu", residual=residual, precision=precision)
        assert rel_error(out, ref) < tolerance, ("default dispatch", h, w, stride)
        families = [f.name for f in families_for(problem)]
        assert "gemm" in families
        for family in families:
            out = run_poisoned(x, wt, b, stride, activation="relu", residual=residual, precision=precision,
                               config={"family": family})
            assert rel_error(out, ref) < tolerance, (family, h, w, stride)
