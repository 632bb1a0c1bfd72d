"""The family interface's shared behaviour: a family's cache version covers its own module, the launch code it
imports from `kernels.common` and `kernels.base`, and the Triton code it launches (with the `kernels.common` jit
helpers that code calls), and nothing else."""
from __future__ import annotations

import dataclasses
import inspect

import pytest

import tritonconv.kernels.base as base_module
import tritonconv.kernels.common.conv_gemm as conv_gemm
import tritonconv.kernels.common.epilogue as epilogue
import tritonconv.kernels.common.tma as tma
import tritonconv.kernels.common.tiling as tiling
import tritonconv.problem as problem_module
from tritonconv.kernels import FAMILIES, families_for
from tritonconv.problem import ConvProblem
from tritonconv.kernels.base import KernelFamily, jit_functions_used_by, kernel_keys

from tests.helpers import run_compiler_script

COMMON_MODULES = (epilogue, tiling)


def version_after_editing(family: KernelFamily, target, monkeypatch) -> str:
    """The family's version as it would be were `target` (a module or a jit function's Python function) edited."""
    real = inspect.getsource

    def edited(obj):
        text = real(obj)
        return text + "\n_edited = 1\n" if obj is target else text

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


@pytest.mark.parametrize("shared, users", [
    (conv_gemm, {"implicit_gemm", "int8_implicit_gemm"}),  # grid, loop-order constexprs, weight layouts
    (tma, {"gemm", "hopper_implicit_gemm"}),  # TMA host code
    (base_module, set(FAMILIES)),  # the interface's launch helpers (conv_io_args, epilogue_constexprs)
])
def test_version_covers_the_plain_python_launch_code_the_family_imports(shared, users, monkeypatch):
    """The launch code a family takes from kernels.common (and kernels.base) shapes its launches too: editing it
    changes the versions of the families that import from it, and only theirs."""
    changed = {name for name, family in FAMILIES.items()
               if version_after_editing(family, shared, monkeypatch) != family.version}
    assert changed == users


COMPILED_SCRIPT = r"""
import inspect, json
from tritonconv.kernels import FAMILIES, families_for
from tritonconv.problem import ConvProblem
from tritonconv.kernels.base import kernel_keys
print(json.dumps({name: {"version": f.version, "keys": kernel_keys(inspect.getmodule(type(f)))} for name, f in FAMILIES.items()}))
"""


def test_compiled_versions_use_tritons_cache_keys():
    """Without the interpreter the kernels count by JITFunction.cache_key (a sha256 of their source, the jit
    functions they call and the constexpr globals they read), the same in every process."""
    runs = [run_compiler_script(COMPILED_SCRIPT, timeout=300) for _ in range(2)]
    assert runs[0] == runs[1] and set(runs[0]) == set(FAMILIES)
    for name, entry in runs[0].items():
        assert entry["keys"] and all(len(key) == 64 and int(key, 16) >= 0 for key in entry["keys"]), name
    interpreted = {name: kernel_keys(inspect.getmodule(type(f))) for name, f in FAMILIES.items()}
    assert all(entry["keys"] != interpreted[name] for name, entry in runs[0].items())


def test_families_decide_for_the_device_passed_in():
    """The target is an argument, not the process's device: in the interpreter (capability 0.0) the Hopper family
    is offered for an sm_90 target and not for sm_80, defaults follow the target's SMs, and a persistent kernel's
    grid is sized to them, with no emulation context."""
    from tritonconv.compile import meta_tensors
    from tritonconv.kernels import families_for, get_family
    from tritonconv.problem import ConvProblem
    from tritonconv.runtime import COMPILE_TARGETS, INTERPRETER_DEVICE, device_info

    problem = ConvProblem(n=2, c=64, h=14, w=14, k=64, r=3, s=3, pad_h=1, pad_w=1, dtype="float16", layout="nhwc")
    h100, a100 = COMPILE_TARGETS[90], COMPILE_TARGETS[80]
    assert device_info() == INTERPRETER_DEVICE
    assert "hopper_implicit_gemm" in {f.name for f in families_for(problem, h100)}
    assert "hopper_implicit_gemm" not in {f.name for f in families_for(problem, a100)}
    assert "hopper_implicit_gemm" not in {f.name for f in families_for(problem)}
    hopper = get_family("hopper_implicit_gemm")
    config = hopper.default_config(problem, h100)
    assert hopper.complete_config(problem, {}, h100) == config
    (call,) = hopper.kernel_calls(problem, meta_tensors(problem), config, h100)
    assert call.constexprs["NUM_SMS"] == h100.sm_count
    small = dataclasses.replace(h100, sm_count=8)
    (call,) = hopper.kernel_calls(problem, meta_tensors(problem), config, small)
    assert call.constexprs["NUM_SMS"] == 8 and call.grid == (8,)
    gemm = get_family("gemm")
    matmul = ConvProblem(n=1, c=512, h=1, w=4096, k=4096, r=1, s=1, dtype="float16", layout="nhwc")
    assert gemm.default_config(matmul, h100)["VARIANT"] == "tma_persistent"
    assert gemm.default_config(matmul, a100)["VARIANT"] == "tiled"
    assert "tma_persistent" not in gemm.space(matmul, a100).param("VARIANT").choices


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_only_families_that_say_so_are_routed_a_batched_weight(name):
    """`refusal`, the one gate of families_for, the dispatcher and resolve_config, refuses a batched weight for every
    family without `handles_batched_weight`, whatever its own `supports` says."""
    from tritonconv.config import resolve_config
    from tritonconv.errors import InvalidConfigError

    family = FAMILIES[name]
    fields = {"dtype": "int8", "precision": "int8"} if "int8" in family.dtypes else {"dtype": "float32"}
    problem = ConvProblem(n=2, c=16, h=6, w=6, k=16, r=1, s=1, layout="nhwc", batched_weight=True, **fields)
    if family.handles_batched_weight:
        assert family.refusal(problem) is None
        return
    assert family.refusal(problem) == "no batched (per-image) weights"
    assert family not in families_for(problem)
    with pytest.raises(InvalidConfigError, match="no batched"):
        resolve_config(problem, {"family": name})


def test_comments_docstrings_and_layout_of_the_python_modules_leave_every_version_as_it_is(monkeypatch):
    """Only code counts in a family's Python modules: a docstring rewritten, a comment added and a line rewrapped in
    kernels.base (which every family's version covers) change no version; a changed constant does."""
    real = inspect.getsource
    versions = {name: family.version for name, family in FAMILIES.items()}

    def versions_with(edit):
        def edited(obj):
            return edit(real(obj)) if obj is base_module else real(obj)

        with monkeypatch.context() as patch:
            patch.setattr(inspect, "getsource", edited)
            return {name: KernelFamily.version.func(family) for name, family in FAMILIES.items()}

    docstring = base_module.__doc__.strip().splitlines()[0]
    edits = [(docstring, "Reworded."), ("\nimport ast\n", "\n# a comment\nimport ast  # another\n"),
             ("from __future__ import annotations", "from __future__ import (\n    annotations,\n)")]

    def doc_only(text):
        for old, new in edits:
            assert old in text, old
            text = text.replace(old, new, 1)
        return text

    assert versions_with(doc_only) == versions
    assert versions_with(lambda text: text + "\nA_CONSTANT = 2\n") != versions
