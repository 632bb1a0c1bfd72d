"""tritonconv.summary.RunSummary: the end-of-run lines of `tritonconv tune` / `tune-model`, from TuneResults
(stand-ins with the fields it reads): duplicates counted once, the best speedup, winners that keep the baseline."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

from tritonconv import cache
from tritonconv.problem import ConvProblem
from tritonconv.summary import RunSummary
from tritonconv.tune_model import tune_model

A = ConvProblem(n=1, c=8, h=6, w=6, k=16, r=3, s=3, pad_h=1, pad_w=1)
B = A.with_(k=32)
DEVICE = "NVIDIA H100 80GB HBM3|sm90|132sms"


def result(problem, *, speedup, from_cache=False, trials=4, backend="triton", journal=None):
    return SimpleNamespace(problem=problem, speedup=speedup, from_cache=from_cache, trials_run=trials,
                           backend=backend, device=DEVICE, journal=journal)


def test_counts_each_problem_once_and_names_the_best_speedup(tmp_path):
    journal = tmp_path / "a.journal"
    results = [result(A, speedup=1.5, journal=journal), result(A, speedup=1.5, journal=journal),
               result(B, speedup=0.8, from_cache=True, trials=6, backend="cudnn")]
    summary = RunSummary.of(results, wall_time_s=12.34)
    assert (summary.winners, summary.newly_tuned, summary.trials_run, summary.keep_baseline) == (2, 1, 10, 1)
    assert (summary.best_speedup, summary.best_label, summary.baseline) == (1.5, A.label, "cuDNN")
    assert summary.cache_file == cache.cache_path() and summary.journals == (journal,)
    text = "\n".join(summary.lines())
    assert f"2 winners cached at {cache.cache_path()} (1 tuned now, 1 already cached)" in text
    assert "1 of them keep cuDNN, which measured faster" in text and DEVICE in text
    assert f"time 12.3 s, 10 trials run, best speedup vs cuDNN 1.50x ({A.label})" in text
    assert f"study journal: {journal}" in text


def test_without_any_baseline_time_and_with_several_journals():
    journals = (Path("/j/one.journal"), Path("/j/two.journal"))
    results = [result(A, speedup=None, journal=journals[0]), result(B, speedup=None, journal=journals[1])]
    lines = RunSummary.of(results, wall_time_s=1.0).lines()
    assert lines[0].startswith("2 winners cached at") and "already" not in lines[0]
    assert "no cuDNN time to compare with" in lines[3]
    assert lines[4].startswith("study journals (one per problem) in /j")


def test_an_empty_run_summarises_this_machine():
    summary = RunSummary.of([], wall_time_s=0.0)
    assert (summary.winners, summary.trials_run, summary.best_speedup) == (0, 0, None)
    assert summary.device == cache.fingerprint() and summary.journals == ()
    assert summary.lines() == [f"nothing tuned: no winner cached at {cache.cache_path()}", "time 0.0 s, 0 trials run"]


def test_a_model_without_convs_says_nothing_was_tuned():
    report = tune_model(torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.ReLU()), torch.randn(1, 4))
    text = "\n".join(RunSummary.of(report.results, report.wall_time_s).lines())
    assert text.startswith("nothing tuned:") and "used automatically" not in text and "share them" not in text


def test_int8_winners_are_used_by_the_quantized_conv_and_never_keep_the_baseline():
    int8 = A.with_(dtype="int8", precision="int8")
    only_int8 = "\n".join(RunSummary.of([result(int8, speedup=0.5, backend="cudnn")], wall_time_s=1.0).lines())
    assert "used automatically by tritonconv.quantized.conv2d on this device" in only_int8 and "keep" not in only_int8
    mixed = RunSummary.of([result(int8, speedup=0.5, backend="cudnn"), result(B, speedup=0.5, backend="cudnn")], 1.0)
    assert (mixed.quantized, mixed.keep_baseline) == (1, 1)
    assert ("tritonconv.convert; tritonconv.quantized.conv2d (the int8 ones) on this device" in "\n".join(mixed.lines()))
