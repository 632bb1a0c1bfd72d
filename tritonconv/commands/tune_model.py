"""`tritonconv tune-model MODULE:FACTORY --input-shape 32,3,224,224 --dtype fp16`: build a model (e.g.
torchvision.models:resnet50, random weights), collect its conv problems on one example batch, tune each distinct
one and print the per-layer table (cuDNN time before, tuned time after, chosen kernel).

--collect-only lists the problems without tuning (runs the model on the "meta" device: no GPU needed). Tuning
needs a CUDA GPU, or TRITON_INTERPRET=1 in the environment to run (slowly) in the Triton interpreter.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any, Callable


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tune-model", help="tune every conv of a model (MODULE:FACTORY)", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("factory", metavar="MODULE:FACTORY", help="e.g. torchvision.models:resnet50")
    parser.add_argument("--input-shape", default="1,3,224,224", help="example input shape N,C,H,W (default %(default)s)")
    parser.add_argument("--dtype", default="fp16", help="fp16, bf16 or fp32 (default %(default)s)")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                        help="keep NCHW instead of converting model and input to channels_last")
    parser.add_argument("--precision", default=None, help="fp32 only: ieee, tf32, tf32x3, fp16, bf16 or auto")
    parser.add_argument("--tolerance", type=float, default=None, help="max relative error (default per precision)")
    parser.add_argument("--trials", type=int, default=64, help="trials per distinct problem (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds of search per problem")
    parser.add_argument("--collect-only", action="store_true", help="list the conv problems, do not tune")
    parser.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    parser.set_defaults(func=run)


def load_factory(spec: str) -> Callable[[], Any]:
    """`module:function` -> the function; clear errors for a bad spec or a missing optional package."""
    from ..errors import InvalidInputError

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise InvalidInputError(f"expected MODULE:FACTORY (e.g. torchvision.models:resnet50), got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        top = module_name.split(".")[0]
        hint = f"; install it with `pip install {top}`" if error.name == top else ""
        raise InvalidInputError(f"cannot import {module_name!r}: {error}{hint}") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise InvalidInputError(f"{module_name!r} has no callable {attribute!r}")
    return factory


def parse_shape(text: str) -> tuple[int, ...]:
    from ..errors import InvalidInputError

    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) <= 0:
        raise InvalidInputError(f"--input-shape must be four positive ints N,C,H,W, got {text!r}")
    return shape


def run(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console
    from rich.table import Table

    from ..errors import TritonConvError
    from ..runtime import INTERPRET, gpu_available
    from ..summary import RunSummary
    from ..tune_model import collect_problems, resolve_dtype, tune_model, unique_problems

    console = Console()
    try:
        factory = load_factory(args.factory)
        shape = parse_shape(args.input_shape)
        dtype = resolve_dtype(args.dtype)
        if not args.collect_only and not gpu_available() and not INTERPRET:
            raise TritonConvError(
                "no CUDA GPU found: tuning measures kernels on a GPU. Use --collect-only to list the model's conv "
                "problems, or set TRITON_INTERPRET=1 to tune (slowly, tiny models only) in the Triton interpreter"
            )
        model = factory().eval()
        if args.collect_only:
            memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
            model = model.to(device="meta", dtype=dtype, memory_format=memory_format)
            example = torch.empty(shape, device="meta", dtype=dtype).contiguous(memory_format=memory_format)
            problems = collect_problems(model, example, precision=None if args.precision == "auto" else args.precision,
                                        layout="nhwc" if args.channels_last else "nchw")
            table = Table(title=f"{args.factory}: {len(problems)} conv layers, "
                                f"{len(unique_problems(problems))} distinct problems")
            table.add_column("layer")
            table.add_column("problem")
            for name, problem in problems.items():
                table.add_row(name, problem.key)
            console.print(table)
            if args.json:
                from ..results import ResultRecord, write_results

                rows = [ResultRecord(name, fields={"label": p.label, "key": p.key, "flops": p.flops, "problem": p.to_dict()})
                        for name, p in problems.items()]
                write_results(args.json, rows, {"model": args.factory, "collect_only": True}, kind="tune-model")
            return 0
        device = "cuda" if gpu_available() else "cpu"
        model = model.to(device)
        example = torch.randn(shape, device=device)
        report = tune_model(model, example, dtype=dtype, channels_last=args.channels_last, precision=args.precision,
                            trials=args.trials, tolerance=args.tolerance, timeout=args.timeout)
    except TritonConvError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    console.print(report.table())
    RunSummary.of(report.results, report.wall_time_s).print(console)
    if args.json:
        from ..results import write_results

        meta = {"model": args.factory, "input_shape": list(shape), "baseline": report.baseline,
                "wall_time_s": report.wall_time_s, "total_before_ms": report.total_before_ms,
                "total_after_ms": report.total_after_ms, "speedup": report.speedup}
        write_results(args.json, report.records(), meta, kind="tune-model")
    return 0
