"""tritonconv.results: the derived fields of a result, geomean and summary, the one schema written and read back
(strict JSON, clear errors for bad files), and that every JSON file tritonconv writes is a results file or says why
not. Times here are synthetic."""
import json
import math
from pathlib import Path

import pytest
import torch

from tritonconv import results
from tritonconv.errors import InvalidInputError
from tritonconv.problem import ConvProblem


def test_result_entry_derives_tflops_floor_fraction_and_speedup():
    entry = results.result_entry("x", 2.0, flops=4e9, floor=0.5, baseline_ms=3.0, rel_error=1e-3, family="f")
    assert entry["tflops"] == pytest.approx(2.0)
    assert entry["floor_fraction"] == pytest.approx(0.25)
    assert entry["speedup"] == pytest.approx(1.5)
    assert entry["family"] == "f" and entry["role"] == "candidate"
    failed = results.result_entry("y", None, error="boom")
    assert failed["ms"] is None and failed["speedup"] is None and failed["error"] == "boom"


def test_geomean_and_summary():
    assert results.geomean([2.0, 8.0]) == pytest.approx(4.0)
    assert results.geomean([4.0, None, float("nan"), 0.0, -1.0]) == pytest.approx(4.0)
    assert math.isnan(results.geomean([]))
    records = [
        {"name": "a", "results": [{"name": "cudnn", "role": "baseline", "speedup": 1.0},
                                  {"name": "tuned", "role": "candidate", "speedup": 2.0}]},
        {"name": "b", "results": [{"name": "tuned", "role": "candidate", "speedup": 0.5}]},
    ]
    summary = results.summarize(records)
    assert set(summary) == {"tuned"}  # baselines are not summarised
    assert summary["tuned"]["geomean"] == pytest.approx(1.0)
    assert (summary["tuned"]["worst"], summary["tuned"]["worst_record"], summary["tuned"]["count"]) == (0.5, "b", 2)


# ---- results schema ----------------------------------------------------------------------------------------------
def test_results_round_trip_with_metadata(tmp_path):
    records = [{"name": "shape", "problem": ConvProblem(1, 2, 3, 3, 4, 1, 1).to_dict(),
                "results": [results.result_entry("tuned", 1.0, rel_error=float("inf"))]}]
    path = results.write_results(tmp_path / "sub" / "r.json", records, {"dtype": "float16", "peaks": {"a": 1.0}},
                                   kind="conv")
    document = results.load_results(path)
    assert document["kind"] == "conv" and document["version"] == results.SCHEMA_VERSION
    assert document["records"][0]["problem"] == records[0]["problem"]
    assert document["records"][0]["results"][0]["rel_error"] is None  # non-finite -> null, valid JSON
    meta = document["meta"]
    assert meta["dtype"] == "float16" and meta["peaks"] == {"a": 1.0}
    for key in ("gpu", "capability", "sm_count", "torch", "triton", "cudnn", "date", "command"):
        assert key in meta
    assert meta["torch"] == torch.__version__
    json.loads(path.read_text())  # strict JSON


@pytest.mark.parametrize(
    "content, message",
    [("{not json", "not valid JSON"), ('{"records": []}', "not a tritonconv results file"),
     ('{"schema": "tritonconv-results", "version": 99, "kind": "conv", "records": []}', "version 99"),
     ('{"schema": "tritonconv-results", "version": 1, "kind": "other", "records": []}', "unknown results kind"),
     ('{"schema": "tritonconv-results", "version": 1, "kind": "conv", "records": [1]}', "list of objects")],
)
def test_load_results_rejects_bad_files_clearly(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InvalidInputError, match=message):
        results.load_results(path)


def test_write_results_rejects_unknown_kind(tmp_path):
    with pytest.raises(InvalidInputError, match="kind"):
        results.write_results(tmp_path / "r.json", [], kind="speed")
    with pytest.raises(InvalidInputError, match="does not exist"):
        results.load_results(tmp_path / "missing.json")


def test_speedup_needs_two_positive_finite_times():
    assert results.speedup_over(2.0, 0.5) == 4.0
    for baseline, ms in ((None, 1.0), (1.0, None), (1.0, 0.0), (0.0, 1.0), (float("nan"), 1.0), (1.0, float("inf"))):
        assert results.speedup_over(baseline, ms) is None


# The JSON files tritonconv and bench/ write that are not results files, and why (everything else goes through
# tritonconv.results.write_results, so `tritonconv report` reads it).
NOT_RESULTS_FILES = {
    "tritonconv/results.py": "the one writer",
    "tritonconv/cache/": "the tuning cache's own files (store, trials, export), which load_results also reads",
    "bench/gpu_session.py": "a GPU session's JSON-lines log, each line flushed as it happens so a killed session keeps it",
    "bench/tune_speed.py": "one measurement of the tuner's throughput and its projection, re-read by --reproject",
    "bench/cache_cold_start.py": "a deliberately version-1 cache file (the migration's input) and printed timings",
}


# Committed JSON files of bench/results/ that are not results files: pattern -> their writer in NOT_RESULTS_FILES.
NOT_RESULTS_COMMITTED = {"tune_speed*.json": "bench/tune_speed.py"}


def test_every_committed_bench_result_loads_as_a_results_file():
    root = Path(__file__).resolve().parents[1]
    assert set(NOT_RESULTS_COMMITTED.values()) <= set(NOT_RESULTS_FILES)
    files = sorted((root / "bench" / "results").glob("*.json"))
    checked = [p for p in files if not any(p.match(pattern) for pattern in NOT_RESULTS_COMMITTED)]
    assert checked and len(checked) < len(files)  # the glob sees both kinds
    for path in checked:
        assert results.load_results(path)["records"], path


def test_every_json_file_written_is_a_results_file_or_says_why_not():
    root = Path(__file__).resolve().parents[1]
    writers = set()
    for path in [*root.glob("tritonconv/**/*.py"), *root.glob("bench/**/*.py")]:
        text = path.read_text()
        if "json.dump(" in text or "write_text(json.dumps" in text:
            writers.add(path.relative_to(root).as_posix())
    unexplained = {w for w in writers if not any(w.startswith(allowed) for allowed in NOT_RESULTS_FILES)}
    assert not unexplained, f"write results files with tritonconv.results.write_results: {sorted(unexplained)}"
    assert "tritonconv/results.py" in writers and "bench/tune_speed.py" in writers  # the scan sees writers
