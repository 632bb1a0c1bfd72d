"""The cache's typed record: built from a tuning result, written and read back as JSON, and the one reader of
cache files outside the cache (the report) goes through it too."""
from __future__ import annotations

import json

import pytest

from tritonconv import cache
from tritonconv.kernels import get_family
from tritonconv.results import load_results
from tritonconv.search import TuneResult

from tests.cache.helpers import ELSEWHERE, HERE, PROBLEM, make_entry


def tune_result(**changes) -> TuneResult:
    family = get_family("implicit_gemm")
    config = {**family.default_config(PROBLEM), "BLOCK_M": 64, "convert_nhwc": False}
    fields = dict(problem=PROBLEM, family=family.name, config=config, time_ms=1.25, cudnn_time_ms=2.5, rel_error=3e-4,
                  trials_run=7, wall_time_s=4.5, precision="fp16", device=HERE)
    return TuneResult(**{**fields, **changes})


def test_an_entry_built_from_a_tune_result_round_trips_and_is_usable():
    result = tune_result()
    entry = cache.CacheEntry.from_result(result, trials_run=9, budget=16, exhausted=False, timer="cuda",
                                         search={"layouts": "native"}, trials=[{"config": {"BLOCK_M": 64}}])
    assert entry.key == cache.entry_key(PROBLEM, HERE)
    assert entry.config == {"family": "implicit_gemm", **result.config}, "the config carries its family"
    assert entry.family_version == get_family("implicit_gemm").version and entry.is_current()
    assert (entry.time_ms, entry.cudnn_time_ms, entry.rel_error, entry.precision) == (1.25, 2.5, 3e-4, "fp16")
    assert (entry.trials_run, entry.budget, entry.wall_time_s, entry.timer) == (9, 16, 4.5, "cuda")
    again = cache.CacheEntry.from_json(entry.key, json.loads(json.dumps(entry.to_json())))
    assert again == entry
    assert "trials" not in entry.to_json(with_trials=False)
    cache.invalidate()
    cache.update({entry.key: entry})
    assert cache.lookup_config(PROBLEM, "cpu", "triton") == entry.config
    cache.invalidate()


def test_a_result_of_an_unknown_family_is_refused():
    with pytest.raises(cache.EntryError, match="not a known kernel family"):
        cache.CacheEntry.from_result(tune_result(family="winograd_from_the_future"))


def test_the_report_reads_cache_exports_through_the_record_and_says_what_it_left_out(tmp_path):
    good, foreign = make_entry(block_m=64), make_entry(PROBLEM.with_(k=64), fingerprint=ELSEWHERE)
    bad = {**make_entry(PROBLEM.with_(k=8)), "time_ms": -1.0}
    exported = tmp_path / "export.json"
    exported.write_text(json.dumps({"schema": cache.SCHEMA, "version": cache.SCHEMA_VERSION, "entries": {
        cache.entry_key(PROBLEM, HERE): good, cache.entry_key(PROBLEM.with_(k=64), ELSEWHERE): foreign,
        cache.entry_key(PROBLEM.with_(k=8), HERE): bad,
    }}))
    with pytest.warns(UserWarning, match=r"1 cache entries that do not validate .*time_ms"):
        document = load_results(exported)
    assert document["meta"]["devices"] == sorted([HERE, ELSEWHERE])
    assert list(document["meta"]["skipped_entries"]) == [cache.entry_key(PROBLEM.with_(k=8), HERE)]
    by_key = {r["key"]: r for r in document["records"]}
    assert set(by_key) == {cache.entry_key(PROBLEM, HERE), cache.entry_key(PROBLEM.with_(k=64), ELSEWHERE)}
    tuned = {r["name"]: r for r in by_key[cache.entry_key(PROBLEM, HERE)]["results"]}["tuned"]
    assert tuned["config"]["BLOCK_M"] == 64 and tuned["ms"] == good["time_ms"] and tuned["speedup"] == 2.0
