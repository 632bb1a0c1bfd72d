"""tritonconv.report and `tritonconv report`: results files of every kind rendered as a table and PNG charts.

All numbers below are SYNTHETIC, written by hand for rendering tests; none is a measurement.
"""
import io
from pathlib import Path
from types import SimpleNamespace

import matplotlib.image
import pytest
from rich.console import Console

from tritonconv import report, results
from tritonconv.cli import main as cli_main
from tritonconv.problem import ConvProblem

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SHAPES = ["synthetic_dw_3x3", "synthetic_dense_1x1", "synthetic_grouped"]


def synthetic_conv_records():
    records = []
    for i, name in enumerate(SHAPES):
        flops, floor, cudnn = 1e9 * (i + 1), 0.01 * (i + 1), 0.05 * (i + 1)
        common = dict(flops=flops, floor=floor, baseline_ms=cudnn)
        records.append({
            "name": name, "floor_ms": floor, "baseline": "cudnn_nhwc",
            "results": [
                results.result_entry("cudnn_nchw", cudnn * 1.5, role="baseline", **common),
                results.result_entry("cudnn_nhwc", cudnn, role="baseline", rel_error=1e-4, **common),
                results.result_entry("implicit_gemm", cudnn / (1.0 + i), rel_error=2e-4, **common),
                results.result_entry("tuned", cudnn / (2.0 + i), rel_error=3e-4, **common)
                if i != 1 else results.result_entry("tuned", None, error="synthetic failure"),
            ],
        })
    return records


def render_to_text(source, out_dir, **kwargs):
    buffer = io.StringIO()
    charts = report.render(source, out_dir, console=Console(file=buffer, width=250, color_system=None), **kwargs)
    return buffer.getvalue(), charts


def assert_valid_png(path: Path):
    assert path.exists() and path.read_bytes()[:8] == PNG_SIGNATURE
    height, width, _ = matplotlib.image.imread(path).shape
    assert height > 100 and width > 100


def test_conv_results_render_table_summary_and_charts(tmp_path):
    path = results.write_results(tmp_path / "conv_synthetic.json", synthetic_conv_records(),
                                   {"dtype": "float16", "layout": "nhwc"}, kind="conv")
    text, charts = render_to_text(path, tmp_path / "out")
    for name in SHAPES + ["cudnn_nchw ms", "cudnn_nhwc ms", "implicit_gemm ms", "tuned ms", "failed", "floor ms"]:
        assert name in text
    assert "2.00x" in text and "0.0375" in text and "3.0e-04" in text  # a speedup, a time, the worst error
    # tuned: 2x and 4x (the failed shape has no speedup) -> geomean sqrt(8); implicit_gemm 1, 2, 3 -> worst 1.
    assert f"tuned: geomean speedup {8 ** 0.5:.2f}x over 2 records, worst 2.00x (synthetic_dw_3x3)" in text
    assert "implicit_gemm: geomean speedup 1.82x over 3 records, worst 1.00x (synthetic_dw_3x3)" in text
    assert sorted(c.name for c in charts) == [
        "conv_synthetic_roofline.png", "conv_synthetic_speedup.png", "conv_synthetic_tflops.png",
    ]
    for chart in charts:
        assert chart.parent == tmp_path / "out"
        assert_valid_png(chart)


def test_charts_default_next_to_the_file_and_can_be_skipped(tmp_path):
    path = results.write_results(tmp_path / "r.json", synthetic_conv_records(), kind="conv")
    _, charts = render_to_text(path, None)
    assert charts and all(c.parent == tmp_path for c in charts)
    _, none = render_to_text(path, tmp_path / "x", charts=False)
    assert none == [] and not (tmp_path / "x").exists()


def test_tune_results_from_tune_records(tmp_path):
    problem = ConvProblem(n=8, c=32, h=16, w=16, k=64, r=3, s=3, pad_h=1, pad_w=1)
    result = SimpleNamespace(problem=problem, family="implicit_gemm", config={"BLOCK_M": 64}, time_ms=0.5,
                             cudnn_time_ms=1.0, rel_error=1e-3, trials_run=20, wall_time_s=12.0, precision="fp16")
    record = results.tune_record(result).to_dict()
    tuned = record["results"][1]
    assert tuned["speedup"] == pytest.approx(2.0) and tuned["family"] == "implicit_gemm"
    assert tuned["tflops"] == pytest.approx(problem.flops / 0.5e-3 / 1e12)
    path = results.write_results(tmp_path / "tune.json", [record], kind="tune")
    text, charts = render_to_text(path, tmp_path)
    assert problem.label in text and "2.00x" in text and "torch CPU ms" in text
    assert {c.name for c in charts} == {"tune_speedup.png", "tune_tflops.png"}


def test_flat_records_render_their_fields(tmp_path):
    records = [{"name": "synthetic_model_a", "eager_ms": 10.0, "tritonconv_ms": 8.0, "speedup": 1.25},
               {"name": "synthetic_model_b", "eager_ms": 5.0, "tritonconv_ms": 6.0, "speedup": 5 / 6, "note": "x"}]
    path = results.write_results(tmp_path / "models.json", records, kind="models")
    text, charts = render_to_text(path, tmp_path)
    for token in ("synthetic_model_a", "synthetic_model_b", "eager_ms", "tritonconv_ms", "1.25", "note"):
        assert token in text
    assert [c.name for c in charts] == ["models_speedup.png"]
    assert_valid_png(charts[0])


def test_flat_records_show_the_columns_the_writer_names(tmp_path):
    records = [{"name": "sm80 gemm l1", "family": "gemm", "registers": 96, "kernel": "gemm_kernel", "sass": {"x": 1}},
               {"name": "sm90 gemm l1", "family": "gemm", "registers": 128, "kernel": "gemm_kernel"}]
    meta = {"columns": ["registers", "family", "not_in_any_record"]}
    path = results.write_results(tmp_path / "compile.json", records, meta, kind="compile")
    table = report.results_table(results.load_results(path))
    assert [c.header for c in table.columns] == ["name", "registers", "family"]  # in the writer's order, no "kernel"
    assert list(table.columns[1].cells) == ["96", "128"]


def test_report_cli(tmp_path, capsys):
    path = results.write_results(tmp_path / "gemm.json", synthetic_conv_records(), kind="gemm")
    assert cli_main(["report", str(path), "--out", str(tmp_path / "charts")]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SHAPES) and "gemm_speedup.png" in out
    assert_valid_png(tmp_path / "charts" / "gemm_speedup.png")

    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    assert cli_main(["report", str(bad)]) == 2
    assert "not a tritonconv results file" in capsys.readouterr().err
