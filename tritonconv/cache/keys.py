"""Where the cache lives and the key an entry is stored under."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import platformdirs
import torch
import triton

from ..problem import ConvProblem
from ..runtime import device_info


SCHEMA = "tritonconv-cache"
# 1: trial histories inline; 2: trials in their own files, one entry per line; 3: family versions by the
# current rule (own module + kernels; see versions.py), older files' entries re-stamped where unchanged.
SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
TRIALS_SCHEMA = "tritonconv-trials"
CACHE_FILE = "tuning-cache.json"
TRIALS_DIR = "tuning-trials"
QUARANTINE_FILE = "tuning-cache.quarantine.json"
CUDNN_FAMILY = "cudnn"
# Limits on what is read: a bigger file is refused with a clear error instead of exhausting memory.
MAX_FILE_BYTES = 1 << 30
# Set to "1" to let a new batch size reuse the entry tuned for the nearest batch size (launched with its exact shape).
BATCH_BUCKETING_ENV = "TRITONCONV_BATCH_BUCKETING"
CACHE_DIR_ENV = "TRITONCONV_CACHE_DIR"


def cache_dir() -> Path:
    """TRITONCONV_CACHE_DIR if set, else the platform's user cache directory for tritonconv."""
    override = os.environ.get(CACHE_DIR_ENV)
    return Path(override) if override else Path(platformdirs.user_cache_dir("tritonconv"))


def cache_path() -> Path:
    return cache_dir() / CACHE_FILE


def fingerprint(device: torch.device | str | None = None) -> str:
    """Device name, compute capability and SM count of `device` (the interpreter has its own)."""
    return device_info(device).fingerprint


def entry_key(problem: ConvProblem, device_fingerprint: str, triton_version: str = triton.__version__) -> str:
    return f"{device_fingerprint}|triton-{triton_version}|{problem.key}"


def problem_slug(key: str) -> str:
    """A short file-name-safe name for one entry key (its trial history file is named by it)."""
    return hashlib.sha1(key.encode()).hexdigest()[:16]
