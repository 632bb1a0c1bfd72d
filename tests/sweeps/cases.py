"""Random conv and matmul problems for differential sweeps: a `ConvCase`/`MatmulCase` is plain data (JSON-able),
drawn per kernel family from the range that family's `supports()` claims, and turned into real tensors,
including non-contiguous views (sliced, transposed, expanded) of input, weight, bias and residual.

Everything is seeded: `draw_conv_case(family, random.Random(seed))` always gives the same case, on any device.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any, Union

import torch

from tritonconv.enums import Activation, DType, Precision
from tritonconv.kernels import get_family

ACTIVATIONS = Activation.names()
INPUT_VIEWS = ("contiguous", "channels_last", "channel_slice", "spatial_slice", "transposed", "batch_expand", "channels_last_slice")
WEIGHT_VIEWS = ("contiguous", "channels_last", "k_slice", "transposed", "k_expand")
BIAS_VIEWS = (None, "contiguous", "slice", "expand", "column")
RESIDUAL_VIEWS = (None, "contiguous", "channels_last", "slice", "batch_expand")
# Operand precisions of float32 inputs. bf16 tl.dot is computed wrongly by the Triton interpreter, where the
# families refuse it (supports()) or keep to FMA paths: bf16 is drawn there too, and supports() decides.
FLOAT32_PRECISIONS = Precision.for_dtype("float32")

Padding = Union[int, tuple[int, int], str]


@dataclass
class ConvCase:
    """One conv2d call: shapes, hyper-parameters, dtype/precision, epilogue and how each tensor is laid out."""

    n: int
    c: int
    h: int
    w: int
    k: int
    r: int
    s: int
    stride: tuple[int, int]
    padding: Padding
    dilation: tuple[int, int]
    groups: int
    dtype: str
    precision: str | None
    activation: str
    input_view: str
    weight_view: str
    bias_view: str | None
    residual_view: str | None
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def conv_args(self) -> dict[str, Any]:
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def output_size(self) -> tuple[int, int]:
        """(P, Q) as F.conv2d computes them ("same" keeps the input size)."""
        if self.padding == "same":
            return self.h, self.w
        pad = (0, 0) if self.padding == "valid" else _pair(self.padding)
        p = (self.h + 2 * pad[0] - self.dilation[0] * (self.r - 1) - 1) // self.stride[0] + 1
        q = (self.w + 2 * pad[1] - self.dilation[1] * (self.s - 1) - 1) // self.stride[1] + 1
        return p, q


@dataclass
class MatmulCase:
    """One matmul call a[*batch, m, k] @ b[(B,) k, n] with optional bias/residual, a and b possibly transposed."""

    batch: tuple[int, ...]
    m: int
    k: int
    n: int
    batched_b: bool
    a_view: str  # contiguous | transposed | slice
    b_view: str  # contiguous | transposed | slice
    bias_view: str | None
    has_residual: bool
    dtype: str
    precision: str | None
    activation: str
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


# ------------------------------------------------------------------------------------------------------------
# Drawing cases per family
# ------------------------------------------------------------------------------------------------------------
def _dtype_and_precision(rng: random.Random, interpreter: bool, precisions: tuple[str, ...], *,
                         bf16: bool = True) -> tuple[str, str | None]:
    dtype = rng.choice(["float32", "float32", "float16"] + (["bfloat16"] if bf16 else []))
    if not bf16:
        precisions = tuple(p for p in precisions if p != "bf16")
    if dtype != "float32":
        return dtype, None
    return dtype, rng.choice(list(precisions) + [None])  # None: the library's default precision


def _geometry(rng: random.Random, *, one_by_one: bool = False, winograd: bool = False) -> dict[str, Any]:
    """Filter, stride, dilation, padding and input size with a positive output (tiny sizes for the interpreter);
    `winograd`: 3x3, stride 1, dilation 1."""
    while True:
        if one_by_one:
            r = s = 1
        elif winograd:
            r = s = 3
        else:
            r, s = rng.choice([(1, 1), (2, 2), (3, 3), (3, 3), (5, 5), (1, 3), (3, 1), (2, 3), (1, 5), (4, 4)])
            if rng.random() < 0.15:  # large filters: 7x7 stems and depthwise, Inception's 1x7, taps past 64
                r, s = rng.choice([(7, 7), (1, 7), (7, 1), (8, 8), (9, 9), (9, 9), (5, 13), (5, 13), (11, 11), (11, 11)])
        stride = (rng.choice([1, 1, 2, 3]), rng.choice([1, 1, 2, 3]))
        if rng.random() < 0.5 or winograd:
            stride = (1, 1) if winograd else (stride[0], stride[0])
        dilation = (1, 1) if one_by_one or winograd or rng.random() < 0.6 else (rng.choice([1, 2]), rng.choice([1, 2, 3]))
        if one_by_one:
            padding: Padding = rng.choice([0, "valid"])
        elif stride == (1, 1) and rng.random() < 0.3:
            padding = "same"
        else:
            choice = rng.random()
            if choice < 0.15:
                padding = "valid"
            elif choice < 0.55:
                padding = rng.randint(0, max(r, s) + 1)  # may exceed the filter
            else:
                padding = (rng.randint(0, r + 1), rng.randint(0, s + 1))
        h, w = rng.randint(1, max(9, r + 2)), rng.randint(1, max(9, s + 2))  # room for a large filter too
        if rng.random() < 0.5:
            w = h
        case = dict(r=r, s=s, stride=stride, dilation=dilation, padding=padding, h=h, w=w)
        probe = ConvCase(1, 1, h, w, 1, r, s, stride, padding, dilation, 1, "float32", None, "none",
                         "contiguous", "contiguous", None, None, 0)
        p, q = probe.output_size()
        if p >= 1 and q >= 1 and p * q <= 64:
            return case


def _channels(rng: random.Random, family: str) -> tuple[int, int, int]:
    """(C, K, groups) in the family's domain: any for implicit_gemm, groups == C for depthwise, groups >= 2 for
    small_group, groups == 1 for gemm and the Hopper family, groups == 1 or >= 8 channels per group for winograd."""
    per_group = [1, 2, 3, 4, 5, 8, 16, 17]
    if family == "depthwise":
        groups = rng.choice([2, 3, 4, 5, 8, 16, 17])
        return groups, groups * rng.choice([1, 1, 2, 3]), groups
    if family == "small_group":
        groups = rng.choice([2, 3, 4, 8])
        return groups * rng.choice(per_group), groups * rng.choice([1, 2, 3, 4, 8, 9]), groups
    if family in ("gemm", "hopper_implicit_gemm"):
        c = rng.choice([1, 2, 3, 5, 8, 16, 17, 24, 32, 40]) if family == "gemm" else rng.choice([8, 16, 24, 32, 40])
        return c, rng.choice([1, 3, 5, 8, 16, 17, 24, 33]), 1
    if family == "winograd" and rng.random() < 0.3:  # grouped: at least 8 channels per group
        groups = rng.choice([2, 3])
        return groups * rng.choice([8, 9, 16]), groups * rng.choice([8, 11, 16]), groups
    groups = 1 if family == "winograd" else rng.choice([1, 1, 1, 2, 3, 4])
    return groups * rng.choice(per_group), groups * rng.choice([1, 2, 3, 5, 8, 16, 17]), groups


def draw_conv_case(family: str, rng: random.Random, *, interpreter: bool) -> ConvCase:
    """A random conv2d call in `family`'s domain (the family's `supports()` still has the last word)."""
    one_by_one = family == "gemm"
    geometry = _geometry(rng, one_by_one=one_by_one, winograd=family == "winograd")
    c, k, groups = _channels(rng, family)
    single_mma = tuple(p for p in FLOAT32_PRECISIONS if Precision(p).single_mma)
    precisions = single_mma if family == "hopper_implicit_gemm" else FLOAT32_PRECISIONS
    precisions = tuple(p for p in precisions if p in get_family(family).precisions)  # fp8: only where computed
    # The Hopper family runs in the interpreter only under an emulated sm_90, where its bf16 tl.dot is wrong.
    dtype, precision = _dtype_and_precision(rng, interpreter, precisions,
                                            bf16=not (interpreter and family == "hopper_implicit_gemm"))
    if family == "hopper_implicit_gemm" and dtype == "float32" and precision is None:
        precision = "tf32"
    return ConvCase(
        n=rng.choice([1, 1, 2, 3]), c=c, k=k, groups=groups, dtype=dtype, precision=precision,
        activation=rng.choice(ACTIVATIONS), input_view=rng.choice(INPUT_VIEWS), weight_view=rng.choice(WEIGHT_VIEWS),
        bias_view=rng.choice(BIAS_VIEWS), residual_view=rng.choice(RESIDUAL_VIEWS), seed=rng.randrange(2**31),
        **geometry,
    )


def draw_matmul_case(rng: random.Random, *, interpreter: bool) -> MatmulCase:
    batched_b = rng.random() < 0.25
    batch = (rng.choice([1, 2, 3]),) if batched_b else rng.choice([(), (), (1,), (2,), (2, 2)])
    dtype, precision = _dtype_and_precision(rng, interpreter, FLOAT32_PRECISIONS)
    return MatmulCase(
        batch=batch, m=rng.choice([1, 2, 5, 16, 17, 33]), k=rng.choice([1, 3, 8, 16, 19, 40]),
        n=rng.choice([1, 2, 7, 16, 24, 33]), batched_b=batched_b,
        a_view=rng.choice(["contiguous", "transposed", "slice"]), b_view=rng.choice(["contiguous", "transposed", "slice"]),
        bias_view=rng.choice(BIAS_VIEWS), has_residual=rng.random() < 0.4, dtype=dtype, precision=precision,
        activation=rng.choice(ACTIVATIONS), seed=rng.randrange(2**31),
    )


# ------------------------------------------------------------------------------------------------------------
# Tensors
# ------------------------------------------------------------------------------------------------------------
@dataclass
class ConvTensorsIn:
    input: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor | None
    residual: torch.Tensor | None


def _view_4d(t: torch.Tensor, view: str, gen: torch.Generator) -> torch.Tensor:
    """`t`'s values (same shape) in the memory arrangement `view` names; every view shares `t`'s values."""
    n, c, h, w = t.shape
    if view == "contiguous":
        return t.contiguous()
    if view == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    if view in ("channel_slice", "k_slice", "slice"):  # every other channel of a twice-as-wide tensor
        big = torch.randn(n, 2 * c, h, w, generator=gen).to(t.dtype)
        big[:, ::2] = t
        return big[:, ::2]
    if view == "channels_last_slice":
        big = torch.randn(n, c + 3, h, w, generator=gen).to(t.dtype).contiguous(memory_format=torch.channels_last)
        big[:, 1:c + 1] = t
        return big[:, 1:c + 1]
    if view == "spatial_slice":  # a window of a larger image
        big = torch.randn(n, c, h + 2, w + 3, generator=gen).to(t.dtype)
        big[:, :, 1:h + 1, 2:w + 2] = t
        return big[:, :, 1:h + 1, 2:w + 2]
    if view == "transposed":  # stored (n, c, w, h), viewed (n, c, h, w)
        return t.transpose(2, 3).contiguous().transpose(2, 3)
    raise ValueError(view)


def make_conv_tensors(case: ConvCase, device: str) -> ConvTensorsIn:
    """Random (never zero) tensors of `case`, in its dtype and views, on `device`."""
    gen = torch.Generator().manual_seed(case.seed)
    dtype = DType(case.dtype).torch
    cpg = case.c // case.groups
    if case.input_view == "batch_expand":  # one image repeated: batch stride 0
        x = torch.randn(1, case.c, case.h, case.w, generator=gen).to(dtype).expand(case.n, -1, -1, -1)
    else:
        x = _view_4d(torch.randn(case.n, case.c, case.h, case.w, generator=gen).to(dtype), case.input_view, gen)
    scale = 1.0 / max(1.0, (cpg * case.r * case.s) ** 0.5)
    if case.weight_view == "k_expand":  # every output channel has the same filter: K stride 0
        wt = (torch.randn(1, cpg, case.r, case.s, generator=gen) * scale).to(dtype).expand(case.k, -1, -1, -1)
    else:
        wt = _view_4d((torch.randn(case.k, cpg, case.r, case.s, generator=gen) * scale).to(dtype), case.weight_view, gen)
    bias = _bias(case.k, case.bias_view, dtype, gen)
    residual = None
    if case.residual_view is not None:
        p, q = case.output_size()
        if case.residual_view == "batch_expand":
            residual = torch.randn(1, case.k, p, q, generator=gen).to(dtype).expand(case.n, -1, -1, -1)
        else:
            residual = _view_4d(torch.randn(case.n, case.k, p, q, generator=gen).to(dtype), case.residual_view, gen)
    return ConvTensorsIn(*(to_device(t, device) for t in (x, wt, bias, residual)))


def _bias(k: int, view: str | None, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor | None:
    if view is None:
        return None
    if view == "contiguous":
        return torch.randn(k, generator=gen).to(dtype)
    if view == "slice":
        return torch.randn(2 * k, generator=gen).to(dtype)[::2]
    if view == "expand":
        return torch.randn(1, generator=gen).to(dtype).expand(k)
    if view == "column":  # a column of a row-major matrix
        return torch.randn(k, 3, generator=gen).to(dtype)[:, 1]
    raise ValueError(view)


def to_device(t: torch.Tensor | None, device: str) -> torch.Tensor | None:
    """`t` on `device` with the same shape, strides and storage offset (overlapping and gapped views included):
    the whole storage is copied and viewed again."""
    if t is None or torch.device(device) == t.device:
        return t
    storage = torch.empty(0, dtype=t.dtype).set_(t.untyped_storage())
    return storage.to(device).as_strided(t.shape, t.stride(), t.storage_offset())


@dataclass
class MatmulTensorsIn:
    a: torch.Tensor
    b: torch.Tensor
    bias: torch.Tensor | None
    residual: torch.Tensor | None


def make_matmul_tensors(case: MatmulCase, device: str) -> MatmulTensorsIn:
    gen = torch.Generator().manual_seed(case.seed)
    dtype = DType(case.dtype).torch

    def matrix(lead: tuple[int, ...], rows: int, cols: int, view: str, scale: float = 1.0) -> torch.Tensor:
        t = (torch.randn(*lead, rows, cols, generator=gen) * scale).to(dtype)
        if view == "transposed":
            return t.transpose(-1, -2).contiguous().transpose(-1, -2)
        if view == "slice":
            big = torch.randn(*lead, rows, 2 * cols, generator=gen).to(dtype)
            big[..., ::2] = t
            return big[..., ::2]
        return t

    a = matrix(case.batch, case.m, case.k, case.a_view)
    b = matrix(case.batch if case.batched_b else (), case.k, case.n, case.b_view, 1.0 / max(1.0, case.k**0.5))
    bias = _bias(case.n, case.bias_view, dtype, gen)
    residual = torch.randn(*case.batch, case.m, case.n, generator=gen).to(dtype) if case.has_residual else None
    return MatmulTensorsIn(*(to_device(t, device) for t in (a, b, bias, residual)))
