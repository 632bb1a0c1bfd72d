"""What the search tests share: a tiny problem, runners that cost nothing (synthetic times), a quick tune, and
the study a tune leaves in the test's cache directory."""
import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from tritonconv import cache
from tritonconv.problem import ConvProblem
from tritonconv.runtime import INTERPRETER_DEVICE
from tritonconv.search import Measurement, journal, tune

PROBLEM = ConvProblem(n=1, c=4, h=5, w=5, k=8, r=3, s=3, pad_h=1, pad_w=1, dtype="float32", layout="nhwc")
OTHER = PROBLEM.with_(k=16)


def synthetic_ms(config):
    """Deterministic fake time that makes a non-default config win: the filter-outer loop, then fewer stages."""
    slow_loop = config.get("LOOP_ORDER") != "filter_outer"
    return 1.0 + slow_loop + 0.1 * config.get("num_stages", 0) + 0.01 * config.get("GROUP_M", 0)


class BookkeepingRunner:
    """Runs nothing: synthetic times, for tests of the search's bookkeeping over many trials."""

    device, target = "cpu", INTERPRETER_DEVICE

    def __init__(self):
        self.calls = 0

    def benchmark(self, problem, config, tolerance):
        self.calls += 1
        return Measurement(time_ms=synthetic_ms(config), rel_error=0.0)

    def baseline(self, problem):
        return Measurement(error="no baseline")

    def close(self):
        pass


class DeviceOnlyRunner:
    """The least a custom runner needs: `device` and benchmark/baseline/close, no `target` (it tunes for
    `device`); synthetic times."""

    device = "cpu"

    def benchmark(self, problem, config, tolerance):
        return Measurement(time_ms=synthetic_ms(config), rel_error=0.0)

    def baseline(self, problem):
        return Measurement(error="no baseline")

    def close(self):
        pass


class RecordingRunner(BookkeepingRunner):
    """Zero-cost runner that remembers every config it measured (the last one is the winner's re-timing)."""

    def __init__(self, interrupt_at=None):
        super().__init__()
        self.seen, self.interrupt_at = [], interrupt_at

    def benchmark(self, problem, config, tolerance):
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        self.seen.append(dict(config))
        return super().benchmark(problem, config, tolerance)


def quick_tune(trials, runner=None, problem=PROBLEM, **options):
    """`tune` with a zero-cost runner, no progress bar, no early stop and one re-timing of the winner."""
    return tune(problem, trials=trials, runner=runner or RecordingRunner(), progress=False, early_stop=None,
                retime_top=1, **options)


def study_journal(problem=PROBLEM):
    """The one study journal of `problem` in the test's cache directory."""
    paths = sorted(journal.studies_dir(cache.cache_dir()).glob(f"{problem.key}-*.journal"))
    assert len(paths) == 1, paths
    return paths[0]


def study_trials(problem=PROBLEM):
    storage = JournalStorage(JournalFileBackend(str(study_journal(problem))))
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage).trials
