"""The tuning cache: keys, lookup for the dispatcher, batch bucketing, atomic merged writes, corrupt files,
export/import. Entries are written directly here; tests/search/test_study.py fills the cache by real tuning."""
import json
import os
import subprocess
import sys
import textwrap
import warnings

import pytest

from tritonconv import cache, dispatch
from tritonconv.runtime import COMPILE_TARGETS

from tests.cache.helpers import CPU, ELSEWHERE, HERE, PROBLEM, make_entry


def test_lookup_returns_the_stored_config_and_cudnn_where_it_won():
    assert cache.lookup_config(PROBLEM, CPU) is None
    cache.update({cache.entry_key(PROBLEM, HERE): make_entry(time_ms=1.0, cudnn_ms=2.0, block_m=64)})
    assert cache.lookup_config(PROBLEM, CPU, "auto")["BLOCK_M"] == 64
    family, config = dispatch.select(PROBLEM, None, CPU, "triton")
    assert family.name == "implicit_gemm" and config["BLOCK_M"] == 64

    cache.update({cache.entry_key(PROBLEM, HERE): make_entry(time_ms=3.0, cudnn_ms=2.0, block_m=64)})
    assert cache.lookup_config(PROBLEM, CPU, "auto") == {"family": "cudnn"}
    assert cache.lookup_config(PROBLEM, CPU, "triton")["BLOCK_M"] == 64
    # Another GPU's entry, or one whose kernel source changed, is never used.
    assert cache.lookup_config(PROBLEM.with_(k=64), CPU) is None
    stale = make_entry(PROBLEM.with_(k=64))
    stale["family_version"] = "0" * 12
    cache.update({cache.entry_key(PROBLEM.with_(k=64), HERE): stale})
    assert cache.lookup_config(PROBLEM.with_(k=64), CPU) is None


def test_file_is_versioned_json_in_the_configured_dir():
    cache.update({cache.entry_key(PROBLEM, HERE): make_entry()})
    path = cache.cache_path()
    assert path.parent == cache.cache_dir() and str(path).startswith(os.environ["TRITONCONV_CACHE_DIR"])
    data = json.loads(path.read_text())
    assert data["schema"] == cache.SCHEMA and data["version"] == cache.SCHEMA_VERSION
    key = next(iter(data["entries"]))
    assert HERE in key and PROBLEM.key in key and "triton-" in key


def test_batch_bucketing_reuses_the_nearest_batch(monkeypatch):
    for n, block_m in ((4, 64), (32, 128)):
        cache.update({cache.entry_key(PROBLEM.with_(n=n), HERE): make_entry(PROBLEM.with_(n=n), block_m=block_m)})
    assert cache.lookup_config(PROBLEM.with_(n=6), CPU) is None, "off by default"
    monkeypatch.setenv(cache.BATCH_BUCKETING_ENV, "1")
    assert cache.lookup_config(PROBLEM.with_(n=6), CPU)["BLOCK_M"] == 64
    assert cache.lookup_config(PROBLEM.with_(n=24), CPU)["BLOCK_M"] == 128
    assert cache.lookup_config(PROBLEM.with_(n=6, k=64), CPU) is None, "only the batch size may differ"


@pytest.mark.parametrize("first", ["here", "sm90"])
def test_batch_bucketing_finds_each_devices_own_entries_in_any_order(monkeypatch, first):
    """One view serves lookups for several targets: each finds the nearest batch among its own device's entries."""
    sm90 = COMPILE_TARGETS[90]
    for target, block_m in ((None, 64), (sm90, 128)):
        fp = HERE if target is None else sm90.fingerprint
        cache.update({cache.entry_key(PROBLEM.with_(n=4), fp): make_entry(PROBLEM.with_(n=4), block_m=block_m, fingerprint=fp)})
    monkeypatch.setenv(cache.BATCH_BUCKETING_ENV, "1")
    lookups = [(None, 64), (sm90, 128)]
    for target, block_m in lookups if first == "here" else lookups[::-1]:
        config = cache.lookup_config(PROBLEM.with_(n=8), CPU, "triton", target=target)
        assert config is not None and config["BLOCK_M"] == block_m, target


def test_updates_merge_trials_and_keep_other_keys():
    cache.update({cache.entry_key(PROBLEM, HERE): make_entry(block_m=32)})
    cache.update({cache.entry_key(PROBLEM.with_(k=64), HERE): make_entry(PROBLEM.with_(k=64))})
    changes = cache.update({cache.entry_key(PROBLEM, HERE): make_entry(block_m=64)})
    assert changes == {cache.entry_key(PROBLEM, HERE): "replaced"}
    assert len(cache.entries()) == 2
    stored = cache.read_entry(cache.entry_key(PROBLEM, HERE))
    assert {t["config"]["BLOCK_M"] for t in stored.trials} == {32, 64}


CONCURRENT_WRITER = textwrap.dedent(
    """
    import sys
    from tests.cache.helpers import HERE, PROBLEM, make_entry
    from tritonconv import cache
    tag = sys.argv[1]
    for i in range(25):
        problem = PROBLEM.with_(k=8 * (i + 1), c=16 if tag == "a" else 24)
        cache.update({cache.entry_key(problem, HERE): make_entry(problem)})
    """
)


def test_two_processes_writing_at_once_lose_nothing():
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT_WRITER, tag], stderr=subprocess.PIPE, text=True) for tag in ("a", "b")]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    assert set(cache.entries()) == {cache.entry_key(PROBLEM.with_(k=8 * (i + 1), c=c), HERE) for c in (16, 24) for i in range(25)}
    assert not list(cache.cache_dir().glob("*.tmp")), "no temp files left behind"


@pytest.mark.parametrize("content", ["{not json", json.dumps({"schema": "something-else", "entries": {}}),
                                     json.dumps({"schema": cache.SCHEMA, "version": 999, "entries": {}})])
def test_a_corrupt_or_foreign_file_is_a_clear_error_and_kept(content):
    path = cache.cache_path()
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(cache.CacheError, match=str(path)):
        cache.entries()
    with pytest.raises(cache.CacheError, match="copy was kept"):
        cache.update({cache.entry_key(PROBLEM, HERE): make_entry()})
    assert path.read_text() == content, "never overwritten"
    backups = list(path.parent.glob(path.name + ".corrupt-*"))
    assert len(backups) == 1 and backups[0].read_text() == content
    with pytest.warns(RuntimeWarning, match="cannot use the tuning cache"):
        assert cache.lookup_config(PROBLEM, CPU) is None, "dispatch falls back to defaults, loudly"


def test_export_import_round_trip_with_fingerprint_warning(tmp_path, monkeypatch):
    ours, theirs = make_entry(time_ms=1.0), make_entry(PROBLEM.with_(k=64), fingerprint=ELSEWHERE)
    cache.update({cache.entry_key(PROBLEM, HERE): ours, cache.entry_key(PROBLEM.with_(k=64), ELSEWHERE): theirs})
    exported = tmp_path / "export.json"
    assert cache.export(exported) == 2
    assert json.loads(exported.read_text())["exported_from"] == HERE

    monkeypatch.setenv("TRITONCONV_CACHE_DIR", str(tmp_path / "other-cache"))
    cache.invalidate()
    with pytest.warns(UserWarning, match=ELSEWHERE.split("|")[0]):
        report = cache.import_file(exported)
    assert len(report.added) == 2 and not report.replaced
    assert cache.lookup_config(PROBLEM, CPU)["BLOCK_M"] == 32

    # Re-importing: the faster entry wins conflicts; a slower one is kept out.
    cache.update({cache.entry_key(PROBLEM, HERE): make_entry(time_ms=5.0, block_m=64)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = cache.import_file(exported)
    assert report.replaced == [cache.entry_key(PROBLEM, HERE)]
    assert cache.lookup_config(PROBLEM, CPU)["BLOCK_M"] == 32
    cache.update({cache.entry_key(PROBLEM, HERE): make_entry(time_ms=0.5, block_m=16)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = cache.import_file(exported)
    assert cache.entry_key(PROBLEM, HERE) in report.kept and cache.lookup_config(PROBLEM, CPU)["BLOCK_M"] == 16


def test_clear_removes_entries():
    cache.update({cache.entry_key(PROBLEM, HERE): make_entry()})
    assert cache.clear().winners == 1
    assert cache.entries() == {} and cache.lookup_config(PROBLEM, CPU) is None
