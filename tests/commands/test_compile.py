"""`python -m tritonconv.compile --dtypes int8`: the suite's int8 problems go to the quantized family."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.test_compile_targets import ROOT, _env


def test_compile_int8_suite_problems(tmp_path):
    out = tmp_path / "records.json"
    cmd = [sys.executable, "-m", "tritonconv.compile", "--shapes", "r50_l4_1x1", "--dtypes", "int8,fp16",
           "--layouts", "nhwc", "--targets", "80", "--families", "int8_implicit_gemm", "--jobs", "1", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = json.loads(out.read_text())["records"]
    assert [(r["family"], r["sm"], r["ok"]) for r in records] == [("int8_implicit_gemm", 80, True)]  # fp16: not its
    assert "_int8_nhwc_int8" in records[0]["problem"] and records[0]["usage"][0]["stack_bytes"] == 0
