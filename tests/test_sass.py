"""The SASS and ptxas-log parser (tritonconv.sass) and the report's bar, on committed listings: no compiling."""
from __future__ import annotations

from pathlib import Path

import pytest

from tritonconv.problem import ConvProblem
from tritonconv.sass import (
    Instruction,
    loops,
    main_loop,
    parse_ptxas_log,
    parse_sass,
    summarize,
)

DATA = Path(__file__).parent / "data" / "sass"


def _function(name: str) -> list[Instruction]:
    functions = parse_sass((DATA / name).read_text())
    assert len(functions) == 1
    return next(iter(functions.values()))


def test_tutorial_matmul_sm90_main_loop_is_the_pipelined_wgmma_loop():
    instructions = _function("tutorial_matmul_128x128x64_fp16_sm90.sass")
    loop = main_loop(instructions)
    assert (loop.start, loop.end) == (0x1A10, 0x2070)
    s = summarize(instructions)
    assert (s.mma_kind, s.loop_mma, s.wgmma_wait_depth) == ("HGMMA", 4, 1)  # 128x128x64, two warpgroups: 4 k16 steps
    assert s.loop_instructions == 103 and 40 < s.loop_integer < 60 and s.loop_uniform > 0
    assert (s.loop_async_loads, s.loop_sync_loads, s.loop_tma_loads) == (8, 0, 0)
    assert s.load_bits == {128: 8} and s.store_bits == {128: 8}


def test_tutorial_matmul_sm80_uses_hmma_and_cp_async():
    s = summarize(_function("tutorial_matmul_64x64x32_fp16_sm80.sass"))
    assert s.mma_kind == "HMMA" and s.loop_mma == 16 and s.wgmma_wait_depth is None
    assert s.loop_sync_loads == 0 and s.loop_async_loads == 4 and s.load_bits == {128: 4}
    assert 0 < s.loop_integer < s.loop_instructions


def test_synthetic_listing_loops_stubs_widths_and_predicates():
    instructions = _function("synthetic_loops.sass")
    spans = {(loop.start, loop.end) for loop in loops(instructions)}
    # the FFMA loop and the spin loop are loops; the retry stub after EXIT (BRA 0x00a0 at 0x0220) is not
    assert spans == {(0x40, 0x50), (0x60, 0x130), (0x200, 0x210)}
    loop = main_loop(instructions)
    assert (loop.start, loop.end) == (0x60, 0x130)  # the HGMMA loop, not the FFMA one
    predicated = [i for i in loop.body if i.predicate]
    assert [(i.predicate, i.base) for i in predicated] == [("@!P0", "BRA"), ("@P1", "UTMALDG"), ("@P1", "BRA")]
    s = summarize(instructions)
    assert s.loop_instructions == 13  # NOP excluded
    assert (s.loop_integer, s.loop_uniform) == (2, 1)
    assert s.load_bits == {128: 2, 64: 1, 32: 1}
    assert (s.loop_sync_loads, s.loop_async_loads, s.loop_tma_loads) == (3, 2, 1)
    assert s.store_bits == {128: 1, 16: 1} and s.narrowest_load == 32
    assert (s.mma_kind, s.loop_mma, s.wgmma_wait_depth) == ("HGMMA", 1, 1)


def test_kernel_without_a_loop_is_summarised_whole():
    text = """Function : k
        /*0000*/                   LDG.E.U16 R2, desc[UR4][R4.64] ;
        /*0010*/                   FFMA R3, R2, R2, R3 ;
        /*0020*/                   EXIT ;
"""
    s = summarize(parse_sass(text)["k"])
    assert not s.has_main_loop and s.mma_kind == "FFMA" and s.load_bits == {16: 1}


def test_ptxas_log_reports_serialised_wgmma_registers_and_spills():
    log = parse_ptxas_log((DATA / "hopper_conv_sm90.ptxas.log").read_text())
    assert log.serialised_wgmma and log.registers == 146 and log.spill_stores == log.spill_loads == 0
    assert any("C7515" in w for w in log.warnings)
    spilling = parse_ptxas_log("    24 bytes stack frame, 20 bytes spill stores, 28 bytes spill loads\nptxas info    : Used 255 registers")
    assert (spilling.registers, spilling.spill_stores, spilling.spill_loads, spilling.stack_bytes) == (255, 20, 28, 24)
    assert not spilling.serialised_wgmma


@pytest.mark.parametrize("sm,regs,threads,smem,expected", [
    (90, 128, 256, 0, 2),  # 65536 / (128 * 32) = 16 warps = 2 CTAs of 8 warps
    (90, 168, 128, 0, 3),  # 168 regs round to 5376 per warp: 12 warps
    (80, 32, 128, 98304, 1),  # shared memory bound (164 KiB per SM)
    (90, 32, 64, 0, 32),  # the CTA-count limit
])
def test_ctas_per_sm(sm, regs, threads, smem, expected):
    from tritonconv.compile_report import ctas_per_sm

    assert ctas_per_sm(sm, regs, threads, smem) == expected


def _row(problem, sm, sass, reference, **kernel):
    from tritonconv.compile_report import KernelReport, ReportRow

    fields = dict(
        problem=problem.key, family="implicit_gemm", config={}, sm=sm, kernel="k", registers=128, spill_bytes=0,
        shared_bytes=0, threads=256, grid_ctas=100, ctas_per_sm=1, waves=1.0, serialised_wgmma=False,
        sass=sass, reference=reference, tile=(128, 128, 64),
    )
    fields.update(kernel)
    return ReportRow("layer", problem, KernelReport(**fields))


def test_bar_passes_the_reference_itself_and_names_each_miss():
    from tritonconv.compile_report import bar_violations

    reference = summarize(_function("tutorial_matmul_128x128x64_fp16_sm90.sass"))
    dense = ConvProblem(n=2, c=64, h=8, w=8, k=64, r=3, s=3, pad_h=1, pad_w=1)
    assert bar_violations(_row(dense, 90, reference, reference)) == []
    synthetic = summarize(_function("synthetic_loops.sass"))
    missed = {v.split(":")[0] for v in bar_violations(_row(dense, 90, synthetic, synthetic, spill_bytes=8, serialised_wgmma=True))}
    assert missed == {"spills", "serialised_wgmma", "sync_loads", "load_width"}
    sm80 = summarize(_function("tutorial_matmul_64x64x32_fp16_sm80.sass"))
    assert {v.split(":")[0] for v in bar_violations(_row(dense, 90, sm80, reference))} == {"mma"}  # HMMA on sm_90
    long_loop = summarize(_function("tutorial_matmul_128x128x64_fp16_sm90.sass"))
    short_ref = summarize(_function("tutorial_matmul_64x64x32_fp16_sm80.sass"))  # 103 / 87 = 1.18 <= 1.3
    assert bar_violations(_row(dense, 90, long_loop, short_ref)) == []
    tiny_ref = summarize(parse_sass("Function : r\n /*0000*/ HGMMA.64x64x16.F32 R0, gdesc[UR4], R0 ;\n /*0010*/ BRA 0x0000 ;\n")["r"])
    assert [v.split(":")[0] for v in bar_violations(_row(dense, 90, long_loop, tiny_ref))] == ["loop_ratio"]


def test_allowed_load_width_follows_the_channel_run():
    from tritonconv.compile_report import allowed_load_bits

    def problem(c, groups=1, **kw):
        return ConvProblem(n=1, c=c, h=8, w=8, k=c, r=3, s=3, groups=groups, **kw)

    assert allowed_load_bits(problem(64)) == 128 and allowed_load_bits(problem(24)) == 128  # 48 B runs
    assert allowed_load_bits(problem(12)) == 64 and allowed_load_bits(problem(3)) == 16
    assert allowed_load_bits(problem(128, groups=32)) == 64  # 4 channels per group
    assert allowed_load_bits(problem(64, dtype="float32")) == 128 and allowed_load_bits(problem(64, layout="nchw")) == 16


def test_hot_path_leaves_out_a_skipped_block_without_mma():
    """A persistent kernel's flattened tile x K loop: the epilogue under `@!P1 BRA` runs once per tile."""
    text = """Function : persistent
        /*0000*/                   MOV R0, RZ ;
        /*0010*/                   LDGSTS.E.BYPASS.128 [R3], desc[UR14][R24.64], P4 ;
        /*0020*/                   HGMMA.64x128x16.F32 R24, gdesc[UR4], R24, gsb0 ;
        /*0030*/                   WARPGROUP.DEPBAR.LE gsb0, 0x1 ;
        /*0040*/              @!P1 BRA 0x0080 ;
        /*0050*/                   WARPGROUP.DEPBAR.LE gsb0, 0x0 ;
        /*0060*/                   LDG.E R8, desc[UR4][R6.64] ;
        /*0070*/                   STG.E.128 desc[UR4][R18.64], R12 ;
        /*0080*/                   IADD3 R0, R0, 0x1, RZ ;
        /*0090*/               @P2 BRA 0x0010 ;
        /*00a0*/                   EXIT ;
"""
    s = summarize(parse_sass(text)["persistent"])
    assert s.loop_instructions == 6 and s.wgmma_wait_depth == 1  # without the 3 epilogue instructions
    assert (s.loop_sync_loads, s.loop_async_loads) == (0, 1) and s.store_bits == {128: 1}


def test_allowed_load_width_is_capped_by_the_tile_per_thread():
    from tritonconv.compile_report import allowed_load_bits

    grouped = ConvProblem(n=1, c=512, h=8, w=8, k=512, r=3, s=3, groups=32)  # 16 channels per group
    tile = {"BLOCK_M": 128, "BLOCK_N": 16, "BLOCK_K": 16}
    assert allowed_load_bits(grouped) == 128
    assert allowed_load_bits(grouped, tile, threads=128) == 32  # B: 16x16 halves over 128 threads = 2 each
