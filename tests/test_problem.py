"""tritonconv.problem.ConvProblem: derived sizes against F.conv2d itself (random shapes), the stable key, the
dict round trip, the end paddings of padding="same", the 64-bit threshold, and the random tensors it makes."""
from __future__ import annotations

import dataclasses
import random

import pytest
import torch
import torch.nn.functional as F

from tritonconv.problem import INT32_MAX, ConvProblem, conv_output_size


def random_problem(rng: random.Random) -> ConvProblem:
    groups = rng.choice([1, 1, 2, 3])
    r, s = rng.choice([1, 2, 3, 5]), rng.choice([1, 3, 4])
    dilation_h, dilation_w = rng.choice([1, 2]), rng.choice([1, 3])
    pad_h, pad_w = rng.randint(0, 3), rng.randint(0, 2)
    h = rng.randint(dilation_h * (r - 1) + 1, 13)
    w = rng.randint(dilation_w * (s - 1) + 1, 11)
    return ConvProblem(
        n=rng.randint(1, 3), c=groups * rng.randint(1, 4), h=h, w=w, k=groups * rng.randint(1, 3), r=r, s=s,
        stride_h=rng.randint(1, 3), stride_w=rng.randint(1, 2), pad_h=pad_h, pad_w=pad_w,
        dilation_h=dilation_h, dilation_w=dilation_w, groups=groups, dtype="float32", layout=rng.choice(["nchw", "nhwc"]),
    )


def conv_args(p: ConvProblem) -> dict:
    return dict(stride=(p.stride_h, p.stride_w), padding=(p.pad_h, p.pad_w), dilation=(p.dilation_h, p.dilation_w),
                groups=p.groups)


@pytest.mark.parametrize("seed", range(4))
def test_derived_sizes_agree_with_f_conv2d(seed):
    rng = random.Random(seed)
    for _ in range(25):
        p = random_problem(rng)
        x, w = p.make_tensors("cpu", seed=seed)
        y = F.conv2d(x.double(), w.double(), None, **conv_args(p))
        assert p.output_shape == tuple(y.shape), p
        assert (x.numel(), w.numel(), y.numel()) == (p.input_numel, p.weight_numel, p.output_numel)
        assert (p.c_per_group, p.k_per_group) == (w.shape[1], w.shape[0] // p.groups)
        # The implicit GEMM view: M = output pixels, N = output channels per group, K = reduction length.
        assert (p.gemm_m, p.gemm_n, p.gemm_k) == (y.shape[0] * y.shape[2] * y.shape[3], p.k // p.groups,
                                                  w.shape[1] * w.shape[2] * w.shape[3])
        assert p.flops == 2 * y.numel() * p.gemm_k
        assert p.min_bytes == (x.numel() + w.numel() + y.numel()) * 4


@pytest.mark.parametrize("h,r,dilation", [(8, 2, 1), (7, 4, 1), (9, 3, 2), (6, 1, 1), (5, 5, 1)])
def test_same_padding_end_pads_match_pytorch(h, r, dilation):
    """padding="same" with an even (dilated) filter pads one more at the bottom/right, as PyTorch does."""
    total = dilation * (r - 1)
    p = ConvProblem(n=1, c=2, h=h, w=h + 1, k=3, r=r, s=r, pad_h=total // 2, pad_w=total // 2, p=h, q=h + 1,
                    dilation_h=dilation, dilation_w=dilation, dtype="float32", layout="nchw")
    assert (p.pad_bottom, p.pad_right) == (total - total // 2, total - total // 2)
    x, w = p.make_tensors("cpu", seed=1)
    same = F.conv2d(x.double(), w.double(), padding="same", dilation=dilation)
    explicit = F.conv2d(F.pad(x.double(), (p.pad_w, p.pad_right, p.pad_h, p.pad_bottom)), w.double(), dilation=dilation)
    torch.testing.assert_close(same, explicit, rtol=0, atol=0)


def test_conv_output_size_is_pytorchs_formula():
    for size, kernel, stride, pad, dilation in [(7, 3, 2, 1, 1), (1, 1, 1, 0, 1), (10, 3, 3, 2, 2), (5, 5, 1, 0, 1)]:
        x = torch.randn(1, 1, size, size, dtype=torch.float64)
        y = F.conv2d(x, torch.randn(1, 1, kernel, kernel, dtype=torch.float64), stride=stride, padding=pad,
                     dilation=dilation)
        assert conv_output_size(size, kernel, stride, pad, pad, dilation) == y.shape[-1]


def test_the_key_is_stable_and_tells_every_field_apart():
    base = ConvProblem(n=2, c=8, h=9, w=7, k=16, r=3, s=3, pad_h=1, pad_w=1, dtype="float16", layout="nhwc")
    assert base.key == ConvProblem(**base.to_dict()).key == "n2_c8_h9_w7_k16_r3_s3_st1x1_pad1x1_out9x7_dil1x1_g1_float16_nhwc_fp16"
    changes = {"n": 3, "c": 16, "h": 10, "w": 8, "k": 8, "r": 1, "s": 5, "stride_h": 2, "stride_w": 2, "pad_h": 0,
               "pad_w": 2, "dilation_h": 2, "dilation_w": 2, "groups": 2, "dtype": "float32", "layout": "nchw",
               "batched_weight": True, "weight_layout": "ck", "output_layout": "nchw"}
    fields = {f.name for f in dataclasses.fields(ConvProblem)} - {"p", "q", "precision"}  # p, q, precision: derived
    assert set(changes) == fields, "a new field must be part of the key (add it here)"
    keys = {base.key}
    for name, value in changes.items():
        changed = base.with_(**{name: value, "p": 0, "q": 0, "precision": ""})
        assert changed.key not in keys, f"{name} does not change the key"
        keys.add(changed.key)
    assert base.with_(precision="fp16").key == base.key


def test_dict_round_trip_and_defaults():
    p = ConvProblem(n=1, c=3, h=5, w=6, k=4, r=3, s=1, stride_h=2, dtype="float32", precision="tf32x3",
                    layout="nchw", weight_layout="ck")
    assert ConvProblem.from_dict(p.to_dict()) == p and hash(ConvProblem.from_dict(p.to_dict())) == hash(p)
    assert p.output_layout == "nchw" and (p.p, p.q) == (2, 6)
    assert ConvProblem(n=1, c=1, h=1, w=1, k=1, r=1, s=1, dtype="bfloat16").precision == "bf16"
    assert ConvProblem(n=1, c=1, h=1, w=1, k=1, r=1, s=1, dtype="float32", precision="fp16").operand_dtype == torch.float16


def test_needs_int64_at_two_to_the_31_elements():
    fits = ConvProblem(n=1, c=1, h=1, w=INT32_MAX, k=1, r=1, s=1)
    assert fits.input_numel == INT32_MAX and not fits.needs_int64
    assert fits.with_(w=INT32_MAX + 1, q=0).needs_int64
    assert ConvProblem(n=1, c=1, h=1, w=1, k=INT32_MAX + 1, r=1, s=1).needs_int64  # the output (and weight)


@pytest.mark.parametrize("layout,weight_layout", [("nhwc", "kc"), ("nchw", "ck")])
def test_make_tensors_are_random_nonzero_in_the_problems_layouts(layout, weight_layout):
    p = ConvProblem(n=2, c=6, h=5, w=4, k=8, r=3, s=3, groups=2, dtype="float16", layout=layout,
                    weight_layout=weight_layout)
    x, w = p.make_tensors("cpu", seed=3)
    assert (x.dtype, w.dtype) == (torch.float16, torch.float16)
    assert x.shape == (2, 6, 5, 4) and w.shape == (8, 3, 3, 3)
    assert x.is_contiguous(memory_format=torch.channels_last) == (layout == "nhwc")
    assert (w.stride(0) < w.stride(1)) == (weight_layout == "ck")  # "ck": K is contiguous relative to C
    assert (x != 0).float().mean() > 0.99 and (w != 0).float().mean() > 0.99 and x.std() > 0.5
    x2, w2 = p.make_tensors("cpu", seed=3)
    assert torch.equal(x, x2) and torch.equal(w, w2)
    assert not torch.equal(x, p.make_tensors("cpu", seed=4)[0])


def test_a_batched_weight_has_one_weight_per_image():
    p = ConvProblem(n=3, c=4, h=2, w=2, k=5, r=1, s=1, batched_weight=True, dtype="float32")
    x, w = p.make_tensors("cpu")
    assert w.shape == (3, 5, 4, 1, 1) and not torch.equal(w[0], w[1])


def test_labels_name_stride_dilation_and_groups_only_when_not_one():
    p = ConvProblem(n=8, c=64, h=56, w=56, k=128, r=3, s=3, stride_h=2, stride_w=2, dtype="float16")
    assert p.label == "c64→k128 3×3 s2" and p.long_label == "n8 c64→k128 3×3 s2 56×56 fp16 nhwc"
    assert p.with_(groups=64, k=64).label == "c64→k64 3×3 s2 dw"
    assert p.with_(groups=4, dilation_h=2, stride_w=1, p=0, q=0).label == "c64→k128 3×3 s2×1 d2×1 g4"
