"""The search end to end in the Triton interpreter: space -> trials -> checked candidates -> cache -> dispatch.

Timings in the interpreter are meaningless, so tests give candidates synthetic times (the correctness check
still runs for real) to make the winner deterministic and different from the default config.
"""
import json
import os

import optuna
import pytest
import torch

from tests.helpers import TOLERANCE, random_conv_inputs, reference_conv2d, rel_error
from tests.search.helpers import PROBLEM, BookkeepingRunner, DeviceOnlyRunner, quick_tune, study_trials, synthetic_ms

from tritonconv import cache, conv2d, dispatch
from tritonconv.kernels import families_for, get_family
from tritonconv.enums import Precision
from tritonconv.search import InProcessRunner, Measurement, SearchSpace, SubprocessRunner, TuningError, tune
from tritonconv.search import api as search_api


def one_run(fn):
    """Timer for tests: run once (the output was already checked), report a constant."""
    fn()
    return 1.0


class SyntheticRunner(InProcessRunner):
    """Real run + correctness check in the interpreter, synthetic time; counts calls; optional fault injection."""

    def __init__(self, baseline_ms=None, fail_if=None, time_of=synthetic_ms):
        super().__init__(timer=one_run)
        self.calls, self.baseline_calls, self.seen = 0, 0, []
        self.baseline_ms, self.fail_if, self.time_of = baseline_ms, fail_if, time_of

    def benchmark(self, problem, config, tolerance):
        self.calls += 1
        self.seen.append((problem.precision, dict(config)))
        if self.fail_if and self.fail_if(config):
            config = {**config, "BLOCK_M": 7}  # not a valid tile: the launch raises
        m = super().benchmark(problem, config, tolerance)
        if m.ok:
            m.time_ms = self.time_of({**config, "precision": problem.precision})
        return m

    def baseline(self, problem):
        self.baseline_calls += 1
        return Measurement(time_ms=self.baseline_ms, rel_error=0.0) if self.baseline_ms else Measurement(error="none")


def test_space_is_built_from_every_supporting_family_with_namespaced_params():
    problem = PROBLEM.with_(layout="nchw")
    space = SearchSpace(problem, precisions=Precision.for_dtype("float32"), convert_options=(False, True))
    assert set(space.families) == {f.name for f in families_for(problem)}
    seeds = space.seeds()
    assert {s["family"] for s in seeds} == set(space.families)
    assert {s["precision"] for s in seeds} == set(Precision.for_dtype("float32"))
    assert {s["convert_nhwc"] for s in seeds} == {False, True}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        trial = study.ask()
        candidate = space.suggest(trial)
        family = space.families[candidate["family"]]
        expected = {f"{family.name}.{n}" for n in family.space(problem).names} | {"family", "precision", "convert_nhwc"}
        assert set(trial.params) == expected
        assert space.candidate(trial.params) == candidate
        assert space.params(candidate) == trial.params
        study.tell(trial, 1.0)
    # An NHWC problem has no conversion option; a fixed precision has no precision parameter.
    plain = SearchSpace(PROBLEM, precisions=("tf32",), convert_options=(False, True))
    assert all("convert_nhwc" not in s and "precision" not in s for s in plain.seeds())


def test_end_to_end_study_caches_a_winner_that_conv2d_uses(monkeypatch, device):
    runner = SyntheticRunner(baseline_ms=100.0)
    result = tune(PROBLEM, trials=6, runner=runner, progress=False, early_stop=None)
    default = get_family("implicit_gemm").default_config(PROBLEM)
    assert result.family in {f.name for f in families_for(PROBLEM)}
    assert result.config["LOOP_ORDER"] == "filter_outer" != default["LOOP_ORDER"], "the synthetic optimum must win"
    assert result.rel_error <= TOLERANCE["tf32"] and result.trials_run == 6 and result.wall_time_s > 0
    assert result.cudnn_time_ms == 100.0 and result.speedup == pytest.approx(100.0 / result.time_ms)
    assert runner.calls == result.benchmarks_run - 1 and runner.baseline_calls == 1

    seeds = [t for t in study_trials() if t.user_attrs.get("seed")]
    space = SearchSpace(PROBLEM, precisions=("tf32",))
    assert seeds and space.candidate(seeds[0].params) == {"family": "implicit_gemm", **default}, "defaults seed the study"

    entry = cache.get_entry(PROBLEM, device)
    assert entry.family == result.family and entry.cudnn_time_ms == 100.0
    assert cache.read_entry(cache.entry_key(PROBLEM, entry.fingerprint)).trials

    # conv2d (no explicit config) now launches exactly the cached config, and computes the right thing.
    family = get_family(result.family)
    launched = []
    original = family.launch
    monkeypatch.setattr(family, "launch", lambda p, t, c, d=None: (launched.append(c), original(p, t, c, d)))
    x, w, b = random_conv_inputs(1, 4, 5, 5, 8, 4, 3, 3, device=device, channels_last=True)
    out = conv2d(x, w, b, padding=1, backend="triton")
    expected_config = {k: v for k, v in result.config.items() if k not in dispatch.DISPATCH_OPTIONS}
    assert launched == [expected_config]
    assert rel_error(out, reference_conv2d(x, w, b, padding=1)) <= TOLERANCE["tf32"]


def test_auto_backend_picks_cudnn_where_it_was_faster(device):
    tune(PROBLEM, trials=3, runner=SyntheticRunner(baseline_ms=0.5), progress=False)
    assert cache.lookup_config(PROBLEM, torch.device(device), "auto") == {"family": "cudnn"}
    assert cache.lookup_config(PROBLEM, torch.device(device), "triton")["family"] != "cudnn"
    family, _ = dispatch.select(PROBLEM, None, torch.device(device), "auto")
    assert family.name == "cudnn"
    x, w, b = random_conv_inputs(1, 4, 5, 5, 8, 4, 3, 3, device=device, channels_last=True)
    assert rel_error(conv2d(x, w, b, padding=1), reference_conv2d(x, w, b, padding=1)) <= TOLERANCE["tf32"]


def test_warm_cache_means_zero_benchmarks_and_no_resume_retunes():
    tune(PROBLEM, trials=3, runner=SyntheticRunner(), progress=False)
    warm = SyntheticRunner()
    result = tune(PROBLEM, trials=3, runner=warm, progress=False)
    assert result.from_cache and result.trials_run == 0 and warm.calls == 0 and warm.baseline_calls == 0
    # Different search options (precision auto) are a different tuning job.
    again = SyntheticRunner()
    tune(PROBLEM, trials=3, runner=again, progress=False, resume=False)
    assert again.calls > 0


def test_a_custom_runner_without_a_target_tunes_for_its_device():
    result = quick_tune(3, runner=DeviceOnlyRunner(), problem=PROBLEM.with_(k=4))
    assert not result.from_cache and result.trials_run == 3
    stored = cache.read_entry(cache.entry_key(PROBLEM.with_(k=4), cache.fingerprint(torch.device("cpu"))))
    assert stored is not None and stored.config["LOOP_ORDER"] == "filter_outer"


def test_raising_and_infeasible_candidates_do_not_stop_the_run(monkeypatch):
    monkeypatch.setattr(SearchSpace, "enumerate", lambda self, limit: None)  # TPE: it proposes infeasible configs
    runner = SyntheticRunner(fail_if=lambda c: c.get("LOOP_ORDER") == "filter_outer")
    result = tune(PROBLEM, trials=10, runner=runner, progress=False, early_stop=None)
    assert result.config["LOOP_ORDER"] != "filter_outer"
    trials = study_trials()
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert failed and all("InvalidConfigError" in t.user_attrs["error"] for t in failed)
    assert any(t.state == optuna.trial.TrialState.PRUNED and "infeasible" in t.user_attrs for t in trials)
    assert len([t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)]) == 10


def test_a_small_feasible_space_is_searched_as_a_grid(monkeypatch):
    feasible = SearchSpace(PROBLEM, precisions=("tf32",)).enumerate(limit=10_000)
    assert feasible and all(SearchSpace(PROBLEM, precisions=("tf32",)).violation(c) is None for c in feasible)
    feasible = feasible[:12]  # keep the test short: a grid over the first few (plus the seeds)
    grid_size = len({json.dumps(c, sort_keys=True) for c in feasible + SearchSpace(PROBLEM, precisions=("tf32",)).seeds()})
    monkeypatch.setattr(SearchSpace, "enumerate", lambda self, limit: feasible if len(feasible) <= limit else None)
    runner = BookkeepingRunner()
    tune(PROBLEM, trials=grid_size + 50, runner=runner, progress=False, early_stop=None, retime_top=1)
    trials = study_trials()
    measured = {json.dumps(t.params, sort_keys=True) for t in trials if "repeat_of" not in t.user_attrs}
    assert len(measured) == grid_size == runner.calls - 1, "every feasible config runs once, then the grid is exhausted"
    assert len(trials) < grid_size + 50


def test_repeated_configs_are_answered_from_the_study(monkeypatch):
    monkeypatch.setattr(SearchSpace, "enumerate", lambda self, limit: None)  # force TPE on a small space
    runner = BookkeepingRunner()
    tune(PROBLEM, trials=30, runner=runner, progress=False, early_stop=None, retime_top=1)
    trials = study_trials()
    repeats = [t for t in trials if "repeat_of" in t.user_attrs]
    measured = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and "repeat_of" not in t.user_attrs]
    assert repeats, "TPE proposes good configs again on a small space"
    assert all(t.value == trials[t.user_attrs["repeat_of"]].value for t in repeats)
    assert len({json.dumps(t.params, sort_keys=True) for t in measured}) == len(measured) == runner.calls - 1


def crash_in_worker(kind, problem, config):
    """Worker hook: a candidate that kills its process, as an illegal-address fault would."""
    if config.get("LOOP_ORDER") == "filter_outer":
        os._exit(3)


def test_a_candidate_that_kills_the_worker_is_recorded_and_the_worker_restarts():
    runner = SubprocessRunner(timer="single", hook=crash_in_worker, job_timeout_s=120)
    try:
        result = tune(PROBLEM, trials=3, runner=runner, progress=False, early_stop=None, retime_top=1)
    finally:
        runner.close()
    assert result.config["LOOP_ORDER"] == "channel_outer"
    crashed = [t for t in study_trials() if t.user_attrs.get("crashed")]
    assert len(crashed) == 1 and "exit code 3" in crashed[0].user_attrs["error"]
    assert runner.restarts == 1


def test_precision_auto_only_lets_precisions_within_tolerance_win(device):
    prefer_fp16 = lambda c: 1.0 if c["precision"] == "fp16" else 2.0  # noqa: E731
    loose = tune(PROBLEM, trials=6, precision="auto", tolerance=2e-2, runner=SyntheticRunner(time_of=prefer_fp16),
                 progress=False, early_stop=None, cache=False)
    assert loose.precision == "fp16" and loose.config["precision"] == "fp16"
    runner = SyntheticRunner(time_of=prefer_fp16)
    strict = tune(PROBLEM, trials=6, precision="auto", tolerance=1e-5, runner=runner, progress=False, early_stop=None)
    assert strict.precision != "fp16" and strict.rel_error <= 1e-5
    assert "fp16" in {p for p, _ in runner.seen}, "fp16 competed and lost on accuracy"
    # The auto-tuned precision is part of the cached config; dispatch honours it and stays within tolerance.
    x, w, b = random_conv_inputs(1, 4, 5, 5, 8, 4, 3, 3, device=device, channels_last=True)
    assert rel_error(conv2d(x, w, b, padding=1, backend="triton"), reference_conv2d(x, w, b, padding=1)) <= 1e-5


def test_tuning_inside_cuda_graph_capture_is_refused(monkeypatch):
    monkeypatch.setattr(search_api, "capturing", lambda: True)
    runner = SyntheticRunner()
    with pytest.raises(TuningError, match="CUDA graph"):
        tune(PROBLEM, trials=2, runner=runner, progress=False)
    assert runner.calls == 0


def test_no_correct_candidate_is_a_clear_error():
    runner = SyntheticRunner(fail_if=lambda c: True)
    with pytest.raises(TuningError, match="no candidate ran correctly.*InvalidConfigError"):
        tune(PROBLEM, trials=3, runner=runner, progress=False, cache=False)
