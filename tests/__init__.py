"""The test package (mirrors tritonconv/: tests/kernels/test_<family>.py, tests/search/, tests/cache/, ...).

Shared code lives in tests/helpers.py (references, poisoned outputs, tolerances), tests/bad_inputs.py and
tests/sweeps/; fixtures (device, deep, an isolated cache directory) in tests/conftest.py.
"""
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent  # the repository root (bench/, README.md, tritonconv/)
