"""Implicit-GEMM conv2d for Hopper (compute capability >= 9.0): TMA weights, a persistent grid, larger tiles.

Same GEMM as the `implicit_gemm` family (Y[M, K] = A[M, R*S*C] @ B[R*S*C, K], one row per output pixel), built
for what sm_90 adds:
  * the weight, re-laid-out once to KRSC, is a plain row-major [K, R*S*C] matrix, so its tiles are read with a
    device-side tensor descriptor (TMA) instead of per-thread pointers;
  * A, for filter tap (r, s), is one of two things (`INPUT_TMA`, tuned):
      - stride-1 NHWC: the tile's rows are a BLOCK_H x BLOCK_W patch of output pixels of one image, so the input
        they read for one tap is a rectangular box of the [N, H, W, C] input (shifted by the tap, zero-filled
        where it hangs over the padding), read by TMA like the weight;
      - otherwise rows are consecutive output pixels, gathered through the input's strides with per-row masks
        (padding and image edges make them no rectangle);
  * a persistent grid (one program per SM walking the swizzled tiles), warp-specialised on sm_100+;
  * tiles of at least 64 rows, so the dot becomes warpgroup MMA (HGMMA).
The reduction is stepped as (tap, channel block). When C is not a multiple of BLOCK_K, a weight tile's last
columns belong to the next tap, but the matching A columns are masked (or TMA-filled) to zero, so they add nothing.
"""
from __future__ import annotations

from functools import partial
from typing import Optional, Sequence

import torch
import triton
import triton.language as tl

from ..enums import Precision
from ..problem import ConvProblem
from ..runtime import DeviceInfo, device_info
from ..weights import prepare_weight
from .base import (
    Config, ConfigSpace, ConvTensors, KernelCall, KernelFamily, Param, clamp_pow2, conv_io_args, epilogue_constexprs,
    scaled_operands, scaled_precision_reason, target_device,
)
from .common.epilogue import dequantize, dot_with_precision, fused_epilogue, write_tile
from .common.limits import (
    accumulator_per_thread, first_reason, fits_registers, fits_shared_memory, grid_filling_tiles, oversized_block,
    shrink_stages, sm_count, warps_for_tile,
)
from .common.tiling import filter_tap, row_offsets, swizzled_tile, tap_rows, tile_offsets, widened
from .common.tma import TMA_ALIGNMENT, enable_device_descriptors, hopper, tma_aligned, warp_specializes


@triton.jit
def conv2d_hopper_kernel(
    x_ptr, w_ptr, y_ptr, bias_ptr, res_ptr,
    N, H, W, C, K, P, Q, R, S,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    sxn, sxc, sxh, sxw,  # input strides (n, c, h, w); NHWC has sxc == 1
    syn, syk, syp, syq,  # output strides
    srn, srk, srp, srq,  # residual strides
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    INPUT_TMA: tl.constexpr, BLOCK_W: tl.constexpr,
    NUM_SMS: tl.constexpr, WARP_SPECIALIZE: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, ACTIVATION: tl.constexpr,
    PRECISION: tl.constexpr, INDEX_64: tl.constexpr,
    scale_ptr=None,  # scaled (fp8) operands: x_scale * w_scale, one float32
):
    RSC = R * S * C
    w_desc = tl.make_tensor_descriptor(w_ptr, shape=[K, RSC], strides=[RSC, 1], block_shape=[BLOCK_N, BLOCK_K])
    if INPUT_TMA:
        # Stride-1 NHWC: a BLOCK_H x BLOCK_W patch of output pixels of one image reads, for filter tap (r, s),
        # the same-sized input patch shifted by (r * dil_h - pad_h, s * dil_w - pad_w): one TMA box. Boxes that
        # hang over an image edge (padding) or past C are zero-filled by the hardware.
        BLOCK_H: tl.constexpr = BLOCK_M // BLOCK_W
        x_desc = tl.make_tensor_descriptor(
            x_ptr, shape=[N, H, W, C], strides=[sxn, sxh, sxw, 1], block_shape=[1, BLOCK_H, BLOCK_W, BLOCK_K]
        )
        tiles_h = tl.cdiv(P, BLOCK_H)
        tiles_w = tl.cdiv(Q, BLOCK_W)
        num_pid_m = N * tiles_h * tiles_w
    else:
        num_pid_m = tl.cdiv(N * P * Q, BLOCK_M)
    num_pid_n = tl.cdiv(K, BLOCK_N)
    num_tiles = num_pid_m * num_pid_n
    ncb = tl.cdiv(C, BLOCK_K)
    for tile_id in tl.range(tl.program_id(0), num_tiles, NUM_SMS, flatten=True, warp_specialize=WARP_SPECIALIZE):
        pid_m, pid_n = swizzled_tile(tile_id, num_pid_m, num_pid_n, GROUP_M)
        offs_n = tile_offsets(pid_n, BLOCK_N, INDEX_64)
        if INPUT_TMA:
            n_img = pid_m // (tiles_h * tiles_w)  # int32: TMA coordinates
            p0 = (pid_m // tiles_w) % tiles_h * BLOCK_H
            q0 = pid_m % tiles_w * BLOCK_W
            p_idx = p0 + tl.arange(0, BLOCK_M) // BLOCK_W
            q_idx = q0 + tl.arange(0, BLOCK_M) % BLOCK_W
            mask_m = (p_idx < P) & (q_idx < Q)
            pq = p_idx * Q + q_idx
            n_idx = widened(n_img, INDEX_64)
        else:
            offs_m = tile_offsets(pid_m, BLOCK_M, INDEX_64)
            mask_m = offs_m < N * P * Q
            # Output pixel of each row: m = (n * P + p) * Q + q; its input window starts at (ih0, iw0).
            n_idx = offs_m // (P * Q)
            pq = offs_m % (P * Q)
            ih0 = pq // Q * stride_h - pad_h
            iw0 = pq % Q * stride_w - pad_w
            # 32-bit offsets (not a pointer per row) keep the pipelined gathers within the register budget.
            x_rows = n_idx * sxn + ih0 * sxh + iw0 * sxw

        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for t in range(0, R * S * ncb):  # t = (r * S + s) * ncb + channel block
            rs, cb, r, s = filter_tap(t, ncb, S)
            c0 = cb * BLOCK_K
            if INPUT_TMA:
                a = x_desc.load([n_img, p0 + r * dil_h - pad_h, q0 + s * dil_w - pad_w, c0]).reshape(BLOCK_M, BLOCK_K)
            else:
                ih, iw, row_ok = tap_rows(ih0, iw0, r, s, dil_h, dil_w, H, W, mask_m)
                offs_c = c0 + tl.arange(0, BLOCK_K)
                a = tl.load(
                    x_ptr + (x_rows + (r * dil_h * sxh + s * dil_w * sxw))[:, None] + offs_c[None, :] * sxc,
                    mask=row_ok[:, None] & (offs_c < C)[None, :], other=0.0,
                )
            b = w_desc.load([pid_n * BLOCK_N, rs * C + c0]).T
            acc = dot_with_precision(a, b, acc, PRECISION)

        acc = dequantize(acc, scale_ptr, PRECISION)
        # The epilogue's pieces in this order: the output offsets after the bias and residual (computed first they
        # stay live across the tile's last wgmma: 158 instead of 128 registers on an 11x11 bf16 tile, 152 instead
        # of 148 on a 1x1 one), the bias as one [1, BLOCK_N] row of the accumulator's layout (a broadcast channel
        # vector: 224 instead of 144 on a 1x1 fp32 NCHW tile); sm_90 compiles (tritonconv.compile).
        mask_n = offs_n < K
        mask = mask_m[:, None] & mask_n[None, :]
        y = fused_epilogue(
            acc, bias_ptr, offs_n[None, :], mask_n[None, :], res_ptr,
            (n_idx * srn + row_offsets(pq, Q, srp, srq, True))[:, None] + offs_n[None, :] * srk, mask,
            HAS_BIAS, HAS_RESIDUAL, ACTIVATION,
        )
        write_tile(y_ptr, (n_idx * syn + row_offsets(pq, Q, syp, syq, True))[:, None] + offs_n[None, :] * syk, y, mask)


def supports_on(problem: ConvProblem, capability: tuple[int, int]) -> Optional[str]:
    """Whether the family runs `problem` on a device of `capability` (None) or why not."""
    if not hopper(capability):
        return f"needs compute capability >= 9.0 (TMA, warpgroup MMA), device has {capability[0]}.{capability[1]}"
    if problem.groups != 1:
        return "dense convs only (groups=1)"
    if reason := scaled_precision_reason(problem, capability):
        return reason
    if not Precision(problem.precision).single_mma:
        return f"precision {problem.precision!r} runs no single warpgroup MMA; the implicit_gemm family handles it"
    if (problem.gemm_k * problem.operand_dtype.itemsize) % TMA_ALIGNMENT:
        return f"the KRSC weight's row (C*R*S elements) must be a multiple of {TMA_ALIGNMENT} bytes for TMA"
    if Precision(problem.precision).scaled and (problem.c * problem.operand_dtype.itemsize) % TMA_ALIGNMENT:
        return f"fp8 weight tiles start at tap offsets r*S*C + s*C: C must be a multiple of {TMA_ALIGNMENT}"
    return None


def input_tma_reason(problem: ConvProblem) -> Optional[str]:
    """Why the input cannot be read as TMA boxes whatever the tensor (None if it may; the pointer and strides
    are checked at launch, with a fallback to the pointer gather)."""
    if (problem.stride_h, problem.stride_w) != (1, 1):
        return "TMA input boxes need stride 1 (a strided window is not a rectangle)"
    if problem.layout != "nhwc":
        return "TMA input boxes need NHWC input"
    if (problem.c * problem.operand_dtype.itemsize) % TMA_ALIGNMENT:
        return f"TMA input boxes need C * element size to be a multiple of {TMA_ALIGNMENT} bytes"
    return None


def input_tma_constraint(problem: ConvProblem, config: Config) -> Optional[str]:
    if not config["INPUT_TMA"]:
        return None if config["BLOCK_W"] == 8 else "BLOCK_W shapes only the TMA input patch (keep 8 with the gather)"
    if config["BLOCK_W"] > config["BLOCK_M"]:
        return "BLOCK_W larger than BLOCK_M"
    return input_tma_reason(problem)


def can_read_input_by_tma(x: torch.Tensor) -> bool:
    """The tensor-level TMA conditions: channels contiguous, 16-byte aligned base and leading strides."""
    return x.stride(1) == 1 and tma_aligned(x, [x.stride(0), x.stride(2), x.stride(3)])


def patch_waste(problem: ConvProblem, block_m: int, block_w: int) -> float:
    """Computed output pixels per useful one when P x Q is covered by (block_m // block_w) x block_w patches."""
    block_h = block_m // block_w
    covered = triton.cdiv(problem.p, block_h) * block_h * triton.cdiv(problem.q, block_w) * block_w
    return covered / (problem.p * problem.q)


def input_patch(problem: ConvProblem, block_m: int) -> Config:
    """The default input path of a TMA-capable problem: the patch shape (BLOCK_W) that wastes least, wider on a
    tie (a one-row patch, BLOCK_W == BLOCK_M, feeds warpgroup MMA straight from shared memory; a multi-row box is
    reshaped through registers: compiled TTGIR); the pointer gather when every patch is over a quarter padding.
    A design choice, not a measurement: the search weighs every patch shape and the gather."""
    widths = [w for w in (128, 64, 32, 16, 8) if w <= block_m]
    width, waste = min(((w, patch_waste(problem, block_m, w)) for w in widths), key=lambda t: t[1])
    return {"INPUT_TMA": True, "BLOCK_W": width} if waste <= 1.25 else {"INPUT_TMA": False, "BLOCK_W": 8}


def not_wasteful(problem: ConvProblem, config: Config) -> Optional[str]:
    wasteful_patches = config["INPUT_TMA"] and patch_waste(problem, config["BLOCK_M"], config["BLOCK_W"]) > 1.5
    return first_reason(
        oversized_block(
            config, ("BLOCK_N", problem.gemm_n, 16, 256, "the output channels"),
            ("BLOCK_M", problem.gemm_m, 64, 256, "the output pixels"), ("BLOCK_K", problem.c, 16, 128, "the channels"),
        ),
        "TMA patches more than half padding" if wasteful_patches else None,
    )


def gather_register_pressure(problem: ConvProblem, config: Config) -> Optional[str]:
    """The pointer gather keeps per-row addresses and masks of every pipeline stage in registers: with more than
    64 accumulator registers per thread the sm_90 builds spill (compiled resource usage; the TMA path does not)."""
    per_thread = accumulator_per_thread(config)
    if not config["INPUT_TMA"] and per_thread > 64:
        return f"the gather with {per_thread} accumulator registers per thread spills"
    return None


class HopperConv(KernelFamily):
    name = "hopper_implicit_gemm"
    precisions = Precision.names()  # fp8 included: kernel_calls quantize the operands (scaled_operands)
    description = "implicit-GEMM conv2d for sm_90+: TMA weight (and stride-1 input) tiles, persistent grid, warpgroup MMA"

    def supports(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> Optional[str]:
        return supports_on(problem, target_device(device).capability)

    def preference(self, problem: ConvProblem) -> int:
        # Not the untuned default (implicit_gemm is): compiled for sm_90 (`compile --report`), its multi-row TMA
        # patches feed wgmma through registers and ptxas serialises every wgmma (C7515), and its gather path
        # waits for each wgmma (wait depth 0). The search still offers it on every problem it supports.
        return 0

    def space(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> ConfigSpace:
        return ConfigSpace(
            params=[
                Param("BLOCK_M", (64, 128, 256)),
                Param("BLOCK_N", (16, 32, 64, 128, 256)),
                Param("BLOCK_K", (16, 32, 64, 128)),
                Param("GROUP_M", (1, 4, 8, 16)),
                Param("INPUT_TMA", (False, True)),
                Param("BLOCK_W", (8, 16, 32, 64, 128)),
                Param("WARP_SPECIALIZE", (False, True) if warp_specializes(target_device(device).capability) else (False,)),
                Param("num_warps", (4, 8)),
                Param("num_stages", (1, 2, 3, 4, 5)),
            ],
            constraints=[input_tma_constraint, partial(fits_shared_memory, device=target_device(device)), fits_registers],
            pruning=[not_wasteful, gather_register_pressure],
        )

    def default_config(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> Config:
        """The implicit GEMM's grid-filling tiles, with at least 64 rows (HGMMA) and BLOCK_K sized to C."""
        device = target_device(device)
        block_m, block_n = grid_filling_tiles(problem, device)
        half = problem.operand_dtype.itemsize == 2
        config: Config = {
            "BLOCK_M": max(64, block_m),
            "BLOCK_N": block_n,
            "BLOCK_K": clamp_pow2(problem.c, 16, 64 if half else 32),
            "GROUP_M": 8,
            "INPUT_TMA": False,
            "BLOCK_W": 8,
            "WARP_SPECIALIZE": False,
            "num_warps": warps_for_tile(block_m, block_n),
            # Deeper pipelines spill registers on sm_90 at 128x128 tiles (compiled resource usage), so stay shallow.
            "num_stages": 3 if half else 2,
        }
        if input_tma_reason(problem) is None:
            config.update(input_patch(problem, config["BLOCK_M"]))
        if not config["INPUT_TMA"]:
            # The gather's per-row addresses for a third stage spilled registers in compile sweeps of random
            # problems on sm_90 (python -m tritonconv.compile --random); two stages did not.
            config["num_stages"] = min(config["num_stages"], 2)
        return shrink_stages(problem, config, partial(fits_shared_memory, device=device))

    def heuristic_configs(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> list[Config]:
        base = self.default_config(problem, device)
        variants = [
            base,
            {**base, "WARP_SPECIALIZE": True},
            {**base, "BLOCK_N": min(256, base["BLOCK_N"] * 2), "num_warps": 8},
            {**base, "BLOCK_M": 128 if base["BLOCK_M"] != 128 else 64},
            {**base, "INPUT_TMA": not base["INPUT_TMA"], "BLOCK_W": 8},
            *({**base, "INPUT_TMA": True, "BLOCK_W": w} for w in (8, 16, 32) if not input_tma_reason(problem)),
            *({**base, "INPUT_TMA": True, "BLOCK_M": w, "BLOCK_W": w} for w in (64, 128) if not input_tma_reason(problem)),
        ]
        return self.space(problem, device).feasible(problem, variants)

    def kernel_calls(
        self, problem: ConvProblem, tensors: ConvTensors, config: Config, device: Optional[DeviceInfo] = None,
    ) -> Sequence[KernelCall]:
        tensors, scale = scaled_operands(problem, tensors)
        x = tensors.input
        w = prepare_weight(tensors.weight, "krsc", problem.operand_dtype)  # contiguous [K, R, S, C]
        enable_device_descriptors()
        num_sms = sm_count(device if device is not None else device_info(x.device) if x.device.type == "cuda" else device_info())
        args = dict(**conv_io_args(problem, tensors), w_ptr=w, C=problem.c, K=problem.k, R=problem.r, S=problem.s,
                    scale_ptr=scale)
        input_tma = config["INPUT_TMA"] and can_read_input_by_tma(x)
        if input_tma:  # M tiles are pixel patches, per image
            block_h = config["BLOCK_M"] // config["BLOCK_W"]
            m_tiles = problem.n * triton.cdiv(problem.p, block_h) * triton.cdiv(problem.q, config["BLOCK_W"])
        else:
            m_tiles = triton.cdiv(problem.gemm_m, config["BLOCK_M"])
        tiles = m_tiles * triton.cdiv(problem.k, config["BLOCK_N"])
        constexprs = dict(
            BLOCK_M=config["BLOCK_M"], BLOCK_N=config["BLOCK_N"], BLOCK_K=config["BLOCK_K"],
            GROUP_M=config["GROUP_M"], INPUT_TMA=input_tma, BLOCK_W=config["BLOCK_W"], NUM_SMS=num_sms,
            WARP_SPECIALIZE=config["WARP_SPECIALIZE"],
            **epilogue_constexprs(problem, tensors),
        )
        grid = (min(num_sms, tiles),)
        return [KernelCall(conv2d_hopper_kernel, grid, args, constexprs, config["num_warps"], config["num_stages"])]
