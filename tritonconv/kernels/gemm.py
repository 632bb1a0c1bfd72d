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
from functools import partial
from typing import Optional, Sequence

import torch
import triton
import triton.language as tl

from ..problem import INT32_MAX, ConvProblem
from ..runtime import DeviceInfo
from .base import (
    Config, ConfigSpace, ConvTensors, KernelCall, KernelFamily, Param, clamp_pow2, interpreter_dot_reason, needs_int64,
    pow2_divisor, scaled_operands, target_device,
)
from ..enums import Activation, Precision
from .common.checks import MAX_GRID_YZ
from .common.epilogue import dequantize, dot_with_precision, store_rows
from .common.gemm_kernel import gemm_kernel, splitk_reduce_kernel
from .common.limits import (
    GEMM_LAUNCH_PARAMS, GEMM_TILE_PARAMS, first_reason, fits_registers, fits_shared_memory, oversized_block, shrink_stages, shrink_to_fill, sm_count,
    too_many_warps, warps_for_tile,
)
from .common.tiling import swizzled_tile, tile_offsets
from .common.tma import TMA_ALIGNMENT, enable_device_descriptors, hopper, tma_aligned, warp_specializes

VARIANTS = ("tiled", "tma_persistent")
SPLIT_K_CHOICES = (1, 2, 4, 8, 16)


# ------------------------------------------------------------------------------------------------------------
# Kernels (the tiled and split-K kernels are shared: `common.gemm_kernel`)
# ------------------------------------------------------------------------------------------------------------
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
        offs_m = tile_offsets(pid_m, BLOCK_M, INDEX_64)
        offs_n = tile_offsets(pid_n, BLOCK_N, INDEX_64)
        store_rows(
            acc, offs_m * sc_m, offs_m * sr_m, offs_n, offs_m < M, offs_n < N,
            c_ptr, bias_ptr, res_ptr, sc_n, sr_n, HAS_BIAS, HAS_RESIDUAL, ACTIVATION,
        )


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
    thin_splits = config["SPLIT_K"] > 1 and triton.cdiv(problem.gemm_k, config["BLOCK_K"]) < 2 * config["SPLIT_K"]
    return first_reason(
        oversized_block(
            config, ("BLOCK_N", problem.gemm_n, 16, 256, "the columns"), ("BLOCK_M", problem.gemm_m, 16, 256, "the rows"),
            ("BLOCK_K", problem.gemm_k, 16, 128, "the reduction"),
        ),
        "fewer than two K tiles per split" if thin_splits else None,
        too_many_warps(config),
    )


def gemm_space(problem: ConvProblem, device: DeviceInfo) -> ConfigSpace:
    """The GEMM family's space on `device` (TMA from compute capability 9.0, warp specialisation from 10.0)."""
    capability = device.capability
    on_hopper = hopper(capability)
    return ConfigSpace(
        params=[
            *GEMM_TILE_PARAMS,
            Param("SPLIT_K", SPLIT_K_CHOICES),
            Param("VARIANT", VARIANTS if on_hopper else VARIANTS[:1]),
            Param("WARP_SPECIALIZE", (False, True) if warp_specializes(capability) else (False,)),
            *GEMM_LAUNCH_PARAMS,
        ],
        constraints=[partial(fits_shared_memory, device=device), fits_registers, k_tiles_constraint, tma_constraint],
        pruning=[not_wasteful],
    )


def gemm_default_config(problem: ConvProblem, device: DeviceInfo) -> Config:
    """Heuristic: tiles sized to the GEMM and shrunk until the grid covers `device`'s SMs; split-K when even the
    smallest tiles leave SMs idle and K is long; the TMA persistent variant on Hopper where it applies."""
    capability, sms = device.capability, sm_count(device)
    half = problem.operand_dtype.itemsize == 2
    m, n, k = problem.gemm_m, problem.gemm_n, problem.gemm_k
    # Hopper's warpgroup MMA needs 64 rows per warpgroup: below that the kernel falls back to Ampere's HMMA.
    min_m = 64 if hopper(capability) else 16
    block_m = clamp_pow2(m, min_m, 128)
    block_n = clamp_pow2(n, 16, 128)
    block_k = clamp_pow2(k, 16, 64 if half else 32)

    def tiles(bm: int, bn: int) -> int:
        return triton.cdiv(m, bm) * triton.cdiv(n, bn)

    block_m, block_n = shrink_to_fill(block_m, block_n, tiles, sms, (("m", max(32, min_m)), ("n", 32)))
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
        "num_warps": warps_for_tile(block_m, block_n),
        "num_stages": 4 if half else 3,
    }
    if hopper(capability) and split_k == 1 and tma_problem_reason(problem) is None and min(block_m, block_n) >= 64:
        config["VARIANT"] = "tma_persistent"
    return shrink_stages(problem, config, partial(fits_shared_memory, device=device))


class GemmConv(KernelFamily):
    """1x1 convolutions (any stride, NCHW or NHWC, batched weights for `tritonconv.matmul`) as GEMMs."""

    name = "gemm"
    precisions = Precision.names()  # fp8 included: kernel_calls quantize the operands (scaled_operands)
    description = "GEMM for 1x1 convs and matmul: GROUP_M swizzle, split-K, TMA persistent variant on sm_90+"
    handles_batched_weight = True

    def supports(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> Optional[str]:
        if (problem.r, problem.s) != (1, 1):
            return "GEMM family only runs 1x1 filters"
        if reason := interpreter_dot_reason(problem):
            return reason
        if problem.groups != 1:
            return "GEMM family needs groups=1"
        if (problem.pad_h, problem.pad_w) != (0, 0):
            return "GEMM family needs padding 0"
        if problem.p != (problem.h - 1) // problem.stride_h + 1 or problem.q != (problem.w - 1) // problem.stride_w + 1:
            return "GEMM family needs the unpadded output size"
        if problem.n > MAX_GRID_YZ and (problem.batched_weight or problem.layout == "nchw"):  # one image per grid row
            return f"more than {MAX_GRID_YZ} batches in the launch grid"
        return None

    def preference(self, problem: ConvProblem) -> int:
        # Design choice, not a measurement: a 1x1 conv has no filter decode or padding masks, so the
        # dedicated GEMM kernel is the natural untuned pick; the search decides per shape.
        return 1

    def space(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> ConfigSpace:
        return gemm_space(problem, target_device(device))

    def default_config(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> Config:
        return gemm_default_config(problem, target_device(device))

    def heuristic_configs(self, problem: ConvProblem, device: Optional[DeviceInfo] = None) -> list[Config]:
        base = self.default_config(problem, device)
        variants = [
            base,
            {**base, "BLOCK_M": max(16, base["BLOCK_M"] // 2), "num_warps": 4},
            {**base, "BLOCK_N": max(16, base["BLOCK_N"] // 2), "num_warps": 4},
            {**base, "SPLIT_K": base["SPLIT_K"] * 2, "VARIANT": "tiled", "WARP_SPECIALIZE": False},
            {**base, "VARIANT": "tiled", "WARP_SPECIALIZE": False},
            {**base, "WARP_SPECIALIZE": True},
        ]
        return self.space(problem, device).feasible(problem, variants)

    def kernel_calls(
        self, problem: ConvProblem, tensors: ConvTensors, config: Config, device: Optional[DeviceInfo] = None,
    ) -> Sequence[KernelCall]:
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
            call = self._tma_call(problem, tensors, config, operands, (sb_k, sb_n), epilogue, target_device(device), scale)
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
        output_args = dict(sc_b=sc_b, sc_n=y.stride(1), sc_p=sc_p, sc_q=sc_q, sr_b=sr_b, sr_n=sr_n, sr_p=sr_p, sr_q=sr_q)
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
        b_strides: tuple[int, int], epilogue: dict, device: DeviceInfo, scale: Optional[torch.Tensor] = None,
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
        num_sms = sm_count(device)
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
