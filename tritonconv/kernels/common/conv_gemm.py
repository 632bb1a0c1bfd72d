"""What the implicit-GEMM conv families (float and int8) share outside their kernels: the reduction loop orders
and the weight layout each reads contiguously, the tile constexprs and the launch grid (output tiles x groups)."""
from __future__ import annotations

from typing import Any

import triton
import triton.language as tl

from ...enums import LoopOrder
from ...problem import ConvProblem
from ..base import Config

LOOP_ORDERS = tuple(order.value for order in LoopOrder)
LOOP_FILTER_OUTER: tl.constexpr = tl.constexpr(LoopOrder.FILTER_OUTER.code)
# The weight layout whose reduction axis is contiguous for each loop order: (r, s, c) with c inner for the
# filter-outer loop, flattened (c, r, s) for the channel-outer one.
LOOP_WEIGHT_LAYOUT = {LoopOrder.FILTER_OUTER.value: "krsc", LoopOrder.CHANNEL_OUTER.value: "kcrs"}


def other_loop_order(loop: str) -> str:
    return LoopOrder.CHANNEL_OUTER.value if loop == LoopOrder.FILTER_OUTER.value else LoopOrder.FILTER_OUTER.value


def implicit_gemm_grid(problem: ConvProblem, config: Config) -> tuple[int, int]:
    """Axis 0: the GEMM's (BLOCK_M x BLOCK_N) output tiles of one group; axis 1: the groups."""
    tiles = triton.cdiv(problem.gemm_m, config["BLOCK_M"]) * triton.cdiv(problem.gemm_n, config["BLOCK_N"])
    return tiles, problem.groups


def implicit_gemm_constexprs(problem: ConvProblem, config: Config) -> dict[str, Any]:
    """The tile, loop-order and filter-size constexprs both implicit-GEMM kernels take."""
    return dict(
        BLOCK_M=config["BLOCK_M"], BLOCK_N=config["BLOCK_N"], BLOCK_K=config["BLOCK_K"], GROUP_M=config["GROUP_M"],
        LOOP_ORDER=LoopOrder(config["LOOP_ORDER"]).code, R=problem.r, S=problem.s,
    )
