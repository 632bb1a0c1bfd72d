"""The command line's surface (issue 15 items 3, 5, 6, 9 and the --help cost of item 10): the interpreter demo
stays the default, huge interpreter runs are announced, tune-model loads local modules, one suite/--shapes/dtype/
--interpret style on every command, help shows defaults, and --help imports no torch. Through the real console
script where that is what a user runs."""
import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tritonconv import cache
from tritonconv.cli import build_parser, main
from tritonconv.commands import compile as compile_module
from tritonconv.commands import tune as tune_command
from tritonconv.enums import ALL_DTYPE_CHOICES, DTYPE_CHOICES
from tritonconv.search import TuningError
from tritonconv.text import safe_console, terminal_safe

from tests.helpers import compiler_env

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).with_name("tritonconv")
needs_no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a CUDA GPU")
TINYNET = """
from torch import nn

def make():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 1))
"""


def _run(args: list[str], cwd: Path = ROOT, interpret: bool = False, timeout: int = 600) -> subprocess.CompletedProcess:
    """The real console script (or `python -m tritonconv.cli` where it is not installed), this checkout first."""
    env = {**compiler_env(), "COLUMNS": "200"}
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "tritonconv.cli"]
    return subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = sub
                found.update({f"{name} {k}": v for k, v in _subparsers(sub).items()})
    return found


# ---- item 9 and 10: --version, help, no torch while parsing ---------------------------------------------------
def test_version_and_help_through_the_console_script():
    done = _run(["--version"])
    assert done.returncode == 0 and done.stdout.strip() == "tritonconv 0.1.0"
    done = _run(["--help"])
    assert done.returncode == 0 and "tune-model" in done.stdout and "--version" in done.stdout


@pytest.mark.parametrize("argv", [["--help"], ["tune", "--help"], ["tune-model", "--help"], ["bench", "--help"],
                                  ["cache", "--help"], ["tune", "--stride", "0"]])
def test_parsing_imports_neither_torch_nor_triton(argv):
    code = ("import sys; from tritonconv.cli import main; code = main(%r); "
            "print('heavy:', sorted(m for m in ('torch', 'triton') if m in sys.modules)); sys.exit(code)" % argv)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=compiler_env("TRITONCONV_AUTOTUNE"),
                          capture_output=True, text=True, timeout=120)
    assert "heavy: []" in done.stdout, done.stdout + done.stderr
    assert done.returncode == (2 if "0" in argv else 0)


def test_every_option_has_help_and_shows_its_default():
    for name, parser in _subparsers(build_parser()).items():
        text = parser.format_help()
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS or action.dest == "help":
                continue
            assert action.help, f"{name} {action.option_strings[0]} has no help text"
            shown = any(action.default is v for v in (None, False, True)) or action.nargs == 0
            if not shown:
                assert f"default: {action.default}" in re.sub(r"\s+", " ", text) or "default" in action.help, \
                    f"{name} {action.option_strings[0]} hides its default"
    tune_help = _subparsers(build_parser())["tune"].format_help()
    for flag, words in (("--stride", "stride"), ("--dilation", "dilation"), ("--groups", "must divide")):
        line = next(line for line in tune_help.splitlines() if line.strip().startswith(flag))
        assert words in line, line


def test_compile_module_calls_itself_by_its_real_name():
    done = subprocess.run([sys.executable, "-m", "tritonconv.compile", "--help"], cwd=ROOT, env=compiler_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("usage: python -m tritonconv.compile")
    assert "compile.py" not in done.stdout and "(default: 80,90)" in done.stdout


# ---- item 3: the interpreter demo stays the default, huge runs are announced ----------------------------------
@needs_no_gpu
def test_readme_example_runs_the_demo_on_a_cpu_machine():
    """README: `bash .ci/tune --dtype float32 --precision auto --tolerance 1e-3` "without a GPU runs a
    demonstration" (.ci/tune runs `tritonconv tune "$@"`)."""
    done = _run(["tune", "--dtype", "float32", "--precision", "auto", "--tolerance", "1e-3"])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "No CUDA GPU found" in done.stdout and "demonstration" in done.stdout and "demo_3x3" in done.stdout
    assert "Traceback" not in done.stderr
    assert len(cache.entries()) == len(tune_command.DEMO_SHAPES)


def test_interpret_alone_runs_the_demo_not_the_production_suite(monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr(tune_command, "_tune", lambda args: seen.update(vars(args)) or 0)
    assert main(["tune", "--interpret"]) == 0
    assert seen["demo"] and "demonstration" in capsys.readouterr().out
    assert [name for name, _ in tune_command._problems(argparse.Namespace(**seen))] == ["demo_3x3", "demo_1x1"]
    seen.clear()
    assert main(["tune", "--interpret", "--shapes", "r50_l1_*"]) == 0  # named shapes: those, not the demo
    assert not seen["demo"]


def test_a_huge_interpreter_run_prints_an_estimate_first(monkeypatch, capsys):
    import tritonconv.search

    def refuse(*args, **kwargs):
        raise TuningError("stopped by the test")

    monkeypatch.setattr(tritonconv.search, "tune_many", refuse)
    assert main(["tune", "--shapes", "r50_l1_3x3", "--interpret"]) == 1
    err = capsys.readouterr().err
    assert "estimated to take about" in err and ("days" in err or "hours" in err) and "r50_l1_3x3" in err
    assert err.index("warning:") < err.index("stopped by the test")
    estimate = tune_command.interpreter_estimate_s([p for _, p in tune_command._problems(
        build_parser().parse_args(["tune", "--c", "4", "--h", "6", "--w", "6", "--k", "8"]))], 4)
    assert estimate < tune_command.WARN_AFTER_S  # the demo-sized run stays quiet


# ---- item 5: tune-model module loading -------------------------------------------------------------------------
def test_tune_model_imports_a_module_from_the_current_folder(tmp_path):
    (tmp_path / "tinynet.py").write_text(TINYNET)
    (tmp_path / "optuna.py").write_text("raise RuntimeError('a local optuna.py must never be imported')\n")
    done = _run(["tune-model", "tinynet:make", "--input-shape", "1,3,8,8", "--collect-only"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 conv layers" in done.stdout and "pip install" not in done.stdout + done.stderr
    done = _run(["tune-model", f"{tmp_path / 'tinynet.py'}:make", "--input-shape", "1,3,8,8", "--collect-only"])
    assert done.returncode == 0 and "2 conv layers" in done.stdout, done.stderr


def test_tune_model_errors_are_one_line_and_never_advise_installing_a_local_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "localnet.py").write_text("import localnet_dependency_missing\n")
    assert main(["tune-model", "localnet:make", "--collect-only"]) == 2
    err = capsys.readouterr().err
    assert "localnet_dependency_missing" in err and "pip install localnet" not in err and len(err.splitlines()) == 1
    assert main(["tune-model", "nosuchnet:make", "--collect-only"]) == 2
    err = capsys.readouterr().err
    assert "no nosuchnet.py in the current directory" in err and len(err.splitlines()) == 1


@needs_no_gpu
def test_tune_model_takes_interpret_like_tune(tmp_path):
    (tmp_path / "tinynet.py").write_text(TINYNET)
    done = _run(["tune-model", "tinynet:make", "--input-shape", "1,3,5,5", "--dtype", "fp32", "--precision", "ieee",
                 "--trials", "2", "--interpret", "--json", "out.json"], cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert json.loads((tmp_path / "out.json").read_text())["records"]
    refused = _run(["tune-model", "tinynet:make", "--input-shape", "1,3,5,5"], cwd=tmp_path)
    assert refused.returncode == 2 and "--interpret" in refused.stderr


# ---- item 6: one suite argument, one --shapes, one dtype list, one --interpret ------------------------------------
def test_commands_share_suite_shapes_dtype_and_interpret_options(tmp_path, capsys):
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps({"shapes": [
        {"name": "r50_a", "n": 1, "c": 4, "h": 5, "w": 5, "k": 8, "r": 3, "s": 3, "pad": 1},
        {"name": "r50_b", "n": 1, "c": 8, "h": 5, "w": 5, "k": 8, "r": 1, "s": 1},
        {"name": "dw_c", "n": 1, "c": 8, "h": 5, "w": 5, "k": 8, "r": 3, "s": 3, "pad": 1, "groups": 8}]}))
    parsers = _subparsers(build_parser())
    compile_parser = compile_module.build_parser()
    for parser in (parsers["tune"], parsers["bench"], compile_parser):
        args = parser.parse_args([str(suite), "--shapes", "r50_*"])
        assert args.suite == suite and args.shapes == ["r50_*"]
    for name, choices in (("tune", ALL_DTYPE_CHOICES), ("bench", DTYPE_CHOICES), ("tune-model", DTYPE_CHOICES)):
        dtype = next(a for a in parsers[name]._actions if a.dest == "dtype")
        assert tuple(dtype.choices) == choices  # tune and compile also drive the int8 family
    assert ALL_DTYPE_CHOICES == DTYPE_CHOICES + ("int8",)
    assert compile_parser.parse_args(["--dtypes", ",".join(ALL_DTYPE_CHOICES)]).dtypes
    interpret_help = {next(a for a in parsers[name]._actions if a.dest == "interpret").help
                      for name in ("tune", "tune-model")}
    assert len(interpret_help) == 1

    # --shapes: glob patterns on whole names, the same selection everywhere
    from tritonconv.suite import load_problems

    tune_args = parsers["tune"].parse_args([str(suite), "--shapes", "r50_*,dw_?"])
    tune_args.demo = False
    assert [n for n, _ in tune_command._problems(tune_args)] == ["r50_a", "r50_b", "dw_c"]
    assert [n for n, _ in load_problems(suite, shapes=["r50_*", "dw_?"])] == ["r50_a", "r50_b", "dw_c"]
    for argv in (["tune", str(suite), "--shapes", "r50", "--interpret"], ["bench", str(suite), "--shapes", "r50"]):
        assert main(argv) == 2 and "'r50' matches no shape" in capsys.readouterr().err
    assert compile_module.main([str(suite), "--shapes", "r50"]) == 2
    assert "'r50' matches no shape" in capsys.readouterr().err
    assert compile_module.main([str(suite), "--shapes", "r50_*"]) == 2  # selected; then refused in the interpreter
    assert "unset TRITON_INTERPRET" in capsys.readouterr().err


# ---- printing what came from files ------------------------------------------------------------------------------
def test_text_from_files_is_escaped_for_the_terminal_and_for_rich(tmp_path, capsys):
    hostile = "gpu\x1b]0;owned\x07\x1b[31m[/x][bold]\u202e"
    assert terminal_safe(hostile) == "gpu\\x1b]0;owned\\x07\\x1b[31m[/x][bold]\\u202e"
    console = safe_console(file=open(tmp_path / "out.txt", "w"), width=200)
    from rich.table import Table

    table = Table(title=hostile)
    table.add_column("device")
    table.add_row(hostile + "\nsecond line")
    console.print(table)
    console.file.close()
    printed = (tmp_path / "out.txt").read_text()
    assert "\x1b" not in printed and "\x07" not in printed and "[/x][bold]" in printed and "second line" in printed

    entry = {"fingerprint": hostile, "family": "[/x]", "problem": {"bogus": 1}, "time_ms": 1.0}
    cache.cache_path().parent.mkdir(parents=True, exist_ok=True)
    cache.cache_path().write_text(json.dumps({"schema": "tritonconv-cache", "version": 1, "entries": {"k\x1b[2J": entry}}))
    cache.invalidate()
    code = main(["cache", "list"])
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and "Traceback" not in out + err
    assert code in (0, 1)


# ---- OS errors: one line naming the path, exit 1 ----------------------------------------------------------------
@pytest.mark.parametrize("error, words", [
    (PermissionError(13, "Permission denied", "/ro/tuning-cache.json"), "/ro/tuning-cache.json: Permission denied"),
    (OSError(28, "No space left on device", "/full/out.json"), "/full/out.json: No space left on device"),
    (IsADirectoryError(21, "Is a directory", "/cache/tuning-cache.json"), "/cache/tuning-cache.json: Is a directory"),
    (FileExistsError(17, "File exists", "/a", None, "/b"), "/a -> /b: File exists"),
])
def test_os_errors_become_one_line_naming_the_path(error, words, monkeypatch, capsys):
    def write_fails(*args, **kwargs):
        raise error

    monkeypatch.setattr(tune_command, "_tune", write_fails)
    assert main(["tune", "--interpret"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"error: {words}" and "Traceback" not in err


def test_a_full_disk_while_writing_results_is_one_line(tmp_path, monkeypatch, capsys):
    import errno

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out.json"))

    monkeypatch.setattr(tune_command, "write_json", no_space)
    code = main(["tune", "--c", "4", "--h", "4", "--w", "4", "--k", "8", "--dtype", "float32", "--trials", "1",
                 "--interpret", "--json", str(tmp_path / "out.json")])
    err = capsys.readouterr().err
    assert code == 1 and err.strip().endswith(f"{tmp_path / 'out.json'}: No space left on device"), err
    assert len(cache.entries()) == 1  # the tuned winner is kept
