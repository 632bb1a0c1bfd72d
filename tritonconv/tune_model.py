"""`tritonconv.tune_model`: tune every distinct convolution of a model for this GPU, in one call.

The model runs once (in the target dtype and memory format, without gradients) with forward pre-hooks on its
convolutions, which describe each conv's actual input as a `ConvProblem` (`tritonconv.functional.make_problem`).
Equal problems are tuned once (`tritonconv.search.tune_many`), which stores the winners in the tuning cache, so
later `tritonconv.conv2d` calls (and converted models) dispatch to them.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from .enums import DType
from .errors import InvalidInputError, UnsupportedError
from .functional import make_problem
from .problem import ConvProblem
from .results import speedup_over
from .search.options import DEFAULTS, check_tune_options


def resolve_dtype(dtype: Union[str, torch.dtype, None]) -> Optional[torch.dtype]:
    """A torch dtype from a torch dtype or a name ("fp16", "bfloat16", ...); None stays None."""
    if dtype is None:
        return None
    if isinstance(dtype, torch.dtype):
        if DType.from_torch(dtype) is None:
            raise UnsupportedError(f"dtype {dtype}: tritonconv supports float16, bfloat16 and float32")
        return dtype
    return DType.parse(dtype).torch


def conv_problem(module: nn.Conv2d, input: torch.Tensor, precision: Optional[str] = None) -> ConvProblem:
    """The problem `module` computes on `input` (non-zero padding modes pad first, as the module does)."""
    padding: Any = module.padding
    if module.padding_mode != "zeros":
        input = F.pad(input, module._reversed_padding_repeated_twice, mode=module.padding_mode)
        padding = 0
    if input.dim() == 3:
        input = input.unsqueeze(0)
    return make_problem(
        input, module.weight, module.bias, module.stride, padding, module.dilation, module.groups, precision=precision
    )


def collect_problems(
    model: nn.Module,
    example_inputs: Union[torch.Tensor, Sequence[Any]],
    *,
    precision: Optional[str] = None,
    layout: Optional[str] = None,
) -> dict[str, ConvProblem]:
    """{conv module name: its problem} for every nn.Conv2d the model runs on `example_inputs` (in call order).

    The model runs as given (dtype, device, memory format are the caller's); a conv called several times is
    listed once per distinct problem, as "name", "name#2", ... `layout` ("nhwc"/"nchw") overrides the layout
    seen, for runs on the "meta" device, whose convs do not propagate channels_last as CUDA's do (inputs with
    C == 1 or H * W == 1 stay "nchw": their layouts are indistinguishable).
    """
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    found: dict[str, ConvProblem] = {}
    names = {module: name for name, module in model.named_modules()}

    def record(module: nn.Module, args: tuple) -> None:
        problem = conv_problem(module, args[0], precision)
        if layout is not None:
            ambiguous = problem.c == 1 or problem.h * problem.w == 1
            problem = problem.with_(layout="nchw" if ambiguous else layout)
        name = names.get(module, type(module).__name__)
        label, index = name, 1
        while label in found and found[label] != problem:
            index += 1
            label = f"{name}#{index}"
        found[label] = problem

    handles = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return found


def unique_problems(problems: dict[str, ConvProblem]) -> list[ConvProblem]:
    """Distinct problems in first-seen order."""
    return list(dict.fromkeys(problems.values()))


@dataclass
class LayerResult:
    """One conv layer: its problem and, once tuned, cuDNN's time (before) and the dispatched choice's (after)."""

    name: str
    problem: ConvProblem
    family: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    before_ms: Optional[float] = None
    after_ms: Optional[float] = None

    @property
    def speedup(self) -> Optional[float]:
        return speedup_over(self.before_ms, self.after_ms)


@dataclass
class ModelTuneReport:
    """Per-layer results of `tune_model`. Totals add per-layer conv times (not an end-to-end model time)."""

    layers: list[LayerResult]
    results: list[Any]  # tritonconv.search.TuneResult, one per distinct problem
    wall_time_s: float

    @property
    def total_before_ms(self) -> Optional[float]:
        times = [layer.before_ms for layer in self.layers]
        return None if any(t is None for t in times) else sum(times)

    @property
    def total_after_ms(self) -> Optional[float]:
        times = [layer.after_ms for layer in self.layers]
        return None if any(t is None for t in times) else sum(times)

    @property
    def speedup(self) -> Optional[float]:
        return speedup_over(self.total_before_ms, self.total_after_ms)

    def to_dict(self) -> dict[str, Any]:
        return {
            "wall_time_s": self.wall_time_s,
            "total_before_ms": self.total_before_ms,
            "total_after_ms": self.total_after_ms,
            "speedup": self.speedup,
            "layers": [
                {"name": layer.name, "problem": layer.problem.key, "family": layer.family, "config": layer.config,
                 "before_ms": layer.before_ms, "after_ms": layer.after_ms, "speedup": layer.speedup}
                for layer in self.layers
            ],
        }

    @property
    def baseline(self) -> str:
        """What "before" was timed with: cuDNN on a GPU, PyTorch's CPU conv in the interpreter."""
        from .results import baseline_label

        return baseline_label(self.results[0].device if self.results else "")

    def records(self) -> list[Any]:
        """One `tritonconv.results.ResultRecord` per layer (baseline before, tritonconv after) for the results file."""
        from .results import CandidateResult, ResultRecord

        rows = []
        for layer in self.layers:
            flops = layer.problem.flops
            rows.append(ResultRecord(
                name=layer.name, baseline=self.baseline,
                fields={"key": layer.problem.key, "label": layer.problem.label, "problem": layer.problem.to_dict()},
                results=[
                    CandidateResult.measured(self.baseline, layer.before_ms, role="baseline", flops=flops,
                                             baseline_ms=layer.before_ms),
                    CandidateResult.measured("tritonconv", layer.after_ms, flops=flops, baseline_ms=layer.before_ms,
                                             family=layer.family, config=layer.config),
                ],
            ))
        return rows

    def table(self):
        """The report as a rich Table."""
        from rich.table import Table

        def ms(value: Optional[float]) -> str:
            return "-" if value is None else f"{value:.4f}"

        table = Table(title=f"tune_model: {len(self.layers)} conv layers, {len(self.results)} distinct problems, "
                            f"tuned in {self.wall_time_s:.1f} s")
        from .results import distinct_labels, format_speedup

        baseline = self.baseline
        for column in ("layer", "problem", "choice", f"{baseline} ms", "after ms", "speedup"):
            table.add_column(column, justify="right" if "ms" in column or column == "speedup" else "left")
        labels = distinct_labels([layer.problem for layer in self.layers])
        for layer, label in zip(self.layers, labels):
            choice = baseline if layer.family == "cudnn" else layer.family
            table.add_row(layer.name, label, choice, ms(layer.before_ms), ms(layer.after_ms),
                          format_speedup(layer.speedup))
        table.add_row("total", "", "", ms(self.total_before_ms), ms(self.total_after_ms), format_speedup(self.speedup),
                      style="bold")
        table.caption = (f"choice {baseline}: {baseline} measured faster, so dispatch keeps it; times are per-layer "
                         "sums, not an end-to-end model time")
        return table


def _layer_result(name: str, problem: ConvProblem, result: Any) -> LayerResult:
    """What backend="auto" dispatches after tuning: the Triton winner, or cuDNN where it measured faster."""
    before = result.cudnn_time_ms
    if result.family == "cudnn" or (before is not None and before < result.time_ms):
        return LayerResult(name, problem, "cudnn", {}, before, before)
    return LayerResult(name, problem, result.family, dict(result.config), before, result.time_ms)


def tune_model(
    model: nn.Module,
    example_inputs: Union[torch.Tensor, Sequence[Any]],
    *,
    dtype: Union[str, torch.dtype, None] = None,
    channels_last: bool = True,
    precision: Optional[str] = None,
    trials: int = DEFAULTS.trials,
    tuner: Optional[Callable[..., list[Any]]] = None,
    **tune_options: Any,
) -> ModelTuneReport:
    """Tune every distinct conv problem of `model` on `example_inputs` and store the winners in the cache.

    The model and inputs are copied, cast to `dtype` (default: as they are) and, with `channels_last`, to
    channels_last memory format, then run once to collect the problems (the caller's model is not modified).
    precision: None (F.conv2d's default), a fixed precision, or "auto" (the search picks within tolerance).
    tuner: the tuning function, default `tritonconv.search.tune_many` (injectable for tests); other keyword
    arguments (timeout, tolerance, runner, progress, ...) go to it.
    """
    torch_dtype = resolve_dtype(dtype)
    if not isinstance(model, nn.Module):
        raise InvalidInputError(f"tune_model takes a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(example_inputs, (torch.Tensor, tuple, list)):
        raise InvalidInputError(f"example_inputs must be a tensor or a sequence of the model's inputs, got "
                                f"{type(example_inputs).__name__}")
    if tuner is None:  # tune_many's options, checked before the model runs
        options = {"trials": trials, "precision": precision, **tune_options}
        check_tune_options([], {k: v for k, v in options.items() if k not in ("runner", "progress")})
    model = copy.deepcopy(model)
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)

    def prepare(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            if torch_dtype is not None:
                value = value.to(torch_dtype)
            if channels_last and value.dim() == 4:
                value = value.contiguous(memory_format=torch.channels_last)
        return value

    if torch_dtype is not None:
        model = model.to(torch_dtype)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    inputs = tuple(prepare(value) for value in inputs)

    problems = collect_problems(model, inputs, precision=None if precision == "auto" else precision)
    unique = unique_problems(problems)
    if tuner is None:
        from .search import tune_many as tuner
    start = time.perf_counter()
    results = tuner(unique, trials=trials, precision=precision, **tune_options) if unique else []
    wall = time.perf_counter() - start
    by_problem = dict(zip(unique, results))
    layers = [_layer_result(name, problem, by_problem[problem]) for name, problem in problems.items()]
    return ModelTuneReport(layers, list(results), wall)
