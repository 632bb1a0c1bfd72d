"""PyTorch's own conv2d test material, extracted in a separate process: `python tests/pytorch_material.py OUT`.

Importing `torch.testing._internal` has process-wide side effects (it freezes the `torch.backends` flags, which
tritonconv's search and benchmarks set, and patches TorchScript calls), so the test process never imports it:
this script does, and saves with torch.save
  * "opinfo": the `nn.functional.conv2d` OpInfo's sample inputs (float32 and float16, requires_grad=True) and
    error inputs, as plain (input, args, kwargs) records;
  * "common_nn": every Conv2d entry of common_nn's module_tests/new_module_tests as (name, float64 module,
    float64 input).
A part the installed torch lacks is saved as {"missing": reason}, so the tests skip it with that reason.
"""
from __future__ import annotations

import sys

import torch

DTYPES = (torch.float32, torch.float16)


def _record(sample) -> dict:
    return {"input": sample.input, "args": tuple(sample.args), "kwargs": dict(sample.kwargs), "desc": repr(sample)}


def opinfo_material() -> dict:
    try:
        from torch.testing._internal.common_methods_invocations import op_db
    except Exception as error:  # noqa: BLE001 - any import failure: the material is missing on this torch
        return {"missing": f"torch.testing._internal.common_methods_invocations: {type(error).__name__}: {error}"}
    ops = [op for op in op_db if op.name == "nn.functional.conv2d"]
    if not ops:
        return {"missing": "this torch's op_db has no nn.functional.conv2d entry"}
    material: dict = {"samples": {}, "errors": []}
    for op in ops:
        for dtype in DTYPES:
            samples = op.sample_inputs("cpu", dtype, requires_grad=True)
            material["samples"].setdefault(str(dtype), []).extend(_record(s) for s in samples)
        if op.error_inputs_func is not None:
            for error in op.error_inputs("cpu"):
                material["errors"].append({**_record(error.sample_input), "regex": error.error_regex,
                                           "torch_error": error.error_type.__name__})
    return material


def common_nn_material() -> dict:
    try:
        from torch.testing._internal import common_nn
    except Exception as error:  # noqa: BLE001
        return {"missing": f"torch.testing._internal.common_nn: {type(error).__name__}: {error}"}
    entries = list(getattr(common_nn, "module_tests", []))
    if hasattr(common_nn, "get_new_module_tests"):
        entries += common_nn.get_new_module_tests()
    else:
        entries += list(getattr(common_nn, "new_module_tests", []))
    cases = []
    for entry in entries:
        name = entry.get("fullname") or entry.get("module_name", "") + (f"_{entry['desc']}" if "desc" in entry else "")
        if entry.get("module_name") != "Conv2d" and not name.startswith("Conv2d"):
            continue
        with torch.random.fork_rng():
            torch.manual_seed(len(cases))
            previous = torch.get_default_dtype()
            torch.set_default_dtype(torch.float64)
            try:
                if "constructor" in entry:
                    module = entry["constructor"]()
                else:
                    module = torch.nn.Conv2d(*entry.get("constructor_args", ()))
                if "input_fn" in entry:
                    input = entry["input_fn"]()
                else:
                    input = torch.randn(entry["input_size"])
            finally:
                torch.set_default_dtype(previous)
        cases.append({"name": name, "module": module.double(), "input": input.double()})
    if not cases:
        return {"missing": "this torch's common_nn has no Conv2d module tests"}
    return {"cases": cases}


if __name__ == "__main__":
    torch.save({"torch": torch.__version__, "opinfo": opinfo_material(), "common_nn": common_nn_material()},
               sys.argv[1])
