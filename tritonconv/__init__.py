"""tritonconv: tuned Triton convolution and GEMM kernels for PyTorch.

The public names load on first use (PEP 562), so `import tritonconv` and the `tritonconv` command's argument
parsing do not import torch or Triton; `tritonconv.conv2d` (or any other name below) loads them. The custom op
`torch.ops.tritonconv.conv2d` is registered when the API is first used (or on `import tritonconv.ops`).
"""
import importlib
import importlib.util
import os
import sys
import types

from .errors import InvalidConfigError, InvalidInputError, TritonConvError, UnsupportedError

__version__ = "0.1.0"

# public name -> the submodule defining it; the first one used loads them all (their import-time effects: the
# custom op's registration, TRITONCONV_AUTOTUNE) as `import tritonconv` used to.
_LAZY = {
    "conv2d": "functional", "matmul": "matmul", "autotune": "first_call", "ConvProblem": "problem", "nn": None,
    "convert": "convert", "ConversionReport": "convert", "tune_model": "tune_model", "ModelTuneReport": "tune_model",
}
# Submodules named like a public function: the package attribute stays the function.
_SHADOWED = {"convert", "tune_model", "matmul"}

__all__ = [
    "conv2d", "matmul", "autotune", "ConvProblem", "nn", "convert", "ConversionReport", "tune_model", "ModelTuneReport", "TritonConvError", "InvalidInputError", "UnsupportedError", "InvalidConfigError",
]


class _Package(types.ModuleType):
    def __getattr__(self, name: str):
        if name not in _LAZY:  # a submodule (tritonconv.cache, ...), as the eager imports used to make available
            if name.startswith("__") or importlib.util.find_spec(f"{__name__}.{name}") is None:
                raise AttributeError(f"module 'tritonconv' has no attribute {name!r}")
            return importlib.import_module(f"{__name__}.{name}")
        for public, module_name in _LAZY.items():
            module = importlib.import_module(f"{__name__}.{module_name or public}")
            setattr(self, public, module if module_name is None else getattr(module, public))
        return getattr(self, name)

    def __setattr__(self, name: str, value) -> None:
        # Importing tritonconv.convert binds the submodule to the package attribute; keep the function there.
        if name in _SHADOWED and isinstance(value, types.ModuleType) and hasattr(value, name):
            value = getattr(value, name)
        super().__setattr__(name, value)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(_LAZY))


sys.modules[__name__].__class__ = _Package
if os.environ.get("TRITONCONV_AUTOTUNE", "").strip().lower() not in ("", "0", "off"):
    getattr(sys.modules[__name__], "autotune")  # noqa: B009 - the lazy attribute's side effect: first-call tuning is switched on at import (tritonconv.first_call)
