"""The default dispatch steps down to lighter configs when the compiled default spills registers on the device."""
from types import SimpleNamespace


from tests.helpers import TOLERANCE, random_conv_inputs, reference_conv2d, rel_error

import tritonconv
from tritonconv import dispatch
from tritonconv.functional import make_problem
from tritonconv.kernels import get_family


def record_launches(monkeypatch, family, spills) -> list:
    """Make `family` launch for real, record each config, and report `spills(launch_number)` spilled bytes
    (Triton's compiled kernels carry `n_spills`; the interpreter's launches return none)."""
    launched = []
    real_launch = type(family).launch

    def launch(self, problem, tensors, config, device=None):
        launched.append(dict(config))
        real_launch(self, problem, tensors, config, device)
        return [SimpleNamespace(n_spills=spills(len(launched)))]

    monkeypatch.setattr(type(family), "launch", launch)
    return launched


def test_lighter_configs_drop_stages_then_halve_tiles_within_the_space():
    x, w, b = random_conv_inputs(8, 64, 28, 28, 128, 64, 3, 3, channels_last=True)
    problem = make_problem(x, w, b, padding=1, precision="tf32")
    family = get_family("implicit_gemm")
    default = {**family.default_config(problem), "num_stages": 4, "BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 32}
    ladder = family.lighter_configs(problem, default)
    assert [c["num_stages"] for c in ladder[:2]] == [3, 2]
    assert [(c["BLOCK_K"], c["BLOCK_N"], c["BLOCK_M"]) for c in ladder[2:]] == [(16, 128, 128), (16, 64, 128), (16, 64, 64)]
    space = family.space(problem)
    assert all(space.violation(problem, c, pruning=False) is None for c in ladder)


def test_a_spilling_default_is_replaced_by_the_next_lighter_config(monkeypatch):
    x, w, b = random_conv_inputs(1, 16, 6, 6, 16, 16, 3, 3, channels_last=True)
    problem = make_problem(x, w, b, padding=1, precision="tf32x3")
    family = dispatch.default_family(problem)
    launched = record_launches(monkeypatch, family, lambda n: 8 if n == 1 else 0)
    reference = reference_conv2d(x, w, b, padding=1)
    for _ in range(3):
        out = tritonconv.conv2d(x, w, b, padding=1, precision="tf32x3", backend="triton")
        assert rel_error(out, reference) < TOLERANCE["tf32x3"]
    default = family.default_config(problem)
    lighter = family.lighter_configs(problem, default)
    assert launched == [default, lighter[0], lighter[0]], "one step down after the spill, then it stays"


def test_explicit_configs_are_never_changed(monkeypatch):
    x, w, b = random_conv_inputs(1, 16, 6, 6, 16, 16, 3, 3, channels_last=True)
    launched = record_launches(monkeypatch, get_family("implicit_gemm"), lambda n: 8)
    config = {"family": "implicit_gemm", "BLOCK_M": 32, "BLOCK_N": 16, "BLOCK_K": 16, "num_stages": 3}
    for _ in range(2):
        tritonconv.conv2d(x, w, b, padding=1, precision="tf32x3", config=config)
    assert launched[0] == launched[1] and launched[0]["num_stages"] == 3


def test_the_dispatch_path_imports_only_downwards():
    """functional/matmul/nn/convert -> ops -> dispatch -> cache: no module on the path imports one above it,
    not even inside a function (ops used to import functional for run_problem and the layout rules)."""
    import ast
    from pathlib import Path

    package = Path(tritonconv.__file__).parent
    above = {"ops": {"functional", "matmul", "nn", "convert"}, "dispatch": {"functional", "matmul", "nn", "convert", "ops"}}
    for module, forbidden in above.items():
        imported = set()
        for node in ast.walk(ast.parse((package / f"{module}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                imported |= {node.module} if node.module else {alias.name for alias in node.names}
            elif isinstance(node, ast.Import):
                imported |= {alias.name.removeprefix("tritonconv.") for alias in node.names}
        assert not imported & forbidden, f"tritonconv.{module} imports {sorted(imported & forbidden)}"
