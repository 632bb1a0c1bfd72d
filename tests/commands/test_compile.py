"""`python -m tritonconv.compile`: the suite's int8 problems go to the quantized family; the records (plain and
`--report`) are results files that `tritonconv report` renders."""
from __future__ import annotations

import subprocess
import sys

from tests import REPO
from tests.helpers import compiler_env
from tritonconv.cli import main as cli_main
from tritonconv.results import load_results


def _compile(*args: str) -> subprocess.CompletedProcess:
    """The compile command in a subprocess: kernels must be imported without TRITON_INTERPRET."""
    cmd = [sys.executable, "-m", "tritonconv.compile", "--layouts", "nhwc", "--targets", "80", "--jobs", "1", *args]
    return subprocess.run(cmd, cwd=REPO, env=compiler_env(), capture_output=True, text=True, timeout=600)


def _reported(path, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "400")  # rich: one line per row, no folded headers
    assert cli_main(["report", str(path), "--no-charts"]) == 0
    return capsys.readouterr().out


def test_compile_int8_suite_problems(tmp_path, capsys, monkeypatch):
    out = tmp_path / "records.json"
    proc = _compile("--shapes", "r50_l4_1x1", "--dtypes", "int8,fp16", "--families", "int8_implicit_gemm",
                    "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = load_results(out)["records"]
    assert [(r["family"], r["sm"], r["ok"]) for r in records] == [("int8_implicit_gemm", 80, True)]  # fp16: not its
    assert "_int8_nhwc_int8" in records[0]["problem"] and records[0]["usage"][0]["stack_bytes"] == 0
    shown = _reported(out, capsys, monkeypatch)
    row = next(line for line in shown.splitlines() if records[0]["name"] in line)
    assert str(records[0]["registers"]) in row


def test_compile_report_prints_a_table_and_writes_a_results_file_report_reads(tmp_path, capsys, monkeypatch):
    out = tmp_path / "report.json"
    proc = _compile("--report", "--shapes", "r50_l4_1x1", "--dtypes", "float16", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "r50_l4_1x1" in proc.stdout and "1 kernels" in proc.stdout
    document = load_results(out)
    assert document["kind"] == "compile" and document["meta"]["targets"] == [80]
    (record,) = document["records"]
    assert record["sm"] == 80 and record["ok"] and record["registers"] > 0 and record["family"] in proc.stdout
    assert record["sass"]["mma_kind"] == "HMMA" and record["mma"] == f"HMMAx{record['sass']['loop_mma']}"
    assert record["loop_instructions"] > 0 and record["reference_loop_instructions"] > 0
    assert record["bar"] == ("; ".join(v.split(":")[0] for v in record["bar_violations"]) or "ok")
    shown = _reported(out, capsys, monkeypatch)
    header = next(line for line in shown.splitlines() if "registers" in line)
    assert header.replace("┃", " ").split() == [
        "name", "family", "tile", "registers", "spill_bytes", "shared_bytes", "ctas_per_sm", "waves", "mma",
        "loop_instructions", "reference_loop_instructions", "loop_ratio", "bar"]  # compiled: no error column
    row = next(line for line in shown.splitlines() if f"sm80 {record['family']} r50_l4_1x1" in line).replace("│", " ")
    assert row.split()[3:] == [record["family"], record["tile"], str(record["registers"]), str(record["spill_bytes"]),
                               str(record["shared_bytes"]), str(record["ctas_per_sm"]), f"{record['waves']:.4g}",
                               record["mma"], str(record["loop_instructions"]), str(record["reference_loop_instructions"]),
                               f"{record['loop_ratio']:.4g}", record["bar"]]
