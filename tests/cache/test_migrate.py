"""Schema version 2 -> 3 on a real version-2 cache (tests/data/cache_v2: written by tritonconv at commit 53863d5,
before the bump, with `cache.update`): entries whose kernel is unchanged stay usable, entries of changed kernels
and fields this version does not know are kept in the file, and the old file is kept beside it."""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

from tritonconv import cache
from tritonconv.cli import main
from tritonconv.kernels import get_family
from tritonconv.problem import ConvProblem

from tests.cache.helpers import CPU, HERE, PROBLEM, make_entry

DATA = Path(__file__).parents[1] / "data" / "cache_v2"
STORED = {"implicit_gemm": "d0eb028e2767", "depthwise": "941c16596ec0"}  # the family versions in the file
DEPTHWISE = ConvProblem(n=1, c=8, h=8, w=8, k=8, r=3, s=3, pad_h=1, pad_w=1, groups=8, dtype="float32",
                        layout="nchw", precision="ieee")
FAST, CUDNN_WON, STALE = PROBLEM, PROBLEM.with_(k=64), PROBLEM.with_(k=48)  # STALE: a version no rule gives


@pytest.fixture(autouse=True)
def v2_cache():
    cache.invalidate()
    cache.files.forget_warnings()
    shutil.copytree(DATA, cache.cache_dir())
    yield json.loads((DATA / cache.CACHE_FILE).read_text())
    cache.invalidate()


@pytest.fixture
def rule_changed(monkeypatch):
    """Every family's version is by a new rule now; by the old rule implicit_gemm's kernel is unchanged since
    the file was written, depthwise's changed."""
    for name in STORED:
        monkeypatch.setattr(get_family(name), "version", f"new-{name}")
    old_rule = {"implicit_gemm": frozenset({STORED["implicit_gemm"]}), "depthwise": frozenset({"changed00000"})}
    monkeypatch.setattr(cache.versions, "legacy_versions", lambda name: old_rule.get(name, frozenset()))


def key(problem: ConvProblem) -> str:
    return cache.entry_key(problem, HERE)


def lookups() -> dict[str, object]:
    return {name: cache.lookup_config(problem, CPU) for name, problem in
            (("fast", FAST), ("cudnn_won", CUDNN_WON), ("depthwise", DEPTHWISE), ("stale", STALE))}


def test_the_test_data_is_a_version_2_file():
    data = json.loads((DATA / cache.CACHE_FILE).read_text())
    assert data["version"] == 2 and cache.SCHEMA_VERSION == 3
    assert set(data["entries"]) == {key(FAST), key(CUDNN_WON), key(DEPTHWISE), key(STALE)}


def test_a_version_2_file_is_used_as_it_is_with_unchanged_kernels_re_stamped(rule_changed):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an understood older file: nothing to warn about
        found = lookups()
    assert found["fast"]["BLOCK_M"] == 64 and found["cudnn_won"] == {"family": "cudnn"}
    assert found["depthwise"] is None and found["stale"] is None, "changed kernels are never used"
    assert (cache.cache_path().read_bytes() == (DATA / cache.CACHE_FILE).read_bytes()), "reading never rewrites"
    assert cache.read_entry(key(FAST)).family_version == "new-implicit_gemm"
    reusable = cache.read_entry(key(FAST)).usable_trials()
    assert reusable and all(t["family_version"] == "new-implicit_gemm" for t in reusable), "its trials stay reusable"


def test_check_fix_migrates_keeping_every_entry_and_the_old_file(rule_changed, v2_cache, capsys):
    report = cache.check()
    assert any("schema version 2" in p for p in report.problems) and not report.fixed
    report = cache.check(fix=True)
    assert any(".v2" in f for f in report.fixed)
    data = json.loads(cache.cache_path().read_text())
    assert data["version"] == cache.SCHEMA_VERSION and set(data["entries"]) == set(v2_cache["entries"])
    for problem in (FAST, CUDNN_WON):
        assert data["entries"][key(problem)] == {**v2_cache["entries"][key(problem)], "family_version": "new-implicit_gemm"}
    assert data["entries"][key(CUDNN_WON)]["tuned_by"] == "tritonconv 0.x", "unknown fields are kept"
    for problem in (DEPTHWISE, STALE):
        assert data["entries"][key(problem)] == v2_cache["entries"][key(problem)], "stale entries are kept as they were"
    kept = cache.cache_path().with_name(cache.CACHE_FILE + ".v2")
    assert kept.read_bytes() == (DATA / cache.CACHE_FILE).read_bytes()
    for trial_file in (DATA / cache.TRIALS_DIR).iterdir():
        assert (cache.cache_dir() / cache.TRIALS_DIR / trial_file.name).read_bytes() == trial_file.read_bytes()
    cache.invalidate()
    found = lookups()
    assert found["fast"]["BLOCK_M"] == 64 and found["cudnn_won"] == {"family": "cudnn"}
    assert found["depthwise"] is None and found["stale"] is None
    assert {k: e.is_current() for k, e in cache.entries().items()} == {
        key(FAST): True, key(CUDNN_WON): True, key(DEPTHWISE): False, key(STALE): False}
    after = cache.check()
    assert after.ok and not after.problems and sorted(after.stale) == sorted([key(DEPTHWISE), key(STALE)])
    assert main(["cache", "check"]) == 0
    assert "note: 2 entries were tuned on a kernel that changed since" in capsys.readouterr().out


def test_the_next_tune_migrates_too_and_current_entries_never_compute_an_old_rule(rule_changed, monkeypatch):
    new = PROBLEM.with_(k=16)
    assert cache.update({key(new): make_entry(new)}) == {key(new): "added"}
    data = json.loads(cache.cache_path().read_text())
    assert data["version"] == cache.SCHEMA_VERSION and len(data["entries"]) == 5
    assert data["entries"][key(FAST)]["family_version"] == "new-implicit_gemm"

    def no_old_rule(name):
        raise AssertionError("an entry with the current version is taken as it is")

    monkeypatch.setattr(cache.versions, "legacy_versions", no_old_rule)
    cache.invalidate()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.lookup_config(FAST, CPU)["BLOCK_M"] == 64 and cache.lookup_config(new, CPU) is not None


def test_a_version_3_file_written_before_a_rule_change_is_re_stamped_too(monkeypatch):
    """The next change of the version rule only appends the outgoing rule: no other schema bump is needed."""
    for name, version in STORED.items():
        monkeypatch.setattr(get_family(name), "version", version)
    cache.check(fix=True)  # a version-3 file with today's versions
    cache.invalidate()
    monkeypatch.setattr(get_family("implicit_gemm"), "version", "rule-4-version")
    monkeypatch.setattr(cache.versions, "legacy_versions", lambda name: frozenset({STORED.get(name)}))
    assert cache.lookup_config(FAST, CPU)["BLOCK_M"] == 64


def test_unchanged_family_versions_migrate_unchanged(monkeypatch, v2_cache):
    """The common case: the kernels are what the file was tuned on (same version by the current rule)."""
    for name, version in STORED.items():
        monkeypatch.setattr(get_family(name), "version", version)
    assert cache.check(fix=True).fixed
    data = json.loads(cache.cache_path().read_text())
    assert data["entries"] == v2_cache["entries"] and data["version"] == cache.SCHEMA_VERSION
    cache.invalidate()
    found = lookups()
    assert found["fast"]["BLOCK_M"] == 64 and found["depthwise"] is not None and found["stale"] is None


# ---- version 1 ---------------------------------------------------------------------------------------------------
V1 = Path(__file__).parents[1] / "data" / "cache_v1"  # written by tritonconv at 7620ebd^ (trials inline, indent=1)
V1_VERSION = "d0eb028e2767"  # its entries' implicit_gemm version


def install_v1() -> Path:
    shutil.rmtree(cache.cache_dir())
    cache.cache_dir().mkdir(parents=True)
    path = cache.cache_path()
    shutil.copy(V1 / cache.CACHE_FILE, path)
    cache.invalidate()
    return path


@pytest.mark.parametrize("rule", ["same", "changed"])
def test_a_version_1_file_is_read_entry_by_entry_never_parsing_every_trial(monkeypatch, rule):
    family = get_family("implicit_gemm")
    monkeypatch.setattr(family, "version", V1_VERSION if rule == "same" else "new-implicit_gemm")
    monkeypatch.setattr(cache.versions, "legacy_versions", lambda name: frozenset({V1_VERSION}))
    path = install_v1()
    with pytest.warns(RuntimeWarning, match="version-1 format"):
        assert cache.lookup_config(PROBLEM, CPU, "triton")["BLOCK_M"] == 32
    assert isinstance(cache.view.load_view().raw, cache.store.IndentedIndexed), "no parse of the whole file"
    assert cache.lookup_config(PROBLEM.with_(n=1), CPU, "triton")["BLOCK_M"] == 16
    assert cache.lookup_config(PROBLEM.with_(n=16), CPU, "triton")["BLOCK_M"] == 64
    assert cache.lookup_config(PROBLEM.with_(n=2), CPU) is None
    monkeypatch.setenv(cache.BATCH_BUCKETING_ENV, "1")
    assert cache.lookup_config(PROBLEM.with_(n=2), CPU, "triton")["BLOCK_M"] in (16, 32), "the nearest batch's"
    assert path.read_bytes() == (V1 / cache.CACHE_FILE).read_bytes(), "reading never rewrites"

    cache.check(fix=True)
    data = json.loads(path.read_text())
    assert data["version"] == cache.SCHEMA_VERSION and len(data["entries"]) == 3
    assert all(e["family_version"] == family.version and "trials" not in e for e in data["entries"].values())
    assert path.with_name(cache.CACHE_FILE + ".v1").read_bytes() == (V1 / cache.CACHE_FILE).read_bytes()
    trials = cache.read_entry(key(PROBLEM)).usable_trials()
    assert len(trials) == 2 and all(t["family_version"] == family.version for t in trials)
    cache.invalidate()
    assert cache.lookup_config(PROBLEM, CPU, "triton")["BLOCK_M"] == 32


def test_a_damaged_entry_of_a_version_1_file_costs_only_that_entry(monkeypatch):
    monkeypatch.setattr(get_family("implicit_gemm"), "version", V1_VERSION)
    path = install_v1()
    text = path.read_text()
    at = text.index(json.dumps(key(PROBLEM.with_(n=16))))
    path.write_text(text[:at] + text[at:].replace('"time_ms": 3.0', '"time_ms" 3.0', 1))
    with pytest.warns(RuntimeWarning) as caught:
        assert cache.lookup_config(PROBLEM.with_(n=16), CPU) is None
        assert cache.lookup_config(PROBLEM, CPU, "triton")["BLOCK_M"] == 32
    assert any("damaged" in str(w.message) for w in caught)
    assert isinstance(cache.view.load_view().raw, cache.store.IndentedIndexed)


def test_an_entry_of_the_outgoing_rule_is_re_stamped_by_the_current_one():
    """Schema-3 entries written before the version covered the common launch code (own module + kernels) stay
    usable while that rule says their kernel is unchanged; the real rules, nothing patched."""
    cache.versions.legacy_versions.cache_clear()
    family = get_family("implicit_gemm")
    outgoing = cache.versions.own_module_and_kernels_version(family)
    assert outgoing != family.version
    new = PROBLEM.with_(k=16)
    entry = make_entry(new, block_m=64)
    entry["family_version"] = entry["trials"][0]["family_version"] = outgoing
    cache.update({key(new): entry})
    cache.invalidate()
    assert cache.lookup_config(new, CPU)["BLOCK_M"] == 64
    assert cache.read_entry(key(new)).family_version == family.version
    assert all(t["family_version"] == family.version for t in cache.read_entry(key(new)).usable_trials())
