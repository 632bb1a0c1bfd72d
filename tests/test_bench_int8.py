"""bench/int8.py --dry-run: the int8 benchmark's correctness checks and results file, on the CPU (no timing)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_dry_run_checks_and_writes_a_conv_results_file(tmp_path):
    out = tmp_path / "int8.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "int8.py"), "--dry-run", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    document = json.loads(out.read_text())
    assert document["kind"] == "conv" and document["meta"]["dry_run"] is True
    results = {r["name"]: r for r in document["records"][0]["results"]}
    assert results["int8_dequant"]["rel_error_vs_float64"] < 1e-6
    assert results["int8_requant"]["max_lsb_difference"] <= 1
    assert all(r["ms"] is None for r in results.values())  # the interpreter's times are never reported


def test_without_a_gpu_it_says_so():
    import torch

    if torch.cuda.is_available():
        return
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "int8.py")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "needs a CUDA GPU" in proc.stderr
