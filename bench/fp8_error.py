"""The error of fp8 (e4m3) operands with per-tensor scales, as tritonconv computes them, measured without a GPU.

The kernels multiply e4m3 operands x / x_scale and w / w_scale (scale = max|t| / 448, quantized by torch) with
float32 accumulation and rescale by x_scale * w_scale. This script computes exactly that in float64 (the float32
accumulation adds ~1e-7, invisible at this scale) for random convs and prints ‖y − ref‖ / ‖ref‖ against the
float64 conv of the unquantized inputs: the numbers behind Precision.FP8's tolerance and auto threshold.

    python bench/fp8_error.py
"""
from __future__ import annotations

import statistics

import torch
import torch.nn.functional as F

from tritonconv.weights import quantize_per_tensor

# (n, c, h, w, k, r): stems, 1x1 and 3x3 bodies, a 5x5.
SHAPES = [(1, 16, 8, 8, 16, 3), (2, 32, 8, 8, 32, 3), (1, 64, 7, 7, 64, 1), (2, 3, 16, 16, 8, 3),
          (1, 128, 4, 4, 64, 3), (1, 8, 9, 9, 24, 5), (4, 64, 14, 14, 64, 3), (1, 256, 7, 7, 256, 1)]


def _dequantized(t: torch.Tensor) -> torch.Tensor:
    q, scale = quantize_per_tensor(t.float())
    return q.double() * scale.double()


def fp8_errors(seed: int = 0) -> list[float]:
    gen = torch.Generator().manual_seed(seed)
    errors = []
    for n, c, h, w, k, r in SHAPES:
        weight = torch.randn(k, c, r, r, generator=gen, dtype=torch.float64) / (c * r * r) ** 0.5
        inputs = [torch.randn(n, c, h, w, generator=gen, dtype=torch.float64) for _ in range(3)]
        inputs += [torch.rand(n, c, h, w, generator=gen, dtype=torch.float64),  # all positive
                   torch.randn(n, c, h, w, generator=gen, dtype=torch.float64) ** 3]  # heavy-tailed
        for x in inputs:
            ref = F.conv2d(x, weight, padding=r // 2)
            out = F.conv2d(_dequantized(x), _dequantized(weight), padding=r // 2)
            errors.append(((out - ref).norm() / ref.norm()).item())
    return errors


if __name__ == "__main__":
    errors = fp8_errors()
    print(f"{len(errors)} convs: relative error min {min(errors):.2e}, median {statistics.median(errors):.2e}, "
          f"max {max(errors):.2e}")
