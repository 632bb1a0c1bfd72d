"""Winograd conv2d F(m x m, 3 x 3), m = 2 or 4: 3x3 filters, stride 1, dilation 1, any padding, NCHW or NHWC.

The output is cut into m x m tiles; each reads an alpha x alpha input patch (alpha = m + 2, neighbours overlap by
2). With the transform matrices B, G, A of Lavin & Gray ("Fast Algorithms for Convolutional Neural Networks"):
    U[a, b]    = (G g G^T)[a, b]          per (k, c): the weight transform, done once per weight version (cached)
    V[a, b]    = (B^T d B)[a, b]          per (tile, c): the input transform
    M[a, b]    = V[a, b] @ U[a, b]        alpha^2 independent GEMMs [tiles, C] @ [C, K] (tensor cores)
    Y          = A^T M A                  per (tile, k): the output transform, then the fused epilogue
The input transform writes V to a workspace; then, by VARIANT:
  * "fused": one kernel runs the alpha^2 GEMMs of a block of tiles one after the other and folds each result
    into the output tile at once (Y += A^T[i, a] A^T[j, b] M[a, b]), then the epilogue: no M workspace;
  * "three_kernels": the gemm family's batched GEMM kernel (grid axis 1 walks the alpha^2 x groups GEMMs) writes M
    in float32 and a third kernel applies the output transform and the epilogue.
Either way bias, residual and activation are fused and the output is stored through its strides (any layout). Multiplies drop from 9 per output to alpha^2 / m^2
(16/4 = 4 for F(2,3), 36/16 = 2.25 for F(4,3)), at the price of rounding error the transforms amplify
(F(4,3) more; the search checks every candidate against float64, so a too inexact one never wins).
"""
from __future__ import annotations

from functools import partial
from typing import Optional, Sequence

import torch
import triton
import triton.language as tl

from ..enums import Activation, Precision
from ..problem import INT32_MAX, ConvProblem
from ..runtime import DeviceInfo
from ..weights import prepare_derived
from .base import (
    Config,
    ConfigSpace,
    ConvTensors,
    KernelCall,
    KernelFamily,
    Param,
    clamp_pow2,
    epilogue_constexprs,
    interpreter_dot_reason,
    needs_int64,
    pow2_divisor, target_device,
)
from .common.checks import groups_grid_reason
from .common.epilogue import dot_with_precision, pixel_offsets, store_rows
from .common.gemm_kernel import gemm_kernel
from .common.limits import (
    GEMM_LAUNCH_PARAMS, fits_registers, fits_shared_memory, gemm_tile_params, shrink_stages, sm_count, warps_for_tile,
)
from .common.tiling import gemm_tile, tile_offsets, widened

TILES = (2, 4)  # m of F(m x m, 3 x 3)
VARIANTS = ("fused", "three_kernels")  # GEMM and output transform in one kernel, or three launches
MAX_GEMMS_PER_GROUP = (max(TILES) + 2) ** 2  # the three-kernel GEMM's grid axis 1 walks alpha^2 x groups
MIN_CHANNELS_PER_GROUP = 8  # grouped convs only: a GEMM step reduces 16 channels (tl.dot's smallest K)
# The transform kernels' own tiles (tiles x channels): small, as each element holds alpha^2 values in registers.
TRANSFORM_BLOCK = {2: (32, 32), 4: (16, 32)}
TRANSFORM_WARPS = 4

# Transform matrices (Lavin & Gray); float64 for the weight transform done in torch.
G_MATRIX = {
    2: ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0)),
    4: ((1 / 4, 0.0, 0.0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
        (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0.0, 0.0, 1.0)),
}


@triton.jit
def input_transform_1d(d, TILE: tl.constexpr):
    """B^T d along one axis: alpha values (a tuple) to alpha values."""
    if TILE == 2:
        out = (d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3])
    else:
        out = (
            4.0 * d[0] - 5.0 * d[2] + d[4],
            d[3] + d[4] - 4.0 * (d[1] + d[2]),
            4.0 * (d[1] - d[2]) + d[4] - d[3],
            2.0 * (d[3] - d[1]) + d[4] - d[2],
            2.0 * (d[1] - d[3]) + d[4] - d[2],
            4.0 * d[1] - 5.0 * d[3] + d[5],
        )
    return out


@triton.jit
def output_transform_1d(m, TILE: tl.constexpr):
    """A^T m along one axis: alpha values (a tuple) to TILE values."""
    if TILE == 2:
        out = (m[0] + m[1] + m[2], m[1] - m[2] - m[3])
    else:
        out = (
            m[0] + m[1] + m[2] + m[3] + m[4],
            m[1] - m[2] + 2.0 * (m[3] - m[4]),
            m[1] + m[2] + 4.0 * (m[3] + m[4]),
            m[1] - m[2] + 8.0 * (m[3] - m[4]) + m[5],
        )
    return out


@triton.jit
def tile_origins(offs_t, TH, TW, TILE: tl.constexpr):
    """Tile t = (n * TH + th) * TW + tw covers output rows th*TILE.. and columns tw*TILE..: returns (n, th, tw)."""
    n = offs_t // (TH * TW)
    rest = offs_t - n * (TH * TW)
    th = rest // TW
    return n, th, rest - th * TW


@triton.jit
def transform_block(N, TH, TW, CHANNELS, TILE: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr,
                    INDEX_64: tl.constexpr):
    """A transform kernel's program: BLOCK_T tiles (grid axis 0) x BLOCK_C of the CHANNELS channels per group (axis 1)
    of group g (axis 2). Returns (tiles, channels, g, groups, tile mask, channel mask, and each tile's n, th, tw)."""
    offs_t = tile_offsets(tl.program_id(0), BLOCK_T, INDEX_64)
    offs_c = tile_offsets(tl.program_id(1), BLOCK_C, INDEX_64)
    g = widened(tl.program_id(2), INDEX_64)
    num_groups = tl.num_programs(2)
    mask_t = offs_t < N * TH * TW
    mask_c = offs_c < CHANNELS
    n, th, tw = tile_origins(offs_t, TH, TW, TILE)
    return offs_t, offs_c, g, num_groups, mask_t, mask_c, n, th, tw


@triton.jit
def winograd_input_transform_kernel(
    x_ptr, v_ptr,
    N, H, W, Cg, TH, TW, pad_h, pad_w,
    sxn, sxc, sxh, sxw,  # input strides (n, c, h, w)
    svb, svt,  # workspace strides: per GEMM batch (position, group), per tile; channels contiguous
    TILE: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr, INDEX_64: tl.constexpr,
):
    """V[(a * alpha + b) * G + g, t, c] = (B^T d B)[a, b] of tile t's input patch d, channel g * Cg + c."""
    ALPHA: tl.constexpr = TILE + 2
    offs_t, offs_c, g, num_groups, mask_t, mask_c, n, th, tw = transform_block(N, TH, TW, Cg, TILE, BLOCK_T, BLOCK_C, INDEX_64)
    h0 = th * TILE - pad_h
    w0 = tw * TILE - pad_w
    base = x_ptr + (n * sxn + h0 * sxh + w0 * sxw)[:, None] + ((g * Cg + offs_c) * sxc)[None, :]
    rows = ()
    for i in tl.static_range(ALPHA):
        row_ok = mask_t & (h0 + i >= 0) & (h0 + i < H)
        row = ()
        for j in tl.static_range(ALPHA):
            ok = row_ok & (w0 + j >= 0) & (w0 + j < W)
            d = tl.load(base + (i * sxh + j * sxw), mask=ok[:, None] & mask_c[None, :], other=0.0)
            row = row + (d.to(tl.float32),)
        rows = rows + (input_transform_1d(row, TILE),)
    v_tile = v_ptr + (offs_t * svt)[:, None] + offs_c[None, :]
    store_mask = mask_t[:, None] & mask_c[None, :]
    for b in tl.static_range(ALPHA):
        column = ()
        for i in tl.static_range(ALPHA):
            column = column + (rows[i][b],)
        v = input_transform_1d(column, TILE)
        for a in tl.static_range(ALPHA):
            tl.store(v_tile + ((a * ALPHA + b) * num_groups + g) * svb, v[a].to(v_ptr.dtype.element_ty), mask=store_mask)


@triton.jit
def winograd_output_transform_kernel(
    m_ptr, y_ptr, bias_ptr, res_ptr,
    N, Kg, P, Q, TH, TW,
    smb, smt,  # workspace strides: per GEMM batch, per tile; output channels contiguous
    syn, syk, syp, syq,  # output strides (n, k, p, q)
    srn, srk, srp, srq,  # residual strides (n, k, p, q)
    TILE: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, ACTIVATION: tl.constexpr, INDEX_64: tl.constexpr,
):
    """y[n, g * Kg + k, th * TILE + i, tw * TILE + j] = act((A^T M A)[i, j] + bias + residual) for each tile."""
    ALPHA: tl.constexpr = TILE + 2
    offs_t, offs_k, g, num_groups, mask_t, mask_k, n, th, tw = transform_block(N, TH, TW, Kg, TILE, BLOCK_T, BLOCK_K, INDEX_64)
    m_tile = m_ptr + (offs_t * smt)[:, None] + offs_k[None, :]
    load_mask = mask_t[:, None] & mask_k[None, :]
    rows = ()
    for a in tl.static_range(ALPHA):
        row = ()
        for b in tl.static_range(ALPHA):
            row = row + (tl.load(m_tile + ((a * ALPHA + b) * num_groups + g) * smb, mask=load_mask, other=0.0),)
        rows = rows + (output_transform_1d(row, TILE),)
    for j in tl.static_range(TILE):
        column = ()
        for a in tl.static_range(ALPHA):
            column = column + (rows[a][j],)
        y = output_transform_1d(column, TILE)
        q = tw * TILE + j
        for i in tl.static_range(TILE):
            p = th * TILE + i
            store_rows(
                y[i], pixel_offsets(n, p, q, syn, syp, syq), pixel_offsets(n, p, q, srn, srp, srq), g * Kg + offs_k,
                mask_t & (p < P) & (q < Q), mask_k, y_ptr, bias_ptr, res_ptr, syk, srk, HAS_BIAS, HAS_RESIDUAL, ACTIVATION,
            )


# A^T of each tile (A_T[TILE][i * alpha + a], rows flattened: Triton's compiler indexes nested constant tuples only
# two levels deep) as compile-time constants: the fused kernel folds each GEMM result into the outputs with these
# coefficients and skips the zeros while tracing.
A_T: tl.constexpr = tl.constexpr((
    (), (),
    (1, 1, 1, 0,
     0, 1, -1, -1),
    (),
    (1, 1, 1, 1, 1, 0,
     0, 1, -1, 2, -2, 0,
     0, 1, 1, 4, 4, 0,
     0, 1, -1, 8, -8, 1),
))


@triton.jit
def winograd_gemm_output_kernel(
    v_ptr, u_ptr, y_ptr, bias_ptr, res_ptr,
    N, Cg, Kg, P, Q, TH, TW,
    svb, svt,  # V strides: per GEMM batch (position, group), per tile; channels contiguous
    sub, suk,  # U strides: per GEMM batch, per output channel; input channels contiguous
    syn, syk, syp, syq,  # output strides (n, k, p, q)
    srn, srk, srp, srq,  # residual strides (n, k, p, q)
    TILE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr, EVEN_K: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, ACTIVATION: tl.constexpr,
    PRECISION: tl.constexpr, INDEX_64: tl.constexpr,
):
    """The fused variant: for BLOCK_M tiles x BLOCK_N output channels, each of the alpha^2 GEMMs
    M[a, b] = V[a, b] @ U[a, b] in turn, folded at once into the TILE x TILE outputs
    Y[i, j] += A^T[i, a] A^T[j, b] M[a, b] (no M workspace), then the epilogue. Axis 1 is the group."""
    ALPHA: tl.constexpr = TILE + 2
    offs_m, offs_n, mask_m, mask_n = gemm_tile(tl.program_id(0), N * TH * TW, Kg, BLOCK_M, BLOCK_N, GROUP_M, INDEX_64)
    g = widened(tl.program_id(1), INDEX_64)
    num_groups = tl.num_programs(1)
    offs_k = tl.arange(0, BLOCK_K)
    # Out-of-range rows/columns read row/column 0 (never stored), so the reduction needs no M/N masks.
    a_rows = v_ptr + (tl.where(mask_m, offs_m, 0) * svt)[:, None] + offs_k[None, :]
    b_cols = u_ptr + (tl.where(mask_n, offs_n, 0) * suk)[None, :] + offs_k[:, None]
    zero = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    out = ()
    for _ in tl.static_range(TILE):
        out_row = ()
        for _ in tl.static_range(TILE):
            out_row = out_row + (zero,)
        out = out + (out_row,)
    for a in tl.static_range(ALPHA):
        for b in tl.static_range(ALPHA):
            batch = (a * ALPHA + b) * num_groups + g
            a_ptrs = a_rows + batch * svb
            b_ptrs = b_cols + batch * sub
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for k0 in range(0, Cg, BLOCK_K):
                if EVEN_K:
                    a_tile = tl.load(a_ptrs + k0)
                    b_tile = tl.load(b_ptrs + k0)
                else:
                    a_tile = tl.load(a_ptrs + k0, mask=(k0 + offs_k)[None, :] < Cg, other=0.0)
                    b_tile = tl.load(b_ptrs + k0, mask=(k0 + offs_k)[:, None] < Cg, other=0.0)
                acc = dot_with_precision(a_tile, b_tile, acc, PRECISION)
            folded = ()
            for i in tl.static_range(TILE):
                out_row = ()
                for j in tl.static_range(TILE):
                    if A_T[TILE][i * ALPHA + a] * A_T[TILE][j * ALPHA + b] != 0:
                        out_row = out_row + (out[i][j] + (A_T[TILE][i * ALPHA + a] * A_T[TILE][j * ALPHA + b]) * acc,)
                    else:
                        out_row = out_row + (out[i][j],)
                folded = folded + (out_row,)
            out = folded
    n, th, tw = tile_origins(offs_m, TH, TW, TILE)
    for i in tl.static_range(TILE):
        p = th * TILE + i
        for j in tl.static_range(TILE):
            q = tw * TILE + j
            store_rows(
                out[i][j], pixel_offsets(n, p, q, syn, syp, syq), pixel_offsets(n, p, q, srn, srp, srq), g * Kg + offs_n,
                mask_m & (p < P) & (q < Q), mask_n, y_ptr, bias_ptr, res_ptr, syk, srk, HAS_BIAS, HAS_RESIDUAL, ACTIVATION,
            )


# ------------------------------------------------------------------------------------------------------------
# Weight transform (torch, once per weight version)
# ------------------------------------------------------------------------------------------------------------
def transform_weight(weight: torch.Tensor, tile: int, groups: int, dtype: torch.dtype) -> torch.Tensor:
    """U[(a * alpha + b) * groups + g, k, c] = (G w[g * Kg + k, c] G^T)[a, b], computed in float64 and stored
    in `dtype`, contiguous (the GEMM's B, reduction axis contiguous); cached per weight version."""

    def make(w: torch.Tensor) -> torch.Tensor:
        k, cg = w.shape[0], w.shape[1]
        g_matrix = torch.tensor(G_MATRIX[tile], dtype=torch.float64, device=w.device)
        u = torch.einsum("ar,kcrs,bs->abkc", g_matrix, w.to(torch.float64), g_matrix)
        alpha = tile + 2
        return u.reshape(alpha * alpha * groups, k // groups, cg).to(dtype).contiguous()

    return prepare_derived(weight, ("winograd", tile, groups, dtype), make)


# ------------------------------------------------------------------------------------------------------------
# Config space
# ------------------------------------------------------------------------------------------------------------
def tiles_of(problem: ConvProblem, tile: int) -> tuple[int, int, int]:
    """(tile rows, tile columns, all tiles) covering the output with tile x tile blocks."""
    th, tw = triton.cdiv(problem.p, tile), triton.cdiv(problem.q, tile)
    return th, tw, problem.n * th * tw


def not_wasteful(problem: ConvProblem, config: Config) -> Optional[str]:
    """Prunes GEMM tiles mostly made of padding: correct but never fastest."""
    if config["BLOCK_M"] > clamp_pow2(tiles_of(problem, config["TILE"])[2], 16, 128):
        return "BLOCK_M larger than the tiles need"
    if config["BLOCK_N"] > clamp_pow2(problem.k_per_group, 16, 128):
        return "BLOCK_N larger than the output channels per group need"
    if config["BLOCK_K"] > clamp_pow2(problem.c_per_group, 16, 64):
        return "BLOCK_K larger than the input channels per group need"
    if config["BLOCK_M"] * config["BLOCK_N"] < config["num_warps"] * 256:
        return "too many warps for the tile"
    return None


# Precisions whose F(4,3) error reaches their default tolerance (README: tf32 ~4e-3 > 3e-3, bf16 up to 3.3e-2 vs 3e-2,
# emulated in float64 with operands rounded to the precision). Every config a family's space offers must be within
# the precision's tolerance, so these keep to F(2,3); fp16 F(4,3) (~4e-3 < 1e-2) stays.
F43_TOO_INEXACT = ("tf32", "bf16")


def tile_choices(problem: ConvProblem) -> tuple[int, ...]:
    return TILES[:1] if problem.precision in F43_TOO_INEXACT else TILES


# The fused kernel holds TILE^2 output accumulators beside the GEMM's, and its unrolled alpha^2 reduction loops
# keep their own pipelines live: compiled for sm_80 / sm_90 (c64 k64 56x56, fp16 and tf32), 40 accumulator
# registers per thread used 164-216 registers without spilling, 80 spilled.
FUSED_ACCUMULATOR_REGISTERS = 48


def fused_registers(problem: ConvProblem, config: Config) -> Optional[str]:
    if config["VARIANT"] != "fused":
        return None
    accumulators = config["TILE"] ** 2 + 1
    per_thread = accumulators * config["BLOCK_M"] * config["BLOCK_N"] // (config["num_warps"] * 32)
    if per_thread > FUSED_ACCUMULATOR_REGISTERS:
        return f"the fused variant's {accumulators} accumulators need {per_thread} registers per thread (> {FUSED_ACCUMULATOR_REGISTERS})"
    return None


class WinogradConv(KernelFamily):
    name = "winograd"
    description = "Winograd F(2x2,3x3) / F(4x4,3x3): 3x3 stride-1 convs, input/output transforms around a batched GEMM"

    def supports(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> Optional[str]:
        if (problem.r, problem.s) != (3, 3):
            return "Winograd family only runs 3x3 filters"
        if (problem.stride_h, problem.stride_w) != (1, 1):
            return "Winograd family needs stride 1"
        if (problem.dilation_h, problem.dilation_w) != (1, 1):
            return "Winograd family needs dilation 1"
        if reason := interpreter_dot_reason(problem):
            return reason
        if problem.groups > 1 and min(problem.c_per_group, problem.k_per_group) < MIN_CHANNELS_PER_GROUP:
            return (f"Winograd family needs >= {MIN_CHANNELS_PER_GROUP} input and output channels per group "
                    "(fewer waste most of each matrix-unit step; depthwise/small_group cover those)")
        return groups_grid_reason(problem, MAX_GEMMS_PER_GROUP)

    def preference(self, problem: ConvProblem) -> int:
        # Never the untuned pick: it must win by measurement (and within the error tolerance).
        return -1

    def space(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> ConfigSpace:
        return ConfigSpace(
            params=[
                Param("TILE", tile_choices(problem)),
                Param("VARIANT", VARIANTS),
                *gemm_tile_params(block_m=(16, 32, 64, 128), block_n=(16, 32, 64, 128), block_k=(16, 32, 64), group_m=(1, 8)),
                *GEMM_LAUNCH_PARAMS,
            ],
            constraints=[partial(fits_shared_memory, device=target_device(device)), fits_registers, fused_registers],
            pruning=[not_wasteful],
        )

    def default_config(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> Config:
        """The fused variant with F(2,3) (the more accurate tile): output tiles sized to the problem, BLOCK_M shrunk
        until the grid covers the SMs (on Hopper it stays >= 64: warpgroup MMA), the fewest warps whose registers
        hold the accumulators, stages that fit."""
        return self._sized(problem, "fused", 2, device)

    def heuristic_configs(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> list[Config]:
        base = self.default_config(problem, device)
        variants = [base, self._sized(problem, "three_kernels", 2, device), self._sized(problem, "fused", 4, device),
                    self._sized(problem, "three_kernels", 4, device), {**base, "BLOCK_N": max(16, base["BLOCK_N"] // 2)}]
        return self.space(problem, device).feasible(problem, variants)

    def _sized(self, problem: ConvProblem, variant: str, tile: int, device: Optional[DeviceInfo] = None) -> Config:
        half = problem.operand_dtype.itemsize == 2
        fused = variant == "fused"
        # the fused grid is output tiles x channel blocks; the three-kernel GEMM's also walks the alpha^2 positions
        programs_per_tile = problem.groups * (1 if fused else (tile + 2) ** 2)
        rows = tiles_of(problem, tile)[2]
        device = target_device(device)
        hopper = device.capability >= (9, 0)
        cap = 64 if fused else 128
        block_m = clamp_pow2(rows, 64 if hopper else 16, cap)
        block_n = clamp_pow2(problem.k_per_group, 16, cap)
        block_k = clamp_pow2(problem.c_per_group, 16, 64 if half else 32)
        sms = sm_count(device)
        while triton.cdiv(rows, block_m) * triton.cdiv(problem.k_per_group, block_n) * programs_per_tile < sms and block_m > (64 if hopper else 32):
            block_m //= 2
        config: Config = {
            "TILE": tile, "VARIANT": variant, "BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k, "GROUP_M": 8,
            "num_warps": warps_for_tile(block_m, block_n), "num_stages": 4 if half else 3,
        }
        while fused_registers(problem, config) and config["num_warps"] < 8:
            config["num_warps"] *= 2
        for name in ("BLOCK_N", "BLOCK_M", "BLOCK_N"):
            if fused_registers(problem, config) and config[name] > (64 if name == "BLOCK_M" and hopper else 16):
                config[name] //= 2
        while fused_registers(problem, config) and config["BLOCK_M"] > 16:
            config["BLOCK_M"] //= 2
        return shrink_stages(problem, config, partial(fits_shared_memory, device=device))

    def kernel_calls(
        self, problem: ConvProblem, tensors: ConvTensors, config: Config, device: Optional[DeviceInfo] = None,
    ) -> Sequence[KernelCall]:
        x, y, res = tensors.input, tensors.output, tensors.residual
        tile = config["TILE"]
        alpha = tile + 2
        groups, cg, kg = problem.groups, problem.c_per_group, problem.k_per_group
        th, tw, rows = tiles_of(problem, tile)
        gemms = alpha * alpha * groups
        u = transform_weight(tensors.weight, tile, groups, problem.operand_dtype)
        # Workspaces: V (the GEMM's A) in the operand dtype; the three-kernel variant's M (its output) in float32.
        v = torch.empty((gemms, rows, cg), dtype=problem.operand_dtype, device=x.device)
        fused = config["VARIANT"] == "fused"
        m = None if fused else torch.empty((gemms, rows, kg), dtype=torch.float32, device=x.device)
        epilogue = epilogue_constexprs(problem, tensors)
        index_64 = needs_int64(problem, tensors, v, m, u) or max(v.numel(), u.numel(), m.numel() if m is not None else 0) > INT32_MAX
        block_t, block_c = TRANSFORM_BLOCK[tile]

        input_call = KernelCall(
            winograd_input_transform_kernel, (triton.cdiv(rows, block_t), triton.cdiv(cg, block_c), groups),
            dict(x_ptr=x, v_ptr=v, N=problem.n, H=problem.h, W=problem.w, Cg=cg, TH=th, TW=tw,
                 pad_h=problem.pad_h, pad_w=problem.pad_w,
                 sxn=x.stride(0), sxc=x.stride(1), sxh=x.stride(2), sxw=x.stride(3), svb=v.stride(0), svt=v.stride(1)),
            dict(TILE=tile, BLOCK_T=block_t, BLOCK_C=block_c, INDEX_64=index_64),
            num_warps=TRANSFORM_WARPS, num_stages=1,
        )
        res_strides = res.stride() if res is not None else (0, 0, 0, 0)
        output_pointers = dict(y_ptr=y, bias_ptr=tensors.bias, res_ptr=res)
        output_strides = dict(
            syn=y.stride(0), syk=y.stride(1), syp=y.stride(2), syq=y.stride(3),
            srn=res_strides[0], srk=res_strides[1], srp=res_strides[2], srq=res_strides[3],
        )
        output_constexprs = dict(HAS_BIAS=epilogue["HAS_BIAS"], HAS_RESIDUAL=epilogue["HAS_RESIDUAL"],
                                 ACTIVATION=epilogue["ACTIVATION"], INDEX_64=index_64)
        if fused:
            fused_call = KernelCall(
                winograd_gemm_output_kernel,
                (triton.cdiv(rows, config["BLOCK_M"]) * triton.cdiv(kg, config["BLOCK_N"]), groups),
                dict(v_ptr=v, u_ptr=u, **output_pointers, N=problem.n, Cg=cg, Kg=kg, P=problem.p, Q=problem.q, TH=th,
                     TW=tw, svb=v.stride(0), svt=v.stride(1), sub=u.stride(0), suk=u.stride(1), **output_strides),
                dict(TILE=tile, BLOCK_M=config["BLOCK_M"], BLOCK_N=config["BLOCK_N"], BLOCK_K=config["BLOCK_K"],
                     GROUP_M=config["GROUP_M"], EVEN_K=cg % config["BLOCK_K"] == 0,
                     PRECISION=Precision(problem.precision).code, **output_constexprs),
                config["num_warps"], config["num_stages"],
            )
            return [input_call, fused_call]
        gemm_call = KernelCall(
            gemm_kernel,
            (triton.cdiv(rows, config["BLOCK_M"]) * triton.cdiv(kg, config["BLOCK_N"]), gemms, 1),
            dict(a_ptr=v, b_ptr=u, c_ptr=m, bias_ptr=None, res_ptr=None, ws_ptr=None, M=rows, N=kg, K=cg, Q=1,
                 sa_b=v.stride(0), sa_p=0, sa_q=v.stride(1), sa_k=1, sb_b=u.stride(0), sb_k=1, sb_n=u.stride(1),
                 sc_b=m.stride(0), sc_n=1, sc_p=0, sc_q=m.stride(1), sr_b=0, sr_n=0, sr_p=0, sr_q=0),
            dict(BLOCK_M=config["BLOCK_M"], BLOCK_N=config["BLOCK_N"], BLOCK_K=config["BLOCK_K"],
                 GROUP_M=config["GROUP_M"], SPLIT_K=1, EVEN_K=cg % config["BLOCK_K"] == 0, DECODE_ROWS=False,
                 HAS_BIAS=False, HAS_RESIDUAL=False, ACTIVATION=Activation.NONE.code, PRECISION=Precision(problem.precision).code,
                 INDEX_64=index_64, ROW_ALIGN=pow2_divisor((v.stride(0), v.stride(1), u.stride(0), u.stride(1))),
                 K_ALIGN=pow2_divisor((cg,))),
            config["num_warps"], config["num_stages"],
        )
        block_t, block_k = TRANSFORM_BLOCK[tile]
        output_call = KernelCall(
            winograd_output_transform_kernel, (triton.cdiv(rows, block_t), triton.cdiv(kg, block_k), groups),
            dict(m_ptr=m, **output_pointers, N=problem.n, Kg=kg, P=problem.p, Q=problem.q, TH=th, TW=tw,
                 smb=m.stride(0), smt=m.stride(1), **output_strides),
            dict(TILE=tile, BLOCK_T=block_t, BLOCK_K=block_k, **output_constexprs),
            num_warps=TRANSFORM_WARPS, num_stages=1,
        )
        return [input_call, gemm_call, output_call]
