"""`tritonconv cache list|show|export|import|check|clear` on entries written directly (no tuning): what each
prints, what it selects and what it changes on disk. Faults (corrupt, hostile, read-only files) are in
tests/cache/test_cache_faults.py."""
from __future__ import annotations

import json

import pytest

from tritonconv import cache
from tritonconv.cli import main

from tests.cache.helpers import ELSEWHERE, HERE, PROBLEM, make_entry

OTHER = PROBLEM.with_(k=64, c=8)


@pytest.fixture
def two_devices():
    """One entry tuned here (2x faster than the baseline), one on another GPU."""
    cache.invalidate()
    cache.update({
        cache.entry_key(PROBLEM, HERE): make_entry(PROBLEM, time_ms=1.0, cudnn_ms=2.0, block_m=64),
        cache.entry_key(OTHER, ELSEWHERE): make_entry(OTHER, time_ms=3.0, cudnn_ms=1.5, fingerprint=ELSEWHERE),
    })
    yield
    cache.invalidate()


def test_list_shows_one_table_per_device_with_times_and_speedup(two_devices, capsys):
    assert main(["cache", "list"]) == 0
    out = capsys.readouterr().out
    assert "2 entries" in out and "(this device)" in out and ELSEWHERE.split("|")[0] in out
    assert PROBLEM.label in out and OTHER.label in out and "implicit_gemm" in out
    assert "2.00x" in out and "0.500x" in out  # baseline ms / ms: 2.0 / 1.0 here, 1.5 / 3.0 on the other GPU
    assert main(["cache", "list", "--here"]) == 0
    here_only = capsys.readouterr().out
    assert "1 entries" in here_only and OTHER.label not in here_only


def test_show_prints_the_matching_entries_as_json(two_devices, capsys):
    assert main(["cache", "show", "k64"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert list(shown) == [cache.entry_key(OTHER, ELSEWHERE)]
    entry = shown[cache.entry_key(OTHER, ELSEWHERE)]
    assert entry["time_ms"] == 3.0 and entry["problem"]["k"] == 64 and "trials" in entry["trials"]
    assert main(["cache", "show", "k32", "--trials"]) == 0
    with_trials = json.loads(capsys.readouterr().out)[cache.entry_key(PROBLEM, HERE)]
    assert with_trials["config"]["BLOCK_M"] == 64 and with_trials["trials"][0]["time_ms"] == 1.0
    assert main(["cache", "show", "no-such-key"]) == 1
    assert "no entry matches 'no-such-key'" in capsys.readouterr().err


def test_export_here_then_import_into_an_empty_cache(two_devices, tmp_path, capsys):
    everything, here_only = tmp_path / "all.json", tmp_path / "here.json"
    assert main(["cache", "export", str(everything)]) == 0
    assert main(["cache", "export", str(here_only), "--here"]) == 0
    assert "exported 1 entries" in capsys.readouterr().out
    assert main(["cache", "clear", "--yes"]) == 0
    assert cache.entries() == {}
    assert main(["cache", "import", str(here_only)]) == 0
    assert "1 added, 0 replaced" in capsys.readouterr().out
    assert list(cache.entries()) == [cache.entry_key(PROBLEM, HERE)]
    assert main(["cache", "import", str(everything)]) == 0
    out = capsys.readouterr()
    assert "1 added, 0 replaced (faster), 1 kept" in out.out and "tuned on" in out.err  # the foreign entry warns
    assert set(cache.entries()) == {cache.entry_key(PROBLEM, HERE), cache.entry_key(OTHER, ELSEWHERE)}
    assert cache.lookup_config(PROBLEM, "cpu", "triton")["BLOCK_M"] == 64


def test_import_of_a_missing_file_is_a_usage_error(tmp_path, capsys):
    assert main(["cache", "import", str(tmp_path / "nothing.json")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_check_a_healthy_cache_and_clear_says_what_it_removed(two_devices, capsys):
    assert main(["cache", "check"]) == 0
    assert "2 entries, no problems" in capsys.readouterr().out
    assert main(["cache", "clear", "--yes"]) == 0
    assert "removed 2 tuned winners" in capsys.readouterr().out
    assert cache.entries() == {}
