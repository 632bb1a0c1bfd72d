"""Fused epilogue shared by the conv and GEMM kernels: y = activation(acc + bias + residual)."""
import triton
import triton.language as tl

# Activation names accepted by the public API and their kernel codes.
ACTIVATIONS: dict[str, int] = {"none": 0, "relu": 1, "relu6": 2, "silu": 3, "gelu": 4}
PRECISION_CODES: dict[str, int] = {"ieee": 0, "tf32": 1, "tf32x3": 2, "fp16": 3, "bf16": 4, "int8": 5}


@triton.jit
def apply_activation(x, ACTIVATION: tl.constexpr):
    """Elementwise activation of a float32 tile (gelu is the exact erf form, like F.gelu's default)."""
    if ACTIVATION == 1:
        x = tl.maximum(x, 0.0)
    elif ACTIVATION == 2:
        x = tl.minimum(tl.maximum(x, 0.0), 6.0)
    elif ACTIVATION == 3:
        x = x / (1.0 + tl.exp(-x))
    elif ACTIVATION == 4:
        x = 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))
    return x


@triton.jit
def dot_with_precision(a, b, acc, PRECISION: tl.constexpr):
    """acc += a @ b with the operand precision chosen by PRECISION (see PRECISION_CODES); fp32 accumulation."""
    if PRECISION == 3:
        acc = tl.dot(a.to(tl.float16), b.to(tl.float16), acc, out_dtype=tl.float32)
    elif PRECISION == 4:
        acc = tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16), acc, out_dtype=tl.float32)
    elif PRECISION == 0:
        acc = tl.dot(a, b, acc, input_precision="ieee", out_dtype=tl.float32)
    elif PRECISION == 1:
        acc = tl.dot(a, b, acc, input_precision="tf32", out_dtype=tl.float32)
    else:
        acc = tl.dot(a, b, acc, input_precision="tf32x3", out_dtype=tl.float32)
    return acc


@triton.jit
def store_conv_tile(
    acc, n_idx, p_idx, q_idx, offs_k, mask_m, mask_k, y_ptr, bias_ptr, res_ptr,
    syn, syk, syp, syq, srn, srk, srp, srq,
    HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, ACTIVATION: tl.constexpr,
):
    """y[n, k, p, q] = act(acc + bias[k] + residual[n, k, p, q]) for a tile of output pixels (rows, given as
    their n/p/q indices) x output channels `offs_k`, through the output's and the residual's strides."""
    out_mask = mask_m[:, None] & mask_k[None, :]
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_k, mask=mask_k, other=0.0).to(tl.float32)[None, :]
    if HAS_RESIDUAL:
        res_off = (n_idx * srn + p_idx * srp + q_idx * srq)[:, None] + offs_k[None, :] * srk
        acc += tl.load(res_ptr + res_off, mask=out_mask, other=0.0).to(tl.float32)
    acc = apply_activation(acc, ACTIVATION)
    y_off = (n_idx * syn + p_idx * syp + q_idx * syq)[:, None] + offs_k[None, :] * syk
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=out_mask)
