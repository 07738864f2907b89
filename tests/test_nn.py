"""Shared layers: DropPath (stochastic depth), its per-depth rates, SamePad, non-zero mean, the
grouped convolution that stays correct in bfloat16 on CPUs."""

from __future__ import annotations

import pytest
import torch

from ecgfoundry.models import create_model
from ecgfoundry.models.net1d import SameConv1d
from ecgfoundry.models.wav2vec2 import WeightNormConv1d
from ecgfoundry.nn.layers import DropPath, SamePad, drop_path_rates, grouped_conv1d, nonzero_mean


def test_drop_path_is_identity_in_eval_and_at_rate_zero() -> None:
    x = torch.randn(8, 4, 16)
    layer = DropPath(0.5).eval()
    assert torch.equal(layer(x), x)
    assert torch.equal(DropPath(0.0).train()(x), x)


def test_drop_path_drops_whole_samples_and_keeps_the_expectation() -> None:
    torch.manual_seed(0)
    layer = DropPath(0.3).train()
    x = torch.ones(20000, 3, 5)
    y = layer(x)
    per_sample = y.flatten(1)
    dropped = (per_sample == 0).all(dim=1)
    kept = torch.isclose(per_sample, torch.tensor(1 / 0.7)).all(dim=1)
    assert torch.all(dropped | kept)  # a sample is dropped or scaled as a whole
    assert abs(dropped.float().mean().item() - 0.3) < 0.02
    assert abs(y.mean().item() - 1.0) < 0.03  # unbiased


def test_drop_path_rejects_bad_rates() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        DropPath(1.0).train()(torch.ones(2, 2))


def test_rates_rise_linearly_with_depth() -> None:
    assert drop_path_rates(0.2, 5) == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    assert drop_path_rates(0.1, 1) == [0.1] and drop_path_rates(0.1, 0) == []


def test_same_pad_and_nonzero_mean() -> None:
    x = torch.arange(10.0).view(1, 1, 10)
    assert SamePad(4)(x).shape[-1] == 9 and SamePad(3)(x).shape[-1] == 10
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]]])  # last step is padding
    assert torch.equal(nonzero_mean(h, dim=1), torch.tensor([[2.0, 3.0]]))


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.mark.parametrize("per_group, kernel", [(2, 128), (4, 16), (8, 128), (16, 16), (1, 15)])
def test_grouped_convolutions_are_right_under_bfloat16_autocast(per_group, kernel) -> None:
    # oneDNN's bf16 kernels for 2-15 channels per group gave ~100 % error on an AMX Xeon
    torch.manual_seed(0)
    groups = 8
    x = torch.randn(2, per_group * groups, 200)
    weight, bias = (
        torch.randn(per_group * groups, per_group, kernel),
        torch.randn(per_group * groups),
    )
    exact = grouped_conv1d(x, weight, bias, padding=kernel // 2, groups=groups)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = grouped_conv1d(x, weight, bias, padding=kernel // 2, groups=groups)
    assert relative_error(out, exact) < 0.02
    cast = grouped_conv1d(x.bfloat16(), weight.bfloat16(), bias.bfloat16(), padding=kernel // 2,
                          groups=groups)  # fmt: skip
    assert cast.dtype == torch.bfloat16 and relative_error(cast, exact) < 0.02


def test_the_families_grouped_convolutions_use_it() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 32, 300)
    for conv in (WeightNormConv1d(32, 128, groups=8, padding=64), SameConv1d(32, 32, 16, groups=8)):
        with torch.no_grad():
            exact = conv(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                assert relative_error(conv(x), exact) < 0.02
    model = create_model("ecgfm-tiny").eval()  # 4 channels per group in its positional conv
    x = torch.randn(2, 12, 2500)
    with torch.no_grad():
        exact = model.forward_features(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert relative_error(model.forward_features(x), exact) < 0.05
