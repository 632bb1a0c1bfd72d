#!/usr/bin/env bash
# Sourced by .ci/run and .ci/tune: makes (or reuses) a virtual environment with tritonconv and its
# dependencies installed from scratch. VENV overrides its location (default: .venv in the repo root).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$root/.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install -q --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    python -m pip install -q torch                 # a GPU machine: the CUDA build
  else
    python -m pip install -q "torch==2.13.0"       # no GPU: the CPU build (tests run in the Triton interpreter)
  fi
fi
python -m pip install -q "triton==3.6.0"             # the version the kernels are compiled and tested with
python -m pip install -q -e "$root[test]"
python -m pip install -q "ruff==0.17.6"                # lint (.ci/run), configured in pyproject.toml [tool.ruff]
# torchvision for the model tests (tests/test_models.py; optional for the library). The registries only have
# CUDA builds of it: --no-deps keeps pip from replacing the CPU torch with the CUDA one it asks for, and
# tests/torchvision_models.py imports it although its compiled extension does not load next to a CPU torch.
# 0.28.0 is the release paired with torch 2.13; other torch versions skip the model tests.
if python -c "import torch, sys; sys.exit(not torch.__version__.startswith('2.13.'))"; then
  python -m pip install -q --no-deps "torchvision==0.28.0"
fi
