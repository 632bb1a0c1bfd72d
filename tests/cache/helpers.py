"""What the cache tests share: a problem, this machine's and another GPU's fingerprint, and a cache entry as
the search writes it."""
import torch

from tritonconv import cache
from tritonconv.kernels import get_family
from tritonconv.problem import ConvProblem

PROBLEM = ConvProblem(n=4, c=16, h=8, w=8, k=32, r=3, s=3, pad_h=1, pad_w=1, dtype="float16", layout="nhwc")
CPU = torch.device("cpu")
HERE = cache.fingerprint(CPU)
ELSEWHERE = "NVIDIA H100 80GB HBM3|sm90|132sms"


def make_entry(problem=PROBLEM, *, time_ms=1.0, cudnn_ms=2.0, fingerprint=HERE, block_m=32):
    """An implicit-GEMM entry of `problem` (its default config with BLOCK_M = `block_m`) that beat cuDNN's
    `cudnn_ms` in `time_ms`, with one trial."""
    family = get_family("implicit_gemm")
    config = {"family": family.name, **family.default_config(problem), "BLOCK_M": block_m}
    return {
        "family": family.name, "family_version": family.version, "config": config, "time_ms": time_ms,
        "cudnn_time_ms": cudnn_ms, "rel_error": 1e-4, "precision": problem.precision, "trials_run": 5,
        "timestamp": "2025-01-01T00:00:00", "fingerprint": fingerprint, "problem": problem.to_dict(),
        "trials": [{"family": family.name, "family_version": family.version, "config": config, "time_ms": time_ms}],
    }
