"""int8 implicit-GEMM conv2d: int8 x int8 products accumulated exactly in int32 on the tensor cores (IMMA on
sm_80, integer warpgroup MMA, IGMMA, on sm_90), with the quantisation fused into the epilogue.

Like the float implicit GEMM, each group g is  Y_g[M, Kg] = A_g[M, CRS] @ B_g[CRS, Kg]  with A gathered from the
input on the fly, every tensor addressed through its strides (NCHW, NHWC, views). The epilogue computes

    y = act(acc_int32 * scale[k] + bias[k] + residual)        scale[k] = x_scale * w_scale[k]

and stores y as float (dequantised), or requantised to int8: round half to even of y / out_scale, saturated to
[-128, 127]. Without scales (the search's check) y is the int32 sum itself, exact in float32 below 2^24.
"""
from __future__ import annotations

from typing import Optional, Sequence

import triton
import triton.language as tl

from ..enums import LoopOrder
from ..problem import ConvProblem
from ..runtime import device_info
from ..weights import prepare_weight
from .base import (
    Config, ConfigSpace, ConvTensors, KernelCall, KernelFamily, Param, clamp_pow2, conv_io_args, epilogue_constexprs,
)
from .epilogue import apply_activation
from .tiling import output_pixels, swizzled_tile

LOOP_ORDERS = tuple(order.value for order in LoopOrder)
LOOP_FILTER_OUTER: tl.constexpr = tl.constexpr(LoopOrder.FILTER_OUTER.code)
WEIGHT_LAYOUT = {"filter_outer": "krsc", "channel_outer": "kcrs"}  # the reduction's inner axis contiguous
# 1.5 * 2^23: adding and subtracting it rounds a float32 of magnitude < 2^22 to an integer, half to even.
ROUND_MAGIC = tl.constexpr(12582912.0)
MAX_GRID_Y = 65535


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
    M = N * P * Q
    pid_m, pid_n = swizzled_tile(tl.program_id(0), tl.cdiv(M, BLOCK_M), tl.cdiv(Kg, BLOCK_N), GROUP_M)
    g = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_c = tl.arange(0, BLOCK_K)
    if INDEX_64:
        offs_m = offs_m.to(tl.int64)
        offs_n = offs_n.to(tl.int64)
        offs_c = offs_c.to(tl.int64)
        g = g.to(tl.int64)
    mask_m = offs_m < M
    mask_n = offs_n < Kg
    n_idx, p_idx, q_idx, ih0, iw0 = output_pixels(offs_m, P, Q, stride_h, stride_w, pad_h, pad_w)
    x_rows = x_ptr + n_idx * sxn + (g * Cg) * sxc  # [BLOCK_M] pointers to channel 0 of the group
    w_cols = w_ptr + (g * Kg + offs_n) * swk  # [BLOCK_N] pointers to each output channel's filter

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    if LOOP_ORDER == LOOP_FILTER_OUTER:
        # Step t: filter tap rs = t // ncb, channels [c0, c0 + BLOCK_K); one flat loop, so Triton pipelines it.
        ncb = tl.cdiv(Cg, BLOCK_K)
        for t in range(0, R * S * ncb):
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
            kk = k0 + offs_c
            k_ok = kk < CRS
            c = kk // RS
            rs = kk - c * RS
            r = rs // S
            s = rs - r * S
            ih = ih0[:, None] + (r * dil_h)[None, :]
            iw = iw0[:, None] + (s * dil_w)[None, :]
            a_ok = mask_m[:, None] & k_ok[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            a = tl.load(x_rows[:, None] + ih * sxh + iw * sxw + (c * sxc)[None, :], mask=a_ok, other=0)
            b = tl.load(w_cols[None, :] + (c * swc + r * swr + s * sws)[:, None],
                        mask=k_ok[:, None] & mask_n[None, :], other=0)
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
def fits_shared_memory(problem: ConvProblem, config: Config) -> Optional[str]:
    """The pipelined int8 A and B tiles (one byte per element) must fit the device's shared memory."""
    need = max(1, config["num_stages"]) * (config["BLOCK_M"] + config["BLOCK_N"]) * config["BLOCK_K"]
    limit = device_info().shared_memory_per_block
    return f"needs ~{need} B of shared memory, device allows {limit}" if need > limit else None


def fits_registers(problem: ConvProblem, config: Config) -> Optional[str]:
    per_thread = config["BLOCK_M"] * config["BLOCK_N"] // (config["num_warps"] * 32)
    return f"int32 accumulator needs {per_thread} registers per thread (> 128)" if per_thread > 128 else None


def low_register_pressure(problem: ConvProblem, config: Config) -> Optional[str]:
    """Tile elements each thread loads per reduction step (the channel-outer gather costs double: its index math
    is per element); above ~72 the compiled kernels spill (checked with tritonconv.compile on sm_80/90)."""
    a_cost = 2 if config["LOOP_ORDER"] == "channel_outer" else 1
    elements = (a_cost * config["BLOCK_M"] + config["BLOCK_N"]) * config["BLOCK_K"] // (config["num_warps"] * 32)
    return f"{elements} loaded elements per thread per step would spill registers" if elements > 72 else None


def not_wasteful(problem: ConvProblem, config: Config) -> Optional[str]:
    """Prunes tiles mostly made of padding: they are correct but never fastest."""
    if config["BLOCK_N"] > clamp_pow2(problem.gemm_n, 16, 256):
        return "BLOCK_N larger than the output channels per group need"
    if config["BLOCK_M"] > clamp_pow2(problem.gemm_m, 16, 256):
        return "BLOCK_M larger than the output pixels need"
    reduction = problem.c_per_group if config["LOOP_ORDER"] == "filter_outer" else problem.gemm_k
    if config["BLOCK_K"] > clamp_pow2(reduction, 32, 128):
        return "BLOCK_K larger than the reduction step needs"
    if config["BLOCK_M"] * config["BLOCK_N"] < config["num_warps"] * 256:
        return "too many warps for the tile"
    return None


class Int8ImplicitGemmConv(KernelFamily):
    name = "int8_implicit_gemm"
    description = "int8 implicit-GEMM conv2d, int32 accumulation, fused dequantise/requantise epilogue"
    dtypes = ("int8",)

    def supports(self, problem: ConvProblem) -> Optional[str]:
        if problem.dtype != "int8" or problem.precision != "int8":
            return f"computes int8 inputs in precision int8, not {problem.dtype} in {problem.precision}"
        if problem.batched_weight:
            return "no batched weights"
        if problem.groups > MAX_GRID_Y:
            return f"groups={problem.groups} exceeds the launch grid's limit of {MAX_GRID_Y}"
        return None

    def space(self, problem: ConvProblem) -> ConfigSpace:
        # int8 MMAs reduce 32 elements per instruction (m16n8k32 on sm_80, k32 wgmma on sm_90): BLOCK_K >= 32.
        return ConfigSpace(
            params=[
                Param("BLOCK_M", (16, 32, 64, 128, 256)),
                Param("BLOCK_N", (16, 32, 64, 128, 256)),
                Param("BLOCK_K", (32, 64, 128)),
                Param("GROUP_M", (1, 8)),
                Param("LOOP_ORDER", LOOP_ORDERS),
                Param("num_warps", (2, 4, 8)),
                Param("num_stages", (1, 2, 3, 4, 5)),
            ],
            constraints=[fits_shared_memory, fits_registers],
            pruning=[not_wasteful, low_register_pressure],
        )

    def default_config(self, problem: ConvProblem) -> Config:
        """Tiles sized to the GEMM, shrunk until the grid fills the GPU (BLOCK_M >= 64 on Hopper, where the
        warpgroup MMA needs 64 rows), a channel block that divides the channels when one does."""
        loop = "filter_outer" if problem.c_per_group >= 32 else "channel_outer"
        reduction = problem.c_per_group if loop == "filter_outer" else problem.gemm_k
        hopper = device_info().capability >= (9, 0)
        block_m = clamp_pow2(problem.gemm_m, 64 if hopper else 16, 128)
        block_n = clamp_pow2(problem.gemm_n, 16, 128)
        block_k = clamp_pow2(reduction, 32, 64)
        if loop == "filter_outer" and reduction % block_k:
            block_k = 32
        sms = device_info().sm_count if device_info().sm_count > 1 else 132

        def tiles(bm: int, bn: int) -> int:
            return triton.cdiv(problem.gemm_m, bm) * triton.cdiv(problem.gemm_n, bn) * problem.groups

        while tiles(block_m, block_n) < sms and block_m > 64:
            block_m //= 2
        while tiles(block_m, block_n) < sms and block_n > 32:
            block_n //= 2
        config: Config = {
            "BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k, "GROUP_M": 8, "LOOP_ORDER": loop,
            "num_warps": 8 if block_m * block_n >= 128 * 128 else 4, "num_stages": 3,
        }
        while config["BLOCK_K"] > 32 and low_register_pressure(problem, config):
            config["BLOCK_K"] //= 2
        while config["num_stages"] > 1 and fits_shared_memory(problem, config):
            config["num_stages"] -= 1
        return config

    def heuristic_configs(self, problem: ConvProblem) -> list[Config]:
        base = self.default_config(problem)
        other_loop = "channel_outer" if base["LOOP_ORDER"] == "filter_outer" else "filter_outer"
        variants = [
            base,
            {**base, "LOOP_ORDER": other_loop},
            {**base, "BLOCK_M": max(16, base["BLOCK_M"] // 2), "num_warps": 4},
            {**base, "BLOCK_K": 128 if base["BLOCK_K"] < 128 else 64},
        ]
        return self.space(problem).feasible(problem, variants)

    def kernel_calls(self, problem: ConvProblem, tensors: ConvTensors, config: Config) -> Sequence[KernelCall]:
        w = prepare_weight(tensors.weight, WEIGHT_LAYOUT[config["LOOP_ORDER"]])
        quant = tensors.quant
        grid = (
            triton.cdiv(problem.gemm_m, config["BLOCK_M"]) * triton.cdiv(problem.gemm_n, config["BLOCK_N"]),
            problem.groups,
        )
        out_scale = quant.out_scale if quant is not None and quant.out_scale is not None else 1.0
        args = dict(
            **conv_io_args(problem, tensors), w_ptr=w, scale_ptr=quant.scale if quant is not None else None,
            out_scale=float(out_scale), Cg=problem.c_per_group, Kg=problem.k_per_group,
            swk=w.stride(0), swc=w.stride(1), swr=w.stride(2), sws=w.stride(3),
        )
        epilogue = epilogue_constexprs(problem, tensors)
        del epilogue["PRECISION"]  # always int8 x int8 -> int32
        constexprs = dict(
            BLOCK_M=config["BLOCK_M"], BLOCK_N=config["BLOCK_N"], BLOCK_K=config["BLOCK_K"],
            GROUP_M=config["GROUP_M"], LOOP_ORDER=LoopOrder(config["LOOP_ORDER"]).code, R=problem.r, S=problem.s,
            HAS_SCALE=quant is not None, REQUANTIZE=quant is not None and quant.out_scale is not None, **epilogue,
        )
        return [KernelCall(conv2d_int8_kernel, grid, args, constexprs, config["num_warps"], config["num_stages"])]
