"""The user's journey through the real `tritonconv` console script (subprocesses, interpreter, tiny shapes):
every JSON a command writes is a results file that `tritonconv report` renders."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tritonconv.compile import write_compile_results
from tritonconv.results import format_speedup, load_results

REPO = Path(__file__).resolve().parent.parent
CONSOLE_SCRIPT = Path(sys.executable).parent / "tritonconv"
SHAPE = ["--c", "4", "--h", "5", "--w", "5", "--k", "8", "--dtype", "float32"]
needs_no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="runs the interpreter's CPU journey")


def tritonconv(*args: str, cwd: Path = REPO, columns: int = 80, timeout: float = 300, **env: str):
    """Run the installed console script as a user would; the working tree's package comes first on the path."""
    environ = {**os.environ, "COLUMNS": str(columns), "TRITON_INTERPRET": "1", **env,
               "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.run([str(CONSOLE_SCRIPT), *args], cwd=cwd, env=environ, capture_output=True, text=True,
                          timeout=timeout)
    return proc


def ok(proc) -> str:
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    return proc.stdout


@needs_no_gpu
def test_every_json_a_command_writes_is_reported(tmp_path):
    tune_json, model_json, export_json = tmp_path / "tune.json", tmp_path / "model.json", tmp_path / "export.json"
    cache_dir = Path(os.environ["TRITONCONV_CACHE_DIR"])
    proc = tritonconv("tune", *SHAPE, "--interpret", "--trials", "2", "--json", str(tune_json))
    tuned = ok(proc)
    # Not a terminal: progress comes as lines with an ETA, and ends with the re-timed winner the table shows.
    assert "problems 1/1 (100%)" in proc.stderr and "ETA" in proc.stderr and "re-timed (2 trials)" in proc.stderr
    # The end-of-run summary: where the winners are, that they are used, how to share them, cost and gain.
    assert f"1 winner cached at {cache_dir / 'tuning-cache.json'}" in tuned
    assert "used automatically by tritonconv.conv2d, tritonconv.nn.Conv2d and tritonconv.convert" in tuned
    assert "tritonconv cache export tritonconv-cache.json" in tuned and "2 trials run" in tuned
    assert "best speedup vs torch CPU" in tuned and "(c4→k8 3×3)" in tuned
    (journal,) = (cache_dir / "studies").glob("n1_c4_h5_w5_k8_*.journal")
    assert f"study journal: {journal}   (view: optuna-dashboard {journal})" in tuned

    modelled = ok(tritonconv("tune-model", "tests.test_tune_model:tiny_net", "--input-shape", "1,3,6,6", "--dtype",
                             "fp32", "--trials", "2", "--json", str(model_json)))
    assert "4 winners cached at" in modelled and "trials run" in modelled and "torch CPU ms" in modelled
    ok(tritonconv("cache", "export", str(export_json)))
    listed = ok(tritonconv("cache", "list", columns=80))
    # Every line fits 80 columns, except the cache's path, which stays one copyable line.
    assert max(len(line) for line in listed.splitlines() if str(cache_dir) not in line) <= 80
    assert "c4→k8 3×3" in listed and "torch CPU ms" in listed and "cuDNN" not in listed and "|triton-" not in listed
    for path, kind, name in ((tune_json, "tune", "c4→k8 3×3"), (model_json, "tune-model", "c4→k8 1×1 s2"),
                             (export_json, "cache", "c4→k8 3×3")):
        assert load_results(path)["kind"] == kind
        out = ok(tritonconv("report", str(path), "--out", str(tmp_path / "charts")))
        assert "not a tritonconv results file" not in out
        assert name in out and "torch CPU ms" in out  # the CPU baseline is not called cuDNN
        assert f"{path.stem}_speedup.png" in out and (tmp_path / "charts" / f"{path.stem}_speedup.png").exists()
    record = load_results(tune_json)["records"][0]
    baseline, tuned = record["results"]
    assert baseline["name"] == "torch CPU" and baseline["role"] == "baseline" and tuned["ms"] > 0
    assert tuned["speedup"] == pytest.approx(baseline["ms"] / tuned["ms"])
    assert load_results(tune_json)["meta"]["interpreter"] is True


def test_compile_records_are_a_results_file(tmp_path):
    records = [  # what check_defaults returns (synthetic numbers, not a measurement)
        {"problem": "n1_c4", "label": "n1 c4→k8 3×3 5×5 fp16 nhwc", "family": "implicit_gemm", "sm": 90, "config": {},
         "ok": True, "usage": [{"registers": 96, "stack_bytes": 0, "shared_bytes": 4096}]},
        {"problem": "n1_c4", "label": "n1 c4→k8 3×3 5×5 fp16 nhwc", "family": "gemm", "sm": 80, "config": {},
         "ok": False, "error": "RuntimeError: synthetic"},
    ]
    path = write_compile_results(tmp_path / "compile.json", records, targets="80,90")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # meant to be shared: not owner-only like mkstemp's
    document = load_results(path)
    assert document["kind"] == "compile" and [r["registers"] for r in document["records"]] == [96, None]
    out = ok(tritonconv("report", str(path), "--no-charts", columns=200))
    assert "sm90 implicit_gemm n1 c4→k8 3×3" in out and "RuntimeError: synthetic" in out


def test_report_of_a_file_that_is_not_a_results_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hello": 1}))
    proc = tritonconv("report", str(bad))
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "not a tritonconv results file" in proc.stderr


@pytest.mark.parametrize("value, text", [(2.0, "2.00x"), (0.5, "0.500x"), (0.000743, "0.000743x"), (123.4, "123x"),
                                         (None, "-"), (float("nan"), "-")])
def test_speedups_keep_three_significant_digits(value, text):
    assert format_speedup(value) == text


def test_info_and_version():
    out = ok(tritonconv("info", columns=200))
    rows = dict(line.split(None, 1) for line in out.splitlines())
    import triton

    from tritonconv import __version__
    from tritonconv.runtime import device_info

    assert rows["tritonconv"] == __version__ and rows["torch"] == torch.__version__ and rows["triton"] == triton.__version__
    assert rows["fingerprint"] == device_info().fingerprint and rows["interpreter"].startswith("active")
    assert rows["cache"].startswith(os.environ["TRITONCONV_CACHE_DIR"]) and rows["journals"].startswith(os.path.join(os.environ["TRITONCONV_CACHE_DIR"], "studies"))
    assert rows["entries"].startswith("0 ")
    assert ok(tritonconv("--version")).strip() == f"tritonconv {__version__}"


def test_line_progress_has_an_eta_and_a_last_line():
    import io

    from tritonconv.progress import LineProgress

    stream = io.StringIO()
    bar = LineProgress(stream, interval_s=3600)
    task = bar.add_task("problems", total=4)
    bar.advance(task)
    bar.update(task, completed=2)  # throttled: no line
    bar.update(task, completed=4, visible=False)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and "problems 1/4 (25%)" in lines[1] and "ETA 0:00:00" in lines[2] and "4/4" in lines[2]


def test_tune_table_config_order_is_stable():
    from tritonconv.commands.tune import _config_text

    config = {"num_warps": 4, "BLOCK_K": 32, "BLOCK_M": 64, "BLOCK_N": 16, "group_m": 8, "num_stages": 3}
    shuffled = dict(reversed(list(config.items())))
    assert _config_text(config) == _config_text(shuffled) == "BM64 BN16 BK32 group_m=8 stages=3 warps=4"
