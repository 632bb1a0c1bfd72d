"""The entry record: one tuned winner, validated field by field when read."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields
from typing import Any, Optional

import triton

from ..config import resolve_config
from ..errors import EntryError
from ..kernels import FAMILIES
from ..problem import ConvProblem
from ..runtime import DeviceInfo
from .keys import CUDNN_FAMILY, entry_key
from .versions import family_version, restamp


_PROBLEM_FIELDS = {f.name: f.type for f in fields(ConvProblem)}


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def problem_from_json(data: Any) -> ConvProblem:
    if not isinstance(data, dict):
        raise EntryError(f"its problem is a {type(data).__name__}, not a mapping")
    unknown = sorted(set(data) - set(_PROBLEM_FIELDS))
    if unknown:
        raise EntryError(f"its problem has unknown field(s) {unknown} (written by a newer tritonconv?)")
    for name, value in data.items():
        kind = _PROBLEM_FIELDS[name]
        ok = isinstance(value, bool) if kind == "bool" else is_int(value) if kind == "int" else isinstance(value, str)
        if not ok:
            raise EntryError(f"its problem field {name}={value!r} is not a {kind}")
    try:
        problem = ConvProblem.from_dict(data)
        problem.key  # noqa: B018 - derived sizes must compute
    except Exception as exc:  # noqa: BLE001 - whatever a bad problem raises, the entry is unusable
        raise EntryError(f"its problem is invalid ({type(exc).__name__}: {exc})") from None
    if min(problem.n, problem.c, problem.h, problem.w, problem.k, problem.r, problem.s, problem.groups,
           problem.stride_h, problem.stride_w, problem.dilation_h, problem.dilation_w, problem.p, problem.q) < 1:
        raise EntryError("its problem has a size, stride, dilation or group count below 1")
    return problem


@dataclass
class CacheEntry:
    """One tuned winner. `trials` is None when the trial history was not loaded (it lives in its own file)."""

    problem: ConvProblem
    fingerprint: str
    family: str
    family_version: str
    config: dict[str, Any]  # the winning config, with its "family" key
    time_ms: float
    cudnn_time_ms: float | None = None
    cudnn_error: str | None = None
    rel_error: float | None = None
    precision: str = ""
    triton: str = triton.__version__
    trials_run: int | None = None
    budget: int | None = None  # the trial budget it was tuned with
    exhausted: bool | None = None  # every feasible candidate was measured
    wall_time_s: float | None = None
    timestamp: str = ""
    search: dict[str, Any] | None = None
    timer: str | None = None
    trials: list[Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # fields this version does not know, kept on rewrite

    @property
    def key(self) -> str:
        return entry_key(self.problem, self.fingerprint, self.triton)

    @classmethod
    def from_result(cls, result: Any, *, family_version: str | None = None, **search_fields: Any) -> CacheEntry:
        """The entry for one tuning result: a `tritonconv.search.TuneResult`, read by attribute (problem, device,
        family, config without its "family" key, time_ms, cudnn_time_ms, rel_error, precision, wall_time_s).
        `search_fields` are what only the search knows (cudnn_error, trials_run, budget, exhausted, search, timer,
        trials); `family_version` defaults to the winning family's current one."""
        family = FAMILIES.get(result.family)
        if family is None:
            raise EntryError(f"its family {result.family!r} is not a known kernel family")
        version = family_version if family_version is not None else family.version
        return cls(
            problem=result.problem, fingerprint=result.device, family=result.family, family_version=version,
            config={"family": result.family, **result.config}, time_ms=result.time_ms,
            cudnn_time_ms=result.cudnn_time_ms, rel_error=result.rel_error, precision=result.precision,
            wall_time_s=result.wall_time_s, timestamp=time.strftime("%Y-%m-%dT%H:%M:%S"), **search_fields,
        )

    def to_json(self, *, with_trials: bool = True) -> dict[str, Any]:
        data = dict(self.extra)
        for f in fields(self):
            if f.name in ("extra", "trials"):
                continue
            value = getattr(self, f.name)
            data[f.name] = value.to_dict() if isinstance(value, ConvProblem) else value
        if with_trials and self.trials is not None:
            data["trials"] = self.trials
        return data

    @classmethod
    def from_json(cls, key: str, data: Any) -> CacheEntry:
        """The entry stored under `key`; raises EntryError naming what is wrong. Checks types and that the key,
        the fingerprint and the problem agree; `config_problem` checks the config against its family's space."""
        if not isinstance(data, dict):
            raise EntryError(f"it is a {type(data).__name__}, not a mapping")
        if not isinstance(key, str):
            raise EntryError("its key is not a string")
        for name in ("family", "family_version", "fingerprint"):
            if not isinstance(data.get(name), str) or not data[name]:
                raise EntryError(f"its {name!r} is missing or not a string")
        if data["family"] not in FAMILIES:
            raise EntryError(f"its family {data['family']!r} is not a known kernel family (written by a newer tritonconv?)")
        problem = problem_from_json(data.get("problem"))
        config = data.get("config")
        if not isinstance(config, dict):
            raise EntryError("its 'config' is missing or not a mapping")
        for name, value in config.items():
            if not isinstance(value, (bool, int, str)) or (isinstance(value, float)):
                raise EntryError(f"its config value {name}={value!r} is not an int, bool or string")
        if config.get("family") != data["family"]:
            raise EntryError(f"its config's family {config.get('family')!r} is not its family {data['family']!r}")
        if not is_number(data.get("time_ms")) or data["time_ms"] <= 0:
            raise EntryError(f"its time_ms {data.get('time_ms')!r} is not a positive number")
        for name in ("cudnn_time_ms", "rel_error", "wall_time_s"):
            if data.get(name) is not None and (not is_number(data[name]) or data[name] < 0):
                raise EntryError(f"its {name} {data[name]!r} is not a non-negative number")
        for name in ("cudnn_error", "precision", "triton", "timestamp", "timer"):
            if data.get(name) is not None and not isinstance(data[name], str):
                raise EntryError(f"its {name} {data[name]!r} is not a string")
        for name in ("trials_run", "budget"):
            if data.get(name) is not None and not is_int(data[name]):
                raise EntryError(f"its {name} {data[name]!r} is not an integer")
        if data.get("exhausted") is not None and not isinstance(data["exhausted"], bool):
            raise EntryError(f"its exhausted {data['exhausted']!r} is not true or false")
        if data.get("search") is not None and not isinstance(data["search"], dict):
            raise EntryError("its 'search' is not a mapping")
        if data.get("trials") is not None and not isinstance(data["trials"], list):
            raise EntryError("its 'trials' is not a list")
        known = {f.name for f in fields(cls)} - {"extra"}
        entry = cls(
            problem=problem, config=dict(config), extra={k: v for k, v in data.items() if k not in known},
            **{k: data[k] for k in known - {"problem", "config"} if data.get(k) is not None},
        )
        expected = entry_key(problem, entry.fingerprint, entry.triton)
        if key != expected:
            device = key.split("|triton-")[0]
            if device != entry.fingerprint:
                raise EntryError(f"its key names the device {device!r} but its fingerprint says {entry.fingerprint!r}")
            raise EntryError(f"its key is not the key of its problem and Triton version ({expected})")
        return entry

    def config_problem(self, target: Optional[DeviceInfo] = None) -> str | None:
        """Why this entry's config cannot run its problem on `target` (None: this machine's device): unknown
        family, a parameter or value outside the family's space, a broken constraint; None if it resolves."""
        if self.family == CUDNN_FAMILY:
            return "its winner family is 'cudnn' (a Triton family is expected)"
        try:
            resolve_config(self.problem, self.config, target)
        except Exception as exc:  # noqa: BLE001 - any failure means: unusable, fall back
            return str(exc)
        return None

    def is_current(self) -> bool:
        """Whether the winning family still exists with the source it was tuned on."""
        version = family_version(self.family)
        return version is not None and version == self.family_version

    def usable_trials(self) -> list[dict[str, Any]]:
        """The trial records a search can reuse (well-formed ones; others stay on disk untouched)."""
        trials = [restamp(t) for t in self.trials or []]  # those measured on an unchanged kernel stay reusable
        return [t for t in trials if isinstance(t, dict) and isinstance(t.get("config"), dict)]



def is_current(entry: CacheEntry) -> bool:
    return entry.is_current()
