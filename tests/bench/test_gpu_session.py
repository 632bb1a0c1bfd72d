"""bench/gpu_session.sh --dry-run: the GPU session's stages on the CPU (interpreter, tiny shapes) write the same six
files a GPU run writes, every stage does all its work inside its time box, and the precompile == launch key check
passes, so the script cannot be broken when a GPU finally comes."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests import REPO
from tests.helpers import compiler_env

# The dry run's time boxes (300 s in all) fit an idle 2-core machine; a CI machine shared by other jobs can be
# several times slower, so the test gives every box SCALE times its length. The work does not grow with it: each
# stage must still finish all of it (no stage killed, none stopped at its own deadline).
SCALE = 3
FILES = {"session.jsonl", "correctness.jsonl", "speed.jsonl", "tuning.jsonl", "extras.jsonl", "pytest.log"}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_dry_run_writes_every_stage(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", "bench/gpu_session.sh", "--dry-run", "--scale", str(SCALE), "--out", str(out)],
                          cwd=REPO, env=compiler_env(), capture_output=True, text=True, timeout=300 * SCALE + 100,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert {p.name for p in out.iterdir()} == FILES

    session = _rows(out / "session.jsonl")
    assert session[0]["kind"] == "begin" and session[0]["scale"] == SCALE
    exits = {r["name"]: r for r in session if r["kind"] == "stage_exit"}
    assert set(exits) == {"env", "correctness", "speed", "tuning", "extras", "algorithms", "pytest"}
    assert not [name for name, r in exits.items() if r["timed_out"]], session
    keys = [r for r in session if r["kind"] == "key"]
    assert {r["family"] for r in keys} >= {"implicit_gemm", "hopper_implicit_gemm", "gemm", "depthwise", "small_group"}
    assert all(r["match"] for r in keys), [r for r in keys if not r["match"]]
    assert any(r["compiled_hash"] for r in keys)  # one real sm_90 compile under the launch's hash

    for name in ("correctness", "speed", "tuning", "extras"):
        rows = _rows(out / f"{name}.jsonl")
        assert rows[0]["kind"] == "start" and rows[-1] == {**rows[-1], "kind": "end", "ok": True}, rows[-3:]
        assert rows[0]["deadline_s"] >= 30 * SCALE - 8  # the stage got its scaled time box
    stopped = [r for name in ("session", "correctness", "speed", "extras") for r in _rows(out / f"{name}.jsonl")
               if r["kind"] in ("deadline", "sweep_stopped")]
    assert not stopped, stopped  # no stage ran out of its time box and left work undone
    cases = [r for r in _rows(out / "correctness.jsonl") if r["kind"] == "case"]
    assert cases and not [r for r in cases if r["status"] not in ("ok", "refused")], cases  # refused: routing checked
    assert any(r["status"] == "ok" for r in cases)
    layers = [r for r in _rows(out / "speed.jsonl") if r["kind"] == "layer"]
    # both layouts of the baseline (cuDNN on a GPU, PyTorch's CPU conv here) beside the candidates
    assert layers and all({e["name"] for e in r["results"] if e["role"] == "baseline"} == {"torch_cpu_nchw", "torch_cpu_nhwc"} for r in layers)
    assert all(any(e["role"] == "candidate" for e in r["results"]) for r in layers)
    assert all(e["rel_error"] is not None and e["rel_error"] < 1e-2 for r in layers for e in r["results"] if e["role"] == "candidate")
    tuning = _rows(out / "tuning.jsonl")
    trials = [r for r in tuning if r["kind"] == "trial" and r["state"] == "COMPLETE"]
    assert trials and all(r["check_s"] > 0 and r["time_s"] > 0 for r in trials)
    assert any(r["kind"] == "exhaustive" and r["best_ms"] and r["complete"] for r in tuning)
    extras = _rows(out / "extras.jsonl")
    assert {"matmul", "cuda_graph", "model"} <= {r["kind"] for r in extras if r["stage"] == "extras"}
    # the algorithms stage (issue 16) appends to extras.jsonl: every algorithm ran (or says why not) and is exact
    assert [r["kind"] for r in extras if r["stage"] == "algorithms"][-1] == "end"
    algorithms = {a["algorithm"]: a for r in extras if r["kind"] == "algorithm" for a in r["results"]}
    assert {"torch_cpu", "winograd_F2x3", "int8", "fp8"} <= set(algorithms), algorithms
    assert algorithms["winograd_F2x3"]["rel_error"] < 1e-4 and algorithms["int8"]["rel_error"] < 5e-2
    assert all(a.get("ms") or a.get("skipped") for a in algorithms.values()), algorithms
    assert algorithms["fp8"].get("skipped") or algorithms["fp8"]["rel_error"] < 6e-2  # fp8's tolerance
    assert "collected" in (out / "pytest.log").read_text()
