"""torchvision's model definitions in CI, where the only torchvision the registries have is a CUDA build.

Next to the CPU torch that CI installs, that torchvision's compiled extension (`torchvision/_C.so`) does not
load, and `import torchvision` then fails while registering fake kernels for the extension's operators
`torchvision::nms` and `torchvision::qnms` ("operator torchvision::nms does not exist"): every other op of the
extension is registered only if it loaded. The model definitions are pure Python and use none of those ops, so
`import_torchvision()` retries the import after declaring the two operator schemas (as the extension's C++
declares them) with `torch.library`: the fake registrations then succeed, and nothing installed is edited.
Where the extension loads (a GPU machine with a matching torch), torchvision imports as usual.
CI installs it with `pip install --no-deps torchvision==0.28.0` (.ci/setup.sh): the version paired with torch
2.13, without letting pip replace the CPU torch by the CUDA one it depends on.
"""
from __future__ import annotations

import importlib
import sys
from types import ModuleType

import torch

# The schemas of the two operators torchvision registers fake kernels for unconditionally.
EXTENSION_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor",
)
_declared: torch.library.Library | None = None  # kept alive: a Library's definitions die with it


def _declare_extension_schemas() -> None:
    global _declared
    if _declared is None:
        _declared = torch.library.Library("torchvision", "DEF")
        for schema in EXTENSION_SCHEMAS:
            _declared.define(schema)


def import_torchvision() -> ModuleType | None:
    """torchvision, or None if it is not installed (see the module docstring for the CPU-torch case)."""
    if importlib.util.find_spec("torchvision") is None:
        return None
    try:
        return importlib.import_module("torchvision")
    except RuntimeError as error:
        if "torchvision::" not in str(error):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]  # the half-imported package, imported again below
    _declare_extension_schemas()
    return importlib.import_module("torchvision")
