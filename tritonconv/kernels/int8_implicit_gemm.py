"""int8 implicit-GEMM conv2d: int8 x int8 products accumulated exactly in int32 on the tensor cores (IMMA on
sm_80, integer warpgroup MMA, IGMMA, on sm_90), with the quantisation fused into the epilogue.

Like the float implicit GEMM, each group g is  Y_g[M, Kg] = A_g[M, CRS] @ B_g[CRS, Kg]  with A gathered from the
input on the fly, every tensor addressed through its strides (NCHW, NHWC, views). The epilogue computes

    y = act(acc_int32 * scale[k] + bias[k] + residual)        scale[k] = x_scale * w_scale[k]

and stores y as float (dequantised), or requantised to int8: round half to even of y / out_scale, saturated to
[-128, 127]. Without scales (the search's check) y is the int32 sum itself, exact in float32 below 2^24.
"""
from __future__ import annotations

from functools import partial
from typing import Optional, Sequence

import triton
import triton.language as tl

from ..problem import ConvProblem
from ..runtime import DeviceInfo
from ..weights import prepare_weight
from .base import (
    Config, ConfigSpace, ConvTensors, KernelCall, KernelFamily, Param, clamp_pow2, conv_io_args, epilogue_constexprs,
    target_device,
)
from .common.checks import groups_grid_reason
from .common.conv_gemm import (
    LOOP_FILTER_OUTER, LOOP_ORDERS, LOOP_WEIGHT_LAYOUT, implicit_gemm_constexprs, implicit_gemm_grid, other_loop_order,
)
from .common.epilogue import apply_activation
from .common.limits import (
    GEMM_LAUNCH_PARAMS, fits_registers, fits_shared_memory, gemm_tile_params, grid_filling_tiles, implicit_gemm_padding,
    low_register_pressure, shrink_stages, warps_for_tile,
)
from .common.tiling import gather_crs, gemm_tile, output_pixels, widened

# 1.5 * 2^23: adding and subtracting it rounds a float32 of magnitude < 2^22 to an integer, half to even.
ROUND_MAGIC = tl.constexpr(12582912.0)


@triton.jit
def conv2d_int8_kernel(
    x_ptr, w_ptr, y_ptr, scale_ptr, bias_ptr, res_ptr, out_scale,
    N, H, W, Cg, Kg, P, Q,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    sxn, sxc, sxh, sxw,  # input strides (n, c, h, w)
    swk, swc, swr, sws,  # weight strides (k, c, r, s)
    syn, syk, syp, syq,  # output strides (n, k, p, q)
    srn, srk, srp, srq,  # residual strides (n, k, p, q)
    R: tl.constexpr, S: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    LOOP_ORDER: tl.constexpr,  # LoopOrder code: one flat loop over (filter tap, channel block), or over flattened (c, r, s)
    HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, ACTIVATION: tl.constexpr,
    REQUANTIZE: tl.constexpr, INDEX_64: tl.constexpr,
):
    offs_m, offs_n, mask_m, mask_n = gemm_tile(tl.program_id(0), N * P * Q, Kg, BLOCK_M, BLOCK_N, GROUP_M, INDEX_64)
    g = widened(tl.program_id(1), INDEX_64)
    offs_c = widened(tl.arange(0, BLOCK_K), INDEX_64)
    n_idx, p_idx, q_idx, ih0, iw0 = output_pixels(offs_m, P, Q, stride_h, stride_w, pad_h, pad_w)
    x_rows = x_ptr + n_idx * sxn + (g * Cg) * sxc  # [BLOCK_M] pointers to channel 0 of the group
    w_cols = w_ptr + (g * Kg + offs_n) * swk  # [BLOCK_N] pointers to each output channel's filter

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    if LOOP_ORDER == LOOP_FILTER_OUTER:
        # Step t: filter tap rs = t // ncb, channels [c0, c0 + BLOCK_K); one flat loop, so Triton pipelines it.
        ncb = tl.cdiv(Cg, BLOCK_K)
        for t in range(0, R * S * ncb):
            # Decoded inline, not with common.tiling.filter_tap: computing the channels before (r, s) keeps the
            # sm_80 loop one instruction shorter (compiled listing of the int8 defaults).
            rs = t // ncb
            c = (t - rs * ncb) * BLOCK_K + offs_c
            r = rs // S
            s = rs - r * S
            ih = ih0 + r * dil_h
            iw = iw0 + s * dil_w
            row_ok = mask_m & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            c_ok = c < Cg
            a = tl.load((x_rows + ih * sxh + iw * sxw)[:, None] + (c * sxc)[None, :],
                        mask=row_ok[:, None] & c_ok[None, :], other=0)
            b = tl.load((w_cols + r * swr + s * sws)[None, :] + (c * swc)[:, None],
                        mask=c_ok[:, None] & mask_n[None, :], other=0)
            acc = tl.dot(a, b, acc, out_dtype=tl.int32)
    else:
        # Reduction index kk = c * (R * S) + r * S + s, decoded per element: no channel padding to BLOCK_K,
        # which suits few channels per group (3-channel stems).
        RS = R * S
        CRS = Cg * RS
        for k0 in range(0, CRS, BLOCK_K):
            a, b = gather_crs(x_rows, w_cols, k0 + offs_c, CRS, ih0, iw0, mask_m, mask_n, H, W, dil_h, dil_w,
                              sxc, sxh, sxw, swc, swr, sws, RS, S, 0)
            acc = tl.dot(a, b, acc, out_dtype=tl.int32)

    # ---- epilogue: dequantise, bias, residual, activation; then float store or requantised int8 store ----
    offs_k = g * Kg + offs_n
    out_mask = mask_m[:, None] & mask_n[None, :]
    y = acc.to(tl.float32)
    if HAS_SCALE:
        y = y * tl.load(scale_ptr + offs_k, mask=mask_n, other=0.0)[None, :]
    if HAS_BIAS:
        y += tl.load(bias_ptr + offs_k, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    if HAS_RESIDUAL:
        res_off = (n_idx * srn + p_idx * srp + q_idx * srq)[:, None] + offs_k[None, :] * srk
        y += tl.load(res_ptr + res_off, mask=out_mask, other=0.0).to(tl.float32)
    y = apply_activation(y, ACTIVATION)
    if REQUANTIZE:
        y = tl.math.div_rn(y, out_scale)  # IEEE division: the rounding below sees the exact quotient's float
        y = tl.minimum(tl.maximum(y, -128.0), 127.0)
        y = (y + ROUND_MAGIC) - ROUND_MAGIC
    y_off = (n_idx * syn + p_idx * syp + q_idx * syq)[:, None] + offs_k[None, :] * syk
    tl.store(y_ptr + y_off, y.to(y_ptr.dtype.element_ty), mask=out_mask)


# ------------------------------------------------------------------------------------------------------------
# Config space, constraints and default
# ------------------------------------------------------------------------------------------------------------
def not_wasteful(problem: ConvProblem, config: Config) -> Optional[str]:
    """Prunes tiles mostly made of padding; int8 MMAs reduce 32 elements per instruction."""
    return implicit_gemm_padding(problem, config, min_block_k=32)


class Int8ImplicitGemmConv(KernelFamily):
    name = "int8_implicit_gemm"
    description = "int8 implicit-GEMM conv2d, int32 accumulation, fused dequantise/requantise epilogue"
    dtypes = ("int8",)

    def supports(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> Optional[str]:
        if problem.dtype != "int8" or problem.precision != "int8":
            return f"computes int8 inputs in precision int8, not {problem.dtype} in {problem.precision}"
        return groups_grid_reason(problem)

    def space(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> ConfigSpace:
        # int8 MMAs reduce 32 elements per instruction (m16n8k32 on sm_80, k32 wgmma on sm_90): BLOCK_K >= 32.
        return ConfigSpace(
            params=[*gemm_tile_params(block_k=(32, 64, 128), group_m=(1, 8)), Param("LOOP_ORDER", LOOP_ORDERS), *GEMM_LAUNCH_PARAMS],
            constraints=[partial(fits_shared_memory, device=target_device(device)), fits_registers],
            pruning=[not_wasteful, low_register_pressure],
        )

    def default_config(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> Config:
        """Tiles sized to the GEMM, shrunk until the grid fills the GPU (BLOCK_M >= 64 on Hopper, where the
        warpgroup MMA needs 64 rows), a channel block that divides the channels when one does."""
        loop = "filter_outer" if problem.c_per_group >= 32 else "channel_outer"
        reduction = problem.c_per_group if loop == "filter_outer" else problem.gemm_k
        device = target_device(device)
        block_m, block_n = grid_filling_tiles(problem, device, (("m", 64), ("n", 32)))
        block_k = clamp_pow2(reduction, 32, 64)
        if loop == "filter_outer" and reduction % block_k:
            block_k = 32
        config: Config = {
            "BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k, "GROUP_M": 8, "LOOP_ORDER": loop,
            "num_warps": warps_for_tile(block_m, block_n), "num_stages": 3,
        }
        while config["BLOCK_K"] > 32 and low_register_pressure(problem, config):
            config["BLOCK_K"] //= 2
        return shrink_stages(problem, config, partial(fits_shared_memory, device=device))

    def heuristic_configs(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> list[Config]:
        base = self.default_config(problem, device)
        variants = [
            base,
            {**base, "LOOP_ORDER": other_loop_order(base["LOOP_ORDER"])},
            {**base, "BLOCK_M": max(16, base["BLOCK_M"] // 2), "num_warps": 4},
            {**base, "BLOCK_K": 128 if base["BLOCK_K"] < 128 else 64},
        ]
        return self.space(problem, device).feasible(problem, variants)

    def kernel_calls(
        self, problem: ConvProblem, tensors: ConvTensors, config: Config, device: Optional[DeviceInfo] = None,
    ) -> Sequence[KernelCall]:
        w = prepare_weight(tensors.weight, LOOP_WEIGHT_LAYOUT[config["LOOP_ORDER"]])
        quant = tensors.quant
        out_scale = quant.out_scale if quant is not None and quant.out_scale is not None else 1.0
        args = dict(
            **conv_io_args(problem, tensors), w_ptr=w, scale_ptr=quant.scale if quant is not None else None,
            out_scale=float(out_scale), Cg=problem.c_per_group, Kg=problem.k_per_group,
            swk=w.stride(0), swc=w.stride(1), swr=w.stride(2), sws=w.stride(3),
        )
        epilogue = epilogue_constexprs(problem, tensors)
        del epilogue["PRECISION"]  # always int8 x int8 -> int32
        constexprs = dict(
            **implicit_gemm_constexprs(problem, config),
            HAS_SCALE=quant is not None, REQUANTIZE=quant is not None and quant.out_scale is not None, **epilogue,
        )
        grid = implicit_gemm_grid(problem, config)
        return [KernelCall(conv2d_int8_kernel, grid, args, constexprs, config["num_warps"], config["num_stages"])]
