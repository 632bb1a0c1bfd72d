"""The tritonconv::conv2d custom op: opcheck, fake strides, autograd (incl. the fused epilogue), torch.compile
without graph breaks, the eager fast path and the validation memo, CUDA-graph capture (GPU)."""
import pytest
import torch
import torch.nn.functional as F

import tritonconv
from tritonconv import functional, ops
from tritonconv.enums import Activation

from .helpers import TOLERANCE, random_conv_inputs, reference_conv2d, rel_error

SMALL = {"family": "implicit_gemm", "BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "num_warps": 2, "num_stages": 1}
# (name, (n, c, h, w, k, groups, r, s), conv kwargs)
CASES = [
    ("plain", (2, 4, 5, 5, 6, 1, 3, 3), dict(padding=1)),
    ("grouped_strided_dilated", (1, 4, 7, 7, 4, 2, 3, 3), dict(stride=2, padding=2, dilation=2, groups=2)),
    ("same_asymmetric", (1, 3, 5, 6, 4, 1, 2, 4), dict(padding="same")),
    ("depthwise_same_dilated", (1, 4, 6, 5, 8, 4, 2, 2), dict(padding="same", dilation=2, groups=4)),
]


def _inputs(shape, device, channels_last=False, seed=0):
    n, c, h, w, k, groups, r, s = shape
    return random_conv_inputs(n, c, h, w, k, c // groups, r, s, device=device, channels_last=channels_last, seed=seed)


def _op_args(x, wt, b, residual, activation="none", config=None, **kwargs):
    problem = functional.make_problem(x, wt, b, residual=residual, precision="ieee", **kwargs)
    return (
        x, wt, b, residual, [problem.stride_h, problem.stride_w], ops.explicit_padding(problem),
        [problem.dilation_h, problem.dilation_w], problem.groups, activation, "ieee", ops.config_to_json(config),
        "auto",
    )


@pytest.mark.parametrize("channels_last", [False, True])
def test_opcheck(device, channels_last):
    x, wt, b = _inputs((1, 4, 4, 5, 4, 1, 3, 3), device, channels_last)
    residual = torch.randn(1, 4, 4, 3, device=device)
    if channels_last:
        residual = residual.contiguous(memory_format=torch.channels_last)
    for p in (x, wt, b, residual):
        p.requires_grad_()
    args = _op_args(x, wt, b, residual, "relu", padding=(1, 0))
    torch.library.opcheck(torch.ops.tritonconv.conv2d.default, args)


def test_fake_output_has_real_shape_and_strides(device):
    from torch._subclasses.fake_tensor import FakeTensorMode

    for name, shape, kwargs in CASES[1:3]:
        for channels_last in (False, True):
            x, wt, b = _inputs(shape, device, channels_last)
            args = _op_args(x, wt, b, None, **kwargs)
            real = torch.ops.tritonconv.conv2d(*args)
            with FakeTensorMode() as mode:
                fake_args = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]
                fake = torch.ops.tritonconv.conv2d(*fake_args)
            assert fake.shape == real.shape and fake.stride() == real.stride(), (name, channels_last)
            assert real.is_contiguous(memory_format=torch.channels_last) == channels_last


def _reference_grads(x, wt, b, residual, activation, kwargs, grad_out):
    leaves = [t.detach().double().requires_grad_() for t in (x, wt, b, residual) if t is not None]
    x64, w64, b64 = leaves[:3]
    r64 = leaves[3] if residual is not None else None
    y = F.conv2d(x64, w64, b64, **kwargs)
    y = Activation.parse(activation).apply(y + r64 if r64 is not None else y)
    y.backward(grad_out.double())
    return y, [t.grad for t in leaves]


@pytest.mark.parametrize("name,shape,kwargs", CASES, ids=[c[0] for c in CASES])
def test_gradients_match_f_conv2d(device, name, shape, kwargs):
    """Input, weight, bias (and residual) gradients through the fused epilogue match float64 F.conv2d's."""
    activations = {"plain": ["relu", "silu"], "grouped_strided_dilated": ["relu6"], "same_asymmetric": ["gelu"],
                   "depthwise_same_dilated": ["none"]}[name]
    for activation in activations:
        for config in (None, SMALL):
            x, wt, b = _inputs(shape, device, seed=len(activation))
            with torch.no_grad():
                out_shape = F.conv2d(x, wt, None, **kwargs).shape
            # Scaled so that relu6 saturates somewhere (its upper bound's gradient is tested too).
            residual = 4 * torch.randn(out_shape, device=device) if activation != "none" else None
            leaves = [t.requires_grad_() for t in (x, wt, b, residual) if t is not None]
            y = tritonconv.conv2d(x, wt, b, **kwargs, activation=activation, residual=residual, precision="ieee",
                                  config=config)
            grad_out = torch.randn_like(y)
            y.backward(grad_out)
            ref_y, ref_grads = _reference_grads(x, wt, b, residual, activation, kwargs, grad_out)
            assert rel_error(y, ref_y) < TOLERANCE["ieee"]
            for leaf, ref in zip(leaves, ref_grads):
                assert rel_error(leaf.grad, ref) < 1e-4, (activation, config)


def test_eager_fast_path_equals_op_path(device):
    """No-grad calls skip the op dispatcher; the result is the op's own."""
    x, wt, b = _inputs((1, 4, 5, 5, 4, 1, 3, 3), device, channels_last=True)
    assert ops._plain_eager_call(x, wt, b, None)
    direct = tritonconv.conv2d(x, wt, b, padding=1, activation="silu", precision="ieee")
    through_op = torch.ops.tritonconv.conv2d(*_op_args(x, wt, b, None, "silu", padding=1))
    assert torch.equal(direct, through_op)
    assert direct.stride() == through_op.stride()
    assert not ops._plain_eager_call(x, wt.requires_grad_(), b, None)


def test_repeated_call_skips_validation(device, monkeypatch):
    x, wt, b = _inputs((1, 4, 5, 5, 4, 1, 3, 3), device)
    first = tritonconv.conv2d(x, wt, b, padding=[1, 1], precision="ieee")
    calls = []
    real_make_problem = functional.make_problem
    monkeypatch.setattr(functional, "make_problem", lambda *a, **k: calls.append(1) or real_make_problem(*a, **k))
    again = tritonconv.conv2d(x, wt, b, padding=[1, 1], precision="ieee")
    assert calls == [] and torch.equal(first, again)
    # A different layout (same shape) is a different problem: validated again, output follows the layout.
    x_cl = x.contiguous(memory_format=torch.channels_last)
    out_cl = tritonconv.conv2d(x_cl, wt, b, padding=[1, 1], precision="ieee")
    assert calls == [1] and out_cl.is_contiguous(memory_format=torch.channels_last)
    assert rel_error(out_cl, reference_conv2d(x, wt, b, padding=1)) < TOLERANCE["ieee"]
    # Bad arguments are still rejected on a memoised shape.
    with pytest.raises(tritonconv.InvalidInputError):
        tritonconv.conv2d(x, wt, b, padding=[1, 1], precision="ieee", activation="tanh")


def test_torch_compile_fullgraph_forward_and_backward(device):
    """torch.compile traces tritonconv.conv2d (validation + custom op) without graph breaks."""
    x, wt, b = _inputs((1, 4, 5, 5, 4, 1, 3, 3), device, channels_last=True)
    residual = torch.randn(1, 4, 5, 5, device=device).contiguous(memory_format=torch.channels_last)

    def block(x, wt, b, residual):
        y = tritonconv.conv2d(x, wt, b, padding=1, residual=residual, activation="relu", precision="ieee")
        return y * 2

    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    leaves = [t.requires_grad_() for t in (x, wt, b)]
    y = compiled(x, wt, b, residual)
    assert y.is_contiguous(memory_format=torch.channels_last)
    grad_out = torch.randn_like(y)
    y.backward(grad_out / 2)
    ref_y, ref_grads = _reference_grads(x, wt, b, residual, "relu", dict(padding=1), grad_out)
    assert rel_error(y / 2, ref_y) < TOLERANCE["ieee"]
    for leaf, ref in zip(leaves, ref_grads):
        assert rel_error(leaf.grad, ref) < 1e-4


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_graph_capture_and_replay(dtype):
    x, wt, b = random_conv_inputs(2, 16, 8, 8, 32, 16, 3, 3, dtype=dtype, device="cuda", channels_last=True)
    residual = torch.randn(2, 32, 8, 8, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
    tritonconv.conv2d(x, wt, b, padding=1, residual=residual, activation="relu")  # warm up: compile, prepare
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = tritonconv.conv2d(x, wt, b, padding=1, residual=residual, activation="relu")
    x.copy_(torch.randn_like(x))
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    ref = reference_conv2d(x, wt, b, padding=1, residual=residual, activation="relu")
    assert rel_error(out, ref) < TOLERANCE["fp16" if dtype == torch.float16 else "bf16"]


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_meta_inputs_give_meta_outputs_with_and_without_grad(channels_last):
    """conv2d, nn.Conv2d and matmul on meta tensors return meta outputs of the real call's shape and strides,
    under no_grad (the eager fast path) as with requires_grad (the op and its fake kernel)."""
    x, wt, b = _inputs((2, 4, 7, 6, 8, 2, 3, 2), "cpu", channels_last)
    kwargs = dict(stride=(2, 1), padding="valid", dilation=(1, 2), groups=2)
    real = tritonconv.conv2d(x, wt, b, **kwargs, activation="silu")
    module = tritonconv.nn.Conv2d(4, 8, (3, 2), bias=True, **kwargs)
    for grad in (False, True):
        xm, wm, bm = (t.to("meta").requires_grad_(grad) for t in (x, wt, b))
        with torch.set_grad_enabled(grad):
            out = tritonconv.conv2d(xm, wm, bm, **kwargs, activation="silu")
            assert out.device.type == "meta" and out.shape == real.shape and out.stride() == real.stride()
            assert tritonconv.conv2d(xm[0], wm, bm, **kwargs).shape == real.shape[1:]  # unbatched
            module_out = module.to("meta")(xm)
            assert module_out.device.type == "meta" and module_out.stride() == real.stride()
            for a_shape, b_shape in (((5, 3), (3, 4)), ((2, 5, 3), (3, 4)), ((2, 5, 3), (2, 3, 4))):
                a, bm2 = torch.empty(a_shape, device="meta"), torch.empty(b_shape, device="meta")
                y = tritonconv.matmul(a.requires_grad_(grad), bm2, bias=torch.empty(4, device="meta"),
                                      activation="relu")
                assert y.device.type == "meta" and y.shape == (*a_shape[:-1], 4) and y.is_contiguous()


def _second_order_grads(conv, x, wt, b, residual, grad_out, probe):
    """d/d(inputs, grad_out) of <first-order grads, probe>: what double backward (and gradgradcheck) computes."""
    leaves = [t.detach().clone().requires_grad_() for t in (x, wt, b, residual, grad_out)]
    y = conv(*leaves[:4])
    first = torch.autograd.grad(y, leaves[:4], leaves[4], create_graph=True)
    total = sum((g * p).sum() for g, p in zip(first, probe))
    return [t.double() for t in torch.autograd.grad(total, leaves, allow_unused=True, materialize_grads=True)]


@pytest.mark.parametrize("activation", ["none", "relu", "relu6", "silu", "gelu"])
def test_double_backward_matches_float64_f_conv2d(activation):
    """Second-order gradients through every fused activation (silu_backward has no derivative of its own, so the
    backward is written in differentiable ops) against float64 F.conv2d. tritonconv refuses float64, so
    gradgradcheck's float64 finite differences cannot run; this compares the analytic values instead."""
    kwargs = dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    x, wt, b = _inputs((1, 4, 6, 7, 4, 2, 3, 2), "cpu", seed=5)
    with torch.no_grad():
        out_shape = F.conv2d(x, wt, b, **kwargs).shape
    gen = torch.Generator().manual_seed(1)
    residual, grad_out = (torch.randn(out_shape, generator=gen) for _ in range(2))
    probe = [torch.randn(t.shape, generator=gen) for t in (x, wt, b, residual)]

    def ours(x, wt, b, residual):
        return tritonconv.conv2d(x, wt, b, **kwargs, activation=activation, residual=residual, precision="ieee")

    def reference(x, wt, b, residual):
        return Activation.parse(activation).apply(F.conv2d(x, wt, b, **kwargs) + residual)

    got = _second_order_grads(ours, x, wt, b, residual, grad_out, probe)
    want = _second_order_grads(reference, *(t.double() for t in (x, wt, b, residual, grad_out)),
                               [p.double() for p in probe])
    for name, g, r in zip(("input", "weight", "bias", "residual", "grad_output"), got, want):
        assert rel_error(g, r) < 1e-4 or (r.abs().max() == 0 and g.abs().max() == 0), (activation, name)
