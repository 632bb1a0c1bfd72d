"""Operand precision and the fused epilogue shared by every kernel: y = activation(acc + bias + residual)."""
import triton
import triton.language as tl

from ...enums import Activation, Precision

# The ACTIVATION and PRECISION constexprs the kernels compare against (codes from tritonconv.enums).
ACTIVATION_RELU: tl.constexpr = tl.constexpr(Activation.RELU.code)
ACTIVATION_RELU6: tl.constexpr = tl.constexpr(Activation.RELU6.code)
ACTIVATION_SILU: tl.constexpr = tl.constexpr(Activation.SILU.code)
ACTIVATION_GELU: tl.constexpr = tl.constexpr(Activation.GELU.code)
PRECISION_IEEE: tl.constexpr = tl.constexpr(Precision.IEEE.code)
PRECISION_TF32: tl.constexpr = tl.constexpr(Precision.TF32.code)
PRECISION_TF32X3: tl.constexpr = tl.constexpr(Precision.TF32X3.code)
PRECISION_FP16: tl.constexpr = tl.constexpr(Precision.FP16.code)
PRECISION_BF16: tl.constexpr = tl.constexpr(Precision.BF16.code)
PRECISION_FP8: tl.constexpr = tl.constexpr(Precision.FP8.code)


@triton.jit
def apply_activation(x, ACTIVATION: tl.constexpr):
    """Elementwise activation of a float32 tile (gelu is the exact erf form, like F.gelu's default)."""
    if ACTIVATION == ACTIVATION_RELU:
        x = tl.maximum(x, 0.0)
    elif ACTIVATION == ACTIVATION_RELU6:
        x = tl.minimum(tl.maximum(x, 0.0), 6.0)
    elif ACTIVATION == ACTIVATION_SILU:
        x = x / (1.0 + tl.exp(-x))
    elif ACTIVATION == ACTIVATION_GELU:
        x = 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))
    return x


@triton.jit
def dot_with_precision(a, b, acc, PRECISION: tl.constexpr):
    """acc += a @ b with the operand precision chosen by PRECISION (a Precision code); fp32 accumulation."""
    if PRECISION == PRECISION_FP16:
        acc = tl.dot(a.to(tl.float16), b.to(tl.float16), acc, out_dtype=tl.float32)
    elif PRECISION == PRECISION_BF16:
        acc = tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16), acc, out_dtype=tl.float32)
    elif PRECISION == PRECISION_IEEE:
        acc = tl.dot(a, b, acc, input_precision="ieee", out_dtype=tl.float32)
    elif PRECISION == PRECISION_TF32:
        acc = tl.dot(a, b, acc, input_precision="tf32", out_dtype=tl.float32)
    elif PRECISION == PRECISION_TF32X3:
        acc = tl.dot(a, b, acc, input_precision="tf32x3", out_dtype=tl.float32)
    elif PRECISION == PRECISION_FP8:
        # Scaled e4m3 operands, quantized by the launcher (kernels.base.scaled_operands): a float tile here would
        # be unscaled (and the interpreter's own float -> fp8 cast drops the carry of values that round up to
        # the next power of two), so anything but fp8 operands is refused at compile time.
        tl.static_assert(a.dtype == tl.float8e4nv and b.dtype == tl.float8e4nv, "fp8 needs quantized operands")
        acc = tl.dot(a, b, acc, out_dtype=tl.float32)
    else:
        tl.static_assert(False, "unknown PRECISION code")
    return acc


@triton.jit
def dequantize(acc, scale_ptr, PRECISION: tl.constexpr):
    """The accumulator in real units: times x_scale * w_scale (one float32 at scale_ptr) for scaled operands
    (fp8), unchanged otherwise. Before bias, residual and activation."""
    if PRECISION == PRECISION_FP8:
        acc = acc * tl.load(scale_ptr)
    return acc


@triton.jit
def as_operand(x, PRECISION: tl.constexpr):
    """x rounded to the operand precision (fp16/bf16 precisions round float32 inputs), as float32 for FMA.

    "ieee", "tf32" and "tf32x3" all mean exact float32 products here: there are no tensor cores to feed.
    """
    if PRECISION == PRECISION_FP16:
        x = x.to(tl.float16)
    elif PRECISION == PRECISION_BF16:
        x = x.to(tl.bfloat16)
    return x.to(tl.float32)


@triton.jit
def pixel_offsets(n_idx, p_idx, q_idx, s_n, s_p, s_q):
    """Offset of output pixel (n, p, q) through a tensor's (n, p, q) strides."""
    return n_idx * s_n + p_idx * s_p + q_idx * s_q


@triton.jit
def fused_epilogue(
    acc, bias_ptr, bias_off, bias_mask, res_ptr, res_off, mask,
    HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, ACTIVATION: tl.constexpr,
):
    """act(acc + bias[bias_off] + residual[res_off]), the residual read where `mask`. `res_off` and `mask` have
    the tile's shape; `bias_off` (the output channels) and `bias_mask` broadcast against it (a 1-D channel vector
    is loaded once and broadcast over the rows). Unused offsets (no residual) are never computed by the compiled
    kernel."""
    if HAS_BIAS:
        acc += tl.load(bias_ptr + bias_off, mask=bias_mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        acc += tl.load(res_ptr + res_off, mask=mask, other=0.0).to(tl.float32)
    return apply_activation(acc, ACTIVATION)


@triton.jit
def write_tile(y_ptr, y_off, y, mask):
    """The one store of every output tile: y[y_off] = y where `mask`, in the output's dtype."""
    tl.store(y_ptr + y_off, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def store_output(
    acc, y_ptr, y_off, mask, bias_ptr, bias_off, bias_mask, res_ptr, res_off,
    HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, ACTIVATION: tl.constexpr,
):
    """y[y_off] = act(acc + bias[bias_off] + residual[res_off]) where `mask` (`fused_epilogue`, `write_tile`)."""
    y = fused_epilogue(acc, bias_ptr, bias_off, bias_mask, res_ptr, res_off, mask, HAS_BIAS, HAS_RESIDUAL, ACTIVATION)
    write_tile(y_ptr, y_off, y, mask)


@triton.jit
def store_rows(
    acc, rows_y, rows_res, offs_k, mask_m, mask_k, y_ptr, bias_ptr, res_ptr, syk, srk,
    HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, ACTIVATION: tl.constexpr,
):
    """`store_output` of a [rows, output channels] tile: row i of the output (of the residual) starts at
    `rows_y[i]` (`rows_res[i]`), channel k lies `k * syk` (`k * srk`) further."""
    store_output(
        acc, y_ptr, rows_y[:, None] + offs_k[None, :] * syk, mask_m[:, None] & mask_k[None, :],
        bias_ptr, offs_k, mask_k, res_ptr, rows_res[:, None] + offs_k[None, :] * srk,
        HAS_BIAS, HAS_RESIDUAL, ACTIVATION,
    )


@triton.jit
def store_pixels(
    acc, n_idx, p_idx, q_idx, offs_k, mask_m, mask_k, y_ptr, bias_ptr, res_ptr,
    syn, syk, syp, syq, srn, srk, srp, srq,
    HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, ACTIVATION: tl.constexpr,
):
    """`store_rows` of a tile of output pixels (n, p, q) x output channels `offs_k`, with the output offsets
    computed after the bias and residual are added, not before (as `store_rows`' arguments are). Where the last
    MMA sits right before the epilogue (a reduction of one unrolled step, e.g. a 3x3 conv with 1 channel per
    group), offsets computed first stay live across it: implicit_gemm's channel-outer 3x3 depthwise tiles took
    up to 14 more registers on sm_90 and, with 64-bit offsets, 4 more on sm_80 (tritonconv.compile; the counts
    are held by tests/kernels/common/test_epilogue_registers.py)."""
    mask = mask_m[:, None] & mask_k[None, :]
    y = fused_epilogue(
        acc, bias_ptr, offs_k, mask_k, res_ptr, pixel_offsets(n_idx, p_idx, q_idx, srn, srp, srq)[:, None] + offs_k[None, :] * srk,
        mask, HAS_BIAS, HAS_RESIDUAL, ACTIVATION,
    )
    write_tile(y_ptr, pixel_offsets(n_idx, p_idx, q_idx, syn, syp, syq)[:, None] + offs_k[None, :] * syk, y, mask)
