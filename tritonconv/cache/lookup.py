"""What the dispatcher asks: the tuned config for a problem on a device. Never raises."""
from __future__ import annotations

from typing import Any, Optional

import torch

from ..problem import ConvProblem
from ..runtime import DeviceInfo
from .buckets import batch_bucketing_enabled, nearest_batch
from .entry import CacheEntry
from .files import warn_once
from .keys import CUDNN_FAMILY, entry_key, fingerprint
from .view import load_view, valid_entry


def get_entry(problem: ConvProblem, device: torch.device | str | None = None) -> CacheEntry | None:
    """The stored entry for exactly `problem` on `device`, if valid and tuned on the current kernel source."""
    try:
        return valid_entry(load_view(), entry_key(problem, fingerprint(device)))
    except Exception as exc:  # noqa: BLE001 - the cache never breaks a conv2d call
        warn_once("lookup", f"tuning cache lookup failed ({type(exc).__name__}: {exc}); using default configs")
        return None


def lookup_config(
    problem: ConvProblem, device: torch.device, backend: str = "auto", target: Optional[DeviceInfo] = None,
) -> dict[str, Any] | None:
    """The tuned config (with its "family" key) for `problem` on `device`, or None; `target`: the GPU to look
    up for instead of `device`'s (its fingerprint, its limits for the config check). With backend="auto" the
    family may be "cudnn" where cuDNN measured faster; with "triton" it is always the best Triton kernel.
    Never raises: whatever is wrong with the cache, the answer is None (the default config) and a warning."""
    try:
        view = load_view()
        device_fp = target.fingerprint if target is not None else fingerprint(device)
        entry = valid_entry(view, entry_key(problem, device_fp), target)
        if entry is None and batch_bucketing_enabled():
            entry = nearest_batch(view, problem, device_fp, target)
        if entry is None or entry.fingerprint != device_fp:
            return None
        if backend == "auto" and entry.cudnn_time_ms is not None and entry.cudnn_time_ms < entry.time_ms:
            return {"family": CUDNN_FAMILY}
        return dict(entry.config)
    except Exception as exc:  # noqa: BLE001 - the cache never breaks a conv2d call
        warn_once("lookup", f"tuning cache lookup failed ({type(exc).__name__}: {exc}); using default configs")
        return None
