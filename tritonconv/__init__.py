"""tritonconv: tuned Triton convolution and GEMM kernels for PyTorch."""
from .errors import InvalidConfigError, InvalidInputError, TritonConvError, UnsupportedError
from .functional import conv2d
from .matmul import matmul
from .problem import ConvProblem
from . import nn  # noqa: E402  tritonconv.nn.Conv2d
from .convert import ConversionReport, convert  # the function shadows the module name; import names from it
from .tune_model import ModelTuneReport, tune_model
from .first_call import autotune

__version__ = "0.1.0"

__all__ = [
    "conv2d", "matmul", "autotune", "ConvProblem", "nn", "convert", "ConversionReport", "tune_model", "ModelTuneReport", "TritonConvError", "InvalidInputError", "UnsupportedError", "InvalidConfigError",
]
