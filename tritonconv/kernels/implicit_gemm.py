"""Implicit-GEMM conv2d: the general family, correct for every problem F.conv2d accepts.

Each group g is a GEMM  Y_g[M, Kg] = A_g[M, CRS] @ B_g[CRS, Kg]  with
    M   = N * P * Q          (one row per output pixel),
    Kg  = K / groups         (one column per output channel of the group),
    CRS = C/groups * R * S   (the reduction: input channels x filter taps).
A is never materialised: each A element is gathered from the input on the fly (im2col in registers), which is
what makes it "implicit". Input, weight, output and residual are all addressed through their strides, so NCHW
and NHWC (and any other strided view) are read and written directly.
"""
from __future__ import annotations

from functools import partial
from typing import Optional, Sequence

import triton
import triton.language as tl

from ..problem import ConvProblem
from ..runtime import DeviceInfo
from ..enums import Precision
from ..weights import prepare_weight
from .base import (
    Config, ConfigSpace, ConvTensors, KernelCall, KernelFamily, Param, clamp_pow2, conv_io_args, epilogue_constexprs,
    interpreter_dot_reason, pow2_divisor, scaled_operands, target_device,
)
from .common.checks import groups_grid_reason
from .common.conv_gemm import (
    LOOP_FILTER_OUTER, LOOP_ORDERS, LOOP_WEIGHT_LAYOUT, implicit_gemm_constexprs, implicit_gemm_grid, other_loop_order,
)
from .common.epilogue import dequantize, dot_with_precision, pixel_offsets, store_pixels, store_rows
from .common.limits import (
    GEMM_LAUNCH_PARAMS, GEMM_TILE_PARAMS, fits_registers, fits_shared_memory, grid_filling_tiles, implicit_gemm_padding,
    low_register_pressure, shrink_stages, warps_for_tile,
)
from .common.tiling import gather_crs, gemm_tile, known_multiple, output_pixels, tap_rows, widened


@triton.jit
def conv2d_implicit_gemm_kernel(
    x_ptr, w_ptr, y_ptr, bias_ptr, res_ptr,
    N, H, W, Cg, Kg, P, Q,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    sxn, sxc, sxh, sxw,  # input strides (n, c, h, w)
    swk, swc, swr, sws,  # weight strides (k, c, r, s)
    syn, syk, syp, syq,  # output strides (n, k, p, q)
    srn, srk, srp, srq,  # residual strides (n, k, p, q)
    R: tl.constexpr, S: tl.constexpr,  # filter size: constant, so tap loops and the (c, r, s) decode fold
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    LOOP_ORDER: tl.constexpr,  # a LoopOrder code: filter position outer, channel inner; or channel outer, flattened (c, r, s)
    EVEN_C: tl.constexpr,  # Cg % BLOCK_K == 0: filter-outer channel blocks need no channel mask
    EVEN_K: tl.constexpr,  # Kg % BLOCK_N == 0: no output-channel mask on the weight loads
    CHANNEL_ALIGN: tl.constexpr,  # a power of two dividing the channel-run strides (sxn, sxh, sxw, swk, ...)
    HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, ACTIVATION: tl.constexpr,
    PRECISION: tl.constexpr, INDEX_64: tl.constexpr,
    scale_ptr=None,  # scaled (fp8) operands: x_scale * w_scale, one float32
):
    # ---- which output tile: GROUP_M swizzle over (M tiles x Kg tiles) for L2 reuse; axis 1 is the group ----
    offs_m, offs_n, mask_m, mask_n = gemm_tile(tl.program_id(0), N * P * Q, Kg, BLOCK_M, BLOCK_N, GROUP_M, INDEX_64)
    g = widened(tl.program_id(1), INDEX_64)

    # ---- output pixel of each row: m = (n * P + p) * Q + q; its input window starts at (ih0, iw0) ----
    n_idx, p_idx, q_idx, ih0, iw0 = output_pixels(offs_m, P, Q, stride_h, stride_w, pad_h, pad_w)
    x_rows = x_ptr + n_idx * sxn + (g * Cg) * sxc  # [BLOCK_M] pointers to channel 0 of the group
    w_cols = w_ptr + (g * Kg + offs_n) * swk  # [BLOCK_N] pointers to each output channel's filter

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if LOOP_ORDER == LOOP_FILTER_OUTER:
        # Reduction step t covers filter tap (r, s) and channels [c0, c0 + BLOCK_K), advanced incrementally (no
        # div/mod per step). One flat loop (not nested) so that Triton software-pipelines it across taps. Every
        # address is one loop-invariant offset vector plus a scalar per step (the tap's and channel block's).
        if CHANNEL_ALIGN > 1:  # then no hinted stride is 1
            Cg = known_multiple(Cg, CHANNEL_ALIGN)
            sxn = known_multiple(sxn, CHANNEL_ALIGN)
            sxh = known_multiple(sxh, CHANNEL_ALIGN)
            sxw = known_multiple(sxw, CHANNEL_ALIGN)
            swk = known_multiple(swk, CHANNEL_ALIGN)
            sws = known_multiple(sws, CHANNEL_ALIGN)
            swr = known_multiple(swr, CHANNEL_ALIGN)
        a_rows = n_idx * sxn + ih0 * sxh + iw0 * sxw + (g * Cg) * sxc
        b_cols = (g * Kg + offs_n) * swk
        offs_c = tl.arange(0, BLOCK_K)
        a_c = offs_c * sxc
        b_c = offs_c * swc
        # Bit r * S + s of a row's `taps` is set iff that tap reads inside the image (padding otherwise): the
        # bounds checks run once here, and each step tests one bit per row. Filters of more than 64 taps (9x9 and
        # up) do not fit a mask word: their steps check the tap's bounds.
        if R * S > 31:
            taps = tl.zeros((BLOCK_M,), dtype=tl.int64)
            tap_bit = tl.full((), 1, tl.int64)
        else:
            taps = tl.zeros((BLOCK_M,), dtype=tl.int32)
            tap_bit = tl.full((), 1, tl.int32)
        if R * S <= 64:
            for tr in tl.static_range(R):
                ih = ih0 + tr * dil_h
                row_in = mask_m & (ih >= 0) & (ih < H)
                for ts in tl.static_range(S):
                    iw = iw0 + ts * dil_w
                    inside = row_in & (iw >= 0) & (iw < W)
                    taps |= inside.to(taps.dtype) << (tr * S + ts)
        ncb = tl.cdiv(Cg, BLOCK_K)
        c0 = 0
        r = 0
        s = 0
        for _ in range(0, R * S * ncb):
            if R * S <= 64:
                row_ok = (taps & tap_bit) != 0
            else:
                _, _, row_ok = tap_rows(ih0, iw0, r, s, dil_h, dil_w, H, W, mask_m)
            a_step = widened(r * dil_h, INDEX_64) * sxh + widened(s * dil_w, INDEX_64) * sxw + widened(c0, INDEX_64) * sxc
            b_step = widened(r, INDEX_64) * swr + widened(s, INDEX_64) * sws + widened(c0, INDEX_64) * swc
            a_ptrs = x_ptr + (a_rows + a_step)[:, None] + a_c[None, :]
            b_ptrs = w_ptr + b_cols[None, :] + (b_c + b_step)[:, None]
            if EVEN_C:
                a_mask = row_ok[:, None]
                b_mask = mask_n[None, :]
            else:
                c_ok = (c0 + offs_c) < Cg
                a_mask = row_ok[:, None] & c_ok[None, :]
                b_mask = c_ok[:, None] & mask_n[None, :]
            if EVEN_K and EVEN_C:
                b = tl.load(b_ptrs)
            else:
                b = tl.load(b_ptrs, mask=b_mask, other=0.0)
            a = tl.load(a_ptrs, mask=a_mask, other=0.0)
            acc = dot_with_precision(a, b, acc, PRECISION)
            c0 += BLOCK_K
            next_tap = c0 >= Cg
            c0 = tl.where(next_tap, 0, c0)
            if R * S <= 64:
                tap_bit = tl.where(next_tap, tap_bit << 1, tap_bit)
            s = tl.where(next_tap, s + 1, s)
            next_row = s >= S
            s = tl.where(next_row, 0, s)
            r = tl.where(next_row, r + 1, r)
    else:
        # Reduction index kk = c * (R * S) + r * S + s, decoded per element: no padding of C up to BLOCK_K,
        # which suits few channels per group (C=3 stems, 4-channel ResNeXt groups).
        RS = R * S
        CRS = Cg * RS
        for k0 in range(0, CRS, BLOCK_K):
            kk = widened(k0 + tl.arange(0, BLOCK_K), INDEX_64)
            a, b = gather_crs(x_rows, w_cols, kk, CRS, ih0, iw0, mask_m, mask_n, H, W, dil_h, dil_w,
                              sxc, sxh, sxw, swc, swr, sws, RS, S, 0.0)
            acc = dot_with_precision(a, b, acc, PRECISION)

    # ---- epilogue: y = act(acc + bias + residual), stored through the output's strides ----
    acc = dequantize(acc, scale_ptr, PRECISION)
    offs_k = g * Kg + offs_n
    if LOOP_ORDER == LOOP_FILTER_OUTER:
        store_rows(
            acc, pixel_offsets(n_idx, p_idx, q_idx, syn, syp, syq), pixel_offsets(n_idx, p_idx, q_idx, srn, srp, srq),
            offs_k, mask_m, mask_n, y_ptr, bias_ptr, res_ptr, syk, srk, HAS_BIAS, HAS_RESIDUAL, ACTIVATION,
        )
    else:  # few channels: often one unrolled step, whose MMA the early offsets of store_rows would stay live across
        store_pixels(
            acc, n_idx, p_idx, q_idx, offs_k, mask_m, mask_n, y_ptr, bias_ptr, res_ptr,
            syn, syk, syp, syq, srn, srk, srp, srq, HAS_BIAS, HAS_RESIDUAL, ACTIVATION,
        )


# ------------------------------------------------------------------------------------------------------------
# Config space, constraints and default
# ------------------------------------------------------------------------------------------------------------
class ImplicitGemmConv(KernelFamily):
    name = "implicit_gemm"
    precisions = Precision.names()  # fp8 included: kernel_calls quantize the operands (scaled_operands)
    description = "implicit-GEMM conv2d: any groups/stride/padding/dilation/filter, NCHW or NHWC"

    def supports(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> Optional[str]:
        if reason := interpreter_dot_reason(problem):
            return reason
        return groups_grid_reason(problem)

    def space(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> ConfigSpace:
        return ConfigSpace(
            params=[
                *GEMM_TILE_PARAMS,
                Param("LOOP_ORDER", LOOP_ORDERS),
                Param("WEIGHT_LAYOUT", tuple(LOOP_WEIGHT_LAYOUT.values())),  # tuned apart from the loop order
                *GEMM_LAUNCH_PARAMS,
            ],
            constraints=[partial(fits_shared_memory, device=target_device(device)), fits_registers],
            pruning=[implicit_gemm_padding, low_register_pressure],
        )

    def default_config(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> Config:
        """Heuristic: tiles sized to the GEMM, shrunk until the grid fills the GPU, stages that fit."""
        half = problem.operand_dtype.itemsize == 2
        loop = "filter_outer" if problem.c_per_group >= 16 else "channel_outer"
        reduction = problem.c_per_group if loop == "filter_outer" else problem.gemm_k
        device = target_device(device)
        block_m, block_n = grid_filling_tiles(problem, device)
        block_k = clamp_pow2(reduction, 16, 64 if half and loop == "filter_outer" else 32)
        if loop == "filter_outer":  # prefer a channel block that divides the channels: no channel masks (EVEN_C)
            block_k = next((bk for bk in (block_k, block_k // 2, block_k // 4) if bk >= 16 and reduction % bk == 0), block_k)
        config: Config = {
            "BLOCK_M": block_m,
            "BLOCK_N": block_n,
            "BLOCK_K": block_k,
            "GROUP_M": 8,
            "LOOP_ORDER": loop,
            "WEIGHT_LAYOUT": LOOP_WEIGHT_LAYOUT[loop],
            "num_warps": warps_for_tile(block_m, block_n),
            "num_stages": 4 if half else 3,
        }
        while config["BLOCK_K"] > 16 and low_register_pressure(problem, config):
            config["BLOCK_K"] //= 2
        return shrink_stages(problem, config, partial(fits_shared_memory, device=device))

    def heuristic_configs(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> list[Config]:
        base = self.default_config(problem, device)
        variants = [base]
        other_loop = other_loop_order(base["LOOP_ORDER"])
        variants.append({**base, "LOOP_ORDER": other_loop, "WEIGHT_LAYOUT": LOOP_WEIGHT_LAYOUT[other_loop]})
        variants.append({**base, "BLOCK_M": max(16, base["BLOCK_M"] // 2), "num_warps": 4})
        variants.append({**base, "BLOCK_N": max(16, base["BLOCK_N"] // 2), "num_warps": 4})
        return self.space(problem, device).feasible(problem, variants)

    def kernel_calls(
        self, problem: ConvProblem, tensors: ConvTensors, config: Config, device: Optional[DeviceInfo] = None,
    ) -> Sequence[KernelCall]:
        tensors, scale = scaled_operands(problem, tensors)
        w = prepare_weight(tensors.weight, config["WEIGHT_LAYOUT"], problem.operand_dtype)
        x = tensors.input
        args = dict(
            **conv_io_args(problem, tensors), w_ptr=w,
            Cg=problem.c_per_group, Kg=problem.k_per_group,
            swk=w.stride(0), swc=w.stride(1), swr=w.stride(2), sws=w.stride(3), scale_ptr=scale,
        )
        constexprs = dict(
            **implicit_gemm_constexprs(problem, config),
            EVEN_C=problem.c_per_group % config["BLOCK_K"] == 0, EVEN_K=problem.k_per_group % config["BLOCK_N"] == 0,
            CHANNEL_ALIGN=pow2_divisor((x.stride(0), x.stride(2), x.stride(3), w.stride(0), w.stride(2), w.stride(3), problem.c_per_group)),
            **epilogue_constexprs(problem, tensors),
        )
        grid = implicit_gemm_grid(problem, config)
        return [KernelCall(conv2d_implicit_gemm_kernel, grid, args, constexprs, config["num_warps"], config["num_stages"])]
