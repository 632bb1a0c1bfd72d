"""tritonconv: tuned Triton convolution and GEMM kernels for PyTorch."""
from .errors import InvalidConfigError, InvalidInputError, TritonConvError, UnsupportedError
from .functional import conv2d
from .problem import ConvProblem

__version__ = "0.1.0"

__all__ = [
    "conv2d", "ConvProblem", "TritonConvError", "InvalidInputError", "UnsupportedError", "InvalidConfigError",
]
