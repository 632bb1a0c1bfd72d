"""tritonconv.suite: the one suite format and loader, the suites shipped once as package data, and the one
meaning of --shapes (globs on whole names; a plain name is exact) for tune, bench, compile and bench/gemm.py."""
import json
import subprocess
import sys

import pytest

from tests import REPO
from tests.helpers import compiler_env
from tritonconv import suite
from tritonconv.errors import InvalidInputError


def test_suites_ship_once_with_the_package():
    assert suite.CONV_SUITE == REPO / "tritonconv" / "suites" / "conv2d.json"
    assert suite.GEMM_SUITE.parent == suite.CONV_SUITE.parent
    assert not (REPO / "bench" / "suites").exists()
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'tritonconv = ["suites/*.json"]' in pyproject


def test_the_shipped_gemm_suite_loads_as_gemm_shapes():
    shapes = suite.load_suite(suite.GEMM_SUITE, kind="gemm")
    raw = json.loads(suite.GEMM_SUITE.read_text())["shapes"]
    assert [(s.name, s.m, s.n, s.k) for s in shapes] == [(e["name"], e["m"], e["n"], e["k"]) for e in raw]


@pytest.mark.parametrize("entry, message", [
    ({"name": "a", "m": 8.0, "n": 4, "k": 4}, r"#0 \('a'\): field 'm' must be a positive integer, got 8\.0"),
    ({"name": "a", "m": 8, "n": 4}, r"missing required field 'k'"),
    ({"name": "a", "m": 8, "n": 4, "k": 4, "kk": 1}, r"unknown field 'kk'"),
    ({"m": 8, "n": 0, "k": 4}, r"#0: field 'n' must be a positive integer"),
    ([8, 4, 4], r"#0: a shape must be an object"),
])
def test_bad_gemm_entries_name_the_file_entry_and_field(tmp_path, entry, message):
    path = tmp_path / "gemm.json"
    path.write_text(json.dumps({"shapes": [entry]}))
    with pytest.raises(InvalidInputError, match=rf"gemm\.json.*{message}"):
        suite.load_suite(path, kind="gemm")


def test_a_conv_suite_is_not_read_as_a_gemm_suite():
    with pytest.raises(InvalidInputError, match=r"unknown field"):
        suite.load_suite(suite.CONV_SUITE, kind="gemm")


def test_shapes_are_globs_on_whole_names_and_a_plain_name_is_exact():
    shapes = suite.load_suite()
    assert [s.name for s in suite.select(shapes, ["r50_l1_3x3"], source="x")] == ["r50_l1_3x3"]
    assert {s.name for s in suite.select(shapes, ["r50_l1_*"], source="x")} == \
        {s.name for s in shapes if s.name.startswith("r50_l1_")}
    with pytest.raises(InvalidInputError, match=r"'l1_3x3' matches no shape .*globs on whole names"):
        suite.select(shapes, ["l1_3x3"], source="x")  # not a substring match


def test_bench_gemm_takes_the_shared_suite_options_and_refuses_bad_ones_before_the_gpu_check():
    done = subprocess.run([sys.executable, "bench/gemm.py", "--shapes", "no_such_gemm*"], cwd=REPO, env=compiler_env(),
                          capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 2 and "Traceback" not in output, output
    assert "'no_such_gemm*' matches no shape" in output and "gemm.json" in output
