"""Bad input is refused up front, clearly: ~120 bad command lines (no traceback, exit 2 for bad usage or 1 for a
runtime failure, one line naming the problem) and ~170 bad API calls (a tritonconv error naming the problem, never
a raw exception or a silent acceptance). The tables live in tests/bad_inputs.py."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tritonconv
from tritonconv.cli import main

from .bad_inputs import API_CASES, CLI_CASES, SCRIPT_CASES, api_fixtures, make_fixtures

ROOT = Path(__file__).resolve().parent.parent
CLI_BY_ID = {case[0]: case for case in CLI_CASES}


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("bad-inputs")
    make_fixtures(directory)
    return directory


def _check_output(text: str, code: int, codes: set, pattern: str) -> None:
    assert "Traceback" not in text, text
    assert code in codes, f"exit {code}: {text}"
    assert re.search(pattern, text), text
    error_lines = [line for line in text.splitlines() if "error:" in line]
    assert len(error_lines) == 1, text  # one line names the problem
    assert "\x1b" not in text  # escapes from files are printed escaped


@pytest.mark.parametrize("case_id", [case[0] for case in CLI_CASES])
def test_bad_command_line(case_id, fixture_dir, monkeypatch, capsys):
    _, argv, codes, pattern = CLI_BY_ID[case_id]
    monkeypatch.chdir(fixture_dir)
    argv = [a.replace("{D}", str(fixture_dir)) for a in argv]
    code = main(argv)
    captured = capsys.readouterr()
    _check_output(captured.out + captured.err, code, codes, pattern)
    assert tritonconv.cache.entries() == {}  # nothing was tuned


@pytest.mark.parametrize("case_id", SCRIPT_CASES)
def test_bad_command_line_through_the_console_script(case_id, fixture_dir):
    _, argv, codes, pattern = CLI_BY_ID[case_id]
    script = Path(sys.executable).with_name("tritonconv")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "tritonconv.cli"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TRITON_INTERPRET", None)
    done = subprocess.run([*command, *[a.replace("{D}", str(fixture_dir)) for a in argv]], cwd=fixture_dir,
                          env=env, capture_output=True, text=True, timeout=120)
    _check_output(done.stdout + done.stderr, done.returncode, codes, pattern)


@pytest.fixture(scope="module")
def fixtures():
    return api_fixtures()


@pytest.mark.parametrize("case_id, call, pattern", API_CASES, ids=[case[0] for case in API_CASES])
def test_bad_api_call(case_id, call, pattern, fixtures):
    with pytest.raises(tritonconv.TritonConvError) as error:
        call(fixtures)
    assert re.search(pattern, str(error.value)), str(error.value)
    assert tritonconv.cache.entries() == {}


def test_tables_are_large_and_distinct():
    assert len(CLI_CASES) >= 100 and len(API_CASES) >= 100
    assert len({c[0] for c in CLI_CASES}) == len(CLI_CASES) and len({c[0] for c in API_CASES}) == len(API_CASES)
