"""Depthwise and channel-multiplier conv2d (groups == C, K = m * C) as a direct, memory-bound kernel.

Output channel k reads only input channel k // m, so there is no reduction over channels and nothing for tensor
cores to do: each output is R*S fused multiply-adds, and the kernel lives or dies by memory traffic. One program
computes a 3-D tile  [BLOCK_P output rows, BLOCK_Q output columns, BLOCK_C output channels]  of one image:

  * every load and store is addressed through strides, so the same code reads NHWC (channels contiguous: the
    compiler vectorises along BLOCK_C) and NCHW (columns contiguous: it vectorises along BLOCK_Q). The tile's
    shape is tunable, so each layout gets the orientation that suits it (wide in C for NHWC, wide in Q for NCHW);
  * the filter window is unrolled with `tl.static_range` (R and S are constexprs): the R*S loads of a tile are
    independent, so they are all in flight at once, and the weight vector of each tap is loaded exactly once per
    program. Overlapping input windows of neighbouring output pixels of the tile hit L1. Filters with more than
    MAX_UNROLLED_TAPS taps (e.g. 31x31 large-kernel convs) use a runtime loop instead, to bound compile time;
  * weights are pre-laid-out once per weight tensor as RSCK (output channels contiguous, see `weights.py`).
"""
from __future__ import annotations

from typing import Optional, Sequence

import triton
import triton.language as tl

from ..problem import ConvProblem
from ..runtime import DeviceInfo
from ..weights import prepare_weight
from .base import (
    Config, ConfigSpace, ConvTensors, KernelCall, KernelFamily, Param, clamp_pow2, conv_io_args, epilogue_constexprs,
    next_power_of_2,
    target_device,
)
from .common.checks import MAX_GRID_X, programs_reason
from .common.epilogue import as_operand, store_output
from .common.limits import oversized_block, per_thread, registers_reason, sm_count
from .common.tiling import filter_tap, widened

MAX_UNROLLED_TAPS = 64
# The tile with the fewest programs the space offers: if its grid is too large, every config's is.
LARGEST_TILE = {"BLOCK_P": 16, "BLOCK_Q": 64, "BLOCK_C": 256}
# Tile elements per thread: beyond the hard limit registers spill heavily; beyond the soft one they usually do.
MAX_ELEMENTS_PER_THREAD = 32
SPILL_FREE_ELEMENTS_PER_THREAD = 16


@triton.jit
def _depthwise_tap(
    acc, x_base, w_base, t, ih0, iw0, row_ok, col_ok, chan_ok, H, W, sxh, sxw, swr, sws, dil_h, dil_w,
    S: tl.constexpr, PRECISION: tl.constexpr,
):
    """acc += x[ih0 + r*dil_h, iw0 + s*dil_w, c] * w[r, s, k] for filter tap t = r * S + s."""
    _, _, r, s = filter_tap(t, 1, S)
    ih = ih0 + r * dil_h  # [BLOCK_P, 1, 1]
    iw = iw0 + s * dil_w  # [1, BLOCK_Q, 1]
    in_ok = (row_ok & (ih >= 0) & (ih < H)) & (col_ok & (iw >= 0) & (iw < W)) & chan_ok
    x = tl.load(x_base + ih * sxh + iw * sxw, mask=in_ok, other=0.0)
    w = tl.load(w_base + r * swr + s * sws, mask=chan_ok, other=0.0)
    return acc + as_operand(x, PRECISION) * as_operand(w, PRECISION)


@triton.jit
def conv2d_depthwise_kernel(
    x_ptr, w_ptr, y_ptr, bias_ptr, res_ptr,
    N, H, W, K, P, Q, MULTIPLIER,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    sxn, sxc, sxh, sxw,  # input strides (n, c, h, w)
    swk, swr, sws,  # weight strides (k, r, s); the weight's C/groups dimension is 1
    syn, syk, syp, syq,  # output strides (n, k, p, q)
    srn, srk, srp, srq,  # residual strides (n, k, p, q)
    R: tl.constexpr, S: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_C: tl.constexpr, UNROLL: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, ACTIVATION: tl.constexpr,
    PRECISION: tl.constexpr, INDEX_64: tl.constexpr,
):
    # ---- which tile: channel tiles vary fastest, then output columns, rows and images ----
    pid = tl.program_id(0)
    tiles_c = tl.cdiv(K, BLOCK_C)
    tiles_q = tl.cdiv(Q, BLOCK_Q)
    tiles_p = tl.cdiv(P, BLOCK_P)
    pid_c = pid % tiles_c
    rest = pid // tiles_c
    pid_q = rest % tiles_q
    rest = rest // tiles_q
    pid_p = rest % tiles_p
    n = rest // tiles_p

    offs_p = (pid_p * BLOCK_P + tl.arange(0, BLOCK_P))[:, None, None]
    offs_q = (pid_q * BLOCK_Q + tl.arange(0, BLOCK_Q))[None, :, None]
    offs_k = (pid_c * BLOCK_C + tl.arange(0, BLOCK_C))[None, None, :]
    n = widened(n, INDEX_64)
    offs_p = widened(offs_p, INDEX_64)
    offs_q = widened(offs_q, INDEX_64)
    offs_k = widened(offs_k, INDEX_64)
    row_ok = offs_p < P
    col_ok = offs_q < Q
    chan_ok = offs_k < K

    ih0 = offs_p * stride_h - pad_h
    iw0 = offs_q * stride_w - pad_w
    x_base = x_ptr + n * sxn + (offs_k // MULTIPLIER) * sxc  # [1, 1, BLOCK_C]: input channel of each output
    w_base = w_ptr + offs_k * swk

    acc = tl.zeros((BLOCK_P, BLOCK_Q, BLOCK_C), dtype=tl.float32)
    if UNROLL:
        for t in tl.static_range(R * S):
            acc = _depthwise_tap(acc, x_base, w_base, t, ih0, iw0, row_ok, col_ok, chan_ok, H, W, sxh, sxw,
                                 swr, sws, dil_h, dil_w, S, PRECISION)
    else:
        for t in range(R * S):
            acc = _depthwise_tap(acc, x_base, w_base, t, ih0, iw0, row_ok, col_ok, chan_ok, H, W, sxh, sxw,
                                 swr, sws, dil_h, dil_w, S, PRECISION)

    # ---- epilogue: y = act(acc + bias + residual), stored through the output's strides ----
    store_output(
        acc, y_ptr, n * syn + offs_k * syk + offs_p * syp + offs_q * syq, row_ok & col_ok & chan_ok,
        bias_ptr, offs_k, chan_ok, res_ptr, n * srn + offs_k * srk + offs_p * srp + offs_q * srq,
        HAS_BIAS, HAS_RESIDUAL, ACTIVATION,
    )


# ------------------------------------------------------------------------------------------------------------
# Config space, constraints and defaults
# ------------------------------------------------------------------------------------------------------------
def num_programs(problem: ConvProblem, config: Config) -> int:
    return (
        problem.n
        * triton.cdiv(problem.p, config["BLOCK_P"])
        * triton.cdiv(problem.q, config["BLOCK_Q"])
        * triton.cdiv(problem.k, config["BLOCK_C"])
    )


def tile_elements(config: Config) -> int:
    return config["BLOCK_P"] * config["BLOCK_Q"] * config["BLOCK_C"]


def fits_registers(problem: ConvProblem, config: Config) -> Optional[str]:
    return registers_reason(per_thread(tile_elements(config), config), MAX_ELEMENTS_PER_THREAD, "tile")


def fits_grid(problem: ConvProblem, config: Config) -> Optional[str]:
    return programs_reason(num_programs(problem, config))


def vector_width(problem: ConvProblem) -> int:
    """Elements per 16-byte load."""
    return 16 // problem.element_bytes


def not_wasteful(problem: ConvProblem, config: Config) -> Optional[str]:
    """Prunes tiles mostly made of masked lanes, idle warps, or (NHWC) loads narrower than 16 bytes."""
    oversized = oversized_block(
        config, ("BLOCK_C", problem.k, 1, MAX_GRID_X, "the output channels"),
        ("BLOCK_P", problem.p, 1, MAX_GRID_X, "the output rows"), ("BLOCK_Q", problem.q, 1, MAX_GRID_X, "the output columns"),
    )
    if oversized:
        return oversized
    if tile_elements(config) < 32 * config["num_warps"]:
        return "more threads than tile elements"
    if tile_elements(config) > 32 * config["num_warps"] * SPILL_FREE_ELEMENTS_PER_THREAD:
        return "too many elements per thread: registers would likely spill"
    if problem.layout == "nhwc" and config["BLOCK_C"] < min(vector_width(problem), next_power_of_2(problem.k)):
        return "BLOCK_C narrower than a 16-byte vector along contiguous channels"
    return None


class DepthwiseConv(KernelFamily):
    name = "depthwise"
    description = "direct depthwise / channel-multiplier conv2d (groups == C): any filter, stride, dilation, padding"

    def supports(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> Optional[str]:
        if not problem.is_depthwise:
            return f"not depthwise: groups={problem.groups} but C={problem.c} (needs groups == C > 1)"
        return fits_grid(problem, LARGEST_TILE)

    def preference(self, problem: ConvProblem) -> int:
        # Memory-bound: a direct kernel moves each byte once, the implicit GEMM pads Cg=1 up to a 16-wide MMA.
        return 2 if problem.is_depthwise else 0

    def space(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> ConfigSpace:
        return ConfigSpace(
            params=[
                Param("BLOCK_P", (1, 2, 4, 8, 16)),
                Param("BLOCK_Q", (1, 2, 4, 8, 16, 32, 64)),
                Param("BLOCK_C", (1, 2, 4, 8, 16, 32, 64, 128, 256)),
                Param("num_warps", (1, 2, 4, 8)),
                Param("num_stages", (1, 2, 3)),
            ],
            constraints=[fits_registers, fits_grid],
            pruning=[not_wasteful],
        )

    def default_config(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> Config:
        """NHWC: 128 bytes of channels x a 4x8 pixel patch. NCHW: 32 columns x 8 rows x a few channels.

        Then shrink the pixel tile until the grid has a few waves of programs, and size warps to the tile.
        """
        vec = vector_width(problem)
        if problem.layout == "nhwc":
            block_c = clamp_pow2(problem.k, 1, 8 * vec)
            block_p, block_q = clamp_pow2(problem.p, 1, 4), clamp_pow2(problem.q, 1, 8)
        else:
            block_c = clamp_pow2(problem.k, 1, 4)
            block_p, block_q = clamp_pow2(problem.p, 1, 8), clamp_pow2(problem.q, 1, 32)
        config: Config = {"BLOCK_P": block_p, "BLOCK_Q": block_q, "BLOCK_C": block_c}
        sms = sm_count(target_device(device))
        # A few waves of programs, keeping at least 4 pixels and 128 elements (a warp, 4 elements per thread).
        while (
            num_programs(problem, config) < 4 * sms
            and config["BLOCK_P"] * config["BLOCK_Q"] > 4
            and tile_elements(config) > 128
        ):
            axis = "BLOCK_P" if config["BLOCK_P"] > 1 else "BLOCK_Q"
            config[axis] //= 2
        # A few elements per thread: the compiler hoists the loads of all R*S unrolled taps, so large filters
        # and 64-bit addresses need smaller tiles per thread to stay clear of spills (checked by compiling).
        strided_columns = problem.layout == "nchw" and problem.stride_w > 1  # loads need a layout shuffle
        per_thread = 4 if problem.r * problem.s > 9 or problem.needs_int64 or strided_columns else 8
        while tile_elements(config) > 8 * 32 * per_thread:
            config["BLOCK_P" if config["BLOCK_P"] > 1 else "BLOCK_Q"] //= 2
        warps = max(1, min(8, tile_elements(config) // (32 * per_thread)))
        config.update(num_warps=warps, num_stages=1)  # tiles are powers of two, so warps is one too
        return config

    def heuristic_configs(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> list[Config]:
        base = self.default_config(problem, device)
        vec = vector_width(problem)
        variants = [
            base,
            {**base, "BLOCK_P": max(1, base["BLOCK_P"] // 2)},
            {**base, "BLOCK_P": base["BLOCK_P"] * 2, "num_warps": min(8, base["num_warps"] * 2)},
            {**base, "BLOCK_C": max(1, base["BLOCK_C"] // 2), "BLOCK_Q": base["BLOCK_Q"] * 2},
            # The other orientation: wide along Q (NCHW-friendly) or wide along C (NHWC-friendly).
            {**base, "BLOCK_P": 4, "BLOCK_Q": 32, "BLOCK_C": 4}
            if problem.layout == "nhwc"
            else {**base, "BLOCK_P": 4, "BLOCK_Q": 8, "BLOCK_C": 8 * vec},
        ]
        return self.space(problem, device).feasible(problem, variants, pruning=True) or [base]

    def kernel_calls(
        self, problem: ConvProblem, tensors: ConvTensors, config: Config, device: Optional[DeviceInfo] = None,
    ) -> Sequence[KernelCall]:
        w = prepare_weight(tensors.weight, "rsck", problem.operand_dtype)
        args = dict(
            **conv_io_args(problem, tensors), w_ptr=w, K=problem.k, MULTIPLIER=problem.k_per_group,
            swk=w.stride(0), swr=w.stride(2), sws=w.stride(3),
        )
        constexprs = dict(
            R=problem.r, S=problem.s,
            BLOCK_P=config["BLOCK_P"], BLOCK_Q=config["BLOCK_Q"], BLOCK_C=config["BLOCK_C"],
            UNROLL=problem.r * problem.s <= MAX_UNROLLED_TAPS, **epilogue_constexprs(problem, tensors),
        )
        grid = (num_programs(problem, config),)
        return [KernelCall(conv2d_depthwise_kernel, grid, args, constexprs, config["num_warps"], config["num_stages"])]
