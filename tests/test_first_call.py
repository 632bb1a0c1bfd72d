"""Tune on first call (`tritonconv.autotune("on-first-call")`): conv2d, nn.Conv2d and converted models tune a
new problem once, within a small budget, then use the cached winner; nothing is tuned while tracing."""
import os
import subprocess
import sys

import pytest
import torch

import tritonconv
from tritonconv import cache, dispatch, first_call
from tritonconv.errors import InvalidInputError
from tritonconv.functional import make_problem

from .helpers import random_conv_inputs, reference_conv2d, run_poisoned

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="interpreter tests (CPU tensors)")
FAST = {"budget_s": 5.0, "trials": 2, "verbose": False}


@pytest.fixture(autouse=True)
def _fresh_state():
    first_call._settings.tuned.clear()
    first_call._settings.missed_problems.clear()
    first_call._settings.failed.clear()
    yield
    first_call.autotune("off")


def _close(y, x, w, b=None, **kw):
    ref = reference_conv2d(x, w, b, **kw)
    assert not torch.isnan(y).any()
    torch.testing.assert_close(y.double(), ref, rtol=3e-3, atol=3e-3)


def test_conv2d_tunes_a_new_problem_once_then_uses_the_cached_winner(monkeypatch):
    x, w, b = random_conv_inputs(1, 4, 5, 5, 8, 4, 3, 3, seed=1)
    problem = make_problem(x, w, b, 1, 1, 1, 1)
    assert cache.lookup_config(problem, x.device) is None
    with tritonconv.autotune("on-first-call", **FAST) as settings:
        assert first_call.enabled() and settings.trials == 2
        _close(run_poisoned(x, w, b, padding=1), x, w, b, padding=1)
        assert first_call.tuned() == [problem]
        entry = cache.get_entry(problem, x.device)
        assert entry is not None and 1 <= entry.trials_run <= 2
        tuned_config = cache.lookup_config(problem, x.device)

        calls = []
        monkeypatch.setattr(first_call, "_tune", lambda *a: calls.append(a) or True)
        for _ in range(2):
            _close(tritonconv.conv2d(x, w, b, padding=1), x, w, b, padding=1)
        assert calls == []  # cached: never tuned again
        family, config = dispatch.select(problem, None, x.device)
        if tuned_config["family"] != "cudnn":
            assert family.name == tuned_config["family"]
    assert not first_call.enabled() and dispatch.untuned_hook is None  # the block restored "off"


def test_off_by_default_and_nn_conv2d_and_converted_models_tune_on_first_call():
    assert not first_call.enabled()
    x = torch.randn(1, 3, 6, 6)
    module = tritonconv.nn.Conv2d(3, 4, 3, padding=1)
    module(x)
    assert first_call.tuned() == [] and cache.entries() == {}

    first_call.autotune("on-first-call", **FAST)
    _close(module(x), x, module.weight, module.bias, padding=1)
    original = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.ReLU()).eval()
    model = tritonconv.convert(original)
    with torch.no_grad():
        y = model(x)
    assert len(first_call.tuned()) == 2 and len(cache.entries()) == 2
    conv = original[0]
    _close(y, x, conv.weight, conv.bias, activation="relu")


def test_calls_while_tracing_use_the_default_and_are_tuned_at_the_next_eager_call(monkeypatch):
    x, w, _ = random_conv_inputs(1, 4, 5, 5, 4, 4, 1, 1, seed=2)
    problem = make_problem(x, w, None, 1, 0, 1, 1)
    first_call.autotune("on-first-call", **FAST)
    with monkeypatch.context() as patch:  # (not monkeypatch.undo(): that would also drop the isolated cache dir)
        patch.setattr(torch.compiler, "is_compiling", lambda: True)  # what dynamo reports while tracing
        _close(run_poisoned(x, w), x, w)
        assert first_call.missed() == [problem] and first_call.tuned() == [] and cache.entries() == {}
    _close(run_poisoned(x, w), x, w)  # the next eager call tunes it
    assert first_call.missed() == [] and first_call.tuned() == [problem] and len(cache.entries()) == 1


def test_tune_missed_and_bad_settings():
    x, w, _ = random_conv_inputs(1, 4, 4, 4, 4, 4, 1, 1, seed=3)
    problem = make_problem(x, w, None, 1, 0, 1, 1)
    first_call.autotune("on-first-call", **FAST)
    first_call._settings.missed_problems[problem] = x.device
    assert first_call.tune_missed() == [problem] and first_call.missed() == []
    for bad in ({"mode": "always"}, {"budget_s": 0}, {"trials": 0}):
        with pytest.raises(InvalidInputError):
            tritonconv.autotune(**{"mode": "on-first-call", **bad})


def test_environment_variable_turns_it_on(tmp_path):
    code = ("import tritonconv, torch; from tritonconv import first_call as f; assert f.enabled(), 'off';"
            "print(f._settings.budget_s); x = torch.randn(1, 2, 4, 4); w = torch.randn(2, 2, 1, 1);"
            "tritonconv.conv2d(x, w); print(len(f.tuned()))")
    env = {**os.environ, "TRITONCONV_AUTOTUNE": "on-first-call", "TRITONCONV_AUTOTUNE_BUDGET_S": "3",
           "TRITON_INTERPRET": "1", "TRITONCONV_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["3.0", "1"] and "tuned" in proc.stderr and "on first call" in proc.stderr
