"""tritonconv.convert: conv replacement at any depth, BN folding, activation and residual fusion (torch.fx),
the Sequential fallback for untraceable models, partial conversion with a report, training and torch.compile."""
import torch
import torch.nn.functional as F
from torch import nn

import tritonconv
from tritonconv.nn import Conv2d

from .helpers import TOLERANCE, rel_error

TOL = TOLERANCE["tf32"]  # converted convs use F.conv2d's default precision for float32


def _randomize_batchnorms(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(c, generator=gen) - 0.5)
    return model


def conv_bn_act(c_in, c_out, act=nn.ReLU, **kwargs):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, bias=False, **kwargs), nn.BatchNorm2d(c_out), act())


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock: one ReLU module used twice and `out += identity`."""

    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class Mixed(nn.Module):
    """Grouped, depthwise and dilated convs, functional activations, a residual computed after the conv."""

    def __init__(self):
        super().__init__()
        self.stem = conv_bn_act(3, 8, nn.SiLU, padding=1)
        self.body = nn.ModuleDict({
            "grouped": nn.Conv2d(8, 8, 3, padding=1, groups=2),
            "depthwise": nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8),
            "proj": nn.Conv2d(8, 8, 1),
        })
        self.gelu_tanh = nn.GELU(approximate="tanh")

    def forward(self, x):
        x = self.stem(x)
        y = F.gelu(self.body["grouped"](x))
        z = self.body["depthwise"](y)
        shortcut = self.body["proj"](x)  # defined after the depthwise conv: fusion must move the conv
        return self.gelu_tanh(torch.relu(z + shortcut))


def _outputs_match(model, converted, x, tol=TOL):
    with torch.no_grad():
        expected = model.double()(x.double())
        got = converted(x)
    assert rel_error(got, expected) < tol


def test_basic_block_folds_bn_and_fuses_residual_and_relu(device):
    model = _randomize_batchnorms(BasicBlock(4)).eval()
    converted = tritonconv.convert(model)
    report = converted.tritonconv_report
    assert report.traced and sorted(report.converted) == ["conv1", "conv2"]
    assert report.folded_batchnorms == {"conv1": "bn1", "conv2": "bn2"}
    assert report.fused_activations == {"conv1": "relu", "conv2": "relu"} and report.fused_residuals == ["conv2"]
    # Structurally: only the two convs remain in the graph, the second takes the block input as residual.
    nodes = [n for n in converted.graph.nodes if n.op not in ("placeholder", "output")]
    assert [n.target for n in nodes] == ["conv1", "conv2"]
    assert nodes[1].args == (nodes[0], next(iter(converted.graph.nodes)))
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.ReLU)) for m in converted.modules())
    assert isinstance(model.conv1, nn.Conv2d) and not isinstance(model.conv1, Conv2d)  # not inplace
    _outputs_match(model, converted.to(device), torch.randn(2, 4, 5, 5, device=device))


def test_grouped_depthwise_dilated_and_functional_fusions(device):
    model = _randomize_batchnorms(Mixed()).eval()
    converted = tritonconv.convert(model)
    report = converted.tritonconv_report
    assert len(report.converted) == 4 and not report.skipped
    assert report.folded_batchnorms == {"stem.0": "stem.1"}
    assert report.fused_activations == {"stem.0": "silu", "body.grouped": "gelu", "body.depthwise": "relu"}
    assert report.fused_residuals == ["body.depthwise"]
    assert converted.get_submodule("body.depthwise").activation == "relu"
    # The tanh-approximated GELU is not the kernel's exact GELU: it stays.
    assert any(isinstance(m, nn.GELU) for m in converted.modules())
    x = torch.randn(1, 3, 6, 6, device=device).contiguous(memory_format=torch.channels_last)
    _outputs_match(model, converted.to(device), x)


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = conv_bn_act(3, 4, nn.ReLU6, padding=1)
        self.head = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        x = self.features(x)
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace this
            x = x * 2
        return self.head(x)


def test_untraceable_model_uses_sequential_fusion(device):
    model = _randomize_batchnorms(Untraceable()).eval()
    converted = tritonconv.convert(model)
    report = converted.tritonconv_report
    assert type(converted) is Untraceable and not report.traced and "TraceError" in report.trace_error
    assert isinstance(converted.features[0], Conv2d) and converted.features[0].activation == "relu6"
    assert isinstance(converted.features[1], nn.Identity) and isinstance(converted.features[2], nn.Identity)
    assert isinstance(converted.head, Conv2d) and "Sequential fusion only" in str(report)
    _outputs_match(model, converted.to(device), 3 * torch.randn(1, 3, 5, 5, device=device))


class Partial(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular")
        self.b = nn.Conv2d(4, 4, 3, padding=1).double()  # float64: tritonconv has no float64 kernels
        self.shared = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        x = F.relu(self.a(x))
        x = self.b(x.double()).to(x.dtype)
        return F.relu(self.shared(self.shared(x)))  # one module called twice: never fused


def test_partial_conversion_is_reported(device):
    model = Partial()
    converted = tritonconv.convert(model)
    report = converted.tritonconv_report
    assert report.skipped.keys() == {"b"} and "float64" in report.skipped["b"]
    assert sorted(report.converted) == ["a", "shared"]
    assert report.fused_activations == {"a": "relu"}  # the circular-padded conv fuses; the shared one does not
    assert type(converted.b) is nn.Conv2d and isinstance(converted.shared, Conv2d)
    _outputs_match(model, converted.to(device), torch.randn(1, 3, 5, 5, device=device))


def test_training_mode_keeps_batchnorm_and_gradients_match(device):
    model = nn.Sequential(conv_bn_act(3, 4, padding=1), nn.Conv2d(4, 2, 3, stride=2, groups=2), nn.SiLU())
    model.train()
    converted = tritonconv.convert(model)
    report = converted.tritonconv_report
    assert report.folded_batchnorms == {} and report.fused_activations == {"1": "silu"}
    for conv in converted.modules():
        if isinstance(conv, Conv2d):
            conv.precision = "ieee"
    x = torch.randn(2, 3, 6, 6)
    reference = model.double()
    expected = reference(x.double())
    expected.sum().backward()
    converted.to(device)
    got = converted(x.to(device))
    got.sum().backward()
    assert rel_error(got, expected) < TOLERANCE["ieee"] * 10
    ref_params = dict(reference.named_parameters())
    for name, param in converted.named_parameters():
        assert rel_error(param.grad, ref_params[name].grad) < 1e-4, name


def test_torch_compile_fullgraph_on_converted_model(device):
    model = _randomize_batchnorms(BasicBlock(4)).eval()
    converted = tritonconv.convert(model).to(device)
    compiled = torch.compile(converted, fullgraph=True, backend="eager")
    _outputs_match(model, compiled, torch.randn(1, 4, 4, 4, device=device).contiguous(memory_format=torch.channels_last))


def test_options_disable_fusion_and_inplace(device):
    model = _randomize_batchnorms(BasicBlock(4)).eval()
    converted = tritonconv.convert(model, fold_bn=False, fuse_activations=False, fuse_residuals=False, inplace=True)
    assert converted is model and isinstance(model.conv1, Conv2d) and model.conv1.activation == "none"
    assert isinstance(model.bn1, nn.BatchNorm2d)
    assert isinstance(tritonconv.convert(nn.Conv2d(3, 3, 1)), Conv2d)
