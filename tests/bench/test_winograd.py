"""bench/winograd.py --dry-run: the Winograd benchmark's correctness checks and results file, on the CPU (no timing)."""
from tests.bench.helpers import dry_run_results


def test_dry_run_checks_every_candidate_and_writes_a_conv_results_file(tmp_path):
    document = dry_run_results("winograd.py", tmp_path / "winograd.json", timeout=600)
    assert [r["name"] for r in document["records"]] == ["tiny_3x3 fp16", "tiny_3x3 tf32"]
    for record in document["records"]:
        results = {r["name"]: r for r in record["results"]}
        assert "winograd fused F(2,3)" in results and "winograd three_kernels F(2,3)" in results
        assert ("winograd fused F(4,3)" in results) == record["name"].endswith("fp16")  # tf32 keeps to F(2,3)
        assert all(r["rel_error"] is not None and r["error"] is None for r in results.values())
        assert all(r["ms"] is None for r in results.values())  # the interpreter's times are never reported
