"""bench/winograd.py --dry-run: the Winograd benchmark's correctness checks and results file, on the CPU (no timing)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_dry_run_checks_every_candidate_and_writes_a_conv_results_file(tmp_path):
    out = tmp_path / "winograd.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "winograd.py"), "--dry-run", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    document = json.loads(out.read_text())
    assert document["kind"] == "conv" and document["meta"]["dry_run"] is True
    assert [r["name"] for r in document["records"]] == ["tiny_3x3 fp16", "tiny_3x3 tf32"]
    for record in document["records"]:
        results = {r["name"]: r for r in record["results"]}
        assert "winograd fused F(2,3)" in results and "winograd three_kernels F(2,3)" in results
        assert ("winograd fused F(4,3)" in results) == record["name"].endswith("fp16")  # tf32 keeps to F(2,3)
        assert all(r["rel_error"] is not None and r["error"] is None for r in results.values())
        assert all(r["ms"] is None for r in results.values())  # the interpreter's times are never reported


def test_without_a_gpu_it_says_so():
    import torch

    if torch.cuda.is_available():
        return
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "winograd.py")], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "needs a CUDA GPU" in proc.stderr
