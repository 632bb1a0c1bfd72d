"""Batch bucketing: a new batch size may reuse the entry tuned for the nearest batch size (launched with its
exact shape), when TRITONCONV_BATCH_BUCKETING=1."""
from __future__ import annotations

import math
import os
from dataclasses import fields
from typing import Optional

from ..errors import EntryError
from ..problem import ConvProblem
from ..runtime import DeviceInfo
from .entry import CacheEntry
from .keys import entry_key
from .view import View, valid_entry


# Set to "1" to let a new batch size reuse the entry tuned for the nearest batch size (launched with its exact shape).
BATCH_BUCKETING_ENV = "TRITONCONV_BATCH_BUCKETING"


def bucket_key(problem: ConvProblem, device_fingerprint: str) -> str:
    """The entry key with the batch size left out (batch bucketing groups entries by it)."""
    return entry_key(problem.with_(n=1), device_fingerprint)


def batch_bucketing_enabled() -> bool:
    return os.environ.get(BATCH_BUCKETING_ENV, "0") not in ("", "0")


def nearest_batch(
    view: View, problem: ConvProblem, device_fingerprint: str, target: Optional[DeviceInfo] = None,
) -> CacheEntry | None:
    candidates = _bucket_index(view, device_fingerprint).get(bucket_key(problem, device_fingerprint), [])
    for _, key in sorted(candidates, key=lambda c: abs(math.log2(c[0]) - math.log2(problem.n))):
        entry = valid_entry(view, key, target)
        if entry is not None and entry.fingerprint == device_fingerprint:
            moved = CacheEntry(**{**{f.name: getattr(entry, f.name) for f in fields(entry)}, "problem": problem})
            if moved.config_problem(target) is None:
                return entry
    return None


def _bucket_index(view: View, device_fingerprint: str) -> dict[str, list[tuple[int, str]]]:
    """`device_fingerprint`'s entries grouped by bucket key, as (batch size, entry key); built once per view and
    device (one view serves lookups for several target devices)."""
    index = view.by_bucket.get(device_fingerprint)
    if index is None:
        index = view.by_bucket[device_fingerprint] = {}
        for key in list(view.raw.keys()):
            if isinstance(key, str) and key.startswith(device_fingerprint + "|"):
                try:
                    other = CacheEntry.from_json(key, view.raw[key])
                except EntryError:
                    continue
                index.setdefault(bucket_key(other.problem, other.fingerprint), []).append((other.problem.n, key))
    return index
