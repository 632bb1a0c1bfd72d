"""tritonconv.enums, the one home of the shared vocabulary: every Activation is computed by the kernels (Triton
interpreter vs float64 torch), by the cuDNN path and the modules' PyTorch fallback, has a backward rule matching
torch autograd, and is recognised by convert(); every Precision's dtypes, tolerance, codes and the kernels'
dispatch on them agree. Adding a member to an enum puts it through all of these."""
from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tritonconv
from tritonconv import enums
from tritonconv.enums import DTYPE_CHOICES, Activation, DType, LoopOrder, Precision, SmallGroupMode
from tritonconv.errors import InvalidInputError, TritonConvError
from tritonconv.kernels.common import epilogue
from tritonconv.kernels.base import interpreter_dot_reason

from .helpers import random_conv_inputs, rel_error, run_poisoned

ACTIVATION_IDS = [a.value for a in Activation]
# The precisions of float inputs (int8 is tritonconv.quantized's, with its own kernels and tests).
FLOAT_PRECISIONS = [p for p in Precision if any(not DType(d).quantized for d in p.dtypes)]
# Small kernels of the three families that use the shared epilogue in different ways.
FAMILY_CASES = {
    "implicit_gemm": ((1, 3, 5, 5, 4, 3, 3, 3), dict(padding=1),
                      {"family": "implicit_gemm", "BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "num_warps": 2,
                       "num_stages": 1}),
    "gemm": ((2, 5, 3, 3, 6, 5, 1, 1), {}, {"family": "gemm"}),
    "depthwise": ((1, 4, 5, 5, 4, 1, 3, 3), dict(padding=1, groups=4), {"family": "depthwise"}),
}


def _scaled_inputs(shape, seed=0, scale=8.0):
    """Random inputs scaled so the outputs cross every activation's kinks (0 and relu6's 6)."""
    n, c, h, w, k, cpg, r, s = shape
    x, wt, b = random_conv_inputs(n, c, h, w, k, cpg, r, s, seed=seed)
    return x * scale, wt, b


def _reference(activation, x, wt, b, residual=None, **kwargs):
    z = F.conv2d(x.double(), wt.double(), b.double(), **kwargs)
    if residual is not None:
        z = z + residual.double()
    return activation.apply(z), z


def test_apply_is_the_named_torch_function():
    t = torch.linspace(-8, 8, 33, dtype=torch.float64)
    assert torch.equal(Activation.NONE.apply(t), t)
    for activation in list(Activation)[1:]:
        assert torch.equal(activation.apply(t), getattr(F, activation.value)(t)), activation


@pytest.mark.parametrize("family", list(FAMILY_CASES))
@pytest.mark.parametrize("activation", list(Activation), ids=ACTIVATION_IDS)
def test_kernels_compute_every_activation(activation, family):
    shape, kwargs, config = FAMILY_CASES[family]
    x, wt, b = _scaled_inputs(shape)
    ref, z = _reference(activation, x, wt, b, **kwargs)
    if activation is not Activation.NONE:
        assert not torch.allclose(ref, z), "the inputs must exercise the activation"
    if activation is Activation.RELU6:
        assert (z > 6).any() and (z < 0).any()
    out = run_poisoned(x, wt, b, activation=activation.value, precision="ieee", config=config, **kwargs)
    assert rel_error(out, ref) <= Precision.IEEE.tolerance, (family, activation)


@pytest.mark.parametrize("activation", list(Activation), ids=ACTIVATION_IDS)
def test_cudnn_path_and_module_fallback_compute_every_activation(activation):
    x, wt, b = _scaled_inputs((1, 3, 5, 5, 4, 3, 3, 3), seed=1)
    residual = torch.randn(1, 4, 5, 5)
    ref, _ = _reference(activation, x, wt, b, residual, padding=1)
    out = tritonconv.conv2d(x, wt, b, padding=1, activation=activation.value, residual=residual, backend="cudnn")
    assert rel_error(out, ref) <= Precision.IEEE.tolerance
    # nn.Conv2d with a residual it cannot fuse (broadcast over the batch): activation applied in PyTorch.
    conv = tritonconv.nn.Conv2d(3, 4, 3, padding=1, activation=activation.value)
    with torch.no_grad():
        conv.weight.copy_(wt)
        conv.bias.copy_(b)
    conv.precision = "ieee"
    x2 = torch.cat([x, x * 0.5])
    ref2, _ = _reference(activation, x2, wt, b, residual, padding=1)
    assert rel_error(conv(x2, residual).detach(), ref2) <= Precision.IEEE.tolerance


@pytest.mark.parametrize("activation", list(Activation), ids=ACTIVATION_IDS)
def test_every_activation_has_a_backward_matching_torch_autograd(activation):
    x, wt, b = _scaled_inputs((1, 2, 4, 4, 3, 2, 3, 3), seed=2, scale=4.0)
    residual = torch.randn(1, 3, 4, 4)
    leaves = [t.clone().requires_grad_() for t in (x, wt, b, residual)]
    out = tritonconv.conv2d(*leaves[:3], padding=1, activation=activation.value, residual=leaves[3], precision="ieee")
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
    grads = torch.autograd.grad(out, leaves, grad_out)

    ref_leaves = [t.double().requires_grad_() for t in (x, wt, b, residual)]
    ref = activation.apply(F.conv2d(*ref_leaves[:3], padding=1) + ref_leaves[3])
    ref_grads = torch.autograd.grad(ref, ref_leaves, grad_out.double())
    for name, grad, ref_grad in zip(("input", "weight", "bias", "residual"), grads, ref_grads):
        assert rel_error(grad, ref_grad) <= 1e-4, (activation, name)
    # The rule itself, against autograd of the torch function, from what it says it needs (y or z).
    z = torch.randn(64, dtype=torch.float64) * 4
    g = torch.randn(64, dtype=torch.float64)
    zr = z.clone().requires_grad_()
    (expected,) = torch.autograd.grad(activation.apply(zr), zr, g) if activation is not Activation.NONE else (g,)
    saved = activation.apply(z) if activation.grad_from == "output" else z
    assert torch.allclose(activation.grad(g, saved), expected)


class _Functional(nn.Module):
    def __init__(self, function):
        super().__init__()
        self.conv, self.function = nn.Conv2d(3, 4, 3, padding=1), function

    def forward(self, x):
        return self.function(self.conv(x))


class _Method(nn.Module):
    def __init__(self, method):
        super().__init__()
        self.conv, self.method = nn.Conv2d(3, 4, 3, padding=1), method

    def forward(self, x):
        return getattr(self.conv(x), self.method)()


def _fusions(model):
    return tritonconv.convert(model).tritonconv_report.fused_activations


@pytest.mark.parametrize("activation", list(Activation)[1:], ids=ACTIVATION_IDS[1:])
def test_convert_recognises_every_activation(activation):
    assert activation.module_types and activation.torch_functions
    for module_type in activation.module_types:
        assert _fusions(nn.Sequential(nn.Conv2d(3, 4, 3), module_type())) == {"0": activation.value}  # Sequential
        traced = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3), module_type()))
        model = tritonconv.convert(traced)
        assert model.tritonconv_report.fused_activations == {"0.0": activation.value}
        x = torch.randn(1, 3, 6, 6)
        assert rel_error(model(x), traced(x)) <= Precision.TF32.tolerance
    for function in activation.torch_functions:
        assert _fusions(_Functional(function)) == {"conv": activation.value}, function
    for method in activation.methods:
        assert _fusions(_Method(method)) == {"conv": activation.value}, method
    for name in activation.exact_kwargs:  # another form of the function is not fused
        other = "tanh" if name == "approximate" else None
        assert other is not None, f"add the non-exact value of {name} here"
        assert _fusions(nn.Sequential(nn.Conv2d(3, 4, 3), activation.module_types[0](**{name: other}))) == {}


def test_activation_names_and_errors():
    assert Activation.parse(None) is Activation.NONE and Activation.parse("silu") is Activation.SILU
    with pytest.raises(InvalidInputError, match="activation must be one of none, relu"):
        Activation.parse("tanh")
    with pytest.raises(InvalidInputError, match="activation must be one of"):
        tritonconv.conv2d(torch.randn(1, 1, 3, 3), torch.randn(1, 1, 1, 1), activation="tanh")


def test_kernel_constexprs_cover_every_code():
    """Each Activation/Precision code has its named constexpr, and the kernels' dispatch refers to each."""
    activation_source = inspect.getsource(epilogue.apply_activation.fn)
    for activation in list(Activation)[1:]:
        name = f"ACTIVATION_{activation.name}"
        assert getattr(epilogue, name).value == activation.code and name in activation_source
    dot_source = inspect.getsource(epilogue.dot_with_precision.fn)
    for precision in FLOAT_PRECISIONS:
        name = f"PRECISION_{precision.name}"
        assert getattr(epilogue, name).value == precision.code and name in dot_source
    for mode in (LoopOrder, SmallGroupMode):
        assert sorted(m.code for m in mode) == list(range(len(mode)))


def test_precision_table_is_consistent():
    codes = [p.code for p in Precision]
    assert len(set(codes)) == len(codes) == len(Precision)
    assert len({a.code for a in Activation}) == len(Activation) and Activation.NONE.code == 0
    for precision in Precision:
        assert precision.dtypes and set(precision.dtypes) <= set(DType.names()), precision
        assert 0 < precision.tolerance < 0.1, precision
        if precision.operand_dtype and not precision.scaled:  # casting down: the operand dtype itself may use it
            assert precision.operand_dtype in precision.dtypes
        if precision.operand_dtype:
            assert precision.tolerance >= Precision.FP16.tolerance
        if precision.scaled:  # quantized operands: tensor cores that only some GPUs have; compete only when admitted
            assert precision.operand_dtype and precision.min_capability > (0, 0)
            assert 0 < precision.auto_min_tolerance < precision.tolerance
        else:
            assert precision.auto_min_tolerance == 0
        assert not (precision.tf32_mma and precision.operand_dtype)
    for dtype in DType.names():
        allowed = Precision.for_dtype(dtype)
        assert allowed and enums.default_precision(dtype) in allowed
        assert enums.default_matmul_precision(dtype) in allowed
    assert Precision.for_dtype("float64") == ()
    assert Precision.TF32.cudnn_tf32 and not Precision.IEEE.cudnn_tf32 and not Precision.TF32X3.cudnn_tf32


@pytest.mark.parametrize("precision", FLOAT_PRECISIONS, ids=[p.value for p in FLOAT_PRECISIONS])
def test_kernels_dispatch_every_precision(precision):
    """A float32 conv in each precision: within its tolerance of float64, and not exact where it rounds
    (so the code reached the right dot); the interpreter's refusals are tritonconv errors."""
    shape, kwargs, config = FAMILY_CASES["implicit_gemm"]
    x, wt, b = _scaled_inputs(shape, seed=4, scale=1.0)
    ref, _ = _reference(Activation.NONE, x, wt, b, **kwargs)
    problem = tritonconv.functional.make_problem(x, wt, b, precision=precision.value, **kwargs)
    if interpreter_dot_reason(problem):
        with pytest.raises(TritonConvError):
            run_poisoned(x, wt, b, precision=precision.value, config=config, **kwargs)
        return
    err = rel_error(run_poisoned(x, wt, b, precision=precision.value, config=config, **kwargs), ref)
    assert err <= precision.tolerance
    if precision.operand_dtype:
        assert err > 1e-6, "operands were not rounded to the precision's dtype"


def test_dtypes():
    assert DTYPE_CHOICES == ("float16", "fp16", "bfloat16", "bf16", "float32", "fp32")
    assert enums.canonical_dtype("bf16") == "bfloat16" and DType.parse("float32") is DType.FLOAT32
    for dtype in DType:
        assert dtype.torch.itemsize == dtype.itemsize and DType.from_torch(dtype.torch) is dtype
    assert DType.from_torch(torch.float64) is None
    with pytest.raises(InvalidInputError, match="unknown dtype 'float64'; choose from float16, fp16"):
        DType.parse("float64")
    # int8 only where asked for (the commands that also drive the quantized family)
    assert enums.ALL_DTYPE_CHOICES == DTYPE_CHOICES + ("int8",)
    assert enums.canonical_dtype("int8", quantized=True) == "int8" and enums.canonical_dtype("fp16", quantized=True) == "float16"
    with pytest.raises(InvalidInputError, match="unknown dtype 'int8'; choose from float16, fp16, .*, fp32$"):
        DType.parse("int8")
    with pytest.raises(InvalidInputError, match="unknown dtype 'int4'; choose from .*, fp32, int8$"):
        DType.parse("int4", quantized=True)


def test_enums_is_a_leaf_that_imports_no_torch():
    code = ("import sys, tritonconv.enums as e; e.DTYPE_CHOICES, e.PRECISION_CHOICES, e.Activation.names(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'triton') "
            "or (m.startswith('tritonconv.') and m not in ('tritonconv.enums', 'tritonconv.errors'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_table_row_fills_every_annotated_field_in_order():
    class Unit(enums._Table):
        symbol: str
        scale: float

        METRE = ("metre", "m", 1.0)

    assert Unit("metre") is Unit.METRE and (Unit.METRE.symbol, Unit.METRE.scale) == ("m", 1.0) and Unit.names() == ("metre",)
    with pytest.raises(TypeError, match=r"Short.A: 1 entries for the fields \['symbol', 'scale'\]"):
        class Short(enums._Table):
            symbol: str
            scale: float

            A = ("a", "x")
