"""`ConvProblem`: everything about a convolution that a kernel config depends on, with a stable key.

The problem is the unit the search tunes and the cache stores. It holds shapes and hyper-parameters, the input
dtype, the input's memory layout and the arithmetic precision; not the data, and not the fused epilogue (bias,
activation, residual), which never changes which tile shape wins.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import torch

from .enums import DType, Precision, default_precision

Layout = Literal["nchw", "nhwc"]
INT32_MAX = 2**31 - 1


def conv_output_size(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int) -> int:
    return (size + pad_begin + pad_end - dilation * (kernel - 1) - 1) // stride + 1


def _end_padding(size: int, kernel: int, stride: int, begin: int, dilation: int, out: int) -> int:
    if conv_output_size(size, kernel, stride, begin, begin, dilation) == out:
        return begin
    return (out - 1) * stride + dilation * (kernel - 1) + 1 - size - begin  # the smallest that yields `out`


@dataclass(frozen=True)
class ConvProblem:
    """A 2-D convolution y[n, k, p, q] = sum_{c, r, s} x[n, g*C/G + c, p*sh - ph + r*dh, q*sw - pw + s*dw] * w[k, c, r, s].

    `pad_h`/`pad_w` are the top/left paddings; the bottom/right ones only shape `p`/`q` (padding="same" with an
    even filter pads one more at the end, like PyTorch).
    """

    n: int
    c: int
    h: int
    w: int
    k: int
    r: int
    s: int
    stride_h: int = 1
    stride_w: int = 1
    pad_h: int = 0
    pad_w: int = 0
    dilation_h: int = 1
    dilation_w: int = 1
    groups: int = 1
    p: int = 0  # output height; 0 means "derive from symmetric padding"
    q: int = 0  # output width
    dtype: str = "float16"
    layout: Layout = "nhwc"
    precision: str = ""  # "" means the dtype's default
    batched_weight: bool = False  # one weight per image n (batched matmul B); only the "gemm" family handles it
    # Which weight axis is contiguous: "kc" (C, i.e. the reduction: conv weights, matmul B = W.t()) or "ck" (K:
    # a row-major matmul B [k, n]). Kernels read either through strides, but run (and are tuned) differently.
    weight_layout: str = "kc"
    # The output's memory format: F.conv2d's rule (channels_last when the input or the weight is), so it differs
    # from `layout` for e.g. a channels_last weight with an NCHW input. "" means the input's layout.
    output_layout: str = ""

    def __post_init__(self) -> None:
        if not self.p:
            object.__setattr__(
                self, "p", conv_output_size(self.h, self.r, self.stride_h, self.pad_h, self.pad_h, self.dilation_h)
            )
        if not self.q:
            object.__setattr__(
                self, "q", conv_output_size(self.w, self.s, self.stride_w, self.pad_w, self.pad_w, self.dilation_w)
            )
        if not self.precision:
            object.__setattr__(self, "precision", default_precision(self.dtype))
        if not self.output_layout:
            object.__setattr__(self, "output_layout", self.layout)

    # ---- derived sizes -------------------------------------------------------------------------------------
    @property
    def c_per_group(self) -> int:
        return self.c // self.groups

    @property
    def k_per_group(self) -> int:
        return self.k // self.groups

    @property
    def is_depthwise(self) -> bool:
        """groups == C (channel multiplier K/C may be > 1)."""
        return self.groups == self.c and self.groups > 1

    @property
    def gemm_m(self) -> int:
        return self.n * self.p * self.q

    @property
    def gemm_n(self) -> int:
        return self.k_per_group

    @property
    def gemm_k(self) -> int:
        return self.c_per_group * self.r * self.s

    @property
    def input_numel(self) -> int:
        return self.n * self.c * self.h * self.w

    @property
    def weight_numel(self) -> int:
        return self.k * self.c_per_group * self.r * self.s

    @property
    def output_numel(self) -> int:
        return self.n * self.k * self.p * self.q

    @property
    def needs_int64(self) -> bool:
        """True when some tensor has 2^31 or more elements, so 32-bit offsets could overflow."""
        return max(self.input_numel, self.weight_numel, self.output_numel) > INT32_MAX

    @property
    def element_bytes(self) -> int:
        return DType(self.dtype).itemsize

    @property
    def torch_dtype(self) -> torch.dtype:
        return DType(self.dtype).torch

    @property
    def pad_bottom(self) -> int:
        """Bottom padding: pad_h unless the output needs a different end padding ("same" with an even filter)."""
        return _end_padding(self.h, self.r, self.stride_h, self.pad_h, self.dilation_h, self.p)

    @property
    def pad_right(self) -> int:
        return _end_padding(self.w, self.s, self.stride_w, self.pad_w, self.dilation_w, self.q)

    @property
    def is_quantized(self) -> bool:
        """Integer operands (int8): computed by the quantized families only, with a scaled epilogue."""
        return DType(self.dtype).quantized

    @property
    def output_dtype(self) -> torch.dtype:
        """The dtype of an output buffer the dispatcher allocates: the input's for floats; float32 (the
        dequantised int32 sums) for quantized inputs (tritonconv.quantized allocates int8 for a requantised one)."""
        return torch.float32 if self.is_quantized else self.torch_dtype

    @property
    def operand_dtype(self) -> torch.dtype:
        """The dtype the matrix units multiply in (fp16/bf16 precisions cast float32 operands down)."""
        operand = Precision(self.precision).operand_dtype if self.precision in Precision.names() else ""
        return getattr(torch, operand) if operand else self.torch_dtype

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.k, self.p, self.q)

    @property
    def flops(self) -> int:
        """2 * multiply-adds (padding positions counted, as everyone counts them)."""
        return 2 * self.gemm_m * self.k * self.gemm_k

    @property
    def min_bytes(self) -> int:
        """The fewest bytes a kernel must move: input and weight read once, output written once."""
        return (self.input_numel + self.weight_numel + self.output_numel) * self.element_bytes

    # ---- identity --------------------------------------------------------------------------------------------
    @property
    def key(self) -> str:
        """Stable, human-readable key: identical for equal problems across processes and versions."""
        return (
            f"n{self.n}_c{self.c}_h{self.h}_w{self.w}_k{self.k}_r{self.r}_s{self.s}"
            f"_st{self.stride_h}x{self.stride_w}_pad{self.pad_h}x{self.pad_w}_out{self.p}x{self.q}"
            f"_dil{self.dilation_h}x{self.dilation_w}_g{self.groups}_{self.dtype}_{self.layout}_{self.precision}"
            + ("_bw" if self.batched_weight else "")
            + ("_wck" if self.weight_layout == "ck" else "")
            + (f"_y{self.output_layout}" if self.output_layout != self.layout else "")
        )

    @property
    def label(self) -> str:
        """Short name for tables and charts, e.g. "c64→k128 3×3 s2" (stride, dilation, groups only when not 1).
        Not unique: `long_label` adds the batch, input size, dtype and layout."""
        text = f"c{self.c}→k{self.k} {self.r}×{self.s}"
        if (self.stride_h, self.stride_w) != (1, 1):
            text += f" s{self.stride_h}" if self.stride_h == self.stride_w else f" s{self.stride_h}×{self.stride_w}"
        if (self.dilation_h, self.dilation_w) != (1, 1):
            text += f" d{self.dilation_h}" if self.dilation_h == self.dilation_w else f" d{self.dilation_h}×{self.dilation_w}"
        if self.groups != 1:
            text += " dw" if self.is_depthwise else f" g{self.groups}"
        return text

    @property
    def long_label(self) -> str:
        """`label` with the batch, input size, dtype, layout and precision: "n8 c64→k128 3×3 s2 56×56 fp16 nhwc"."""
        dtype = DType(self.dtype).short if self.dtype in DType.names() else self.dtype
        precision = f" {self.precision}" if self.precision and self.precision != dtype else ""
        return f"n{self.n} {self.label} {self.h}×{self.w} {dtype}{precision} {self.layout}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ConvProblem":
        return cls(**data)

    def with_(self, **changes: Any) -> "ConvProblem":
        return replace(self, **changes)

    def make_tensors(
        self, device: str | torch.device = "cuda", *, seed: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random (never zero) input and weight for this problem, in its dtype and layouts (a batched weight is
        [N, K, C, R, S]; a "ck" weight has K as its contiguous axis)."""
        gen = torch.Generator().manual_seed(seed)
        batch = (self.n,) if self.batched_weight else ()
        if self.is_quantized:  # quantized values over the whole int8 range
            x = torch.randint(-128, 128, (self.n, self.c, self.h, self.w), generator=gen, dtype=torch.int8)
            wt = torch.randint(-128, 128, (*batch, self.k, self.c_per_group, self.r, self.s), generator=gen, dtype=torch.int8)
        else:
            x = torch.randn(self.n, self.c, self.h, self.w, generator=gen).to(self.torch_dtype)
            wt = torch.randn(*batch, self.k, self.c_per_group, self.r, self.s, generator=gen)
            wt = (wt / (self.gemm_k**0.5)).to(self.torch_dtype)
        if self.layout == "nhwc":
            x = x.contiguous(memory_format=torch.channels_last)
        if self.weight_layout == "ck":
            wt = wt.transpose(-4, -3).contiguous().transpose(-4, -3)
        return x.to(device), wt.to(device)
