"""The shared vocabulary, one home each: activations, operand precisions, input dtypes and the kernels' integer
modes. Every table that used to repeat these (kernel codes, torch functions, backward rules, module maps,
allowed dtypes, tolerances, the cuDNN TF32 rule, dtype aliases) reads them from here.

A leaf module: it imports only the standard library and tritonconv.errors, so the CLI can list the names without
importing torch. Torch objects (functions, module types, dtypes) are resolved when first asked for.

Adding an activation: a member of `Activation` here, plus its branch in the kernels' `apply_activation`
(tritonconv/kernels/common/epilogue.py); tests/test_enums.py walks every member through the kernels, the cuDNN path,
autograd and convert().
"""
from __future__ import annotations

import enum
import functools
import importlib
from typing import Any, Callable, Optional

from .errors import InvalidInputError


def _resolve(dotted: str) -> Any:
    """"torch.nn.functional.relu" -> the object (imports the module part)."""
    module, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(module), attr)


class _Table(enum.Enum):
    """An enum whose members are the rows of a table: a row's first entry is the member's value (its public name,
    `Member("name")`), the others become its attributes, named and typed in order by the subclass's annotations."""

    def __new__(cls, name: str, *row: Any) -> Any:
        member = object.__new__(cls)
        member._value_ = name
        return member

    def __init__(self, name: str, *row: Any) -> None:
        fields = list(type(self).__annotations__)
        if len(row) != len(fields):
            raise TypeError(f"{type(self).__name__}.{self.name}: {len(row)} entries for the fields {fields}")
        for field, value in zip(fields, row):
            setattr(self, field, value)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(member.value for member in cls)


# ---- activations ---------------------------------------------------------------------------------------------
# Backward rules: d activation / d z times `grad`, from the saved output y (relu, relu6) or the recomputed
# pre-activation z (silu, gelu), in differentiable ops so double backward works.
def _relu_grad(grad: Any, y: Any) -> Any:
    return grad * (y > 0)


def _relu6_grad(grad: Any, y: Any) -> Any:
    return grad * ((y > 0) & (y < 6))


def _silu_grad(grad: Any, z: Any) -> Any:
    # silu'(z) = sigmoid(z) * (1 + z * (1 - sigmoid(z))); aten.silu_backward has no derivative of its own.
    sig = z.sigmoid()
    return grad * sig * (1 + z * (1 - sig))


def _gelu_grad(grad: Any, z: Any) -> Any:
    import torch

    return torch.ops.aten.gelu_backward(grad, z, approximate="none")  # differentiable


class Activation(_Table):
    """A fused epilogue activation. The value is the public name (`Activation("relu")`).

    code: the kernels' ACTIVATION constexpr; function_path: the torch function computing it (dotted path);
    module_paths / function_paths / methods: what convert() recognises as this activation in a model (nn.Module
    types and torch functions by dotted path, Tensor methods by name); exact_kwargs: arguments those must leave at these values (GELU's exact
    erf form); grad_from: what the backward rule needs, "output" (saved y) or "preactivation" (z, recomputed);
    grad_rule: (grad, y or z) -> grad w.r.t. z.
    """

    code: int
    function_path: str
    module_paths: tuple[str, ...]
    function_paths: tuple[str, ...]
    methods: tuple[str, ...]
    exact_kwargs: dict[str, Any]
    grad_from: str
    grad_rule: Optional[Callable]

    NONE = ("none", 0, "", (), (), (), {}, "", None)
    RELU = (
        "relu", 1, "torch.nn.functional.relu", ("torch.nn.ReLU",),
        ("torch.nn.functional.relu", "torch.nn.functional.relu_", "torch.relu", "torch.relu_"), ("relu", "relu_"),
        {}, "output", _relu_grad,
    )
    RELU6 = (
        "relu6", 2, "torch.nn.functional.relu6", ("torch.nn.ReLU6",), ("torch.nn.functional.relu6",), (), {},
        "output", _relu6_grad,
    )
    SILU = (
        "silu", 3, "torch.nn.functional.silu", ("torch.nn.SiLU",), ("torch.nn.functional.silu",), (), {},
        "preactivation", _silu_grad,
    )
    GELU = (
        "gelu", 4, "torch.nn.functional.gelu", ("torch.nn.GELU",), ("torch.nn.functional.gelu",), (),
        {"approximate": "none"}, "preactivation", _gelu_grad,
    )

    @classmethod
    def parse(cls, name: Optional[str], *, allow_none: bool = True) -> "Activation":
        """None or a name -> the member; anything else raises InvalidInputError listing the names."""
        if name is None and allow_none:
            return cls.NONE
        try:
            return cls(name)
        except ValueError:
            accepted = ", ".join(cls.names()) + (" or None" if allow_none else "")
            raise InvalidInputError(f"activation must be one of {accepted}, got {name!r}") from None

    def apply(self, y: Any) -> Any:
        """The activation computed by torch (identity for NONE)."""
        return y if self is Activation.NONE else _resolve(self.function_path)(y)

    def grad(self, grad: Any, saved: Any) -> Any:
        """d loss / d z from d loss / d y; `saved` is y or z as `grad_from` says (ignored for NONE)."""
        return grad if self.grad_rule is None else self.grad_rule(grad, saved)

    @property
    def module_types(self) -> tuple[type, ...]:
        return tuple(_resolve(path) for path in self.module_paths)

    @property
    def torch_functions(self) -> tuple[Callable, ...]:
        return tuple(_resolve(path) for path in self.function_paths)

    @classmethod
    def of_module(cls, module: Any) -> Optional["Activation"]:
        """The activation an nn.Module computes, if it is one tritonconv fuses (exact type, exact arguments)."""
        member = _activation_by_module_type().get(type(module))
        if member is None or any(getattr(module, k, v) != v for k, v in member.exact_kwargs.items()):
            return None
        return member

    @classmethod
    def of_function(cls, function: Any, args: tuple = (), kwargs: Optional[dict] = None) -> Optional["Activation"]:
        """The activation a call `function(x, *args[1:], **kwargs)` computes, if fusable."""
        try:
            member = _activation_by_function().get(function)
        except TypeError:  # an unhashable call target
            return None
        if member is None:
            return None
        if member.exact_kwargs and (len(args) > 1 or any(
                (kwargs or {}).get(k, v) != v for k, v in member.exact_kwargs.items())):
            return None
        return member

    @classmethod
    def of_method(cls, method: str) -> Optional["Activation"]:
        return next((member for member in cls if method in member.methods), None)


@functools.lru_cache(maxsize=None)
def _activation_by_module_type() -> dict[type, Activation]:
    return {t: member for member in Activation for t in member.module_types}


@functools.lru_cache(maxsize=None)
def _activation_by_function() -> dict[Callable, Activation]:
    return {f: member for member in Activation for f in member.torch_functions}


# ---- input dtypes --------------------------------------------------------------------------------------------
class DType(_Table):
    """An input dtype tritonconv computes in. The value is torch's name; `short` is the accepted alias; a
    quantized dtype (int8) is computed by tritonconv.quantized with its scales, never by tritonconv.conv2d."""

    short: str
    itemsize: int
    quantized: bool

    FLOAT16 = ("float16", "fp16", 2, False)
    BFLOAT16 = ("bfloat16", "bf16", 2, False)
    FLOAT32 = ("float32", "fp32", 4, False)
    INT8 = ("int8", "int8", 1, True)

    @property
    def torch(self) -> Any:
        """The torch.dtype (imports torch)."""
        import torch

        return getattr(torch, self.value)

    @classmethod
    def floats(cls) -> tuple["DType", ...]:
        """The float dtypes: what tritonconv.conv2d, the commands and the float kernel families compute in."""
        return tuple(member for member in cls if not member.quantized)

    @classmethod
    def parse(cls, name: str, *, quantized: bool = False) -> "DType":
        """"fp16" or "float16" -> FLOAT16 (float dtypes only; `quantized`: int8 too); an unknown name raises
        InvalidInputError listing the accepted ones."""
        for member in cls if quantized else cls.floats():
            if name in (member.value, member.short):
                return member
        accepted = ALL_DTYPE_CHOICES if quantized else DTYPE_CHOICES
        raise InvalidInputError(f"unknown dtype {name!r}; choose from {', '.join(accepted)}")

    @classmethod
    def from_torch(cls, dtype: Any) -> Optional["DType"]:
        """The member for a torch.dtype, None for one tritonconv does not compute in."""
        return next((member for member in cls if str(dtype) == f"torch.{member.value}"), None)


# Every name a command or API accepts for a float dtype: canonical names and their aliases; and with the quantized
# dtypes (the commands that also drive tritonconv.quantized's family: tune, compile).
DTYPE_CHOICES: tuple[str, ...] = tuple(name for member in DType.floats() for name in (member.value, member.short))
ALL_DTYPE_CHOICES: tuple[str, ...] = DTYPE_CHOICES + tuple(member.value for member in DType if member.quantized)


def canonical_dtype(name: str, *, quantized: bool = False) -> str:
    """"fp16" -> "float16", ... (`quantized`: "int8" too); an unknown name raises InvalidInputError listing the
    accepted ones."""
    return DType.parse(name, quantized=quantized).value


# ---- operand precisions --------------------------------------------------------------------------------------
class Precision(_Table):
    """The arithmetic the matrix units multiply in (accumulation is always float32). The value is the public name.

    code: the kernels' PRECISION constexpr; dtypes: the input dtypes that may use it; tolerance: the default
    max relative error vs a float64 reference (what the search accepts); operand_dtype: the dtype operands are
    cast to ("" = the input's own); single_mma: one tensor-core MMA per tile product (tf32x3 takes three,
    ieee none: what the warpgroup-MMA family needs); tf32_mma: its products run on TF32 tensor cores (for the
    peak it is measured against); cudnn_tf32: the cuDNN baseline of a problem in this precision may use TF32;
    scaled: operands are quantized with per-tensor scales (fp8: x / x_scale and w / w_scale cast to e4m3, the
    float32 accumulator multiplied by x_scale * w_scale before the epilogue); min_capability: the GPUs with its
    tensor cores; auto_min_tolerance: the smallest tolerance under which `--precision auto` lets it compete
    (its measured error; 0: always).
    """

    code: int
    dtypes: tuple[str, ...]
    tolerance: float
    operand_dtype: str
    single_mma: bool
    tf32_mma: bool
    cudnn_tf32: bool
    scaled: bool
    min_capability: tuple[int, int]
    auto_min_tolerance: float

    IEEE = ("ieee", 0, ("float32",), 1e-5, "", False, False, False, False, (0, 0), 0.0)
    TF32 = ("tf32", 1, ("float32",), 3e-3, "", True, True, True, False, (0, 0), 0.0)
    TF32X3 = ("tf32x3", 2, ("float32",), 1e-5, "", False, True, False, False, (0, 0), 0.0)
    FP16 = ("fp16", 3, ("float32", "float16"), 1e-2, "float16", True, False, True, False, (0, 0), 0.0)
    BF16 = ("bf16", 4, ("float32", "bfloat16"), 3e-2, "bfloat16", True, False, True, False, (0, 0), 0.0)
    # int8 x int8 products, int32 accumulation (tritonconv.quantized); the search checks unit-scale float32
    # outputs of exact int32 sums (only float32 rounding, < 2^-24 each).
    INT8 = ("int8", 5, ("int8",), 1e-6, "", False, False, False, False, (0, 0), 0.0)
    # e4m3 operands with per-tensor scales (amax / 448), float32 accumulation, sm_89+ (Ada, Hopper). Relative
    # error vs float64 measured 3.3e-2 .. 4.5e-2 (median 3.7e-2) over 40 random convs (bench/fp8_error.py, the
    # scaling emulated in torch; the kernels match that emulation to float32 rounding, tests/kernels/test_base_fp8.py):
    # tolerance 6e-2, and auto tries fp8 only under a tolerance of at least 4e-2.
    FP8 = ("fp8", 6, ("float32", "float16", "bfloat16"), 6e-2, "float8_e4m3fn", True, False, True, True, (8, 9), 4e-2)

    @classmethod
    def for_dtype(cls, dtype: str) -> tuple[str, ...]:
        """The precision names an input of `dtype` may use (empty for an unknown dtype)."""
        return tuple(member.value for member in cls if dtype in member.dtypes)


# What `--precision` accepts on the command line: a precision, or "auto" (let the search choose).
PRECISION_CHOICES: tuple[str, ...] = ("auto",) + Precision.names()


def default_precision(dtype: str) -> str:
    """What F.conv2d does on a GPU: float32 convs use TF32 when cuDNN allows it (PyTorch's default)."""
    if dtype == "float32":
        import torch

        return Precision.TF32.value if torch.backends.cudnn.allow_tf32 else Precision.IEEE.value
    return {"float16": Precision.FP16, "bfloat16": Precision.BF16, "int8": Precision.INT8}[dtype].value


def default_matmul_precision(dtype: str) -> str:
    """torch.matmul's choice: float32 uses TF32 only when torch.backends.cuda.matmul.allow_tf32 is set (off by
    default in PyTorch, unlike cuDNN convs); float16/bfloat16 compute in their own type."""
    if dtype == "float32":
        import torch

        return Precision.TF32.value if torch.backends.cuda.matmul.allow_tf32 else Precision.IEEE.value
    return default_precision(dtype)


# ---- kernel modes (integer constexprs; the config names them by value) ------------------------------------------
class _Mode(enum.Enum):
    """A kernel mode: the config holds the value (its name), the kernel the code (its position in the enum)."""

    @property
    def code(self) -> int:
        return list(type(self)).index(self)


class LoopOrder(_Mode):
    """implicit_gemm's reduction loop: filter position outer and channel inner, or channel outer over the
    flattened (c, r, s) axis."""

    FILTER_OUTER = "filter_outer"
    CHANNEL_OUTER = "channel_outer"


class SmallGroupMode(_Mode):
    """small_group's algorithm: a block-diagonal GEMM over the groups a tile spans, or direct FMA."""

    BLOCK_DIAG = "block_diag"
    DIRECT = "direct"
