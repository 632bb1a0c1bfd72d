"""tritonconv.config.resolve_config: an explicit config is validated and completed with its family's defaults
(the implicit-GEMM family when it names none); dispatch options are checked against their choices by type."""
from __future__ import annotations

import pytest

from tritonconv.config import resolve_config
from tritonconv.errors import InvalidConfigError
from tritonconv.kernels import DEFAULT_FAMILY, get_family
from tritonconv.problem import ConvProblem

PROBLEM = ConvProblem(n=1, c=8, h=6, w=6, k=16, r=3, s=3, pad_h=1, pad_w=1, dtype="float32", layout="nhwc",
                      precision="ieee")
DEPTHWISE = ConvProblem(n=1, c=8, h=6, w=6, k=8, r=3, s=3, pad_h=1, pad_w=1, groups=8, dtype="float32")


def test_no_family_means_the_general_family_completed_with_its_defaults():
    family, config = resolve_config(PROBLEM, {})
    assert family.name == DEFAULT_FAMILY == "implicit_gemm"
    assert config == family.default_config(PROBLEM)
    # Also for a problem the default dispatch would give to another family: a config means one thing.
    assert resolve_config(DEPTHWISE, {})[0].name == DEFAULT_FAMILY


def test_given_parameters_override_the_defaults_and_the_rest_is_filled_in():
    family = get_family("implicit_gemm")
    default = family.default_config(PROBLEM)
    other_block_m = next(v for v in (16, 32, 64, 128) if v != default["BLOCK_M"])
    _, config = resolve_config(PROBLEM, {"family": "implicit_gemm", "BLOCK_M": other_block_m})
    assert config == {**default, "BLOCK_M": other_block_m}
    assert "family" not in config


def test_dispatch_options_are_kept_and_checked_by_type():
    _, config = resolve_config(PROBLEM, {"convert_nhwc": True, "precision": "tf32"})
    assert config["convert_nhwc"] is True and config["precision"] == "tf32"
    with pytest.raises(InvalidConfigError, match=r"convert_nhwc=1 is not one of \[False, True\]"):
        resolve_config(PROBLEM, {"convert_nhwc": 1})
    with pytest.raises(InvalidConfigError, match="precision 'tf32' is not available for float16"):
        resolve_config(PROBLEM.with_(dtype="float16", precision="fp16"), {"precision": "tf32"})


def test_a_family_that_does_not_support_the_problem_is_refused():
    with pytest.raises(InvalidConfigError, match="family 'depthwise' does not support this problem"):
        resolve_config(PROBLEM, {"family": "depthwise"})
    with pytest.raises(InvalidConfigError, match="unknown kernel family 'nope'"):
        resolve_config(PROBLEM, {"family": "nope"})


def test_unknown_parameters_and_values_outside_the_space_are_refused():
    with pytest.raises(InvalidConfigError, match=r"has no parameter\(s\) \['BLOK_M'\]"):
        resolve_config(PROBLEM, {"BLOK_M": 32})
    with pytest.raises(InvalidConfigError, match="is invalid for family 'implicit_gemm'"):
        resolve_config(PROBLEM, {"BLOCK_M": 3})
