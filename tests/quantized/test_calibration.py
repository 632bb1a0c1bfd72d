"""Min-max calibration and convert(model, precision="int8", calibration=[...]) with its accuracy report."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import tritonconv
from tritonconv import InvalidInputError
from tritonconv.quantized import QuantizedConv2d, calibrate


class SmallNet(nn.Module):
    """stem conv -> BN -> ReLU, a grouped conv with a residual add and ReLU, a strided 1x1 head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.body = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.head = nn.Conv2d(8, 16, 1, stride=2)

    def forward(self, x):
        y = torch.relu(self.bn(self.stem(x)))
        y = torch.relu(self.body(y) + y)
        return self.head(y)


def small_net() -> nn.Module:
    torch.manual_seed(0)
    model = SmallNet().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    return model


def test_calibrate_records_each_convs_largest_input_magnitude():
    model = small_net()
    examples = [torch.randn(1, 3, 6, 6), 3 * torch.randn(1, 3, 6, 6)]
    max_abs, outputs = calibrate(model, examples)
    assert max_abs["stem"] == pytest.approx(max(e.abs().max().item() for e in examples))
    body_input = torch.relu(model.bn(model.stem(examples[1])))
    assert max_abs["body"] >= body_input.abs().max().item() > 0
    assert set(max_abs) == {"stem", "body", "head"} and len(outputs) == 2
    assert not model.stem._forward_pre_hooks  # hooks removed


def test_convert_int8_reports_its_accuracy_against_the_float_model():
    model = small_net()
    calibration = [torch.randn(1, 3, 8, 8) for _ in range(2)]
    converted = tritonconv.convert(model, precision="int8", calibration=calibration)
    report = converted.tritonconv_report
    assert report.precision == "int8" and set(report.input_scales) == {"stem", "body", "head"}
    assert all(isinstance(m, QuantizedConv2d) for m in (converted.stem, converted.body, converted.head))
    assert report.folded_batchnorms == {"stem": "bn"} and report.fused_residuals == ["body"]
    assert converted.stem.activation == "relu" and converted.body.activation == "relu"
    # the reported accuracy is the converted model's real error, recomputed here, and within int8's
    with torch.no_grad():
        errors = [((converted(x).double() - model(x).double()).norm() / model(x).double().norm()).item() for x in calibration]
    assert report.accuracy.max_rel_error == pytest.approx(max(errors), rel=1e-6)
    assert report.accuracy.mean_rel_error == pytest.approx(sum(errors) / 2, rel=1e-6)
    assert 1e-4 < report.accuracy.max_rel_error < 3e-2
    assert "int8" in report.summary() and "relative error max" in report.summary()
    # on unseen inputs of the calibrated range the error stays of the same order
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert ((converted(x) - model(x)).norm() / model(x).norm()).item() < 5e-2


def test_convert_int8_keeps_unreached_convs_in_float():
    class WithUnused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Conv2d(2, 4, 1)
            self.unused = nn.Conv2d(4, 4, 1)

        def forward(self, x):
            return self.used(x)

    converted = tritonconv.convert(WithUnused().eval(), precision="int8", calibration=[torch.randn(1, 2, 3, 3)])
    report = converted.tritonconv_report
    assert isinstance(converted.used, QuantizedConv2d) and not isinstance(converted.unused, QuantizedConv2d)
    assert "not reached by the calibration inputs" in report.skipped["unused"]


def test_convert_a_bare_conv_to_int8():
    conv = nn.Conv2d(3, 4, 3)
    converted = tritonconv.convert(conv, precision="int8", calibration=[torch.randn(1, 3, 5, 5)])
    assert isinstance(converted, QuantizedConv2d) and converted.tritonconv_report.accuracy.max_rel_error < 3e-2


def test_float_precision_is_set_on_every_converted_conv():
    converted = tritonconv.convert(small_net(), precision="ieee")
    assert converted.stem.precision == "ieee" and converted.head.precision == "ieee"


@pytest.mark.parametrize("kwargs, match", [
    (dict(precision="int8"), "needs calibration"),
    (dict(precision="int8", calibration=torch.randn(1, 3, 4, 4)), "non-empty list of example inputs"),
    (dict(precision="int8", calibration=[]), "non-empty list"),
    (dict(precision="int8", calibration=[torch.ones(1, 3, 4, 4, dtype=torch.int8)]), r"calibration\[0\] has no float tensor"),
    (dict(precision="int4", calibration=[torch.randn(1, 3, 4, 4)]), "precision must be None or one of"),
    (dict(calibration=[torch.randn(1, 3, 4, 4)]), "only used with precision='int8'"),
])
def test_bad_convert_arguments(kwargs, match):
    with pytest.raises(InvalidInputError, match=match) as info:
        tritonconv.convert(small_net(), **kwargs)
    assert "\n" not in str(info.value)
