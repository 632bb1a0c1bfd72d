"""`tritonconv tune-model MODULE:FACTORY --input-shape 32,3,224,224 --dtype fp16`: build a model (e.g.
torchvision.models:resnet50, random weights), collect its conv problems on one example batch, tune each distinct
one and print the per-layer table (cuDNN time before, tuned time after, chosen kernel).

MODULE is an importable module (the current directory included, so `tinynet:make` finds ./tinynet.py) or a path
to a Python file (`models/tiny.py:make`); FACTORY is a callable in it returning a torch.nn.Module.
--collect-only lists the problems without tuning (runs the model on the "meta" device: no GPU needed). Tuning
needs a CUDA GPU, or --interpret (or TRITON_INTERPRET=1) to run slowly in the Triton interpreter on the CPU.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Callable

from ..enums import PRECISION_CHOICES
from ..search.options import DEFAULTS
from ._options import (
    add_dtype_argument, add_interpret_argument, check_writable, enable_interpreter,
    interpreter_requested,
    output_file, positive_float, positive_int,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tune-model", help="tune every conv of a model (MODULE:FACTORY)", description=__doc__)
    parser.add_argument("factory", metavar="MODULE:FACTORY", help="e.g. torchvision.models:resnet50 or tinynet.py:make")
    parser.add_argument("--input-shape", type=parse_shape, default=(1, 3, 224, 224), metavar="N,C,H,W",
                        help="example input shape (default: 1,3,224,224)")
    add_dtype_argument(parser, default="fp16", help_text="dtype the model and input are cast to")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                        help="keep NCHW instead of converting model and input to channels_last")
    parser.add_argument("--precision", default=DEFAULTS.precision, choices=PRECISION_CHOICES,
                        help="operand precision; fp32 may use ieee, tf32, tf32x3, fp16, bf16, fp8 or auto (default: the "
                             "dtype's default)")
    parser.add_argument("--tolerance", type=positive_float, default=DEFAULTS.tolerance,
                        help="max relative error (default: the precision's)")
    parser.add_argument("--trials", type=positive_int, default=DEFAULTS.trials, help="trials per distinct problem")
    parser.add_argument("--timeout", type=positive_float, default=DEFAULTS.timeout,
                        help="seconds of search per problem (default: no limit)")
    parser.add_argument("--collect-only", action="store_true", help="list the conv problems, do not tune")
    parser.add_argument("--json", type=output_file, default=None, help="also write the report as JSON")
    add_interpret_argument(parser)
    parser.set_defaults(func=run)


def _import_module(module_name: str):
    """Import MODULE by name (the current directory is searched last) or from a `.py` path."""
    from ..errors import InvalidInputError

    if module_name.endswith(".py") or os.sep in module_name:
        path = Path(module_name)
        if not path.is_file():
            raise InvalidInputError(f"model file {module_name!r} does not exist")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # after site-packages: a local file never shadows an installed package
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        top = module_name.split(".")[0]
        if error.name != top:
            raise
        local = Path(top + ".py").exists() or Path(top).is_dir()
        hint = "" if local else (f"; no {top}.py in the current directory either. If it is a package, install it "
                                 f"(`pip install {top}`)")
        raise InvalidInputError(f"cannot import {module_name!r}: no module named {top!r}{hint}") from None


def load_factory(spec: str) -> Callable[[], Any]:
    """`module:function` (or `file.py:function`) -> the function; one-line errors naming the spec for a bad spec,
    a missing module, a module that fails to import, or a missing attribute."""
    from ..errors import InvalidInputError, TritonConvError

    module_name, _, attribute = spec.rpartition(":")
    if not module_name or not attribute:
        raise InvalidInputError(f"expected MODULE:FACTORY (e.g. torchvision.models:resnet50), got {spec!r}")
    try:
        module = _import_module(module_name)
    except TritonConvError:
        raise
    except Exception as error:  # noqa: BLE001 - the user's module: any failure is reported on one line
        raise InvalidInputError(f"importing {module_name!r} failed: {type(error).__name__}: {error}") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise InvalidInputError(f"{module_name!r} has no callable {attribute!r}")
    return factory


def build_model(spec: str) -> Any:
    """Call the factory named by `spec`; its failures and non-module results become one-line errors."""
    from torch import nn

    from ..errors import InvalidInputError

    factory = load_factory(spec)
    try:
        model = factory()
    except Exception as error:  # noqa: BLE001 - the user's factory: any failure is reported on one line
        raise InvalidInputError(f"model factory {spec!r} failed: {type(error).__name__}: {error}") from None
    if not isinstance(model, nn.Module):
        raise InvalidInputError(f"model factory {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) <= 0:
        raise argparse.ArgumentTypeError(f"must be four positive integers N,C,H,W, got {text!r}")
    return shape


def _run_model(what: str, fn: Callable[[], Any]) -> Any:
    """Run the user's model; a failure in its forward (e.g. an input shape it does not take) is one line."""
    from ..errors import InvalidInputError, TritonConvError

    try:
        return fn()
    except TritonConvError as error:  # e.g. a conv tritonconv rejects: say where it came from
        raise type(error)(f"{what} failed: {error}") from None
    except Exception as error:  # noqa: BLE001 - the user's model code
        raise InvalidInputError(f"{what} failed: {type(error).__name__}: {str(error)[:500]}") from None


def run(args: argparse.Namespace) -> int:
    from ..errors import InvalidInputError, TritonConvError

    check_writable(args.json)
    if args.collect_only:
        return _collect(args)
    if interpreter_requested(args):  # before the model's module is imported: it may import Triton
        if not enable_interpreter():
            raise TritonConvError("--interpret must be chosen before Triton is imported: set TRITON_INTERPRET=1 "
                                  "in the environment of this process")
        args.interpret = True
    else:
        import torch

        if not torch.cuda.is_available():
            build_model(args.factory)  # a bad factory is the first thing to report
            raise InvalidInputError(
                "no CUDA GPU found: tuning measures kernels on a GPU. Use --collect-only to list the model's conv "
                "problems, or --interpret to tune (slowly, tiny models only) in the Triton interpreter"
            )
    model = build_model(args.factory)
    if not _meta_problems(args, model):
        raise InvalidInputError(f"{args.factory} runs no torch.nn.Conv2d on this input: nothing to tune")
    return _tune(args, model)


def _meta_problems(args: argparse.Namespace, model: Any) -> dict[str, Any]:
    """The model's conv problems, from a run on the "meta" device (no data, no GPU): validates the model and
    the input shape before anything is tuned."""
    import copy

    import torch

    from ..enums import DType
    from ..tune_model import collect_problems

    dtype = DType.parse(args.dtype).torch
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    meta = copy.deepcopy(model).to(device="meta", dtype=dtype, memory_format=memory_format)
    example = torch.empty(args.input_shape, device="meta", dtype=dtype).contiguous(memory_format=memory_format)
    return _run_model(
        f"running {args.factory} on an input of shape {','.join(map(str, args.input_shape))}",
        lambda: collect_problems(meta, example, precision=None if args.precision == "auto" else args.precision,
                                 layout="nhwc" if args.channels_last else "nchw"))


def _collect(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..text import safe_console
    from ..tune_model import unique_problems

    problems = _meta_problems(args, build_model(args.factory))
    table = Table(title=f"{args.factory}: {len(problems)} conv layers, {len(unique_problems(problems))} distinct problems")
    table.add_column("layer")
    table.add_column("problem")
    for name, problem in problems.items():
        table.add_row(name, problem.key)
    safe_console().print(table)
    if args.json:
        from ..results import ResultRecord, write_results

        rows = [ResultRecord(name, fields={"label": p.label, "key": p.key, "flops": p.flops, "problem": p.to_dict()})
                for name, p in problems.items()]
        write_results(args.json, rows, {"model": args.factory, "collect_only": True}, kind="tune-model")
    return 0


def _tune(args: argparse.Namespace, model: Any) -> int:
    import torch

    from ..enums import DType
    from ..summary import RunSummary
    from ..text import safe_console
    from ..tune_model import tune_model

    dtype = DType.parse(args.dtype).torch
    device = "cpu" if args.interpret else "cuda"
    model = model.to(device)
    example = torch.randn(args.input_shape, device=device)
    report = tune_model(model, example, dtype=dtype, channels_last=args.channels_last, precision=args.precision,
                        trials=args.trials, tolerance=args.tolerance, timeout=args.timeout)
    console = safe_console()
    console.print(report.table())
    RunSummary.of(report.results, report.wall_time_s).print(console)
    if args.json:
        from ..results import write_results

        meta = {"model": args.factory, "input_shape": list(args.input_shape), "baseline": report.baseline,
                "wall_time_s": report.wall_time_s, "total_before_ms": report.total_before_ms,
                "total_after_ms": report.total_after_ms, "speedup": report.speedup}
        write_results(args.json, report.records(), meta, kind="tune-model")
    return 0
