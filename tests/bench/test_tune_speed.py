"""bench/tune_speed.py's projection: built from the measured quantities only (GPU seconds assumed, labelled),
the compile side in CPU seconds over 15 workers, the tuner's asks overlapping the GPU worker."""
from __future__ import annotations

import importlib.util

import pytest

from tests import REPO
from tests.helpers import compiler_env


@pytest.fixture(scope="module")
def tune_speed():
    spec = importlib.util.spec_from_file_location("tune_speed", REPO / "bench" / "tune_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _measured(early: bool, ask_cpu: float | None = None) -> dict:
    row = {"candidates_measured": 40, "stopped_early": early, "check_s": 0.0, "time_s": 0.0}
    return {"problems": [row, dict(row)], "machine": {"compile_workers": 2}, "pool_start_cpu_s_per_worker": 3.0,
            "pool_start_s": 9.0, "tuner_process_cpu_s": 4.0, "tuner_ask_cpu_s": ask_cpu,
            "compile_pool": {"compile_cpu_s": 60.0, "finished": 75}}


def test_projection_from_cpu_seconds_and_assumed_gpu_time(tune_speed):
    p = tune_speed.project(_measured(early=False), measured_gpu=False)
    n = len(tune_speed.RESNET50)
    assert p["g_source"].startswith("assumed") and p["kind"].startswith("projection")
    assert p["K_compile_cpu_s_per_problem_measured_here"] == 30.0 and p["c_job_compile_cpu_s_measured_here"] == 0.8
    assert p["W_wasted_compile_cpu_s_per_problem"] == 0.0  # no search stopped early: nothing in flight was dropped
    assert p["compile_side_s"] == pytest.approx(n * 30.0 / 15)
    series = n * (40 * 0.05 + 3 * 0.15 + 0.3 + 2.0)  # the tuner's 2 CPU seconds per problem in series with the GPU
    assert p["gpu_and_tuner_side_s"] == pytest.approx(series) and p["f_ask_share_of_tuner_cpu"] is None
    assert p["projected_total_s"] == pytest.approx(3.0 + 0.8 + max(n * 2.0, series))
    assert p["upper_bound_without_overlap_s"] == pytest.approx(3.0 + n * 2.0 + series)


def test_early_stops_waste_the_compiles_in_flight_and_asks_overlap_the_gpu(tune_speed):
    p = tune_speed.project(_measured(early=True, ask_cpu=3.0), measured_gpu=False)
    n = len(tune_speed.RESNET50)
    assert p["W_wasted_compile_cpu_s_per_problem"] == pytest.approx((15 - 2) * 0.8)
    # asks take 1.5 of the tuner's 2 CPU seconds per problem, less than the GPU's 2 s of screening: hidden
    assert p["gpu_and_tuner_side_s"] == pytest.approx(n * (40 * 0.05 + 0.5 + 3 * 0.15 + 0.3))


def test_a_tuner_only_run_measures_the_tuner_and_projects(tmp_path):
    """The script itself (without the interpreter: it refuses one), on one problem, compiling nothing."""
    import json
    import subprocess
    import sys

    out = tmp_path / "speed.json"
    done = subprocess.run([sys.executable, "bench/tune_speed.py", "--tuner-only", "--problems", "1", "--trials", "3",
                           "--workers", "1", "--out", str(out)], cwd=REPO, env=compiler_env(),
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["mode"].startswith("tuner only") and len(result["problems"]) == 1
    assert 0 < result["tuner_ask_cpu_s"] <= result["tuner_process_cpu_s"]  # the asks were timed
    assert result["compile_pool"]["jobs"] >= 1 and result["problems"][0]["candidates_measured"] >= 1
    assert result["projection_resnet50_b32_16_cores"]["f_ask_share_of_tuner_cpu"] > 0
