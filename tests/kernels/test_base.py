"""The family interface's shared behaviour: a family's cache version covers its own module and the Triton code it
launches (with the `kernels.common` jit helpers that code calls), and nothing else."""
from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest

import tritonconv.kernels.common.epilogue as epilogue
import tritonconv.kernels.common.tiling as tiling
import tritonconv.problem as problem_module
from tritonconv.kernels import FAMILIES
from tritonconv.kernels.base import KernelFamily, jit_functions_used_by, kernel_keys

from tests.test_compile_targets import ROOT, _env

COMMON_MODULES = (epilogue, tiling)


def version_after_editing(family: KernelFamily, target, monkeypatch) -> str:
    """The family's version as it would be were `target` (a module or a jit function's Python function) edited."""
    real = inspect.getsource

    def edited(obj):
        text = real(obj)
        return text + "\n# edited\n" if obj is target else text

    with monkeypatch.context() as patch:
        patch.setattr(inspect, "getsource", edited)
        return KernelFamily.version.func(family)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_version_changes_with_the_family_and_the_shared_helpers_it_uses_only(name, monkeypatch):
    family = FAMILIES[name]
    module = inspect.getmodule(type(family))
    used = jit_functions_used_by(module)
    shared_used = [fn for fn in used if fn.__module__.startswith("tritonconv.kernels.common.")]
    shared_unused = [
        value.fn for common in COMMON_MODULES for value in vars(common).values()
        if hasattr(value, "fn") and inspect.isfunction(value.fn) and value.fn.__module__ == common.__name__
        and value.fn not in used
    ]
    assert shared_used, f"{name} launches no kernel calling a kernels.common helper"
    version = family.version
    assert len(version) == 12 and version_after_editing(family, None, monkeypatch) == version
    assert version_after_editing(family, module, monkeypatch) != version
    for fn in shared_used:
        assert version_after_editing(family, fn, monkeypatch) != version, fn.__qualname__
    for fn in shared_unused:
        assert version_after_editing(family, fn, monkeypatch) == version, fn.__qualname__
    assert version_after_editing(family, problem_module, monkeypatch) == version
    for other in FAMILIES.values():
        other_module = inspect.getmodule(type(other))
        if other_module is not module:
            assert version_after_editing(family, other_module, monkeypatch) == version, other.name


COMPILED_SCRIPT = r"""
import inspect, json
from tritonconv.kernels import FAMILIES
from tritonconv.kernels.base import kernel_keys
print(json.dumps({name: {"version": f.version, "keys": kernel_keys(inspect.getmodule(type(f)))} for name, f in FAMILIES.items()}))
"""


def test_compiled_versions_use_tritons_cache_keys():
    """Without the interpreter the kernels count by JITFunction.cache_key (a sha256 of their source, the jit
    functions they call and the constexpr globals they read), the same in every process."""
    runs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", COMPILED_SCRIPT], cwd=ROOT, env=_env(), capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert runs[0] == runs[1] and set(runs[0]) == set(FAMILIES)
    for name, entry in runs[0].items():
        assert entry["keys"] and all(len(key) == 64 and int(key, 16) >= 0 for key in entry["keys"]), name
    interpreted = {name: kernel_keys(inspect.getmodule(type(f))) for name, f in FAMILIES.items()}
    assert all(entry["keys"] != interpreted[name] for name, entry in runs[0].items())
