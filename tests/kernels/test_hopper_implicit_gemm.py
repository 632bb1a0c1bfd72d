"""The Hopper implicit-GEMM family: supports() by capability, numerics in the interpreter (which emulates tensor
descriptors), and real compiles for sm_90 (HGMMA, no spills) beside the GEMM family's sm_80/sm_90 defaults."""
from __future__ import annotations


import pytest
import torch

from tritonconv.dispatch import empty_output
from tritonconv.functional import make_problem
from tritonconv.kernels import ConvTensors, get_family
from tritonconv.kernels.hopper_implicit_gemm import can_read_input_by_tma, input_tma_reason, patch_waste, supports_on

from tests.helpers import TOLERANCE, random_conv_inputs, reference_conv2d, rel_error, run_compiler_script


def test_supports_by_capability():
    x, w, _ = random_conv_inputs(1, 16, 6, 6, 8, 16, 3, 3, channels_last=True)
    problem = make_problem(x, w, padding=1, precision="tf32")
    assert "9.0" in supports_on(problem, (8, 0))
    assert supports_on(problem, (9, 0)) is None
    assert supports_on(problem.with_(precision="ieee"), (9, 0))  # no tensor-core MMA for exact fp32
    assert "groups" in supports_on(make_problem(x, torch.randn(8, 8, 3, 3), groups=2, precision="tf32"), (9, 0))
    assert "16 bytes" in supports_on(problem.with_(c=3), (9, 0))
    assert get_family("hopper_implicit_gemm").supports(problem) is not None  # the interpreter reports 0.0


def run_hopper(problem, x, w, b, residual, config):
    out = empty_output(problem, x).fill_(float("nan"))
    calls = get_family("hopper_implicit_gemm").kernel_calls(problem, ConvTensors(x, w, out, b, residual, "relu"), config)
    for call in calls:
        call.launch()
    return out, calls[0].constexprs["INPUT_TMA"]


GATHER_TILES = ({"BLOCK_M": 64, "BLOCK_N": 16, "BLOCK_K": 16}, {"BLOCK_M": 64, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 1})
# TMA patches: 8x8, 4x16 and 1x64 (one output row) pixels, with channel blocks that do and do not divide C.
TMA_TILES = (
    {"BLOCK_M": 64, "BLOCK_N": 16, "BLOCK_K": 16, "INPUT_TMA": True, "BLOCK_W": 8},
    {"BLOCK_M": 64, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 1, "INPUT_TMA": True, "BLOCK_W": 16},
    {"BLOCK_M": 64, "BLOCK_N": 16, "BLOCK_K": 16, "INPUT_TMA": True, "BLOCK_W": 64},
)


@pytest.mark.parametrize(
    "shape, conv_args, channels_last, dtype, precision",
    [
        ((2, 24, 6, 5, 20, 3, 3), dict(stride=2, padding=1), True, torch.float32, "tf32x3"),
        ((1, 16, 5, 7, 24, 3, 2), dict(padding=(2, 1), dilation=2), False, torch.float32, "fp16"),
        ((2, 8, 4, 4, 16, 1, 1), dict(), True, torch.float16, None),
        ((2, 24, 9, 10, 20, 3, 3), dict(padding=1), True, torch.float32, "tf32x3"),
        ((1, 16, 11, 6, 24, 3, 2), dict(padding=(2, 1), dilation=(2, 3)), True, torch.float32, "tf32x3"),
        ((2, 8, 7, 7, 16, 5, 5), dict(padding=(0, 3)), True, torch.float16, None),
        ((1, 32, 17, 5, 16, 1, 7), dict(padding=(0, 3)), True, torch.float32, "tf32x3"),
    ],
    ids=["nhwc-stride2", "nchw-dilated", "fp16-1x1", "nhwc-3x3", "nhwc-dilated-rect", "fp16-5x5-asym-pad", "1x7"],
)
def test_numerics_in_interpreter(shape, conv_args, channels_last, dtype, precision):
    n, c, h, w_, k, r, s = shape
    x, w, b = random_conv_inputs(n, c, h, w_, k, c, r, s, dtype=dtype, channels_last=channels_last, seed=c)
    problem = make_problem(x, w, b, **conv_args, precision=precision)
    family = get_family("hopper_implicit_gemm")
    residual = torch.randn(problem.output_shape).to(dtype)
    ref = reference_conv2d(x, w, b, **conv_args, activation="relu", residual=residual)
    tma = input_tma_reason(problem) is None
    assert tma == (channels_last and conv_args.get("stride", 1) == 1)
    for tiles in GATHER_TILES + (TMA_TILES if tma else ()):
        config = family.complete_config(problem, {"INPUT_TMA": False, "BLOCK_W": 8, **tiles})
        out, used_tma = run_hopper(problem, x, w, b, residual, config)
        assert used_tma == config["INPUT_TMA"]
        assert rel_error(out, ref) < TOLERANCE[problem.precision], config


def test_input_tma_is_offered_only_where_the_input_patch_is_a_box():
    x, w, b = random_conv_inputs(1, 16, 8, 8, 16, 16, 3, 3, channels_last=True)
    family = get_family("hopper_implicit_gemm")
    problem = make_problem(x, w, b, padding=1, precision="tf32")
    tma = {**family.default_config(problem), "INPUT_TMA": True, "BLOCK_W": 8}
    assert family.space(problem).violation(problem, tma, pruning=False) is None
    for other, why in (
        (problem.with_(stride_h=2, p=4), "stride 1"),
        (problem.with_(layout="nchw"), "NHWC"),
        (problem.with_(c=6), "16 bytes"),
    ):
        assert why in family.space(other).violation(other, tma, pruning=False)
    gather_with_width = {**tma, "INPUT_TMA": False, "BLOCK_W": 16}
    assert "BLOCK_W" in family.space(problem).violation(problem, gather_with_width, pruning=False)


def test_input_tma_falls_back_to_the_gather_for_a_misaligned_input():
    """A channels-last view that starts one element into its storage: NHWC, but off a 16-byte boundary."""
    x = torch.randn(2 * 6 * 7 * 16 + 1)[1:].view(2, 6, 7, 16).permute(0, 3, 1, 2)
    _, w, b = random_conv_inputs(2, 16, 6, 7, 16, 16, 3, 3)
    problem = make_problem(x, w, b, padding=1, precision="tf32x3")
    assert input_tma_reason(problem) is None and not can_read_input_by_tma(x)
    family = get_family("hopper_implicit_gemm")
    config = family.complete_config(problem, {**TMA_TILES[0]})
    residual = torch.randn(problem.output_shape)
    out, used_tma = run_hopper(problem, x, w, b, residual, config)
    assert not used_tma
    assert rel_error(out, reference_conv2d(x, w, b, padding=1, activation="relu", residual=residual)) < TOLERANCE["tf32x3"]


def test_default_reads_the_input_by_tma_unless_patches_are_mostly_padding():
    family = get_family("hopper_implicit_gemm")
    x, w, b = random_conv_inputs(4, 64, 56, 56, 64, 64, 3, 3, channels_last=True)
    problem = make_problem(x, w, b, padding=1, precision="fp16")
    config = family.default_config(problem)
    assert config["INPUT_TMA"] and patch_waste(problem, config["BLOCK_M"], config["BLOCK_W"]) <= 1.25
    strided = make_problem(x, w, b, stride=2, padding=1, precision="fp16")
    assert not family.default_config(strided)["INPUT_TMA"]


COMPILE_SCRIPT = r"""
import json
from tritonconv.compile import compile_call, compile_config, meta_tensors
from tritonconv.kernels.hopper_implicit_gemm import HopperConv
from tritonconv.kernels.gemm import GemmConv, gemm_default_config
from tritonconv.problem import ConvProblem
from tritonconv.runtime import COMPILE_TARGETS

records = []
gemm = ConvProblem(n=1, c=1024, h=1, w=4096, k=2048, r=1, s=1, dtype="float16")
for cc in (80, 90):
    config = gemm_default_config(gemm, COMPILE_TARGETS[cc])
    records.append(("gemm", cc, config["VARIANT"], [u.__dict__ for u in compile_config(GemmConv(), gemm, config, cc)]))
conv = ConvProblem(n=32, c=128, h=28, w=28, k=128, r=3, s=3, pad_h=1, pad_w=1, dtype="float16")
config = HopperConv().default_config(conv, COMPILE_TARGETS[90])
assert config["INPUT_TMA"], config
records.append(("hopper-tma", 90, "", [u.__dict__ for u in compile_config(HopperConv(), conv, config, 90)]))
gather = {**config, "INPUT_TMA": False, "BLOCK_W": 8}
records.append(("hopper-gather", 90, "", [u.__dict__ for u in compile_config(HopperConv(), conv, gather, 90)]))


def a_operand_in_shared_memory(config):
    ttgir = compile_call(HopperConv().kernel_calls(conv, meta_tensors(conv), config, COMPILE_TARGETS[90])[0], 90).asm["ttgir"]
    dot = next(line for line in ttgir.splitlines() if "ttng.warp_group_dot " in line)
    return dot.rsplit("} :", 1)[1].split("*")[0].strip().startswith("!ttg.memdesc")


a_in_smem = {"row": a_operand_in_shared_memory({**config, "BLOCK_M": 64, "BLOCK_W": 64}),
             "multi_row": a_operand_in_shared_memory(config)}
# Triton 3.6 makes no warp partitions on sm_90 (why WARP_SPECIALIZE is only offered from sm_100).
call = GemmConv().kernel_calls(gemm, meta_tensors(gemm), {**gemm_default_config(gemm, COMPILE_TARGETS[90]), "WARP_SPECIALIZE": True})[0]
partitions = compile_call(call, 90).asm["ttgir"].count("ttg.warp_specialize")
print(json.dumps({"records": records, "sm90_warp_partitions": partitions, "a_in_smem": a_in_smem}))
"""


def test_default_configs_compile_for_sm80_and_sm90():
    result = run_compiler_script(COMPILE_SCRIPT, timeout=300)
    records = {(name, cc): (variant, usage) for name, cc, variant, usage in result["records"]}
    variant, usage = records[("gemm", 80)]
    assert variant == "tiled" and usage[0]["hmma"] > 0 and usage[0]["stack_bytes"] == 0
    variant, usage = records[("gemm", 90)]
    assert variant == "tma_persistent" and usage[0]["hgmma"] > 0 and usage[0]["stack_bytes"] == 0
    for name in ("hopper-tma", "hopper-gather"):
        _, usage = records[(name, 90)]
        assert usage[0]["hgmma"] > 0 and usage[0]["stack_bytes"] == 0, (name, usage)
    # The TMA input path drops the per-row gather's address registers.
    assert records[("hopper-tma", 90)][1][0]["registers"] < records[("hopper-gather", 90)][1][0]["registers"]
    assert result["sm90_warp_partitions"] == 0
    # A one-row patch feeds HGMMA from shared memory; a multi-row box is reshaped through registers (Triton 3.6).
    assert result["a_in_smem"] == {"row": True, "multi_row": False}
