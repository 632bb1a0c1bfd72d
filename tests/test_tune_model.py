"""tritonconv.tune_model: problem collection with hooks, de-duplication, the per-layer report, the search end to
end (interpreter, tiny model, few trials) and the `tritonconv tune-model` command."""
import json
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

import tritonconv
from tritonconv import dispatch
from tritonconv.cli import main
from tritonconv.results import load_results
from tritonconv.functional import make_problem
from tritonconv.tune_model import collect_problems, unique_problems


def tiny_net() -> nn.Module:
    """Two identical 3x3 blocks (one distinct problem), a reflect-padded conv and a strided 1x1 head."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
        nn.Conv2d(4, 8, 1, stride=2),
    )


class Twice(nn.Module):
    """One conv module called on two input sizes: two problems for one layer."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3)

    def forward(self, x):
        return self.conv(x).sum() + self.conv(F.interpolate(x, scale_factor=2)).sum()


def test_hooks_collect_the_actual_problems_once_each():
    model = tiny_net()
    x = torch.randn(2, 3, 6, 6).contiguous(memory_format=torch.channels_last)
    model = model.to(memory_format=torch.channels_last)
    problems = collect_problems(model, x, precision="ieee")
    assert list(problems) == ["0", "2", "3", "4", "5"]
    y = x
    expected = {}
    for name in ("0", "2", "3"):
        conv = model.get_submodule(name)
        expected[name] = make_problem(y, conv.weight, conv.bias, 1, 1, precision="ieee")
        y = conv(y)
    padded = F.pad(y, (1, 1, 1, 1), mode="reflect")
    expected["4"] = make_problem(padded, model[4].weight, model[4].bias, precision="ieee")
    expected["5"] = make_problem(model[4](y), model[5].weight, model[5].bias, stride=2, precision="ieee")
    assert problems == expected
    assert all(p.layout == "nhwc" and p.dtype == "float32" for p in problems.values())
    unique = unique_problems(problems)
    assert len(unique) == 4 and unique[1] == problems["2"] == problems["3"]
    assert problems["4"].h == 8 and problems["4"].pad_h == 0  # reflect padding happens before the conv
    assert not any(m._forward_pre_hooks for m in model.modules())  # hooks removed

    twice = collect_problems(Twice(), torch.randn(1, 3, 4, 4))
    assert list(twice) == ["conv", "conv#2"] and twice["conv#2"].h == 8


def _fake_tuner(calls):
    def tuner(problems, **options):
        calls.append((problems, options))
        # Triton wins the first problem, cuDNN the others.
        return [
            SimpleNamespace(problem=p, family="implicit_gemm", config={"BLOCK_M": 16}, time_ms=1.0 if i == 0 else 3.0,
                            cudnn_time_ms=2.0)
            for i, p in enumerate(problems)
        ]

    return tuner


def test_tune_model_casts_dedups_and_reports():
    calls = []
    model = tiny_net()
    report = tritonconv.tune_model(model, torch.randn(1, 3, 6, 6), dtype="fp16", channels_last=True, trials=7,
                                   precision=None, tuner=_fake_tuner(calls))
    (problems, options), = calls
    assert len(problems) == 4 and len(set(problems)) == 4
    assert all(p.dtype == "float16" and p.layout == "nhwc" for p in problems)
    assert options == {"trials": 7, "precision": None}
    assert next(model.parameters()).dtype == torch.float32  # the caller's model is not modified
    assert [layer.name for layer in report.layers] == ["0", "2", "3", "4", "5"]
    first, second = report.layers[:2]
    assert (first.family, first.before_ms, first.after_ms, first.speedup) == ("implicit_gemm", 2.0, 1.0, 2.0)
    assert (second.family, second.after_ms, second.speedup) == ("cudnn", 2.0, 1.0)
    assert report.total_before_ms == 10.0 and report.total_after_ms == 9.0
    assert json.loads(json.dumps(report.to_dict()))["layers"][0]["config"] == {"BLOCK_M": 16}


def test_tune_model_end_to_end_in_the_interpreter():
    """The real search on a tiny model: results cached, and conv2d afterwards dispatches to the tuned config."""
    from tritonconv import cache
    from tritonconv.search import InProcessRunner

    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1))
    x = torch.randn(1, 3, 4, 4)
    report = tritonconv.tune_model(model, x, dtype=torch.float32, precision="ieee", trials=2, progress=False,
                                   runner=InProcessRunner(timer="single"), retime_top=1)
    assert len(report.results) == 2 and len(report.layers) == 3
    for layer, result in zip(report.layers, [report.results[0], report.results[1], report.results[1]]):
        assert result.problem == layer.problem and result.trials_run >= 1
        assert layer.after_ms is not None and layer.before_ms is not None
        tuned = cache.lookup_config(layer.problem, torch.device("cpu"))
        assert tuned is not None  # stored by the search
        family, config = dispatch.select(layer.problem, None, torch.device("cpu"))
        expected = "cudnn" if result.backend == "cudnn" else result.family
        assert family.name == expected
        if expected != "cudnn":
            assert all(config[k] == v for k, v in result.config.items() if k in config)


def test_cli_collect_only_and_errors(tmp_path, capsys):
    out = tmp_path / "problems.json"
    code = main(["tune-model", "tests.test_tune_model:tiny_net", "--input-shape", "2,3,8,8", "--dtype", "bf16",
                 "--collect-only", "--json", str(out)])
    assert code == 0
    problems = {r["name"]: r["problem"] for r in load_results(out)["records"]}
    assert list(problems) == ["0", "2", "3", "4", "5"]
    assert problems["5"]["dtype"] == "bfloat16" and problems["5"]["layout"] == "nhwc" and problems["5"]["p"] == 4
    assert "4 distinct problems" in capsys.readouterr().out

    assert main(["tune-model", "not_installed_models.zoo:resnet50", "--collect-only"]) == 2
    assert "pip install not_installed_models" in capsys.readouterr().err
    assert main(["tune-model", "resnet50"]) == 2
    assert "MODULE:FACTORY" in capsys.readouterr().err
    assert main(["tune-model", "tests.test_tune_model:tiny_net", "--input-shape", "3,8,8"]) == 2
    assert "N,C,H,W" in capsys.readouterr().err
