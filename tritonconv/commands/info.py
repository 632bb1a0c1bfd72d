"""`tritonconv info`: what tritonconv sees here: its version, the device and its fingerprint (the key tuned
entries are stored under), torch/Triton/CUDA/cuDNN versions, whether the Triton interpreter is active, where the
tuning cache and the study journal live, and how many cached entries belong to each device."""
from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="version, device, library versions, cache and journal paths",
                                   description=__doc__)
    parser.set_defaults(func=run)


def facts() -> list[tuple[str, str]]:
    """(label, value) rows of `tritonconv info`."""
    import torch
    import triton

    from .. import __version__, cache
    from ..runtime import INTERPRET, device_info
    from ..search.journal import studies_dir

    if torch.cuda.is_available():
        device = f"{torch.cuda.get_device_name()} (CUDA GPU)"
    else:
        device = ("no CUDA GPU: kernels run only in the Triton interpreter on the CPU (TRITON_INTERPRET=1, or "
                  "`tritonconv tune --interpret`; slow, times are CPU wall-clock)")
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    journals = studies_dir(cache.cache_dir())
    rows = [
        ("tritonconv", __version__),
        ("device", device),
        ("fingerprint", device_info().fingerprint),
        ("torch", torch.__version__),
        ("triton", triton.__version__),
        ("CUDA", torch.version.cuda or "none (CPU build of torch)"),
        ("cuDNN", str(cudnn) if cudnn else "none"),
        ("interpreter", "active (TRITON_INTERPRET=1)" if INTERPRET else "off"),
        ("cache", str(cache.cache_path()) + ("" if cache.cache_path().exists() else " (not created yet)")),
        ("journals", f"{journals} (one Optuna journal per study)" + ("" if journals.exists() else " (not created yet)")),
    ]
    try:
        entries = cache.entries()
    except cache.CacheError as exc:
        return rows + [("entries", f"unreadable: {exc}")]
    per_device: dict[str, list[int]] = {}
    for entry in entries.values():
        counts = per_device.setdefault(entry.fingerprint, [0, 0])
        counts[0 if entry.is_current() else 1] += 1
    here = device_info().fingerprint
    if not per_device:
        rows.append(("entries", "0 (run `tritonconv tune` or `tritonconv tune-model`)"))
    for fingerprint, (current, stale) in sorted(per_device.items()):
        text = f"{current} current" + (f", {stale} stale (kernel source changed)" if stale else "")
        rows.append(("entries", f"{text} for {fingerprint}" + (" (this device)" if fingerprint == here else "")))
    return rows


def run(args: argparse.Namespace) -> int:
    rows = facts()
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    sys.stdout.flush()
    return 0
