"""Fault injection for the tuning cache: every malformed entry kind, corrupt and hostile files, hostile imports,
read-only files and directories, a full disk (simulated), concurrent writers, kill -9 mid-write, `cache clear`
while a tuner runs. Each asserts: nothing tuned is lost, `conv2d` still works (falling back to the default
config), and the user sees one clear line."""
import errno
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
import warnings

import pytest
import torch

from tests import REPO
from tests.helpers import TOLERANCE, random_conv_inputs, reference_conv2d, rel_error

import tritonconv
from tritonconv import cache, dispatch
from tritonconv.cli import main
from tritonconv.functional import make_problem

from tests.cache.helpers import CPU, ELSEWHERE, HERE, PROBLEM, make_entry

X, W, B = random_conv_inputs(1, 4, 5, 5, 8, 4, 3, 3)
CONV_PROBLEM = make_problem(X, W, B, 1, 1, 1, 1)
CONV_KEY = cache.entry_key(CONV_PROBLEM, HERE)
GOOD_KEY = cache.entry_key(PROBLEM, HERE)


@pytest.fixture(autouse=True)
def _fresh_state():
    cache.files.forget_warnings()


def write_cache(entries: dict, **header) -> bytes:
    path = cache.cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps({"schema": cache.SCHEMA, "version": cache.SCHEMA_VERSION, "entries": entries, **header}).encode()
    path.write_bytes(payload)
    cache.invalidate()
    return payload


def conv2d_is_right() -> None:
    """conv2d answers correctly (float64 reference, NaN-free) whatever the cache holds."""
    y = tritonconv.conv2d(X, W, B, padding=1)
    assert torch.isfinite(y).all()
    assert rel_error(y, reference_conv2d(X, W, B, padding=1)) <= TOLERANCE["tf32"]


def one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {text!r}"
    assert "Traceback" not in text
    return lines[0]


def _bad(mutate) -> dict:
    entry = make_entry(CONV_PROBLEM)
    mutate(entry)
    return entry


def _set(name, value):
    return lambda e: e.__setitem__(name, value)


def _set_problem(name, value):
    return lambda e: e["problem"].__setitem__(name, value)


def _set_config(name, value):
    return lambda e: e["config"].__setitem__(name, value)


MALFORMED = {
    "a string": "not an entry",
    "null": None,
    "a list": [1, 2, 3],
    "a number": 7,
    "empty mapping": {},
    "problem with an extra field": _bad(_set_problem("transposed", False)),
    "problem {'bogus': 1}": _bad(_set("problem", {"bogus": 1})),
    "problem is a string": _bad(_set("problem", "n1_c4")),
    "problem field of the wrong type": _bad(_set_problem("c", "4")),
    "problem field a float": _bad(_set_problem("h", 5.0)),
    "problem field a bool": _bad(_set_problem("n", True)),
    "problem with stride 0": _bad(_set_problem("stride_h", 0)),
    "problem with groups 0": _bad(_set_problem("groups", 0)),
    "unknown family": _bad(lambda e: (e.__setitem__("family", "warp_drive"), e["config"].__setitem__("family", "warp_drive"))),
    "config value outside the space": _bad(_set_config("BLOCK_M", 7)),
    "config value a float": _bad(_set_config("BLOCK_M", 32.0)),
    "config value a list": _bad(_set_config("BLOCK_M", [32])),
    "config value a mapping": _bad(_set_config("BLOCK_M", {"x": 1})),
    "unknown config key": _bad(_set_config("WARP_DRIVE", 9)),
    "config family differs": _bad(_set_config("family", "depthwise")),
    "config is a list": _bad(_set("config", [])),
    "negative time": _bad(_set("time_ms", -1.0)),
    "time a string": _bad(_set("time_ms", "fast")),
    "time missing": _bad(lambda e: e.pop("time_ms")),
    "cudnn time a string": _bad(_set("cudnn_time_ms", "slow")),
    "fingerprint a number": _bad(_set("fingerprint", 3)),
    "fingerprint says H100 under this machine's key": _bad(_set("fingerprint", ELSEWHERE)),
    "trials not a list": _bad(_set("trials", "many")),
}


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_a_malformed_entry_never_breaks_conv2d_and_stays_on_disk(kind):
    payload = write_cache({CONV_KEY: MALFORMED[kind], GOOD_KEY: make_entry(block_m=64)})
    with pytest.warns(RuntimeWarning, match="skipping the invalid tuning cache entry") as caught:
        assert cache.lookup_config(CONV_PROBLEM, CPU) is None
        family, config = dispatch.select(CONV_PROBLEM, None, CPU)
        conv2d_is_right()
    assert len([w for w in caught if "invalid tuning cache entry" in str(w.message)]) == 1, "one warning per file"
    assert (family.name, config) == (dispatch.default_family(CONV_PROBLEM).name, family.default_config(CONV_PROBLEM))
    assert cache.lookup_config(PROBLEM, CPU)["BLOCK_M"] == 64, "the valid entry beside it is still used"
    assert cache.cache_path().read_bytes() == payload, "reading never rewrites"

    # A tune of another problem rewrites the file: the malformed entry is kept exactly as it was.
    cache.update({cache.entry_key(PROBLEM.with_(k=64), HERE): make_entry(PROBLEM.with_(k=64))})
    assert json.loads(cache.cache_path().read_text())["entries"][CONV_KEY] == MALFORMED[kind]
    report = cache.check()
    assert len(report.problems) == 1 and CONV_KEY in report.problems[0]


def test_the_warning_names_the_reason_once_per_file():
    write_cache({CONV_KEY: _bad(_set_config("BLOCK_M", 7)), GOOD_KEY: _bad(_set("time_ms", -1))})
    with pytest.warns(RuntimeWarning) as caught:
        cache.lookup_config(CONV_PROBLEM, CPU)
        cache.lookup_config(PROBLEM, CPU)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "BLOCK_M=7 is not one of" in messages[0] and "\n" not in messages[0]


def test_unknown_extra_fields_are_kept_on_rewrite():
    entry = {**make_entry(CONV_PROBLEM), "tuned_by": "tritonconv 9.0", "energy_j": 1.5}
    write_cache({CONV_KEY: entry}, written_by="future")
    assert cache.lookup_config(CONV_PROBLEM, CPU) is not None, "extra entry fields are tolerated"
    cache.update({GOOD_KEY: make_entry()})
    data = json.loads(cache.cache_path().read_text())
    assert data["written_by"] == "future"
    assert data["entries"][CONV_KEY]["tuned_by"] == "tritonconv 9.0" and data["entries"][CONV_KEY]["energy_j"] == 1.5
    assert cache.entries()[CONV_KEY].extra == {"tuned_by": "tritonconv 9.0", "energy_j": 1.5}


# ---- whole-file faults --------------------------------------------------------------------------------------
CORRUPT_FILES = {
    "200,000 nested brackets": b"[" * 200_000,
    "nested objects in an entry": b'{"schema": "tritonconv-cache", "version": 2, "entries": {"k": ' + b'{"a":' * 100_000 + b"}",
    "torn write": json.dumps({"schema": cache.SCHEMA, "version": 2, "entries": {GOOD_KEY: make_entry()}}).encode()[:-40],
    "not UTF-8": b"\xff\xfe\x00garbage",
    "not JSON": b"garbage",
    "a JSON list": b"[]",
    "another program's file": json.dumps({"schema": "other", "entries": {}}).encode(),
    "a newer schema version": json.dumps({"schema": cache.SCHEMA, "version": 99, "entries": {}}).encode(),
    "entries not a mapping": json.dumps({"schema": cache.SCHEMA, "version": 2, "entries": []}).encode(),
}


@pytest.mark.parametrize("kind", list(CORRUPT_FILES))
def test_a_corrupt_file_never_breaks_conv2d_and_is_kept(kind, capsys):
    path = cache.cache_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(CORRUPT_FILES[kind])
    with pytest.warns(RuntimeWarning, match="cannot use the tuning cache"):
        assert cache.lookup_config(CONV_PROBLEM, CPU) is None
        conv2d_is_right()
    with pytest.raises(cache.CacheError) as raised:
        cache.update({GOOD_KEY: make_entry()})
    assert "\n" not in str(raised.value) and str(path) in str(raised.value) and "cache clear" not in str(raised.value)
    assert path.read_bytes() == CORRUPT_FILES[kind], "never overwritten"
    assert main(["cache", "list"]) == 1
    assert str(path) in one_line(capsys.readouterr().err)


def test_one_backup_per_distinct_corrupt_file_however_many_processes_read_it():
    path = cache.cache_path()
    path.parent.mkdir(parents=True)
    path.write_text("{torn")
    reader = ("from tritonconv import cache; from tritonconv.problem import ConvProblem; import warnings; "
              "warnings.simplefilter('ignore'); cache.lookup_config(ConvProblem(1, 4, 5, 5, 8, 3, 3), 'cpu')")
    for _ in range(3):
        cache.invalidate()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cache.lookup_config(CONV_PROBLEM, CPU)
    subprocess.run([sys.executable, "-c", reader], check=True, timeout=120)
    assert len(list(path.parent.glob("*.corrupt-*"))) == 1
    path.write_text("{torn differently")
    cache.invalidate()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cache.lookup_config(CONV_PROBLEM, CPU)
    assert len(list(path.parent.glob("*.corrupt-*"))) == 2


def test_a_directory_where_the_cache_file_should_be(capsys):
    cache.cache_path().mkdir(parents=True)
    with pytest.warns(RuntimeWarning, match="is a directory"):
        conv2d_is_right()
    assert main(["cache", "list"]) == 1
    assert "is a directory" in one_line(capsys.readouterr().err)
    with pytest.raises(cache.CacheError, match="is a directory"):
        cache.update({GOOD_KEY: make_entry()})


def test_an_oversized_file_is_refused_clearly(monkeypatch, tmp_path, capsys):
    write_cache({GOOD_KEY: make_entry()})
    monkeypatch.setattr(cache.files, "MAX_FILE_BYTES", 100)
    with pytest.warns(RuntimeWarning, match="over the limit"):
        conv2d_is_right()
    huge = tmp_path / "huge.json"
    huge.write_bytes(b" " * 200)
    assert main(["cache", "import", str(huge)]) == 1
    assert "over the limit of" in one_line(capsys.readouterr().err)


# ---- hostile imports -----------------------------------------------------------------------------------------
def _export_file(tmp_path, entries: dict, **header):
    path = tmp_path / "shared.json"
    path.write_text(json.dumps({"schema": cache.SCHEMA, "version": 2, "entries": entries, **header}))
    return path


def test_import_rejects_unusable_entries_one_by_one_with_the_reason(tmp_path, capsys):
    here_but_h100 = make_entry(CONV_PROBLEM, fingerprint=ELSEWHERE)
    source = _export_file(tmp_path, {
        "junk": {"problem": {"bogus": 1}},
        CONV_KEY: here_but_h100,  # this machine's key, H100's fingerprint
        cache.entry_key(PROBLEM.with_(k=64), HERE): make_entry(PROBLEM.with_(k=64), block_m=7),
        GOOD_KEY: make_entry(block_m=64),
        cache.entry_key(PROBLEM, ELSEWHERE): make_entry(fingerprint=ELSEWHERE),
    })
    assert main(["cache", "import", str(source)]) == 0
    captured = capsys.readouterr()
    assert "2 added" in captured.out and "3 rejected" in captured.out
    assert "rejected: junk: its 'family' is missing" in captured.err
    assert f"rejected: {CONV_KEY}: its key names the device" in captured.err and "H100" in captured.err
    assert "BLOCK_M=7 is not one of" in captured.err
    assert "cache clear" not in captured.out + captured.err
    assert cache.lookup_config(CONV_PROBLEM, CPU) is None, "an entry is never active on hardware its fingerprint does not name"
    assert set(cache.entries()) == {GOOD_KEY, cache.entry_key(PROBLEM, ELSEWHERE)}
    assert cache.lookup_config(PROBLEM, CPU)["BLOCK_M"] == 64
    conv2d_is_right()


@pytest.mark.parametrize("content", [b"[" * 200_000, b"{torn", b"\xff", b"[]", json.dumps({"schema": cache.SCHEMA, "version": 99, "entries": {}}).encode()])
def test_import_of_a_bad_file_is_one_line_and_never_suggests_clearing(tmp_path, capsys, content):
    write_cache({GOOD_KEY: make_entry()})
    source = tmp_path / "shared.json"
    source.write_bytes(content)
    assert main(["cache", "import", str(source)]) == 1
    line = one_line(capsys.readouterr().err)
    assert str(source) in line and "cache clear" not in line
    assert not list(tmp_path.glob("shared.json.corrupt-*")), "no backups are made of someone else's file"
    assert set(cache.entries()) == {GOOD_KEY}, "nothing tuned is lost"
    assert main(["cache", "import", str(tmp_path)]) == 1
    assert "is a directory" in one_line(capsys.readouterr().err)


def test_import_of_only_unusable_entries_fails(tmp_path, capsys):
    source = _export_file(tmp_path, {"a": "string", "b": None, "c": [1]})
    assert main(["cache", "import", str(source)]) == 1
    out = capsys.readouterr()
    assert "0 added" in out.out and "3 rejected" in out.out and cache.entries() == {}


# ---- writes that fail: read-only files and directories, a full disk -----------------------------------------------
def test_tuning_keeps_the_file_mode_and_exports_are_shareable(tmp_path):
    cache.update({GOOD_KEY: make_entry()})
    os.chmod(cache.cache_path(), 0o664)
    cache.update({CONV_KEY: make_entry(CONV_PROBLEM)})
    assert stat.S_IMODE(os.stat(cache.cache_path()).st_mode) == 0o664, "a tune does not reset the mode to 0600"
    exported = tmp_path / "export.json"
    cache.export(exported)
    assert stat.S_IMODE(os.stat(exported).st_mode) == 0o644


def test_a_read_only_cache_file_is_not_replaced(capsys, tmp_path):
    cache.update({GOOD_KEY: make_entry()})
    path = cache.cache_path()
    before = path.read_bytes()
    os.chmod(path, 0o444)
    with pytest.raises(cache.CacheError, match="read-only"):
        cache.update({CONV_KEY: make_entry(CONV_PROBLEM)})
    assert path.read_bytes() == before and stat.S_IMODE(os.stat(path).st_mode) == 0o444
    assert cache.lookup_config(PROBLEM, CPU) is not None, "a read-only cache is still used"
    assert main(["cache", "clear", "--yes"]) == 1
    assert "read-only" in one_line(capsys.readouterr().err) and path.exists()
    source = _export_file(tmp_path, {CONV_KEY: make_entry(CONV_PROBLEM)})
    assert main(["cache", "import", str(source)]) == 1
    assert str(path) in one_line(capsys.readouterr().err)
    assert not list(path.parent.glob("*.tmp"))


@pytest.mark.parametrize("failure", [errno.ENOSPC, errno.EACCES, errno.EROFS])
def test_a_full_disk_or_read_only_directory_is_one_line_and_loses_nothing(monkeypatch, capsys, tmp_path, failure):
    cache.update({GOOD_KEY: make_entry()})
    before = cache.cache_path().read_bytes()
    real_write = os.write

    def failing_write(fd, data):
        raise OSError(failure, os.strerror(failure))

    monkeypatch.setattr(os, "write", failing_write)
    with pytest.raises(cache.CacheError) as raised:
        cache.update({CONV_KEY: make_entry(CONV_PROBLEM)})
    assert "\n" not in str(raised.value) and str(cache.cache_dir()) in str(raised.value)
    source = _export_file(tmp_path, {CONV_KEY: make_entry(CONV_PROBLEM)})
    assert main(["cache", "import", str(source)]) == 1
    line = one_line(capsys.readouterr().err)
    assert str(cache.cache_dir()) in line and ("space" in line or "permission" in line)
    assert main(["cache", "export", str(tmp_path / "out.json")]) == 1
    assert "out.json" in one_line(capsys.readouterr().err)
    monkeypatch.setattr(os, "write", real_write)
    assert cache.cache_path().read_bytes() == before, "the old cache is intact"
    assert not list(cache.cache_dir().rglob("*.tmp")), "no temp file left behind"
    assert set(cache.entries()) == {GOOD_KEY}
    conv2d_is_right()


def test_a_cache_dir_that_cannot_be_created(monkeypatch, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("TRITONCONV_CACHE_DIR", str(blocker / "cache"))
    conv2d_is_right()  # nothing to read: defaults, no warning needed
    with pytest.raises(cache.CacheError, match="cannot create the cache directory"):
        cache.update({GOOD_KEY: make_entry()})
    source = _export_file(tmp_path, {GOOD_KEY: make_entry()})
    assert main(["cache", "import", str(source)]) == 1
    assert str(blocker) in one_line(capsys.readouterr().err)


def test_stale_temp_files_of_killed_writers_are_removed():
    cache.update({GOOD_KEY: make_entry()})
    stale = [cache.cache_dir() / f"{cache.CACHE_FILE}abc123.tmp", cache.cache_dir() / cache.TRIALS_DIR / "x.json.1-2.tmp"]
    for tmp in stale:
        tmp.write_bytes(b"x" * 1000)
    report = cache.check()
    assert any("temp file" in p for p in report.problems)
    cache.update({CONV_KEY: make_entry(CONV_PROBLEM)})
    assert not any(tmp.exists() for tmp in stale)


# ---- concurrency and kills --------------------------------------------------------------------------------------
WRITER = textwrap.dedent(
    """
    import sys
    from tests.cache.helpers import HERE, PROBLEM, make_entry
    from tritonconv import cache
    tag, count = int(sys.argv[1]), int(sys.argv[2])
    for i in range(count):
        problem = PROBLEM.with_(k=8 * (i + 1), c=8 * (tag + 1))
        cache.update({cache.entry_key(problem, HERE): make_entry(problem, block_m=32)})
        print(cache.entry_key(problem, HERE), flush=True)
    """
)


def _writer(tag: int, count: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(tag), str(count)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO)


def test_three_concurrent_writers_lose_nothing():
    procs = [_writer(tag, 8) for tag in range(3)]
    written = set()
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        written |= set(out.split())
    assert len(written) == 24 and set(cache.entries()) == written
    assert all(cache.read_entry(key).trials for key in written)


def test_kill_9_mid_write_loses_no_committed_entry():
    committed = set()
    for round_, delay in enumerate((0.05, 0.3, 0.7)):
        proc = _writer(round_, 200)
        committed.add(proc.stdout.readline().strip())  # it has started writing
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
        committed |= set(out.split())
        cache.invalidate()
        assert committed <= set(cache.entries()), "every update that returned is on disk"
    assert committed, "the writers got to write"
    cache.update({GOOD_KEY: make_entry()})  # the next writer cleans up the killed ones' temp files
    assert not list(cache.cache_dir().rglob("*.tmp"))
    assert cache.check().problems == []


TUNER = textwrap.dedent(
    """
    import sys
    from tests.cache.helpers import HERE, PROBLEM, make_entry
    from tritonconv import cache
    print("tuning", flush=True)
    sys.stdin.readline()  # until the test has cleared the cache
    cache.update({cache.entry_key(PROBLEM, HERE): make_entry(block_m=64)})
    print("stored", flush=True)
    """
)


def test_cache_clear_while_a_tuner_runs(capsys):
    """The tuner finishes normally after the clear and its winner is stored (its study's journal is kept by
    `search.journal`, tested with the studies)."""
    cache.update({GOOD_KEY: make_entry(), CONV_KEY: make_entry(CONV_PROBLEM)})
    tuner = subprocess.Popen([sys.executable, "-c", TUNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=REPO)
    assert tuner.stdout.readline().strip() == "tuning"
    assert main(["cache", "clear"]) == 0  # no terminal: no question
    out = capsys.readouterr().out
    assert "removed 2 tuned winners, 2 trial histories" in out
    assert cache.entries() == {} and not list((cache.cache_dir() / cache.TRIALS_DIR).glob("*.json"))
    out, err = tuner.communicate("go\n", timeout=120)
    assert tuner.returncode == 0 and "stored" in out, err
    assert cache.lookup_config(PROBLEM, CPU)["BLOCK_M"] == 64, "the tuner finished and stored its winner"


def test_cache_clear_asks_on_a_terminal(monkeypatch, capsys):
    cache.update({GOOD_KEY: make_entry()})
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert main(["cache", "clear"]) == 1
    assert "nothing was deleted" in capsys.readouterr().out and set(cache.entries()) == {GOOD_KEY}
    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    assert main(["cache", "clear"]) == 0 and cache.entries() == {}
    cache.update({GOOD_KEY: make_entry()})
    monkeypatch.setattr("builtins.input", lambda prompt: pytest.fail("--yes must not ask"))
    assert main(["cache", "clear", "--yes"]) == 0 and cache.entries() == {}


# ---- check --fix, migration ---------------------------------------------------------------------------------------
def test_check_fix_quarantines_invalid_entries_and_keeps_them(capsys):
    write_cache({CONV_KEY: "junk", GOOD_KEY: make_entry()})
    assert main(["cache", "check"]) == 1
    out = capsys.readouterr().out
    assert f"problem: entry {CONV_KEY}: it is a str, not a mapping" in out and "--fix" in out
    assert main(["cache", "check", "--fix"]) == 0
    assert "moved entry" in capsys.readouterr().out
    quarantine = json.loads((cache.cache_dir() / cache.QUARANTINE_FILE).read_text())
    assert [v["entry"] for v in quarantine.values()] == ["junk"]
    assert set(json.loads(cache.cache_path().read_text())["entries"]) == {GOOD_KEY}
    assert main(["cache", "check"]) == 0 and "no problems" in capsys.readouterr().out


def test_check_fix_sets_an_unreadable_file_aside(capsys):
    cache.cache_path().parent.mkdir(parents=True)
    cache.cache_path().write_bytes(b"[" * 200_000)
    assert main(["cache", "check"]) == 1
    assert "nested too deeply" in capsys.readouterr().out
    assert main(["cache", "check", "--fix"]) == 0
    assert not cache.cache_path().exists()
    aside = list(cache.cache_dir().glob("*.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == b"[" * 200_000
    cache.update({GOOD_KEY: make_entry()})
    assert set(cache.entries()) == {GOOD_KEY}


def test_a_version_1_file_is_migrated_keeping_every_entry_and_trial():
    good, bad = make_entry(block_m=64), "junk"
    good["trials"] = [{"family": "implicit_gemm", "family_version": good["family_version"], "config": good["config"],
                       "time_ms": 1.0}, {"config": {"BLOCK_M": 16}, "time_ms": 2.0}]
    path = cache.cache_path()
    path.parent.mkdir(parents=True)
    v1 = json.dumps({"schema": cache.SCHEMA, "version": 1, "entries": {GOOD_KEY: good, CONV_KEY: bad}})
    path.write_text(v1)
    with pytest.warns(RuntimeWarning) as caught:  # the old format, once; the junk entry, once
        assert cache.lookup_config(PROBLEM, CPU)["BLOCK_M"] == 64, "a v1 file is used as it is"
        cache.lookup_config(CONV_PROBLEM, CPU)
        cache.lookup_config(PROBLEM.with_(k=8), CPU)
    assert len(caught) == 2 and "version-1 format" in str(caught[0].message)
    assert path.read_text() == v1, "reading never rewrites"

    cache.update({cache.entry_key(PROBLEM.with_(k=64), HERE): make_entry(PROBLEM.with_(k=64))})  # the next tune
    data = json.loads(path.read_text())
    assert data["version"] == cache.SCHEMA_VERSION and data["entries"][CONV_KEY] == "junk"
    assert "trials" not in data["entries"][GOOD_KEY]
    assert cache.read_entry(GOOD_KEY).trials == good["trials"]
    assert (path.parent / (path.name + ".v1")).read_text() == v1, "the v1 file is kept"
    assert cache.lookup_config(PROBLEM, CPU)["BLOCK_M"] == 64


def test_the_hot_file_is_found_entry_by_entry_and_survives_a_damaged_line():
    cache.update({GOOD_KEY: make_entry(block_m=64), CONV_KEY: make_entry(CONV_PROBLEM)})
    path = cache.cache_path()
    lines = path.read_text().split("\n")
    assert lines[0].endswith('"entries": {') and len(lines) == 5, "one entry per line"
    cache.invalidate()
    assert isinstance(cache.view.load_view().raw, cache.store.LineIndexed), "no full parse on the hot path"
    damaged = [line.replace('"time_ms"', '"time_ms" 3', 1) if line.startswith(json.dumps(CONV_KEY)) else line for line in lines]
    path.write_text("\n".join(damaged))
    cache.invalidate()
    with pytest.warns(RuntimeWarning, match="damaged"):
        assert cache.lookup_config(CONV_PROBLEM, CPU) is None
    assert cache.lookup_config(PROBLEM, CPU)["BLOCK_M"] == 64, "the other entries are unaffected"


@pytest.mark.parametrize("damage", ["garbage", "torn tail"])
def test_a_write_after_a_damaged_line_keeps_every_other_entry_and_sets_the_line_aside(damage):
    other = PROBLEM.with_(k=16)
    other_key = cache.entry_key(other, cache.fingerprint(CPU))
    cache.update({GOOD_KEY: make_entry(block_m=64), CONV_KEY: make_entry(CONV_PROBLEM)})
    path = cache.cache_path()
    text = path.read_text()
    entry_lines = text.split("\n")[1:-2]
    victim = entry_lines[-1]  # a torn write ends inside the last line; garbage may be anywhere
    survivor = PROBLEM if victim.startswith(json.dumps(CONV_KEY)) else CONV_PROBLEM
    if damage == "garbage":
        path.write_text(text.replace(victim, victim[:40] + "\x00garbage"))
    else:
        path.write_text(text[: text.index(victim) + len(victim) // 2])
    cache.invalidate()
    with pytest.warns(RuntimeWarning, match="damaged line"):
        assert cache.update({other_key: make_entry(other)}) == {other_key: "added"}
    cache.invalidate()
    assert cache.lookup_config(survivor, CPU) is not None, "the undamaged winner survives the write"
    assert cache.lookup_config(other, CPU) is not None
    assert cache.lookup_config(PROBLEM if survivor is CONV_PROBLEM else CONV_PROBLEM, CPU) is None
    quarantine = json.loads((path.parent / cache.QUARANTINE_FILE).read_text())
    assert [v["line"][:40] for v in quarantine.values()] == [victim[:40]], "the damaged line is kept, not dropped"
    assert list(path.parent.glob(path.name + ".corrupt-*")), "a copy of the damaged file is kept"


# ---- issue 12: stale dispatch ------------------------------------------------------------------------------------------
def test_dispatch_follows_the_cache_to_another_directory(monkeypatch, tmp_path):
    cache.update({CONV_KEY: make_entry(CONV_PROBLEM, time_ms=3.0, cudnn_ms=2.0)})
    assert dispatch.select(CONV_PROBLEM, None, CPU, "auto")[0].name == "cudnn"
    original = os.environ["TRITONCONV_CACHE_DIR"]
    monkeypatch.setenv("TRITONCONV_CACHE_DIR", str(tmp_path / "empty"))
    assert cache.lookup_config(CONV_PROBLEM, CPU) is None
    assert dispatch.select(CONV_PROBLEM, None, CPU, "auto")[0].name != "cudnn", "no choice learned from the old folder"
    monkeypatch.setenv("TRITONCONV_CACHE_DIR", original)
    assert dispatch.select(CONV_PROBLEM, None, CPU, "auto")[0].name == "cudnn"
    cache.clear()
    assert dispatch.select(CONV_PROBLEM, None, CPU, "auto")[0].name != "cudnn", "a clear is seen too"


def test_cache_does_not_import_dispatch():
    import ast
    from pathlib import Path

    modules = sorted(Path(cache.__file__).parent.glob("*.py"))
    assert len(modules) > 5, "the cache is a package of small modules"
    for module in modules:
        tree = ast.parse(module.read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
        imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        upward = imported & {"dispatch", "tritonconv.dispatch", "ops", "functional", "search", "tritonconv.search"}
        assert not upward, f"{module.name} imports {sorted(upward)}"


def test_info_counts_entries_per_device(capsys):
    cache.update({GOOD_KEY: make_entry(), cache.entry_key(PROBLEM, ELSEWHERE): make_entry(fingerprint=ELSEWHERE)})
    write_cache({**json.loads(cache.cache_path().read_text())["entries"], "junk": None})
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "1 current for " + HERE in out and "1 current for " + ELSEWHERE in out
