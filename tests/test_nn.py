"""Shared layers: DropPath (stochastic depth), its per-depth rates, SamePad, non-zero mean, the
grouped convolution that stays correct in bfloat16 on CPUs, parallel 'same' convolutions by FFT."""

from __future__ import annotations

from unittest import mock

import pytest
import torch

from ecgfoundry.models import create_model
from ecgfoundry.models.inception1d import InceptionModule1d
from ecgfoundry.models.net1d import SameConv1d
from ecgfoundry.models.wav2vec2 import WeightNormConv1d
from ecgfoundry.nn.layers import (
    FFT_MIN_BATCH,
    DropPath,
    SamePad,
    drop_path_rates,
    grouped_conv1d,
    nonzero_mean,
    same_convs1d,
)


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
    return float((a.detach().float() - b.detach().float()).norm() / b.detach().float().norm())


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


@pytest.mark.parametrize("length", [250, 1000, 97])
def test_same_convolutions_by_fft_equal_direct_ones_with_their_gradients(length: int) -> None:
    """Inception1d's branches (kernels 39/19/9) by one FFT on the CPU: the outputs and the
    gradients of input and weights are those of ``F.conv1d`` (computed in float64)."""
    torch.manual_seed(0)
    x = torch.randn(FFT_MIN_BATCH, 32, length, requires_grad=True)
    weights = [(torch.randn(8 * (i + 1), 32, k) / k).requires_grad_() for i, k in
               enumerate([39, 19, 9])]  # fmt: skip
    outs = same_convs1d(x, weights)
    exact = [torch.nn.functional.conv1d(x.double(), w.double(), padding=(w.shape[-1] - 1) // 2)
             for w in weights]  # fmt: skip
    assert [o.shape for o in outs] == [e.shape for e in exact] and outs[0].dtype == torch.float32
    for out, ref in zip(outs, exact, strict=True):
        assert relative_error(out, ref) < 1e-5
    upstream = [torch.randn_like(o) for o in outs]
    grads = torch.autograd.grad(outs, [x, *weights], upstream)
    ref_grads = torch.autograd.grad(exact, [x, *weights], [u.double() for u in upstream])
    for grad, ref in zip(grads, ref_grads, strict=True):
        assert relative_error(grad, ref) < 1e-5
    with pytest.raises(ValueError, match="odd"):
        same_convs1d(x, [torch.randn(8, 32, 4)])


def test_same_convolutions_keep_the_precision_policy() -> None:
    """bfloat16 and autocast take ``F.conv1d`` (the precision policy's), not the FFT."""
    torch.manual_seed(0)
    x, weights = torch.randn(16, 8, 100), [torch.randn(4, 8, 9), torch.randn(4, 8, 3)]
    (cast,) = same_convs1d(x.bfloat16(), [weights[0].bfloat16()])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = same_convs1d(x, weights)
    assert cast.dtype == torch.bfloat16 and {o.dtype for o in autocast} == {torch.bfloat16}
    exact = same_convs1d(x, weights)
    assert all(relative_error(a, e) < 0.02 for a, e in zip(autocast, exact, strict=True))


@pytest.mark.parametrize(
    "batch, length, by_fft",
    [(128, 250, True), (16, 4000, True), (15, 250, False), (16, 4001, False)],
)
def test_inception_modules_take_the_fft_where_it_pays(batch: int, length: int, by_fft: bool):
    """Training batches of short windows go by FFT; a few inputs or long ones, where it is the
    slower, directly; either way the module is its direct definition."""
    torch.manual_seed(0)
    module = InceptionModule1d(12, 32, [39, 19, 9], 32).eval()
    x = torch.randn(batch, 12, length)
    with mock.patch("torch.fft.irfft", wraps=torch.fft.irfft) as irfft, torch.no_grad():
        out = module(x)
    assert irfft.called == by_fft
    with torch.no_grad():
        bottled = module.bottleneck(x)
        direct = [torch.nn.functional.conv1d(bottled, c.weight, padding=c.padding) for c in
                  module.convs]  # fmt: skip
        expected = torch.relu(module.norm(torch.cat([*direct, module.pool_branch(x)], dim=1)))
    assert relative_error(out, expected) < 1e-5
