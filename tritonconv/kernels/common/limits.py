"""Resource limits every family sizes its tiles by: the SMs a grid should fill, registers and shared memory per
program, and the pruning of tiles made mostly of padding (correct, never fastest)."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import triton

from ...problem import ConvProblem
from ...runtime import DeviceInfo
from ..base import Config, Param, clamp_pow2


def gemm_tile_params(
    block_m: Sequence[int] = (16, 32, 64, 128, 256), block_n: Sequence[int] = (16, 32, 64, 128, 256),
    block_k: Sequence[int] = (16, 32, 64, 128), group_m: Sequence[int] = (1, 4, 8, 16),
) -> tuple[Param, ...]:
    """The tile parameters every GEMM-shaped family tunes, with the choices its MMAs allow (its space adds its own)."""
    return (Param("BLOCK_M", tuple(block_m)), Param("BLOCK_N", tuple(block_n)), Param("BLOCK_K", tuple(block_k)),
            Param("GROUP_M", tuple(group_m)))


GEMM_TILE_PARAMS = gemm_tile_params()
# The launch options the GEMM-shaped families tune (warps and pipeline depth).
GEMM_LAUNCH_PARAMS = (Param("num_warps", (2, 4, 8)), Param("num_stages", (1, 2, 3, 4, 5)))

# Grids are sized for an H100's SMs where the device reports none (the Triton interpreter).
FALLBACK_SMS = 132
# The accumulator of a GEMM-shaped tile (float32, or int32 for int8: a register per element) must leave room in the
# 255 registers of a thread.
MAX_ACCUMULATOR_REGISTERS = 128


def sm_count(device: DeviceInfo) -> int:
    """The SMs a launch on `device` should fill."""
    return device.sm_count if device.sm_count > 1 else FALLBACK_SMS


def per_thread(elements: int, config: Config) -> int:
    """Elements of a tile each thread of the program holds."""
    return elements // (config["num_warps"] * 32)


def accumulator_per_thread(config: Config) -> int:
    """Accumulator registers (float32 or int32) per thread of a BLOCK_M x BLOCK_N tile."""
    return per_thread(config["BLOCK_M"] * config["BLOCK_N"], config)


def registers_reason(needed: int, limit: int, what: str = "accumulator") -> Optional[str]:
    return f"{what} needs {needed} registers per thread (> {limit})" if needed > limit else None


def fits_registers(problem: ConvProblem, config: Config) -> Optional[str]:
    """The GEMM-shaped families' bound: the accumulator alone must leave room in 255 registers."""
    return registers_reason(accumulator_per_thread(config), MAX_ACCUMULATOR_REGISTERS)


def shared_memory_reason(need: int, device: DeviceInfo) -> Optional[str]:
    limit = device.shared_memory_per_block
    return f"needs ~{need} B of shared memory, device allows {limit}" if need > limit else None


def pipelined_tiles_bytes(problem: ConvProblem, config: Config) -> int:
    """Bytes of shared memory the pipelined A [BLOCK_M, BLOCK_K] and B [BLOCK_K, BLOCK_N] tiles of a GEMM-shaped
    kernel take (Triton keeps num_stages - 1 in flight + 1)."""
    stages = max(1, config["num_stages"])
    a_bytes = config["BLOCK_M"] * config["BLOCK_K"] * problem.element_bytes
    b_bytes = config["BLOCK_K"] * config["BLOCK_N"] * problem.operand_dtype.itemsize
    return stages * (a_bytes + b_bytes)


def shrink_stages(problem: ConvProblem, config: Config, too_big: Callable[[ConvProblem, Config], Optional[str]]) -> Config:
    """`config` with one pipeline stage fewer at a time (down to 1) while `too_big` gives a reason against it."""
    while config["num_stages"] > 1 and too_big(problem, config):
        config["num_stages"] -= 1
    return config


def shrink_to_fill(
    block_m: int, block_n: int, tiles: Callable[[int, int], int], sms: int, floors: Sequence[tuple[str, int]],
) -> tuple[int, int]:
    """(BLOCK_M, BLOCK_N) halved until the grid has a tile per SM: for each (dimension "m" or "n", floor) in
    turn, that dimension is halved while the grid is short of `sms` tiles and the block is above the floor."""
    for dim, floor in floors:
        while tiles(block_m, block_n) < sms and (block_m if dim == "m" else block_n) > floor:
            if dim == "m":
                block_m //= 2
            else:
                block_n //= 2
    return block_m, block_n


def grid_filling_tiles(
    problem: ConvProblem, device: DeviceInfo, floors: Optional[Sequence[tuple[str, int]]] = None,
) -> tuple[int, int]:
    """(BLOCK_M, BLOCK_N) of an implicit GEMM (one per group) sized to the GEMM, shrunk until the grid has about one
    tile per SM of `device` (see `shrink_to_fill`; default floors: the float implicit GEMM's)."""
    on_hopper = device.capability >= (9, 0)
    block_n = clamp_pow2(problem.gemm_n, 16, 128)
    block_m = clamp_pow2(problem.gemm_m, 64 if on_hopper else 16, 128)

    def tiles(bm: int, bn: int) -> int:
        return triton.cdiv(problem.gemm_m, bm) * triton.cdiv(problem.gemm_n, bn) * problem.groups

    # Keep BLOCK_M >= 64 as long as possible, and always on Hopper (its warpgroup MMA needs 64 rows per
    # warpgroup; below that Triton falls back to HMMA).
    if floors is None:
        floors = (("m", 64), ("n", 64), ("m", 64 if on_hopper else 32), ("n", 32))
    return shrink_to_fill(block_m, block_n, tiles, sm_count(device), floors)


def warps_for_tile(block_m: int, block_n: int) -> int:
    return 8 if block_m * block_n >= 128 * 128 else 4


def oversized_block(config: Config, *dims: tuple[str, int, int, int, str]) -> Optional[str]:
    """Prunes tiles mostly made of padding: for each (parameter, extent, lo, hi, what), the block may be at most
    the power of two covering `extent`, clamped to [lo, hi]. The first one larger is the reason."""
    for name, extent, lo, hi, what in dims:
        if config[name] > clamp_pow2(extent, lo, hi):
            return f"{name} larger than {what} ({extent}) need"
    return None


def too_many_warps(config: Config, elements_per_thread: int = 8) -> Optional[str]:
    """Prunes programs whose BLOCK_M x BLOCK_N tile gives each thread fewer than `elements_per_thread` outputs."""
    if config["BLOCK_M"] * config["BLOCK_N"] < config["num_warps"] * 32 * elements_per_thread:
        return "too many warps for the tile"
    return None


def implicit_gemm_loads_per_thread(config: Config) -> int:
    """Tile elements each thread of an implicit-GEMM program loads per reduction step; the channel-outer gather
    costs double (its index math is per element)."""
    a_cost = 2 if config["LOOP_ORDER"] == "channel_outer" else 1
    return per_thread((a_cost * config["BLOCK_M"] + config["BLOCK_N"]) * config["BLOCK_K"], config)


def low_register_pressure(problem: ConvProblem, config: Config) -> Optional[str]:
    """Above ~72 loaded elements per thread per step the compiled implicit-GEMM kernels spill registers (checked
    with tritonconv.compile on sm_80/90)."""
    loaded = implicit_gemm_loads_per_thread(config)
    return f"{loaded} loaded elements per thread per step would spill registers" if loaded > 72 else None


def implicit_gemm_padding(problem: ConvProblem, config: Config, min_block_k: int = 16) -> Optional[str]:
    """Prunes implicit-GEMM tiles mostly made of padding (correct, never fastest); BLOCK_K is bounded by the
    reduction step: the channels per group (filter-outer loop) or the whole C/groups * R * S (channel-outer)."""
    reduction = problem.c_per_group if config["LOOP_ORDER"] == "filter_outer" else problem.gemm_k
    return first_reason(
        oversized_block(
            config, ("BLOCK_N", problem.gemm_n, 16, 256, "the output channels per group"),
            ("BLOCK_M", problem.gemm_m, 16, 256, "the output pixels"),
            ("BLOCK_K", reduction, min_block_k, 128, "the reduction step"),
        ),
        too_many_warps(config),
    )


def first_reason(*reasons: Optional[str]) -> Optional[str]:
    return next((reason for reason in reasons if reason), None)


def fits_shared_memory(problem: ConvProblem, config: Config, device: DeviceInfo) -> Optional[str]:
    """The pipelined A and B tiles of a GEMM-shaped kernel must fit `device`'s shared memory per block."""
    return shared_memory_reason(pipelined_tiles_bytes(problem, config), device)
