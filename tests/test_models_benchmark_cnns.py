"""The PTB-XL benchmark's task-specific CNNs (resnet1d_wang, xresnet1d50/101, inception1d):
shapes, exact parameter counts, the benchmark head, variable lengths, stochastic depth,
save/load, gradients, input checks and configs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ecgfoundry.models import count_parameters, create_model, load_model, save_model
from ecgfoundry.models.inception1d import Inception1d, Inception1dConfig
from ecgfoundry.models.registry import build_config
from ecgfoundry.models.resnet1d import ResNet1d, ResNet1dConfig
from ecgfoundry.models.xresnet1d import XResNet1d, XResNet1dConfig
from ecgfoundry.nn.benchmark_head import (
    PTBXL_BENCHMARK_SPEC,
    BenchmarkHead,
    ConcatPool1d,
    head_dropouts,
)
from ecgfoundry.nn.layers import DropPath
from ecgfoundry.spec import STANDARD_LEADS, InputSpec

# name -> (embedding size, parameters with 5 classes, with 71 classes, DropPath modules).
# Counts derived from the reference definitions' layer shapes (see the module docstrings).
PRESETS = {
    "resnet1d-wang": (256, 473_349, 481_863, 3),
    "xresnet1d50": (512, 953_989, 962_503, 16),
    "xresnet1d101": (512, 1_872_261, 1_880_775, 33),
    "inception1d": (256, 507_653, 516_167, 2),
}
NAMES = list(PRESETS)


def _model(name: str, num_classes: int | None = 5) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes=num_classes)


def _first_conv(model: nn.Module) -> nn.Conv1d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv1d))


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_parameter_counts(name: str) -> None:
    features, params5, params71, _ = PRESETS[name]
    model = _model(name).eval()
    x = torch.randn(2, 12, 250)
    with torch.no_grad():
        assert model.forward_features(x).shape == (2, features)
        assert model(x).shape == (2, 5)
    assert model.num_features == features
    assert count_parameters(model) == params5
    model.reset_head(71)
    assert count_parameters(model) == params71
    assert model.config.num_classes == 71


@pytest.mark.parametrize("name", NAMES)
def test_reset_head_builds_the_benchmark_head(name: str) -> None:
    model = _model(name).eval()
    features = model.num_features
    labels = [f"c{i}" for i in range(71)]
    model.reset_head(71, labels)
    assert model.config.labels == labels
    with torch.no_grad():
        assert model(torch.randn(2, 12, 250)).shape == (2, 71)
    head = model.head
    assert isinstance(head, BenchmarkHead)
    kinds = [type(m) for m in head]
    assert kinds == [
        nn.BatchNorm1d, nn.Dropout, nn.Linear, nn.ReLU, nn.BatchNorm1d, nn.Dropout, nn.Linear
    ]  # fmt: skip
    assert head[0].num_features == features and head[4].num_features == 128
    assert [head[1].p, head[5].p] == [0.25, 0.5]
    assert (head[2].in_features, head[2].out_features) == (features, 128)
    assert (head[6].in_features, head[6].out_features) == (128, 71)
    # the head is the last thing in the state dict
    assert list(model.state_dict())[-1] == "head.6.bias"
    model.reset_head(0)
    assert isinstance(model.head, nn.Identity)
    assert model.config.num_classes is None and model.config.labels is None
    with torch.no_grad():
        assert model(torch.randn(2, 12, 250)).shape == (2, features)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("samples", [250, 1000])
def test_variable_input_lengths(name: str, samples: int) -> None:
    model = _model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 12, samples))
    assert out.shape == (2, 5) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_drop_path(name: str) -> None:
    model = _model(name)
    modules = model.drop_path_modules()
    assert len(modules) == PRESETS[name][3]
    assert all(m.p == 0.0 for m in modules)  # published model unchanged by default
    x = torch.randn(8, 12, 250)
    model.train()  # forward_features: no dropout in the body, so only DropPath is random
    with torch.no_grad():
        assert torch.equal(model.forward_features(x), model.forward_features(x))
    model.set_drop_path_rate(0.3)
    rates = [m.p for m in modules]
    assert rates == sorted(rates) and rates[-1] == pytest.approx(0.3)
    assert model.config.drop_path_rate == 0.3
    torch.manual_seed(1)
    with torch.no_grad():
        assert not torch.equal(model.forward_features(x), model.forward_features(x))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_drop_path_rate_at_creation() -> None:
    model = create_model("xresnet1d50", drop_path_rate=0.2)
    rates = [m.p for m in model.drop_path_modules()]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.2)
    config = build_config("resnet1d-wang", drop_path_rate=0.1)
    assert [m.p for m in ResNet1d(config).drop_path_modules()] == pytest.approx([0, 0.05, 0.1])


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name: str, tmp_path) -> None:
    model = _model(name)
    model.train()
    with torch.no_grad():  # move the BatchNorm running statistics away from their init
        model(torch.randn(4, 12, 250))
    model.eval()
    save_model(model, tmp_path / name)
    loaded = load_model(tmp_path / name)
    assert type(loaded) is type(model)
    assert loaded.config.to_dict() == model.config.to_dict()
    x = torch.randn(3, 12, 250)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize("name", NAMES)
def test_gradient_reaches_first_conv(name: str) -> None:
    model = _model(name).train()
    loss = model(torch.randn(4, 12, 250)).square().mean()
    loss.backward()
    grad = _first_conv(model).weight.grad
    assert grad is not None and grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_wrong_leads_raise(name: str) -> None:
    model = _model(name)
    with pytest.raises(ValueError, match=r"\[batch, 12 leads, samples\]"):
        model(torch.randn(2, 8, 250))
    with pytest.raises(ValueError, match="leads"):
        model(torch.randn(12, 250))


@pytest.mark.parametrize("name", NAMES)
def test_spec_and_config_round_trip(name: str) -> None:
    model = _model(name)
    spec = model.spec
    assert spec == InputSpec(fs=100.0, seconds=2.5, leads=STANDARD_LEADS, normalisation="none")
    assert spec.samples == 250
    assert model.config.spec == PTBXL_BENCHMARK_SPEC
    config = model.config
    again = type(config).from_dict(config.to_dict())
    assert again == config
    assert config.head_hidden == [128] and config.head_dropout == 0.5
    assert config.head_bn and config.concat_pooling


def test_published_hyperparameters() -> None:
    wang = build_config("resnet1d-wang")
    assert (wang.block, wang.layers, wang.kernel_size, wang.inplanes) == (
        "basic", [1, 1, 1], [5, 3], 128
    )  # fmt: skip
    assert (wang.stem_kernel_size, wang.stem_stride, wang.stem_pool) == (7, 1, False)
    x50, x101 = build_config("xresnet1d50"), build_config("xresnet1d101")
    assert (x50.expansion, x50.layers, x101.layers) == (4, [3, 4, 6, 3], [3, 4, 23, 3])
    assert (x50.stem_sizes, x50.kernel_size, x50.stem_kernel_size) == ([32, 32, 64], 5, 5)
    inc = build_config("inception1d")
    assert (inc.depth, inc.nb_filters, inc.bottleneck_size, inc.use_residual) == (6, 32, 32, True)
    assert inc.kernel_sizes() == [39, 19, 9]


def test_benchmark_initialisation() -> None:
    model = _model("xresnet1d50")
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)
    linear = model.head[2]
    assert torch.all(linear.bias == 0)
    # kaiming normal (fan-in, ReLU gain): std sqrt(2 / fan_in)
    conv = model.stages[1][0].convs[1][0]
    fan_in = conv.in_channels * conv.kernel_size[0]
    assert conv.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.1)
    zero = XResNet1d(XResNet1dConfig(num_classes=5, zero_init_last_bn=True))
    assert all(torch.all(b.last_norm.weight == 0) for s in zero.stages for b in s)


def test_head_helpers() -> None:
    assert head_dropouts(0.5, 1) == [0.25, 0.5]
    assert head_dropouts(0.4, 2) == [0.2, 0.2, 0.4]
    assert head_dropouts([0.1, 0.3], 1) == [0.1, 0.3]
    with pytest.raises(ValueError, match="rates"):
        head_dropouts([0.1], 1)
    x = torch.tensor([[[1.0, 3.0, 2.0]]])
    assert torch.equal(ConcatPool1d()(x), torch.tensor([[3.0, 2.0]]))  # max first, then mean
    assert torch.equal(ConcatPool1d(concat=False)(x), torch.tensor([[2.0]]))
    head = BenchmarkHead(10, 3, hidden=[8, 4], dropout=0.0, bn=False)
    assert [type(m) for m in head] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]


def test_variants() -> None:
    plain = Inception1d(Inception1dConfig(num_classes=2, use_residual=False))
    assert plain.drop_path_modules() == [] and len(plain.shortcuts) == 0
    with torch.no_grad():
        assert plain.eval()(torch.randn(2, 12, 100)).shape == (2, 2)
    avg_only = ResNet1d(ResNet1dConfig(num_classes=3, concat_pooling=False))
    assert avg_only.num_features == 128
    bottleneck = ResNet1d(ResNet1dConfig(num_classes=3, block="bottleneck", layers=[2, 1]))
    assert bottleneck.num_features == 2 * 512
    one_lead = XResNet1d(
        XResNet1dConfig(in_channels=1, spec={**PTBXL_BENCHMARK_SPEC, "leads": ["I"]})
    )
    with torch.no_grad():
        assert one_lead.eval()(torch.randn(2, 1, 250)).shape == (2, 512)
    assert isinstance(one_lead.drop_path_modules()[0], DropPath)


@pytest.mark.parametrize(
    ("config_class", "fields", "message"),
    [
        (ResNet1dConfig, {"block": "wide"}, "block must be"),
        (ResNet1dConfig, {"layers": []}, "layers"),
        (XResNet1dConfig, {"widths": [64, 64]}, "widths"),
        (XResNet1dConfig, {"in_channels": 8}, "give a spec"),
        (Inception1dConfig, {"depth": 4}, "multiple of 3"),
        (Inception1dConfig, {"head_dropout": [0.5]}, "rates"),
        (Inception1dConfig, {"drop_path_rate": 1.0}, "drop_path_rate"),
        (Inception1dConfig, {"num_classes": 2, "labels": ["a"]}, "labels"),
    ],
)
def test_config_validation(config_class, fields, message) -> None:
    with pytest.raises(ValueError, match=message):
        config_class(**fields)
