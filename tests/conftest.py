"""Test setup: without a CUDA GPU, kernels run on the CPU through the Triton interpreter.

TRITON_INTERPRET must be set before Triton kernels are defined, i.e. before tritonconv is imported.
"""
import os
import sys

import pytest
import torch

HAS_GPU = torch.cuda.is_available()
if not HAS_GPU:
    os.environ["TRITON_INTERPRET"] = "1"

DEVICE = "cuda" if HAS_GPU else "cpu"


def pytest_addoption(parser):
    parser.addoption(
        "--deep", action="store_true", default=False,
        help="differential sweeps (tests/test_sweeps.py) run thousands of random cases instead of the CI subset",
    )


@pytest.fixture
def deep(request) -> bool:
    return request.config.getoption("--deep")


def pytest_collection_modifyitems(config, items):
    if HAS_GPU:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def device() -> str:
    return DEVICE


def _forget_cached_choices() -> None:
    """Drop the cache's in-memory view and dispatch's memo, where this process has loaded them (a test that never
    imports tritonconv does not import it here)."""
    cache, dispatch = sys.modules.get("tritonconv.cache"), sys.modules.get("tritonconv.dispatch")
    if cache is not None:
        cache.invalidate()
    if dispatch is not None:
        dispatch.clear_memo()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own empty tuning cache directory, and neither sees a cached view or dispatch choice
    of another test nor leaves one behind."""
    monkeypatch.setenv("TRITONCONV_CACHE_DIR", str(tmp_path / "tritonconv-cache"))
    _forget_cached_choices()
    yield
    _forget_cached_choices()
