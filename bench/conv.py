"""Conv2d benchmark on this GPU: cuDNN (NCHW and NHWC) vs every tritonconv family's default config vs the tuned
choice, per suite shape (default: the package's tritonconv/suites/conv2d.json), all timed in one process;
roofline floor from peaks measured in the same run.

    python bench/conv.py [SUITE.json] [--dtype fp16|bf16|fp32] [--layout nhwc|nchw]
                         [--precision tf32] [--shapes 'r50_*,*dw*'] [--out bench/results/NAME.json]

Writes bench/results/conv2d_<gpu>_<dtype>_<layout>.json and PNG charts next to it; exits 2 without a GPU.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from tritonconv.cli import run_command  # noqa: E402
from tritonconv.commands._options import HelpFormatter, Parser  # noqa: E402
from tritonconv.commands.bench import add_suite_arguments, run_suite_benchmark  # noqa: E402
from tritonconv.suite import CONV_SUITE  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python bench/conv.py", description=__doc__, formatter_class=HelpFormatter)
    add_suite_arguments(parser, default_suite=CONV_SUITE)
    parser.add_argument("--no-families", action="store_true", help="only cuDNN and the tuned choice")
    args = parser.parse_args(argv)
    return run_command(lambda a: run_suite_benchmark(a, families=not a.no_families, default_dir=HERE / "results",
                                                     what="bench/conv.py"), args)


if __name__ == "__main__":
    sys.exit(main())
