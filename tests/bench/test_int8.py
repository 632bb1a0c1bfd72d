"""bench/int8.py --dry-run: the int8 benchmark's correctness checks and results file, on the CPU (no timing)."""
from tests.bench.helpers import dry_run_results


def test_dry_run_checks_and_writes_a_conv_results_file(tmp_path):
    document = dry_run_results("int8.py", tmp_path / "int8.json")
    results = {r["name"]: r for r in document["records"][0]["results"]}
    assert results["int8_dequant"]["rel_error_vs_float64"] < 1e-6
    assert results["int8_requant"]["max_lsb_difference"] <= 1
    assert all(r["ms"] is None for r in results.values())  # the interpreter's times are never reported
