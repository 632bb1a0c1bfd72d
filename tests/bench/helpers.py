"""Running the benchmark scripts of bench/ as their users do: `python bench/<script>.py ...` from the repository
root, in a child process (a dry run sets TRITON_INTERPRET itself before it imports Triton)."""
from __future__ import annotations

import json
import subprocess
import sys

from tests import REPO


def run_bench(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "bench" / script), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def dry_run_results(script: str, out, timeout: float = 300) -> dict:
    """The results file `script --dry-run --out out` writes (it must exit 0)."""
    proc = run_bench(script, "--dry-run", "--out", str(out), timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    document = json.loads(out.read_text())
    assert document["kind"] == "conv" and document["meta"]["dry_run"] is True
    return document
