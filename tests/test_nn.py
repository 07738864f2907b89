"""Shared layers: DropPath (stochastic depth), its per-depth rates, SamePad, non-zero mean."""

from __future__ import annotations

import pytest
import torch

from ecgfoundry.nn.layers import DropPath, SamePad, drop_path_rates, nonzero_mean


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
