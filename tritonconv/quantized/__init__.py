"""int8 convolutions: int8 inputs and weights, int32 accumulation on tensor cores, per-output-channel weight
scales, and dequantisation (float output) or requantisation (int8 output) fused into the kernel's epilogue.

    y_q = tritonconv.quantized.conv2d(x_q, w_q, x_scale, w_scale, bias, out_scale=0.05, activation="relu")
    model_q = tritonconv.convert(model.eval(), precision="int8", calibration=[example_input])

`conv2d` is the functional form; `QuantizedConv2d` a module taking float input (quantised with its calibrated
scale); `quantize_tensor` / `quantize_weight` the symmetric quantisation both use; `calibrate` the min-max
calibration that `tritonconv.convert(precision="int8")` runs.
"""
from .calibration import QuantizationAccuracy, calibrate
from .functional import conv2d
from .modules import QuantizedConv2d
from .quantize import quantize_tensor, quantize_weight, scale_for

__all__ = [
    "conv2d", "QuantizedConv2d", "quantize_tensor", "quantize_weight", "scale_for", "calibrate",
    "QuantizationAccuracy",
]
