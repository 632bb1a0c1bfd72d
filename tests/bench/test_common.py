"""bench/_common.py, what the GPU benchmark scripts share: without a GPU (and without --dry-run) each says so in
one line and exits 2."""
import pytest
import torch

from tests.bench.helpers import run_bench


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a CUDA GPU")
@pytest.mark.parametrize("script", ["int8.py", "winograd.py"])
def test_without_a_gpu_it_says_so(script):
    proc = run_bench(script, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == f"bench/{script} needs a CUDA GPU (or --dry-run)"
