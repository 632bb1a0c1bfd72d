"""Helpers the kernel family tests share."""
from __future__ import annotations

import json
import textwrap

from tritonconv.problem import ConvProblem

from tests.helpers import run_compiler_script

COMPILE_DEFAULTS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from tritonconv.compile import compile_config
    from tritonconv.kernels import get_family
    from tritonconv.problem import ConvProblem
    from tritonconv.runtime import COMPILE_TARGETS
    family = get_family(sys.argv[1])
    results = []
    for spec in json.loads(sys.argv[2]):
        problem = ConvProblem(**spec)
        for cc in (80, 90):
            config = family.default_config(problem, COMPILE_TARGETS[cc])  # the config an A100 / H100 gets
            usage = compile_config(family, problem, config, cc, residual=True)
            results.append({"key": problem.key, "sm": cc, "layout": problem.layout, "multiplier": problem.k // problem.c, "stack": [u.stack_bytes for u in usage],
                            "wide_loads": usage[0].wide_loads, "narrow_loads": usage[0].narrow_loads})
    print(json.dumps(results))
    """
)


def compile_defaults_in_subprocess(family: str, problems: list[ConvProblem]) -> list[dict]:
    """`family`'s default config of each problem, decided for sm_80 and for sm_90 (`COMPILE_TARGETS`) and compiled
    for it (with a residual), in a child process without the interpreter: one record per (problem, target) with its
    stack bytes and vector-load counts."""
    return run_compiler_script(COMPILE_DEFAULTS_SCRIPT, family, json.dumps([p.to_dict() for p in problems]),
                               timeout=300)
