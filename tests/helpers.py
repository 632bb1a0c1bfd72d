"""Shared test helpers: float64 references, poisoned outputs, error norms and per-precision tolerances; child
processes that compile kernels for real (without the interpreter)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Optional

import torch
import torch.nn.functional as F

from tritonconv.dispatch import empty_output, run_problem
from tritonconv.enums import Activation, Precision
from tritonconv.functional import make_problem
from tritonconv.reference import rel_error  # noqa: F401  (the library's one error measure)

from tests import REPO

# The library's own per-precision tolerances (tritonconv.enums.Precision.tolerance), by name.
TOLERANCE = {precision.value: precision.tolerance for precision in Precision}


def reference_conv2d(
    x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, *, activation=None, residual=None
) -> torch.Tensor:
    """float64 CPU F.conv2d followed by the same epilogue: act(conv + bias + residual)."""
    y = F.conv2d(
        x.double().cpu(), w.double().cpu(), None if bias is None else bias.double().cpu(),
        stride, padding, dilation, groups,
    )
    if residual is not None:
        y = y + residual.double().cpu()
    return Activation.parse(activation).apply(y)


def run_poisoned(
    x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, *, activation=None, residual=None,
    precision: Optional[str] = None, config=None,
) -> torch.Tensor:
    """tritonconv's result written into an output pre-filled with NaN, so unwritten elements fail the check."""
    problem = make_problem(x, w, bias, stride, padding, dilation, groups, residual=residual, precision=precision)
    out = empty_output(problem, x).fill_(float("nan"))
    return run_problem(problem, x, w, bias, residual, activation or "none", config, output=out)


def random_conv_inputs(n, c, h, w, k, cpg, r, s, *, dtype=torch.float32, device="cpu", channels_last=False, seed=0):
    """Random (never all-zero) input, weight and bias on `device`, the input in the requested layout."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=gen)
    wt = torch.randn(k, cpg, r, s, generator=gen) / max(1.0, (cpg * r * s) ** 0.5)
    b = torch.randn(k, generator=gen)
    x, wt, b = (t.to(device=device, dtype=dtype) for t in (x, wt, b))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, wt, b


def sample_configs(family, problem, rng, count: int, max_programs: int = 48, where=None) -> list[dict]:
    """Up to `count` random feasible configs of `family` (pruned space, filtered by `where`) plus its default,
    all launching at most `max_programs` programs, so the interpreter stays fast. Tagged with the family name."""
    from tritonconv.compile import meta_tensors

    def programs(config) -> int:
        grid = family.kernel_calls(problem, meta_tensors(problem), config)[0].grid
        return grid[0] * (grid[1] if len(grid) > 1 else 1) * (grid[2] if len(grid) > 2 else 1)

    space = family.space(problem)
    default = family.default_config(problem)
    feasible = [
        c for c in space.enumerate(problem) if c != default and (where is None or where(c)) and programs(c) <= max_programs
    ]
    picked = [default] if programs(default) <= max_programs and (where is None or where(default)) else []
    picked += rng.sample(feasible, min(count, len(feasible)))
    return [{"family": family.name, **c} for c in picked]


def compiler_env(*unset: str) -> dict[str, str]:
    """This process's environment for a child that compiles kernels for real: without TRITON_INTERPRET (kernels
    must be defined without it) and the variables in `unset`, with the repository importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", *unset)}
    # No empty entry: an empty PYTHONPATH item puts the child's current directory on sys.path.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def run_compiler_script(script: str, *args: str, timeout: float = 600) -> Any:
    """Run `script` (`python -c`, given `args`) in a child without the interpreter; the last line it prints, as JSON."""
    proc = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, env=compiler_env(), capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
