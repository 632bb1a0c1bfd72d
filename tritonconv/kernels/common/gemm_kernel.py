"""The tiled GEMM kernel every GEMM-shaped launch shares (the gemm family's 1x1 convs and matmul, the Winograd
family's batched transform-domain products), and its split-K reduction.

C[b] = act(A[b] @ B[b] + bias + R[b]) with every operand addressed through strides: rows inside a batch are
linear, or decoded as (p, q) pairs (DECODE_ROWS: the gather of a strided 1x1 conv); grid axis 1 walks the
batches, axis 2 the K splits.
"""
import triton
import triton.language as tl

from .epilogue import dequantize, dot_with_precision, store_rows
from .tiling import gemm_tile, known_multiple, row_offsets, tile_offsets, widened


@triton.jit
def gemm_kernel(
    a_ptr, b_ptr, c_ptr, bias_ptr, res_ptr, ws_ptr,
    M, N, K, Q,  # rows per batch, columns, reduction; Q: row decode width (DECODE_ROWS only)
    sa_b, sa_p, sa_q, sa_k,  # A strides: batch, row-major (p), row (q), reduction
    sb_b, sb_k, sb_n,  # B strides: batch (0 when shared), reduction, column
    sc_b, sc_n, sc_p, sc_q,  # output strides (batch, column, p, q)
    sr_b, sr_n, sr_p, sr_q,  # residual strides
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
    offs_m, offs_n, mask_m, mask_n = gemm_tile(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M, INDEX_64)
    batch = widened(tl.program_id(1), INDEX_64)
    split = tl.program_id(2)
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
        store_rows(
            acc, batch * sc_b + row_offsets(offs_m, Q, sc_p, sc_q, DECODE_ROWS),
            batch * sr_b + row_offsets(offs_m, Q, sr_p, sr_q, DECODE_ROWS), offs_n, mask_m, mask_n,
            c_ptr, bias_ptr, res_ptr, sc_n, sr_n, HAS_BIAS, HAS_RESIDUAL, ACTIVATION,
        )
    else:
        num_batches = tl.num_programs(1)
        ws_off = ((split * num_batches + batch) * M + offs_m)[:, None] * N + offs_n[None, :]
        tl.store(ws_ptr + ws_off, acc, mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def splitk_reduce_kernel(
    ws_ptr, c_ptr, bias_ptr, res_ptr,
    M, N, Q, NUM_BATCHES,
    sc_b, sc_n, sc_p, sc_q, sr_b, sr_n, sr_p, sr_q,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT_K: tl.constexpr, DECODE_ROWS: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, ACTIVATION: tl.constexpr, INDEX_64: tl.constexpr,
):
    """Second split-K pass: sum the SPLIT_K float32 partial tiles (fixed order: deterministic), then epilogue."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    batch = widened(tl.program_id(2), INDEX_64)
    offs_m = tile_offsets(pid_m, BLOCK_M, INDEX_64)
    offs_n = tile_offsets(pid_n, BLOCK_N, INDEX_64)
    mask_m = offs_m < M
    mask_n = offs_n < N
    mask = mask_m[:, None] & mask_n[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for split in tl.static_range(SPLIT_K):
        ws_off = ((split * NUM_BATCHES + batch) * M + offs_m)[:, None] * N + offs_n[None, :]
        acc += tl.load(ws_ptr + ws_off, mask=mask, other=0.0)
    store_rows(
        acc, batch * sc_b + row_offsets(offs_m, Q, sc_p, sc_q, DECODE_ROWS),
        batch * sr_b + row_offsets(offs_m, Q, sr_p, sr_q, DECODE_ROWS), offs_n, mask_m, mask_n,
        c_ptr, bias_ptr, res_ptr, sc_n, sr_n, HAS_BIAS, HAS_RESIDUAL, ACTIVATION,
    )
