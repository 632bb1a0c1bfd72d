"""`tritonconv tune` and `tritonconv cache` from the command line (interpreter, tiny shapes, few trials)."""
import json
import subprocess
import sys

import pytest
import torch

from tritonconv import cache
from tritonconv.cli import build_parser, main
from tritonconv.commands import tune as tune_command

from tests.helpers import compiler_env

SHAPE = ["--c", "4", "--h", "5", "--w", "5", "--k", "8", "--dtype", "float32"]
needs_no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a CUDA GPU")


@pytest.fixture(autouse=True)
def _wide_tables(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # rich tables: no wrapping inside the texts checked below


@needs_no_gpu
def test_bare_tune_without_gpu_runs_the_interpreter_demo():
    proc = subprocess.run([sys.executable, "-m", "tritonconv.cli", "tune"], env=compiler_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "No CUDA GPU found" in proc.stdout and "demonstration" in proc.stdout
    assert "total tuning wall time" in proc.stdout and "demo_3x3" in proc.stdout
    assert len(cache.entries()) == len(tune_command.DEMO_SHAPES)


@needs_no_gpu
def test_explicit_arguments_without_gpu_are_refused_unless_interpreted(capsys, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")  # the environment variable means --interpret
    assert main(["tune", *SHAPE]) == 2
    assert "no CUDA GPU found" in capsys.readouterr().err and cache.entries() == {}


def test_argv_reconstruction_round_trips(tmp_path):
    suite = tmp_path / "suite.json"
    suite.write_text("{}")
    args = build_parser().parse_args(["tune", str(suite), "--shapes", "r50_*", "--limit", "2", "--trials", "3", "--no-resume", "--interpret", "--precision", "auto"])
    again = build_parser().parse_args(tune_command._argv(args))
    assert vars(again) == vars(args)
    assert not tune_command._explicit(build_parser().parse_args(["tune"]))


def test_tune_one_shape_in_the_interpreter_then_cache_commands(tmp_path, capsys):
    out = tmp_path / "tune.json"
    assert main(["tune", *SHAPE, "--interpret", "--trials", "2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "total tuning wall time" in printed and "implicit_gemm" in printed
    record = json.loads(out.read_text())["records"][0]
    tuned = record["results"][1]
    assert record["problem"]["c"] == 4 and record["trials_run"] == 2 and tuned["ms"] > 0

    # A second run is answered by the cache.
    assert main(["tune", *SHAPE, "--interpret", "--trials", "2", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["records"][0]["from_cache"] is True

    assert main(["cache", "list"]) == 0
    listed = capsys.readouterr().out
    assert "c4→k8 3×3" in listed and "torch CPU ms" in listed and "cuDNN" not in listed
    assert main(["cache", "show", "n1_c4_h5"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert len(shown) == 1 and next(iter(shown.values()))["family"] == tuned["family"]

    exported = tmp_path / "export.json"
    assert main(["cache", "export", str(exported)]) == 0
    assert main(["cache", "clear"]) == 0
    assert cache.entries() == {}
    capsys.readouterr()
    assert main(["cache", "import", str(exported)]) == 0
    assert "1 added" in capsys.readouterr().out and len(cache.entries()) == 1


def test_tune_int8_in_the_interpreter_and_quantized_conv2d_uses_the_winner(tmp_path, capsys, monkeypatch):
    import tritonconv.quantized as tq
    from tests.quantized.helpers import float_reference, quantized_inputs, rel
    from tritonconv.problem import ConvProblem
    from tritonconv.results import load_results

    out = tmp_path / "tune.json"
    shape = ["--c", "16", "--h", "4", "--w", "4", "--k", "16", "--dtype", "int8", "--layout", "nchw"]
    assert main(["tune", *shape, "--interpret", "--trials", "2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "int8_implicit_gemm" in printed and "used automatically by tritonconv.quantized.conv2d on" in printed
    assert "keep torch CPU" not in printed  # int8 always runs its Triton kernel, whatever the baseline measured
    (record,) = load_results(out)["records"]
    tuned = record["results"][1]
    assert record["problem"]["dtype"] == "int8" and tuned["family"] == "int8_implicit_gemm" and tuned["precision"] == "int8"

    looked_up = []
    lookup = cache.lookup_config

    def spy(problem, *args, **kwargs):
        looked_up.append((problem, lookup(problem, *args, **kwargs)))
        return looked_up[-1][1]

    monkeypatch.setattr(cache, "lookup_config", spy)
    x, wq, w_scale, bias = quantized_inputs(1, 16, 4, 4, 16, 16, 3, 3, seed=5)
    y = tq.conv2d(x, wq, 0.1, w_scale, bias, padding=1)
    assert rel(y, float_reference(x, wq, 0.1, w_scale, bias, padding=1)) < 1e-6
    (problem, config), = looked_up  # the conv's problem is the one the command tuned, and its winner is found
    assert problem == ConvProblem(n=1, c=16, h=4, w=4, k=16, r=3, s=3, pad_h=1, pad_w=1, dtype="int8", layout="nchw")
    assert config["family"] == "int8_implicit_gemm" and all(config[k] == v for k, v in tuned["config"].items())


def test_tune_int8_refuses_what_int8_cannot_compute(capsys):
    shape = ["--c", "16", "--h", "4", "--w", "4", "--k", "16", "--interpret"]
    assert main(["tune", *shape, "--dtype", "int8", "--precision", "tf32"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --precision tf32 is not available for int8; choose from int8, auto"]
    assert main(["tune", *shape, "--dtype", "fp16", "--precision", "int8"]) == 2
    assert "error: --precision int8 is not available for fp16; choose from" in capsys.readouterr().err
    assert main(["tune", *shape, "--dtype", "int4"]) == 2
    assert "invalid choice: 'int4'" in capsys.readouterr().err and cache.entries() == {}


def test_bad_inputs_are_clear_errors(tmp_path, capsys):
    assert main(["tune", "--c", "4", "--interpret"]) == 2
    assert "missing --h, --k, --w" in capsys.readouterr().err
    assert main(["tune", str(tmp_path / "missing.json"), "--interpret"]) == 2
    assert "no such file" in capsys.readouterr().err
    cache.cache_path().parent.mkdir(parents=True)
    cache.cache_path().write_text("garbage")
    assert main(["cache", "list"]) == 1
    assert "not valid JSON" in capsys.readouterr().err
