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
