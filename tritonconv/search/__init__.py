"""Tuning: an Optuna search over every kernel family that supports a problem, checked against a float64
reference, timed on the GPU, compared with cuDNN in the same run, and stored in the tuning cache."""
from .runner import InProcessRunner, Measurement, Runner, SubprocessRunner
from .space import SearchSpace
from .study import TuneResult, TuningError, default_runner, tune, tune_many

__all__ = [
    "tune", "tune_many", "TuneResult", "TuningError", "Runner", "InProcessRunner", "SubprocessRunner",
    "Measurement", "SearchSpace", "default_runner",
]
