"""GEMM kernels, and the "gemm" family that runs 1x1 convolutions (and `tritonconv.matmul`) on them.

A 1x1 conv with no padding IS a GEMM:  Y[M, K] = A[M, C] @ B[C, K]  with one row of A per output pixel
(n, p, q), read from input pixel (n, p*stride_h, q*stride_w), and B[c, k] = weight[k, c, 0, 0]. Nothing is
copied: A, B, the output and the residual are addressed through their strides. How rows map to memory is
decided per launch from the strides (see `_row_plan`):
  * flat:      every row at a fixed stride across all images (NHWC, stride 1): a plain GEMM with M = N*P*Q;
  * per image: grid axis 1 walks the images (NCHW, or a batched weight: one B per image); rows inside an image
               are linear (stride 1) or decoded as (p, q) - the gather that makes strided 1x1 convs work.
`tritonconv.matmul` maps C[m, n] = A[m, k] @ B[k, n] onto ConvProblem(n=batch, c=k, h=1, w=m, k=n, r=s=1).

Kernels:
  * `gemm_kernel`: tiled, GROUP_M swizzle, SPLIT_K (each split writes float32 partial sums to a workspace and
    `splitk_reduce_kernel` adds them and applies the epilogue, so bias/residual/activation are applied once);
  * `gemm_tma_persistent_kernel` (compute capability >= 9.0): one program per SM walking tiles, A and B read
    with device-side tensor descriptors (TMA), optional warp specialisation of the tile loop (sm_100+).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import triton
import triton.language as tl

from ..problem import INT32_MAX, ConvProblem
from ..runtime import INTERPRET, device_info
from .base import (
    Config, ConfigSpace, ConvTensors, KernelCall, KernelFamily, Param, clamp_pow2, interpreter_dot_reason, needs_int64,
    pow2_divisor, scaled_operands, scaled_precision_reason,
)
from .conv_implicit_gemm import fits_registers, fits_shared_memory
from ..enums import Activation, Precision
from .epilogue import apply_activation, dequantize, dot_with_precision
from .tiling import known_multiple, swizzled_tile

VARIANTS = ("tiled", "tma_persistent")
SPLIT_K_CHOICES = (1, 2, 4, 8, 16)
TMA_ALIGNMENT = 16  # bytes: tensor-descriptor base pointers and leading strides


# ------------------------------------------------------------------------------------------------------------
# Shared device helpers
# ------------------------------------------------------------------------------------------------------------
@triton.jit
def row_offsets(rows, Q, s_p, s_q, DECODE_ROWS: tl.constexpr):
    """Memory offset of each row: linear (rows * s_q), or the strided-conv gather (rows // Q, rows % Q)."""
    if DECODE_ROWS:
        return (rows // Q) * s_p + (rows % Q) * s_q
    else:
        return rows * s_q


@triton.jit
def store_epilogue(
    acc, rows, offs_n, mask_m, mask_n, batch, c_ptr, bias_ptr, res_ptr, Q,
    sc_b, sc_p, sc_q, sc_n, sr_b, sr_p, sr_q, sr_n,
    HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, ACTIVATION: tl.constexpr, DECODE_ROWS: tl.constexpr,
):
    """c = act(acc + bias[n] + residual), stored through the output's strides. `rows` index rows inside a
    batch; `batch` is one batch index, or one per row (convs: the image n of each output pixel)."""
    out_mask = mask_m[:, None] & mask_n[None, :]
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    if HAS_RESIDUAL:
        r_off = (batch * sr_b + row_offsets(rows, Q, sr_p, sr_q, DECODE_ROWS))[:, None] + offs_n[None, :] * sr_n
        acc += tl.load(res_ptr + r_off, mask=out_mask, other=0.0).to(tl.float32)
    acc = apply_activation(acc, ACTIVATION)
    c_off = (batch * sc_b + row_offsets(rows, Q, sc_p, sc_q, DECODE_ROWS))[:, None] + offs_n[None, :] * sc_n
    tl.store(c_ptr + c_off, acc.to(c_ptr.dtype.element_ty), mask=out_mask)


# ------------------------------------------------------------------------------------------------------------
# Kernels
# ------------------------------------------------------------------------------------------------------------
@triton.jit
def gemm_kernel(
    a_ptr, b_ptr, c_ptr, bias_ptr, res_ptr, ws_ptr,
    M, N, K, Q,  # rows per batch, columns, reduction; Q: row decode width (DECODE_ROWS only)
    sa_b, sa_p, sa_q, sa_k,  # A strides: batch, row-major (p), row (q), reduction
    sb_b, sb_k, sb_n,  # B strides: batch (0 when shared), reduction, column
    sc_b, sc_p, sc_q, sc_n,  # output strides
    sr_b, sr_p, sr_q, sr_n,  # residual strides
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    SPLIT_K: tl.constexpr, EVEN_K: tl.constexpr, DECODE_ROWS: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, ACTIVATION: tl.constexpr,
    PRECISION: tl.constexpr, INDEX_64: tl.constexpr,
    ROW_ALIGN: tl.constexpr = 1,  # a power of two dividing the row/column strides (sa_b, sa_p, sa_q, sb_b, sb_n)
    K_ALIGN: tl.constexpr = 1,  # a power of two dividing K: the K mask is constant over that many elements
    scale_ptr=None,  # scaled (fp8) operands: x_scale * w_scale, one float32
):
    """C[b] = act(A[b] @ B[b] + bias + R[b]); axis 0: output tile, axis 1: batch, axis 2: K split.

    With SPLIT_K > 1, split s reduces its contiguous share of the K tiles and stores raw float32 partial sums
    to ws[s, b, m, n]; `splitk_reduce_kernel` finishes (sum + epilogue).
    """
    if ROW_ALIGN > 1:  # e.g. 24-channel rows: 16-byte vectors although the strides are not multiples of 16
        sa_b = known_multiple(sa_b, ROW_ALIGN)
        sa_p = known_multiple(sa_p, ROW_ALIGN)
        sa_q = known_multiple(sa_q, ROW_ALIGN)
        sb_b = known_multiple(sb_b, ROW_ALIGN)
        sb_n = known_multiple(sb_n, ROW_ALIGN)
    if K_ALIGN > 1:
        K = known_multiple(K, K_ALIGN)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    pid_m, pid_n = swizzled_tile(tl.program_id(0), num_pid_m, num_pid_n, GROUP_M)
    batch = tl.program_id(1)
    split = tl.program_id(2)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    if INDEX_64:
        offs_m = offs_m.to(tl.int64)
        offs_n = offs_n.to(tl.int64)
        batch = batch.to(tl.int64)
    mask_m = offs_m < M
    mask_n = offs_n < N
    # Clamp out-of-range rows/columns to 0 so the K loop needs no M/N masks (their results are never stored).
    safe_m = tl.where(mask_m, offs_m, 0)
    safe_n = tl.where(mask_n, offs_n, 0)
    a_rows = a_ptr + batch * sa_b + row_offsets(safe_m, Q, sa_p, sa_q, DECODE_ROWS)
    b_cols = b_ptr + batch * sb_b + safe_n * sb_n

    k_tiles = tl.cdiv(K, BLOCK_K)
    tiles_per_split = tl.cdiv(k_tiles, SPLIT_K)
    k_begin = split * tiles_per_split
    k_end = tl.minimum(k_begin + tiles_per_split, k_tiles)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kt in range(k_begin, k_end):
        offs_k = kt * BLOCK_K + tl.arange(0, BLOCK_K)
        a_ptrs = a_rows[:, None] + offs_k[None, :] * sa_k
        b_ptrs = b_cols[None, :] + offs_k[:, None] * sb_k
        if EVEN_K:
            a = tl.load(a_ptrs)
            b = tl.load(b_ptrs)
        else:
            a = tl.load(a_ptrs, mask=offs_k[None, :] < K, other=0.0)
            b = tl.load(b_ptrs, mask=offs_k[:, None] < K, other=0.0)
        acc = dot_with_precision(a, b, acc, PRECISION)
    acc = dequantize(acc, scale_ptr, PRECISION)  # linear: split-K partial sums may be scaled before the sum

    if SPLIT_K == 1:
        store_epilogue(
            acc, offs_m, offs_n, mask_m, mask_n, batch, c_ptr, bias_ptr, res_ptr, Q,
            sc_b, sc_p, sc_q, sc_n, sr_b, sr_p, sr_q, sr_n, HAS_BIAS, HAS_RESIDUAL, ACTIVATION, DECODE_ROWS,
        )
    else:
        num_batches = tl.num_programs(1)
        ws_off = ((split * num_batches + batch) * M + offs_m)[:, None] * N + offs_n[None, :]
        tl.store(ws_ptr + ws_off, acc, mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def splitk_reduce_kernel(
    ws_ptr, c_ptr, bias_ptr, res_ptr,
    M, N, Q, NUM_BATCHES,
    sc_b, sc_p, sc_q, sc_n, sr_b, sr_p, sr_q, sr_n,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT_K: tl.constexpr, DECODE_ROWS: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, ACTIVATION: tl.constexpr, INDEX_64: tl.constexpr,
):
    """Second split-K pass: sum the SPLIT_K float32 partial tiles (fixed order: deterministic), then epilogue."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    batch = tl.program_id(2)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    if INDEX_64:
        offs_m = offs_m.to(tl.int64)
        offs_n = offs_n.to(tl.int64)
        batch = batch.to(tl.int64)
    mask_m = offs_m < M
    mask_n = offs_n < N
    mask = mask_m[:, None] & mask_n[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for split in tl.static_range(SPLIT_K):
        ws_off = ((split * NUM_BATCHES + batch) * M + offs_m)[:, None] * N + offs_n[None, :]
        acc += tl.load(ws_ptr + ws_off, mask=mask, other=0.0)
    store_epilogue(
        acc, offs_m, offs_n, mask_m, mask_n, batch, c_ptr, bias_ptr, res_ptr, Q,
        sc_b, sc_p, sc_q, sc_n, sr_b, sr_p, sr_q, sr_n, HAS_BIAS, HAS_RESIDUAL, ACTIVATION, DECODE_ROWS,
    )


@triton.jit
def gemm_tma_persistent_kernel(
    a_ptr, b_ptr, c_ptr, bias_ptr, res_ptr,
    M, N, K,
    sa_m,  # A row stride (A's reduction stride is 1)
    sb_major,  # B's non-unit stride: per column n when B_K_MAJOR (B^T is [N, K]), else per reduction row
    sc_m, sc_n, sr_m, sr_n,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    NUM_SMS: tl.constexpr, B_K_MAJOR: tl.constexpr, WARP_SPECIALIZE: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, ACTIVATION: tl.constexpr,
    PRECISION: tl.constexpr, INDEX_64: tl.constexpr,
    scale_ptr=None,  # scaled (fp8) operands: x_scale * w_scale, one float32
):
    """Persistent GEMM: NUM_SMS programs walk the swizzled tiles; A/B tiles arrive by TMA (tensor descriptors).
    Out-of-range descriptor reads return zeros, so no masks are needed in the K loop."""
    a_desc = tl.make_tensor_descriptor(a_ptr, shape=[M, K], strides=[sa_m, 1], block_shape=[BLOCK_M, BLOCK_K])
    if B_K_MAJOR:
        b_desc = tl.make_tensor_descriptor(b_ptr, shape=[N, K], strides=[sb_major, 1], block_shape=[BLOCK_N, BLOCK_K])
    else:
        b_desc = tl.make_tensor_descriptor(b_ptr, shape=[K, N], strides=[sb_major, 1], block_shape=[BLOCK_K, BLOCK_N])
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    k_tiles = tl.cdiv(K, BLOCK_K)
    num_tiles = num_pid_m * num_pid_n
    for tile_id in tl.range(tl.program_id(0), num_tiles, NUM_SMS, flatten=True, warp_specialize=WARP_SPECIALIZE):
        pid_m, pid_n = swizzled_tile(tile_id, num_pid_m, num_pid_n, GROUP_M)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for kt in range(k_tiles):
            a = a_desc.load([pid_m * BLOCK_M, kt * BLOCK_K])
            if B_K_MAJOR:
                b = b_desc.load([pid_n * BLOCK_N, kt * BLOCK_K]).T
            else:
                b = b_desc.load([kt * BLOCK_K, pid_n * BLOCK_N])
            acc = dot_with_precision(a, b, acc, PRECISION)
        acc = dequantize(acc, scale_ptr, PRECISION)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        if INDEX_64:
            offs_m = offs_m.to(tl.int64)
            offs_n = offs_n.to(tl.int64)
        store_epilogue(
            acc, offs_m, offs_n, offs_m < M, offs_n < N, 0, c_ptr, bias_ptr, res_ptr, 1,
            0, 0, sc_m, sc_n, 0, 0, sr_m, sr_n, HAS_BIAS, HAS_RESIDUAL, ACTIVATION, False,
        )


def _tma_allocator(size: int, alignment: int, stream: Optional[int]) -> torch.Tensor:
    """Global scratch for device-side tensor descriptors (Triton asks for it at launch)."""
    return torch.empty(size, device="cuda", dtype=torch.int8)


def tma_aligned(tensor: torch.Tensor, strides: Sequence[int]) -> bool:
    """Whether TMA may read `tensor` through a descriptor with these leading (non-unit) element strides: each, and
    the base pointer (not known for meta tensors), 16-byte aligned."""
    elem = tensor.element_size()
    return all((stride * elem) % TMA_ALIGNMENT == 0 for stride in strides) and (
        tensor.device.type == "meta" or tensor.data_ptr() % TMA_ALIGNMENT == 0
    )


def enable_device_descriptors() -> None:
    """Kernels that build tensor descriptors on the device need an allocator; set it (cheap, per context)."""
    if not INTERPRET:
        triton.set_allocator(_tma_allocator)


# ------------------------------------------------------------------------------------------------------------
# How a launch addresses rows: one flat GEMM, or one GEMM per image
# ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RowStrides:
    """How a row (n, p, q) of A / output / residual is addressed: n * batch + p * p_stride + q * q_stride."""

    batch: int
    p: int
    q: int


@dataclass(frozen=True)
class RowPlan:
    batches: int  # grid axis 1
    rows: int  # M per batch
    decode: bool  # rows are (p, q) pairs, not linear
    flat: bool  # every operand's N*P*Q rows sit at one fixed stride (decided from strides, never from the batch)


def _flat_stride(t: RowStrides, problem: ConvProblem) -> Optional[int]:
    """The single row stride that makes all N*P*Q rows linear, if there is one (size-1 dims impose nothing)."""
    s = t.q
    ok_p = problem.p == 1 or t.p == problem.q * s
    ok_n = problem.n == 1 or t.batch == problem.p * problem.q * s
    return s if ok_p and ok_n else None


def _image_linear(t: RowStrides, problem: ConvProblem) -> bool:
    return problem.p == 1 or t.p == problem.q * t.q


def _row_plan(problem: ConvProblem, operands: list[RowStrides]) -> RowPlan:
    if not problem.batched_weight or problem.n == 1:
        if all(_flat_stride(t, problem) is not None for t in operands):
            return RowPlan(1, problem.gemm_m, decode=False, flat=True)
    decode = not all(_image_linear(t, problem) for t in operands)
    return RowPlan(problem.n, problem.p * problem.q, decode, flat=False)


def _conv_rows(t: torch.Tensor, step_h: int = 1, step_w: int = 1) -> RowStrides:
    """Row strides of an (N, C, H, W) tensor read at every step_h-th row and step_w-th column."""
    return RowStrides(t.stride(0), t.stride(2) * step_h, t.stride(3) * step_w)


# ------------------------------------------------------------------------------------------------------------
# Config space
# ------------------------------------------------------------------------------------------------------------
def _sms() -> int:
    info = device_info()
    return info.sm_count if info.sm_count > 1 else 132


def hopper(capability: tuple[int, int]) -> bool:
    return capability >= (9, 0)


def warp_specializes(capability: tuple[int, int]) -> bool:
    """Whether `tl.range(..., warp_specialize=True)` splits warps into producer/consumer partitions. Triton 3.6
    does so only from sm_100: on sm_90 it makes no partitions (no `ttg.warp_specialize` in the compiled TTGIR,
    checked in tests/test_compile_targets.py), so offering it there would only double the search."""
    return capability >= (10, 0)


def tma_problem_reason(problem: ConvProblem) -> Optional[str]:
    """Why the TMA variant cannot run `problem` whatever the tensors (None if it may; pointers are checked at
    launch, with a fallback to the tiled kernel)."""
    if problem.layout != "nhwc" or (problem.stride_h, problem.stride_w) != (1, 1):
        return "TMA variant needs a stride-1 NHWC (row-major A) problem"
    if problem.batched_weight and problem.n > 1:
        return "TMA variant has no batched weight"
    if (problem.c * problem.element_bytes) % TMA_ALIGNMENT:
        return f"TMA variant needs C * element size to be a multiple of {TMA_ALIGNMENT} bytes"
    return None


def tma_constraint(problem: ConvProblem, config: Config) -> Optional[str]:
    if config["VARIANT"] != "tma_persistent":
        return None if not config["WARP_SPECIALIZE"] else "WARP_SPECIALIZE needs the tma_persistent variant"
    if config["SPLIT_K"] != 1:
        return "the tma_persistent variant has no split-K"
    return tma_problem_reason(problem)


def k_tiles_constraint(problem: ConvProblem, config: Config) -> Optional[str]:
    k_tiles = triton.cdiv(problem.gemm_k, config["BLOCK_K"])
    if config["SPLIT_K"] > k_tiles:
        return f"SPLIT_K={config['SPLIT_K']} exceeds the {k_tiles} reduction tiles"
    return None


def not_wasteful(problem: ConvProblem, config: Config) -> Optional[str]:
    """Prunes tiles mostly made of padding, and splits with less than two K tiles each."""
    if config["BLOCK_N"] > clamp_pow2(problem.gemm_n, 16, 256):
        return "BLOCK_N larger than the columns need"
    if config["BLOCK_M"] > clamp_pow2(problem.gemm_m, 16, 256):
        return "BLOCK_M larger than the rows need"
    if config["BLOCK_K"] > clamp_pow2(problem.gemm_k, 16, 128):
        return "BLOCK_K larger than the reduction needs"
    if config["SPLIT_K"] > 1 and triton.cdiv(problem.gemm_k, config["BLOCK_K"]) < 2 * config["SPLIT_K"]:
        return "fewer than two K tiles per split"
    if config["BLOCK_M"] * config["BLOCK_N"] < config["num_warps"] * 256:
        return "too many warps for the tile"
    return None


def gemm_space(problem: ConvProblem, capability: tuple[int, int]) -> ConfigSpace:
    """The GEMM family's space on a device of `capability` (TMA from 9.0, warp specialisation from 10.0)."""
    on_hopper = hopper(capability)
    return ConfigSpace(
        params=[
            Param("BLOCK_M", (16, 32, 64, 128, 256)),
            Param("BLOCK_N", (16, 32, 64, 128, 256)),
            Param("BLOCK_K", (16, 32, 64, 128)),
            Param("GROUP_M", (1, 4, 8, 16)),
            Param("SPLIT_K", SPLIT_K_CHOICES),
            Param("VARIANT", VARIANTS if on_hopper else VARIANTS[:1]),
            Param("WARP_SPECIALIZE", (False, True) if warp_specializes(capability) else (False,)),
            Param("num_warps", (2, 4, 8)),
            Param("num_stages", (1, 2, 3, 4, 5)),
        ],
        constraints=[fits_shared_memory, fits_registers, k_tiles_constraint, tma_constraint],
        pruning=[not_wasteful],
    )


def gemm_default_config(problem: ConvProblem, capability: tuple[int, int], sms: int) -> Config:
    """Heuristic: tiles sized to the GEMM and shrunk until the grid covers the SMs; split-K when even the
    smallest tiles leave SMs idle and K is long; the TMA persistent variant on Hopper where it applies."""
    half = problem.operand_dtype.itemsize == 2
    m, n, k = problem.gemm_m, problem.gemm_n, problem.gemm_k
    # Hopper's warpgroup MMA needs 64 rows per warpgroup: below that the kernel falls back to Ampere's HMMA.
    min_m = 64 if hopper(capability) else 16
    block_m = clamp_pow2(m, min_m, 128)
    block_n = clamp_pow2(n, 16, 128)
    block_k = clamp_pow2(k, 16, 64 if half else 32)

    def tiles(bm: int, bn: int) -> int:
        return triton.cdiv(m, bm) * triton.cdiv(n, bn)

    while tiles(block_m, block_n) < sms and block_m > max(32, min_m):
        block_m //= 2
    while tiles(block_m, block_n) < sms and block_n > 32:
        block_n //= 2
    split_k = 1
    k_tiles = triton.cdiv(k, block_k)
    while (
        split_k < SPLIT_K_CHOICES[-1]
        and tiles(block_m, block_n) * split_k * 2 <= 2 * sms
        and k_tiles >= 4 * split_k * 2
    ):
        split_k *= 2
    config: Config = {
        "BLOCK_M": block_m,
        "BLOCK_N": block_n,
        "BLOCK_K": block_k,
        "GROUP_M": 8,
        "SPLIT_K": split_k,
        "VARIANT": "tiled",
        "WARP_SPECIALIZE": False,
        "num_warps": 8 if block_m * block_n >= 128 * 128 else 4,
        "num_stages": 4 if half else 3,
    }
    if hopper(capability) and split_k == 1 and tma_problem_reason(problem) is None and min(block_m, block_n) >= 64:
        config["VARIANT"] = "tma_persistent"
    while config["num_stages"] > 1 and fits_shared_memory(problem, config):
        config["num_stages"] -= 1
    return config


class GemmConv(KernelFamily):
    """1x1 convolutions (any stride, NCHW or NHWC, batched weights for `tritonconv.matmul`) as GEMMs."""

    name = "gemm"
    precisions = Precision.names()  # fp8 included: kernel_calls quantize the operands (scaled_operands)
    description = "GEMM for 1x1 convs and matmul: GROUP_M swizzle, split-K, TMA persistent variant on sm_90+"
    handles_batched_weight = True

    def supports(self, problem: ConvProblem) -> Optional[str]:
        if (problem.r, problem.s) != (1, 1):
            return "GEMM family only runs 1x1 filters"
        if interpreter_dot_reason(problem):
            return interpreter_dot_reason(problem)
        if scaled_precision_reason(problem, device_info().capability):
            return scaled_precision_reason(problem, device_info().capability)
        if problem.groups != 1:
            return "GEMM family needs groups=1"
        if (problem.pad_h, problem.pad_w) != (0, 0):
            return "GEMM family needs padding 0"
        if problem.p != (problem.h - 1) // problem.stride_h + 1 or problem.q != (problem.w - 1) // problem.stride_w + 1:
            return "GEMM family needs the unpadded output size"
        if problem.n > 65535 and (problem.batched_weight or problem.layout == "nchw"):
            return "more than 65535 batches in the launch grid"
        return None

    def preference(self, problem: ConvProblem) -> int:
        # Design choice, not a measurement: a 1x1 conv has no filter decode or padding masks, so the
        # dedicated GEMM kernel is the natural untuned pick; the search decides per shape.
        return 1

    def space(self, problem: ConvProblem) -> ConfigSpace:
        return gemm_space(problem, device_info().capability)

    def default_config(self, problem: ConvProblem) -> Config:
        return gemm_default_config(problem, device_info().capability, _sms())

    def heuristic_configs(self, problem: ConvProblem) -> list[Config]:
        base = self.default_config(problem)
        variants = [
            base,
            {**base, "BLOCK_M": max(16, base["BLOCK_M"] // 2), "num_warps": 4},
            {**base, "BLOCK_N": max(16, base["BLOCK_N"] // 2), "num_warps": 4},
            {**base, "SPLIT_K": base["SPLIT_K"] * 2, "VARIANT": "tiled", "WARP_SPECIALIZE": False},
            {**base, "VARIANT": "tiled", "WARP_SPECIALIZE": False},
            {**base, "WARP_SPECIALIZE": True},
        ]
        return self.space(problem).feasible(problem, variants)

    def kernel_calls(self, problem: ConvProblem, tensors: ConvTensors, config: Config) -> Sequence[KernelCall]:
        tensors, scale = scaled_operands(problem, tensors)
        x, w, y, res = tensors.input, tensors.weight, tensors.output, tensors.residual
        weight_batched = problem.batched_weight and w.dim() == 5
        # B[c, k] = w[(n,) k, c, 0, 0]
        sb_b, sb_n, sb_k = (w.stride(0), w.stride(1), w.stride(2)) if weight_batched else (0, w.stride(0), w.stride(1))
        operands = [_conv_rows(x, problem.stride_h, problem.stride_w), _conv_rows(y)]
        if res is not None:
            operands.append(_conv_rows(res))
        plan = _row_plan(problem, operands)
        split_k = config["SPLIT_K"]
        workspace_elements = split_k * plan.batches * plan.rows * problem.gemm_n if split_k > 1 else 0
        index_64 = needs_int64(problem, tensors) or workspace_elements > INT32_MAX
        epilogue = dict(
            HAS_BIAS=tensors.bias is not None, HAS_RESIDUAL=res is not None,
            ACTIVATION=Activation(tensors.activation).code, INDEX_64=index_64,
        )
        if config["VARIANT"] == "tma_persistent" and plan.flat:
            call = self._tma_call(problem, tensors, config, operands, (sb_k, sb_n), epilogue, scale)
            if call is not None:
                return [call]

        def strides(t: RowStrides) -> tuple[int, int, int]:
            if plan.flat:  # rows linear over all images
                return (0, 0, _flat_stride(t, problem))
            return (t.batch, t.p, t.q)

        (sa_b, sa_p, sa_q), (sc_b, sc_p, sc_q) = strides(operands[0]), strides(operands[1])
        sr_b, sr_p, sr_q = strides(operands[2]) if res is not None else (0, 0, 0)
        sr_n = res.stride(1) if res is not None else 0
        m, n, k = plan.rows, problem.gemm_n, problem.gemm_k
        ws = None
        if split_k > 1:
            ws = torch.empty((split_k, plan.batches, m, n), device=y.device, dtype=torch.float32)
        grid = (triton.cdiv(m, config["BLOCK_M"]) * triton.cdiv(n, config["BLOCK_N"]), plan.batches, split_k)
        output_args = dict(sc_b=sc_b, sc_p=sc_p, sc_q=sc_q, sc_n=y.stride(1), sr_b=sr_b, sr_p=sr_p, sr_q=sr_q, sr_n=sr_n)
        args = dict(
            a_ptr=x, b_ptr=w, c_ptr=y, bias_ptr=tensors.bias, res_ptr=res, ws_ptr=ws,
            M=m, N=n, K=k, Q=problem.q, sa_b=sa_b, sa_p=sa_p, sa_q=sa_q, sa_k=x.stride(1),
            sb_b=sb_b, sb_k=sb_k, sb_n=sb_n, **output_args, scale_ptr=scale,
        )
        constexprs = dict(
            BLOCK_M=config["BLOCK_M"], BLOCK_N=config["BLOCK_N"], BLOCK_K=config["BLOCK_K"],
            GROUP_M=config["GROUP_M"], SPLIT_K=split_k, EVEN_K=k % config["BLOCK_K"] == 0,
            DECODE_ROWS=plan.decode, PRECISION=Precision(problem.precision).code, **epilogue,
            ROW_ALIGN=pow2_divisor((sa_b, sa_p, sa_q, sb_b, sb_n)), K_ALIGN=pow2_divisor((k,)),
        )
        calls = [KernelCall(gemm_kernel, grid, args, constexprs, config["num_warps"], config["num_stages"])]
        if split_k > 1:
            reduce_m, reduce_n = 32, 64
            calls.append(KernelCall(
                splitk_reduce_kernel,
                (triton.cdiv(m, reduce_m), triton.cdiv(n, reduce_n), plan.batches),
                dict(ws_ptr=ws, c_ptr=y, bias_ptr=tensors.bias, res_ptr=res, M=m, N=n, Q=problem.q,
                     NUM_BATCHES=plan.batches, **output_args),
                dict(BLOCK_M=reduce_m, BLOCK_N=reduce_n, SPLIT_K=split_k, DECODE_ROWS=plan.decode, **epilogue),
                num_warps=4, num_stages=1,
            ))
        return calls

    def _tma_call(
        self, problem: ConvProblem, tensors: ConvTensors, config: Config, operands: list[RowStrides],
        b_strides: tuple[int, int], epilogue: dict, scale: Optional[torch.Tensor] = None,
    ) -> Optional[KernelCall]:
        """The persistent TMA launch, or None when these tensors cannot be read by descriptors (then the tiled
        kernel runs instead): A must be row-major, B must have a unit stride, and base pointers and leading
        strides must be 16-byte aligned."""
        x, w, y, res = tensors.input, tensors.weight, tensors.output, tensors.residual
        sa_m = _flat_stride(operands[0], problem)
        sb_k, sb_n = b_strides
        if sb_k == 1:
            b_k_major, sb_major = True, sb_n
        elif sb_n == 1:
            b_k_major, sb_major = False, sb_k
        else:
            return None
        aligned = x.stride(1) == 1 and sa_m is not None and tma_aligned(x, [sa_m]) and tma_aligned(w, [sb_major])
        if not aligned:
            return None
        enable_device_descriptors()
        m, n = problem.gemm_m, problem.gemm_n
        num_sms = _sms()
        tiles = triton.cdiv(m, config["BLOCK_M"]) * triton.cdiv(n, config["BLOCK_N"])
        sc_m = _flat_stride(operands[1], problem)  # the plan is flat: every operand has one row stride
        sr_m = _flat_stride(operands[2], problem) if res is not None else 0
        args = dict(
            a_ptr=x, b_ptr=w, c_ptr=y, bias_ptr=tensors.bias, res_ptr=res, M=m, N=n, K=problem.gemm_k,
            sa_m=sa_m, sb_major=sb_major, sc_m=sc_m, sc_n=y.stride(1),
            sr_m=sr_m, sr_n=res.stride(1) if res is not None else 0, scale_ptr=scale,
        )
        constexprs = dict(
            BLOCK_M=config["BLOCK_M"], BLOCK_N=config["BLOCK_N"], BLOCK_K=config["BLOCK_K"],
            GROUP_M=config["GROUP_M"], NUM_SMS=num_sms, B_K_MAJOR=b_k_major,
            WARP_SPECIALIZE=config["WARP_SPECIALIZE"], PRECISION=Precision(problem.precision).code, **epilogue,
        )
        return KernelCall(
            gemm_tma_persistent_kernel, (min(num_sms, tiles),), args, constexprs,
            config["num_warps"], config["num_stages"],
        )
