"""tritonconv.matmul vs float64 torch.matmul: odd sizes, edge masks, split-K, batching, epilogue, precisions,
the TMA persistent kernel (run by the interpreter, which supports tensor descriptors), and error cases."""
from __future__ import annotations

import pytest
import torch

import tritonconv
from tritonconv.errors import InvalidConfigError, InvalidInputError, UnsupportedError
from tritonconv.kernels import ConvTensors, get_family
from tritonconv.matmul import _as_conv_input, matmul_problem
from tritonconv.enums import Activation

from .helpers import TOLERANCE, rel_error

CONFIGS = [
    None,  # the default heuristic
    {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "SPLIT_K": 1, "GROUP_M": 1},
    {"BLOCK_M": 32, "BLOCK_N": 16, "BLOCK_K": 16, "SPLIT_K": 2, "GROUP_M": 4},
    {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 16, "SPLIT_K": 4, "num_warps": 2},
]


def _inputs(*shapes, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=gen).to(dtype) for s in shapes]


def _reference(a, b, bias=None, residual=None, activation=None):
    y = a.double() @ b.double()
    if bias is not None:
        y = y + bias.double()
    if residual is not None:
        y = y + residual.double()
    return Activation.parse(activation).apply(y)


def _poisoned_matmul(a, b, **kwargs):
    """tritonconv.matmul writing into a NaN-filled `out`: every element must be written."""
    out = torch.full((*a.shape[:-1], b.shape[-1]), float("nan"), dtype=a.dtype)
    assert tritonconv.matmul(a, b, out=out, **kwargs) is out
    return out


@pytest.mark.parametrize("m,k,n", [(37, 50, 29), (16, 64, 48), (1, 33, 17), (70, 19, 1)])
@pytest.mark.parametrize("config", CONFIGS, ids=["default", "t16", "split2", "split4"])
def test_odd_shapes_fp32_ieee(m, k, n, config):
    a, b, bias = _inputs((m, k), (k, n), (n,))
    if config and config["SPLIT_K"] * config["BLOCK_K"] > k:
        config = {**config, "SPLIT_K": 1}
    out = _poisoned_matmul(a, b, bias=bias, activation="relu", config=config, precision="ieee")
    assert out.shape == (m, n) and out.dtype == a.dtype
    assert rel_error(out, _reference(a, b, bias, activation="relu")) < TOLERANCE["ieee"]


@pytest.mark.parametrize("dtype,precision", [(torch.float16, None), (torch.float32, "fp16"), (torch.float32, "tf32x3")])
@pytest.mark.parametrize("config", CONFIGS[:3], ids=["default", "t16", "split2"])
def test_precisions(dtype, precision, config):
    a, b, bias, res = _inputs((33, 40), (40, 20), (20,), (33, 20), dtype=dtype, seed=1)
    out = _poisoned_matmul(a, b, bias=bias, residual=res, activation="silu", config=config, precision=precision)
    assert out.dtype == dtype
    assert rel_error(out, _reference(a, b, bias, res, "silu")) < TOLERANCE[precision or "fp16"]


@pytest.mark.parametrize("activation,config", [("relu6", CONFIGS[0]), ("gelu", CONFIGS[2])])
def test_batched_b_with_epilogue(activation, config):
    a, b, bias, res = _inputs((2, 21, 40), (2, 40, 19), (19,), (2, 21, 19), seed=2)
    out = _poisoned_matmul(a, b, bias=bias, residual=res, activation=activation, config=config, precision="ieee")
    assert rel_error(out, _reference(a, b, bias, res, activation)) < TOLERANCE["ieee"]


def test_leading_batch_dims_and_strided_a():
    a, b = _inputs((2, 3, 13, 24), (24, 18), seed=3)
    out = tritonconv.matmul(a, b, precision="ieee")
    assert out.shape == (2, 3, 13, 18)
    assert rel_error(out, _reference(a, b)) < TOLERANCE["ieee"]
    at = _inputs((24, 13), seed=4)[0].t()  # column-major A: read through strides
    assert matmul_problem(at, b).layout == "nchw"
    for config in CONFIGS[:2]:
        assert rel_error(_poisoned_matmul(at, b, config=config, precision="ieee"), _reference(at, b)) < TOLERANCE["ieee"]


def test_batched_problem_key_and_family_choice():
    a, b = _inputs((2, 8, 16), (2, 16, 8))
    batched, shared = matmul_problem(a, b), matmul_problem(a, b[0])
    assert batched.batched_weight and not shared.batched_weight
    assert batched.key != shared.key == batched.with_(batched_weight=False).key
    assert [f.name for f in tritonconv.kernels.families_for(batched)] == ["gemm"]
    with pytest.raises(InvalidConfigError, match="family 'implicit_gemm' does not support this problem: no batched"):
        tritonconv.matmul(a, b, config={"family": "implicit_gemm"})


def test_default_precision_follows_allow_tf32():
    a, b = _inputs((4, 8), (8, 4))
    saved = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        assert matmul_problem(a, b).precision == "ieee"
        torch.backends.cuda.matmul.allow_tf32 = True
        assert matmul_problem(a, b).precision == "tf32"
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    assert matmul_problem(a.half(), b.half()).precision == "fp16"


def test_empty_dims():
    a, b, bias = _inputs((5, 0), (0, 3), (3,))
    assert torch.equal(tritonconv.matmul(a, b, bias=bias, activation="relu"), torch.relu(bias).expand(5, 3))
    assert tritonconv.matmul(*_inputs((0, 4), (4, 3))).shape == (0, 3)


@pytest.mark.parametrize("b_transposed", [False, True])
def test_tma_persistent_kernel_in_interpreter(b_transposed):
    """The sm_90 TMA variant, launched directly (the interpreter emulates tensor descriptors)."""
    a, b, bias, res = _inputs((50, 32), (32, 24), (24,), (50, 24), seed=5)
    if b_transposed:
        b = b.t().contiguous().t()  # B^T row-major: the K-major descriptor orientation
    problem = matmul_problem(a, b, precision="ieee")
    family = get_family("gemm")
    out = torch.full((1, 50, 24), float("nan"))
    config = {**family.default_config(problem), "VARIANT": "tma_persistent", "BLOCK_M": 16, "BLOCK_N": 16,
              "BLOCK_K": 16, "SPLIT_K": 1, "GROUP_M": 4}
    tensors = ConvTensors(_as_conv_input(a[None]), b.t()[..., None, None], _as_conv_input(out), bias,
                          _as_conv_input(res[None]), "gelu")
    calls = family.kernel_calls(problem, tensors, config)
    assert [c.fn.__name__ for c in calls] == ["gemm_tma_persistent_kernel"]
    for call in calls:
        call.launch()
    assert rel_error(out[0], _reference(a, b, bias, res, "gelu")) < TOLERANCE["ieee"]


def test_tma_variant_only_offered_on_hopper():
    from tritonconv.kernels.gemm import gemm_default_config, gemm_space
    from tritonconv.runtime import COMPILE_TARGETS

    problem = matmul_problem(*_inputs((4096, 512), (512, 4096), dtype=torch.float16))
    assert gemm_space(problem, COMPILE_TARGETS[80]).param("VARIANT").choices == ("tiled",)
    assert "tma_persistent" in gemm_space(problem, COMPILE_TARGETS[90]).param("VARIANT").choices
    assert gemm_default_config(problem, COMPILE_TARGETS[90])["VARIANT"] == "tma_persistent"
    assert gemm_default_config(problem, COMPILE_TARGETS[80])["VARIANT"] == "tiled"
    with pytest.raises(InvalidConfigError):
        get_family("gemm").complete_config(problem, {"VARIANT": "tma_persistent"})  # interpreter: capability 0.0


@pytest.mark.parametrize(
    "make_args, error, match",
    [
        (lambda: (torch.randn(4, 5), torch.randn(6, 3)), InvalidInputError, "inner dimensions"),
        (lambda: (torch.randn(4, 5), torch.randn(5, 3).half()), InvalidInputError, "dtype"),
        (lambda: (torch.randn(4, 5).double(), torch.randn(5, 3).double()), UnsupportedError, "float64"),
        (lambda: (torch.randn(4, 5).int(), torch.randn(5, 3).int()), UnsupportedError, "int32"),
        (lambda: (torch.randn(5), torch.randn(5, 3)), InvalidInputError, "at least 2-D"),
        (lambda: (torch.randn(2, 4, 5), torch.randn(3, 5, 3)), InvalidInputError, "same batch"),
        (lambda: (torch.randn(4, 5), torch.randn(1, 2, 5, 3)), InvalidInputError, "b must be"),
    ],
)
def test_bad_inputs(make_args, error, match):
    with pytest.raises(error, match=match):
        tritonconv.matmul(*make_args())


def test_bad_epilogue_and_options():
    a, b = torch.randn(4, 5), torch.randn(5, 3)
    with pytest.raises(InvalidInputError, match="bias"):
        tritonconv.matmul(a, b, bias=torch.randn(4))
    with pytest.raises(InvalidInputError, match="residual"):
        tritonconv.matmul(a, b, residual=torch.randn(3, 4))
    with pytest.raises(InvalidInputError, match="activation"):
        tritonconv.matmul(a, b, activation="tanh")
    with pytest.raises(InvalidInputError, match="precision"):
        tritonconv.matmul(a.half(), b.half(), precision="tf32")
    with pytest.raises(InvalidConfigError, match="SPLIT_K"):
        tritonconv.matmul(a, b, config={"SPLIT_K": 3})
    with pytest.raises(InvalidInputError, match="device"):
        tritonconv.matmul(a, b.to("meta"))
    with pytest.raises(InvalidInputError, match="out must be"):
        tritonconv.matmul(a, b, out=torch.empty(3, 4))


@pytest.mark.parametrize("batched", [False, True], ids=["shared-b", "batched-b"])
@pytest.mark.parametrize("b_layout", ["row-major", "transposed"])
def test_problem_tensors_have_the_strides_matmul_launches_with(batched, b_layout):
    """The search times a problem on `make_tensors`; those must be laid out like what matmul really passes."""
    a = torch.randn(3, 20, 24)
    b = torch.randn(*((3,) if batched else ()), 24, 40)
    if b_layout == "transposed":  # e.g. F.linear's weight.t(): the reduction axis contiguous
        b = b.transpose(-1, -2).contiguous().transpose(-1, -2)
    problem = matmul_problem(a, b)
    assert problem.weight_layout == ("ck" if b_layout == "row-major" else "kc")
    assert problem.key.endswith("_wck") == (b_layout == "row-major")
    launched = b.permute(0, 2, 1)[..., None, None] if batched else b.t()[..., None, None]
    _, w = problem.make_tensors("cpu")
    assert w.shape == launched.shape and w.stride() == launched.stride()


def test_a_batched_matmul_problem_tunes_and_its_winner_serves_matmul(device):
    from tritonconv import cache
    from tritonconv.search import tune

    a, b = _inputs((2, 24, 16), (2, 16, 20))
    a, b = a.to(device), b.to(device)
    problem = matmul_problem(a, b, precision="ieee")
    assert problem.batched_weight
    try:
        result = tune(problem, trials=3, progress=False, early_stop=None, retime_top=1)
        assert result.family == "gemm" and result.rel_error <= TOLERANCE["ieee"]
        assert cache.get_entry(problem, a.device).family == "gemm"
        out = tritonconv.matmul(a, b, precision="ieee")
        assert rel_error(out, _reference(a, b)) <= TOLERANCE["ieee"]
    finally:
        cache.invalidate()


def test_non_contiguous_bias_and_residual_views():
    a, b = _inputs((2, 5, 40), (40, 6), seed=3)
    residual = torch.randn(2, 12, 5).transpose(1, 2)[:, :, ::2]
    biases = {"every_other": torch.randn(12)[::2], "expanded": torch.randn(1).expand(6),
              "matrix_column": torch.randn(6, 3)[:, 2]}
    for name, bias in biases.items():
        for config in CONFIGS[:3]:
            out = _poisoned_matmul(a, b, bias=bias, residual=residual, activation="gelu", precision="ieee",
                                   config=config)
            assert rel_error(out, _reference(a, b, bias, residual, "gelu")) < TOLERANCE["ieee"], (name, config)


def test_a_cached_config_naming_a_family_without_batched_weights_is_ignored_for_a_batched_b():
    """A cache entry (hand-edited, imported, or written by an older version) that routes a batched B to a family
    reading one weight for every image would compute every batch with the same B: it is refused and warned about,
    and the call computes the right result with the default."""
    from tritonconv import cache

    from .cache.helpers import HERE, make_entry

    a, b = _inputs((3, 5, 16), (3, 16, 24))
    problem = matmul_problem(a, b)
    cache.update({cache.entry_key(problem, HERE): make_entry(problem)})  # an implicit_gemm entry
    with pytest.warns(RuntimeWarning, match="skipping the invalid tuning cache entry.*no batched"):
        out = tritonconv.matmul(a, b)
    assert rel_error(out, _reference(a, b)) < TOLERANCE["ieee"]
