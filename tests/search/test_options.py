"""TuneOptions: the one source of tuning defaults. The library's signatures and both CLIs read theirs from it,
bad values are refused up front with the same messages, and reading the defaults imports no torch."""
import inspect
import subprocess
import sys

import pytest

from tests import REPO
from tests.helpers import compiler_env
from tritonconv import tune_model
from tritonconv.cli import build_parser
from tritonconv.errors import InvalidInputError
from tritonconv.search import DEFAULTS, TuneOptions, tune
from tritonconv.search.options import check_tune_options


def _subparser(name):
    parser = build_parser()
    action = next(a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    return action.choices[name]


def test_the_defaults_are_the_documented_ones():
    assert (DEFAULTS.trials, DEFAULTS.early_stop, DEFAULTS.retime_top, DEFAULTS.timeout) == (64, 24, 3, None)
    assert (DEFAULTS.layouts, DEFAULTS.resume, DEFAULTS.seed, DEFAULTS.precision) == ("native", True, 0, None)


def test_library_signatures_take_their_defaults_from_tune_options():
    tune_defaults = {name: p.default for name, p in inspect.signature(tune).parameters.items()
                     if p.default is not inspect.Parameter.empty}
    for name in TuneOptions.names():
        assert tune_defaults[name] == getattr(DEFAULTS, name), name
    assert inspect.signature(tune_model).parameters["trials"].default == DEFAULTS.trials


def test_both_clis_take_their_defaults_from_tune_options():
    for name, fields in (("tune", ("trials", "early_stop", "timeout", "tolerance", "precision", "resume")),
                         ("tune-model", ("trials", "timeout", "tolerance", "precision"))):
        args = _subparser(name).parse_args(["m:f"] if name == "tune-model" else [])
        for field in fields:
            assert getattr(args, field) == getattr(DEFAULTS, field), (name, field)
    help_text = " ".join(_subparser("tune").format_help().split())
    assert f"trial budget per shape (the demo caps it at 4) (default: {DEFAULTS.trials})" in help_text
    assert f"without improvement (default: {DEFAULTS.early_stop})" in help_text


@pytest.mark.parametrize("options, message", [
    ({"trials": 0}, r"trials must be a positive int, got 0"),
    ({"trials": 2.0}, r"trials must be a positive int"),
    ({"early_stop": 0}, r"early_stop must be a positive int or None"),
    ({"retime_top": True}, r"retime_top must be a positive int"),
    ({"timeout": float("inf")}, r"timeout must be a positive number of seconds"),
    ({"tolerance": -1e-3}, r"tolerance must be a positive number"),
    ({"layouts": "nhwc"}, r"layouts must be 'native' or 'auto'"),
    ({"resume": 1}, r"resume must be True or False"),
    ({"seed": "0"}, r"seed must be an int"),
    ({"compile_workers": -1}, r"compile_workers must be a non-negative int"),
    ({"precision": "fp4"}, r"precision must be None, 'auto' or one of"),
    ({"cache": 3}, r"cache must be None, True, False or a directory path"),
    ({"trails": 3}, r"unknown tuning option\(s\) \['trails'\]; the options are trials, "),
])
def test_bad_options_are_refused_naming_the_option(options, message):
    with pytest.raises(InvalidInputError, match=message):
        TuneOptions.from_kwargs(options)
    with pytest.raises(InvalidInputError, match=message):
        check_tune_options([], options)


def test_options_are_frozen_and_complete():
    options = TuneOptions.from_kwargs({"trials": 5, "cache": False})
    assert options.trials == 5 and options.cache is False and options.early_stop == DEFAULTS.early_stop
    with pytest.raises(AttributeError):
        options.trials = 6  # type: ignore[misc]


def test_reading_the_defaults_imports_neither_torch_nor_optuna():
    code = ("import sys; from tritonconv.search.options import DEFAULTS; from tritonconv.search import TuneOptions; "
            "print(DEFAULTS.trials, sorted(m for m in ('torch', 'optuna', 'triton') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=compiler_env("TRITONCONV_AUTOTUNE"),
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["64", "[]"], done.stdout + done.stderr
