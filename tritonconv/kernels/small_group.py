"""Grouped conv2d with few channels per group (ResNeXt 4-channel groups, RegNet widths 8, 24, 56, ...).

The implicit GEMM runs one GEMM per group, whose N (= K/groups) and reduction (= C/groups * R * S) are too thin
for tensor-core tiles. This family instead tiles the output channels densely across group boundaries: a program
computes  Y[BLOCK_M output pixels, BLOCK_N consecutive output channels]  for every group those channels touch,
in one of two modes (the `MODE` tunable, so the search decides):

  * "block_diag": the groups of the tile are packed into one GEMM. A gathers the input channels of all groups
    the tile spans ([g_lo * Cg, (g_hi + 1) * Cg), the start rounded down to a BLOCK_K multiple so the loads
    vectorise), B is the block-diagonal weight: B[c, k] = w[k, c - g(k)*Cg] when input channel c belongs to
    output channel k's group g(k), else 0 - built in registers by the load mask, so no packed copy of the
    weight is needed. Any Cg, Kg and groups count works, and tiles straddling groups are just masks. Tensor
    cores do (groups per tile) times the useful work, which they can afford on a memory-bound layer.
  * "direct": no tensor cores: each output channel accumulates its own group's Cg * R * S products with FMAs
    from a gathered input tile. Best for channel-multiplier-like groups (Cg of 1-2, few K per group).
"""
from __future__ import annotations

from functools import partial
from typing import Optional, Sequence

import triton
import triton.language as tl

from ..problem import ConvProblem
from ..runtime import DeviceInfo
from ..enums import SmallGroupMode
from ..weights import prepare_weight
from .base import (
    Config, ConfigSpace, ConvTensors, KernelCall, KernelFamily, Param, clamp_pow2, conv_io_args, epilogue_constexprs,
    interpreter_dot_reason,
    target_device,
)
from .common.checks import programs_reason
from .common.epilogue import as_operand, dot_with_precision, pixel_offsets, store_rows
from .common.limits import (
    accumulator_per_thread, first_reason, oversized_block, registers_reason, shared_memory_reason, shrink_stages,
    sm_count, too_many_warps,
)
from .common.tiling import filter_tap, output_pixels, tap_rows, tile_offsets

MODES = tuple(mode.value for mode in SmallGroupMode)
MODE_BLOCK_DIAG: tl.constexpr = tl.constexpr(SmallGroupMode.BLOCK_DIAG.code)
# The tile with the fewest programs the space offers: if its grid is too large, every config's is.
LARGEST_TILE = {"BLOCK_M": 256, "BLOCK_N": 256}
# The direct mode reads weights as [BLOCK_N] vectors along K (RSCK); the MMA mode as [BLOCK_K, BLOCK_N] tiles
# with input channels contiguous per output channel (KRSC).
WEIGHT_LAYOUT = {"block_diag": "krsc", "direct": "rsck"}


@triton.jit
def conv2d_small_group_kernel(
    x_ptr, w_ptr, y_ptr, bias_ptr, res_ptr,
    N, H, W, C, K, Cg, Kg, P, Q, R, S,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    sxn, sxc, sxh, sxw,  # input strides (n, c, h, w)
    swk, swc, swr, sws,  # weight strides (k, c, r, s)
    syn, syk, syp, syq,  # output strides (n, k, p, q)
    srn, srk, srp, srq,  # residual strides (n, k, p, q)
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, MODE: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, ACTIVATION: tl.constexpr,
    PRECISION: tl.constexpr, INDEX_64: tl.constexpr,
):
    # ---- which tile: pixel tiles vary fastest, so programs running together share input halo rows ----
    M = N * P * Q
    num_pid_m = tl.cdiv(M, BLOCK_M)
    pid = tl.program_id(0)
    pid_m = pid % num_pid_m
    pid_n = pid // num_pid_m

    offs_m = tile_offsets(pid_m, BLOCK_M, INDEX_64)
    offs_k = tile_offsets(pid_n, BLOCK_N, INDEX_64)  # absolute output channels
    mask_m = offs_m < M
    mask_k = offs_k < K

    # ---- output pixel of each row: m = (n * P + p) * Q + q; its input window starts at (ih0, iw0) ----
    n_idx, p_idx, q_idx, ih0, iw0 = output_pixels(offs_m, P, Q, stride_h, stride_w, pad_h, pad_w)
    x_rows = x_ptr + n_idx * sxn  # [BLOCK_M]
    group_c0 = (offs_k // Kg) * Cg  # first input channel of each output channel's group

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if MODE == MODE_BLOCK_DIAG:
        # Block-diagonal GEMM over the input channels [c_lo, c_lo + CT) of the groups this tile spans.
        # Step t covers filter tap (r, s) and channels [c_lo + cb * BLOCK_K, ...): t = (r * S + s) * ncb + cb.
        # The channel range starts at a multiple of BLOCK_K and is bounded only by C, so the compiler can prove
        # the A rows aligned and vectorise their loads; channels outside the tile's groups meet zeros in B.
        k_first = pid_n * BLOCK_N
        k_last = tl.minimum(k_first + BLOCK_N, K) - 1
        c_lo = (k_first // Kg) * Cg // BLOCK_K * BLOCK_K
        c_hi = (k_last // Kg + 1) * Cg
        ncb = tl.cdiv(c_hi - c_lo, BLOCK_K)
        for t in range(0, R * S * ncb):
            rs, cb, r, s = filter_tap(t, ncb, S)
            ih, iw, row_ok = tap_rows(ih0, iw0, r, s, dil_h, dil_w, H, W, mask_m)
            offs_c = c_lo + cb * BLOCK_K + tl.arange(0, BLOCK_K)
            c_ok = offs_c < C
            a = tl.load(
                x_rows[:, None] + (ih * sxh + iw * sxw)[:, None] + offs_c[None, :] * sxc,
                mask=row_ok[:, None] & c_ok[None, :], other=0.0,
            )
            c_in_group = offs_c[:, None] - group_c0[None, :]  # [BLOCK_K, BLOCK_N]; in [0, Cg) on the diagonal
            on_diagonal = (c_in_group >= 0) & (c_in_group < Cg) & mask_k[None, :]
            b = tl.load(
                w_ptr + offs_k[None, :] * swk + c_in_group * swc + (r * swr + s * sws),
                mask=on_diagonal, other=0.0,
            )
            acc = dot_with_precision(a, b, acc, PRECISION)
    else:
        # Direct: step t covers tap (r, s) and channel c of every column's own group: t = (r * S + s) * Cg + c.
        for t in range(0, R * S * Cg):
            rs, c, r, s = filter_tap(t, Cg, S)
            ih, iw, row_ok = tap_rows(ih0, iw0, r, s, dil_h, dil_w, H, W, mask_m)
            a = tl.load(
                x_rows[:, None] + (ih * sxh + iw * sxw)[:, None] + ((group_c0 + c) * sxc)[None, :],
                mask=row_ok[:, None] & mask_k[None, :], other=0.0,
            )
            b = tl.load(w_ptr + offs_k * swk + (c * swc + r * swr + s * sws), mask=mask_k, other=0.0)
            acc += as_operand(a, PRECISION) * as_operand(b, PRECISION)[None, :]

    # ---- epilogue: y = act(acc + bias + residual), stored through the output's strides ----
    store_rows(
        acc, pixel_offsets(n_idx, p_idx, q_idx, syn, syp, syq), pixel_offsets(n_idx, p_idx, q_idx, srn, srp, srq),
        offs_k, mask_m, mask_k, y_ptr, bias_ptr, res_ptr, syk, srk, HAS_BIAS, HAS_RESIDUAL, ACTIVATION,
    )


# ------------------------------------------------------------------------------------------------------------
# Config space, constraints and defaults
# ------------------------------------------------------------------------------------------------------------
def num_programs(problem: ConvProblem, config: Config) -> int:
    return triton.cdiv(problem.gemm_m, config["BLOCK_M"]) * triton.cdiv(problem.k, config["BLOCK_N"])


def channels_spanned(problem: ConvProblem, block_n: int) -> int:
    """The most input channels one tile of `block_n` output channels reduces over (its groups' channels)."""
    kg = problem.k_per_group
    spans = (
        (min(k0 + block_n, problem.k) - 1) // kg - k0 // kg + 1 for k0 in range(0, problem.k, block_n)
    )
    return max(spans) * problem.c_per_group


def fits_tensor_cores(problem: ConvProblem, config: Config) -> Optional[str]:
    if config["MODE"] == "block_diag" and interpreter_dot_reason(problem):
        return interpreter_dot_reason(problem)
    if config["MODE"] == "block_diag" and min(config["BLOCK_M"], config["BLOCK_N"], config["BLOCK_K"]) < 16:
        return "block_diag mode needs BLOCK_M, BLOCK_N and BLOCK_K >= 16 (tensor-core tile)"
    return None


def fits_registers(problem: ConvProblem, config: Config) -> Optional[str]:
    """The float32 accumulator (plus, in direct mode, the gathered input tile) must fit 255 registers/thread."""
    return registers_reason(accumulator_per_thread(config), 128 if config["MODE"] == "block_diag" else 64)


def fits_shared_memory(problem: ConvProblem, config: Config, device: DeviceInfo) -> Optional[str]:
    if config["MODE"] != "block_diag":
        return None
    stages = max(1, config["num_stages"])
    tile_bytes = (config["BLOCK_M"] + config["BLOCK_N"]) * config["BLOCK_K"] * problem.operand_dtype.itemsize
    return shared_memory_reason(stages * tile_bytes, device)


def fits_grid(problem: ConvProblem, config: Config) -> Optional[str]:
    return programs_reason(num_programs(problem, config))


def not_wasteful(problem: ConvProblem, config: Config) -> Optional[str]:
    """Prunes padding-heavy tiles, duplicate configs, and packings where tensor cores mostly multiply zeros."""
    reason = first_reason(
        oversized_block(
            config, ("BLOCK_M", problem.gemm_m, 16, 256, "the output pixels"), ("BLOCK_N", problem.k, 8, 256, "the output channels"),
        ),
        too_many_warps(config),
    )
    if reason:
        return reason
    if config["MODE"] == "direct":
        if config["BLOCK_K"] != 16 or config["num_stages"] > 2:
            return "direct mode ignores BLOCK_K and deep pipelining"
        return None
    if config["BLOCK_M"] * config["BLOCK_K"] > 32 * config["num_warps"] * 32:
        return "gathered input tile needs > 32 elements per thread: its addresses and masks spill registers"
    spanned = channels_spanned(problem, config["BLOCK_N"])
    if config["BLOCK_K"] > clamp_pow2(spanned, 16, 128):
        return "BLOCK_K larger than the channels the tile's groups hold"
    if spanned > 8 * max(16, problem.c_per_group):
        return "tile packs so many groups that tensor cores mostly multiply zeros"
    return None


class SmallGroupConv(KernelFamily):
    name = "small_group"
    description = "grouped conv2d with few channels per group: block-diagonal packed MMA or direct FMA"

    def supports(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> Optional[str]:
        if problem.groups < 2:
            return "not a grouped conv (groups=1): the implicit GEMM covers it"
        return fits_grid(problem, LARGEST_TILE)

    def preference(self, problem: ConvProblem) -> int:
        thin = problem.c_per_group < 16 or problem.k_per_group < 16
        return 1 if problem.groups > 1 and thin and not problem.is_depthwise else 0

    def space(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> ConfigSpace:
        return ConfigSpace(
            params=[
                Param("MODE", MODES),
                Param("BLOCK_M", (16, 32, 64, 128, 256)),
                Param("BLOCK_N", (8, 16, 32, 64, 128, 256)),
                Param("BLOCK_K", (16, 32, 64, 128)),
                Param("num_warps", (1, 2, 4, 8)),
                Param("num_stages", (1, 2, 3, 4)),
            ],
            constraints=[fits_tensor_cores, fits_registers, partial(fits_shared_memory, device=target_device(device)), fits_grid],
            pruning=[not_wasteful],
        )

    def default_config(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> Config:
        """block_diag packs enough groups to fill a 16-deep MMA step; direct FMA only for channel-multiplier-like
        groups (Cg <= 2 and Kg <= 4), where packing would mostly multiply zeros and the gather is cheap, and wherever
        tl.dot cannot be trusted (bf16 in the Triton interpreter)."""
        direct = (problem.c_per_group <= 2 and problem.k_per_group <= 4) or interpreter_dot_reason(problem) is not None
        if direct:
            block_n = clamp_pow2(problem.k, 8, 32)
            block_k, stages = 16, 1
        else:
            groups_per_step = triton.cdiv(16, problem.c_per_group)
            block_n = clamp_pow2(min(problem.k, groups_per_step * problem.k_per_group), 16, 64)
            block_k = clamp_pow2(channels_spanned(problem, block_n), 16, 32)  # 64 spills: see not_wasteful
            stages = 3
        block_m = clamp_pow2(problem.gemm_m, 16, 128)
        device = target_device(device)
        sms = sm_count(device)
        config: Config = {
            "MODE": "direct" if direct else "block_diag", "BLOCK_M": block_m, "BLOCK_N": block_n,
            "BLOCK_K": block_k, "num_warps": 4, "num_stages": stages,
        }
        while num_programs(problem, config) < 2 * sms and config["BLOCK_M"] > 32:
            config["BLOCK_M"] //= 2
        while config["num_warps"] > 2 and config["BLOCK_M"] * config["BLOCK_N"] < config["num_warps"] * 256:
            config["num_warps"] //= 2
        return shrink_stages(problem, config, partial(fits_shared_memory, device=device))

    def heuristic_configs(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> list[Config]:
        base = self.default_config(problem, device)
        direct = {**base, "MODE": "direct", "BLOCK_K": 16, "num_stages": 1, "BLOCK_N": clamp_pow2(problem.k, 8, 32)}
        packed_n = clamp_pow2(min(problem.k, triton.cdiv(16, problem.c_per_group) * problem.k_per_group), 16, 64)
        packed = {
            **base, "MODE": "block_diag", "BLOCK_N": packed_n, "num_stages": 3,
            "BLOCK_K": clamp_pow2(channels_spanned(problem, packed_n), 16, 32),
        }
        variants = [
            base, direct, packed,
            {**packed, "BLOCK_N": max(16, packed_n // 2), "BLOCK_K": 16},
            {**packed, "BLOCK_M": max(16, packed["BLOCK_M"] * 2), "num_warps": 8},
        ]
        return self.space(problem, device).feasible(problem, variants)

    def kernel_calls(
        self, problem: ConvProblem, tensors: ConvTensors, config: Config, device: Optional[DeviceInfo] = None,
    ) -> Sequence[KernelCall]:
        w = prepare_weight(tensors.weight, WEIGHT_LAYOUT[config["MODE"]], problem.operand_dtype)
        args = dict(
            **conv_io_args(problem, tensors), w_ptr=w,
            C=problem.c, K=problem.k, Cg=problem.c_per_group, Kg=problem.k_per_group, R=problem.r, S=problem.s,
            swk=w.stride(0), swc=w.stride(1), swr=w.stride(2), sws=w.stride(3),
        )
        constexprs = dict(
            BLOCK_M=config["BLOCK_M"], BLOCK_N=config["BLOCK_N"], BLOCK_K=config["BLOCK_K"],
            MODE=SmallGroupMode(config["MODE"]).code, **epilogue_constexprs(problem, tensors),
        )
        grid = (num_programs(problem, config),)
        return [KernelCall(conv2d_small_group_kernel, grid, args, constexprs, config["num_warps"], config["num_stages"])]
