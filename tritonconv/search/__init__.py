"""Tuning: an Optuna search over every kernel family that supports a problem, checked against a float64
reference, timed on the GPU, compared with cuDNN in the same run, and stored in the tuning cache.

The public names below load on first use (PEP 562), so reading `TuneOptions`' defaults (the CLIs' `--help`)
imports neither torch nor Optuna. The modules, one job each:
  options   TuneOptions: the tuning defaults and the up-front checks of tuning arguments
  plan      what one problem's search covers (precisions, layouts, tolerance) and the cache file
  study     the Optuna study: name, creation/resumption (grid or TPE), repair of unfinished trials, timeline
  state     RunState: what one call knows and counts while it asks and tells
  loop      the ask/tell loop (pipelined with the compile pool) and the re-timing that picks the winner
  entries   the cache entry: answering from it, reusing its trial records, building it
  result    TuneResult, TuningError, TuningInterrupted
  api       tune, tune_many, default_runner
  space, runner, compile_pool, journal, reference: the search space, how candidates run, the compile pool,
            the study journals, each problem's inputs and float64 reference (tolerances: enums.Precision)
"""
import importlib

_PUBLIC = {
    "tune": "api", "tune_many": "api", "default_runner": "api",
    "TuneOptions": "options", "DEFAULTS": "options",
    "TuneResult": "result", "TuningError": "result", "TuningInterrupted": "result",
    "Runner": "runner", "InProcessRunner": "runner", "SubprocessRunner": "runner", "Measurement": "runner",
    "SearchSpace": "space",
}

__all__ = list(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
