"""The refusals families share (kernels.common.checks): the launch grid's limits and the one weight every image
reads, each family refusing exactly past the limit and naming it."""
from __future__ import annotations

import pytest

from tritonconv.kernels import FAMILIES
from tritonconv.kernels.common.checks import MAX_GRID_X, MAX_GRID_YZ, groups_grid_reason, programs_reason
from tritonconv.problem import ConvProblem
from tritonconv.runtime import COMPILE_TARGETS

SM80 = COMPILE_TARGETS[80]


def grouped(groups: int, per_group: int = 8, **fields) -> ConvProblem:
    return ConvProblem(n=1, c=groups * per_group, h=8, w=8, k=groups * per_group, r=3, s=3, pad_h=1, pad_w=1,
                       groups=groups, **fields)


def test_grid_reasons_start_just_past_the_limits():
    assert programs_reason(MAX_GRID_X) is None
    assert programs_reason(MAX_GRID_X + 1) == f"{MAX_GRID_X + 1} programs exceed the launch grid's limit of {MAX_GRID_X}"
    assert groups_grid_reason(grouped(MAX_GRID_YZ)) is None
    assert groups_grid_reason(grouped(MAX_GRID_YZ + 1)) == f"groups={MAX_GRID_YZ + 1} exceeds the launch grid's limit of 65535"
    assert groups_grid_reason(grouped(MAX_GRID_YZ // 36), 36) is None
    assert groups_grid_reason(grouped(MAX_GRID_YZ // 36 + 1), 36).endswith("limit of 65535 // 36")


# (family, problem fields, programs per group on grid axis 1): the three-kernel Winograd GEMM walks 6 x 6 positions.
GROUP_AXIS_FAMILIES = [("implicit_gemm", {}, 1), ("int8_implicit_gemm", {"dtype": "int8", "precision": "int8"}, 1),
                       ("winograd", {}, 36)]


@pytest.mark.parametrize("name,fields,per_group", GROUP_AXIS_FAMILIES, ids=[f[0] for f in GROUP_AXIS_FAMILIES])
def test_families_walking_the_groups_on_grid_axis_1_refuse_one_group_past_its_limit(name, fields, per_group):
    family, most = FAMILIES[name], MAX_GRID_YZ // per_group
    assert family.supports(grouped(most, **fields), SM80) is None
    reason = family.supports(grouped(most + 1, **fields), SM80)
    assert reason is not None and f"groups={most + 1}" in reason and "launch grid" in reason


@pytest.mark.parametrize("name", ["depthwise", "small_group", "int8_implicit_gemm"])
def test_families_reading_one_weight_refuse_batched_weights(name):
    fields = {"dtype": "int8", "precision": "int8"} if name.startswith("int8") else {}
    problem = grouped(16, per_group=1 if name == "depthwise" else 8, **fields)
    assert FAMILIES[name].refusal(problem, SM80) is None
    assert FAMILIES[name].refusal(problem.with_(batched_weight=True), SM80) == "no batched (per-image) weights"


@pytest.mark.parametrize("name,per_group", [("depthwise", 1), ("small_group", 8)])
def test_one_dimensional_grids_refuse_problems_whose_largest_tiles_overflow_axis_0(name, per_group):
    family = FAMILIES[name]
    fits = ConvProblem(n=1, c=16 * per_group, h=64, w=64, k=16 * per_group, r=3, s=3, pad_h=1, pad_w=1, groups=16)
    huge = fits.with_(n=2**31)
    assert family.supports(fits, SM80) is None
    reason = family.supports(huge, SM80)
    assert reason is not None and reason.endswith(f"programs exceed the launch grid's limit of {MAX_GRID_X}")
