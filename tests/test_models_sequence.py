"""Every family gives per-time-step features, and its embedding is their pooling."""

from __future__ import annotations

import pytest
import torch

from ecgfoundry.models import create_model, list_models, load_model, save_model
from ecgfoundry.nn.layers import nonzero_mean

SMALL = sorted(row["name"] for row in list_models() if row["parameters"] < 5_000_000)
# How each family pools its sequence [B, T, D] into forward_features.
POOL = {
    "net1d": lambda s: s.mean(1),
    "hubert-ecg": lambda s: s.mean(1),
    "ecgfm": lambda s: nonzero_mean(s, dim=1),
    "s4": lambda s: s.mean(1),  # the default mean-pooling head
    "resnet1d": lambda s: torch.cat([s.amax(1), s.mean(1)], 1),
    "xresnet1d": lambda s: torch.cat([s.amax(1), s.mean(1)], 1),
    "inception1d": lambda s: torch.cat([s.amax(1), s.mean(1)], 1),
}


def test_every_family_has_a_pooling_rule_here() -> None:
    assert {row["family"] for row in list_models() if row["name"] in SMALL} <= set(POOL)


def model_and_input(name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    """A seeded preset in eval mode and a batch of two random inputs of its spec."""
    torch.manual_seed(0)
    model = create_model(name).eval()
    return model, torch.randn(2, len(model.spec.leads), model.spec.samples)


@pytest.mark.parametrize("name", SMALL)
def test_sequence_pools_to_the_embedding(name: str) -> None:
    model, x = model_and_input(name)
    with torch.no_grad():
        sequence, features = model.forward_sequence(x), model.forward_features(x)
    assert sequence.ndim == 3 and sequence.shape[0] == 2 and sequence.shape[1] > 1
    torch.testing.assert_close(POOL[model.family](sequence), features, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", SMALL)
def test_an_attention_head_reads_the_sequence_and_survives_saving(name: str, tmp_path) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=3)
    model.reset_head(3, ["a", "b", "c"], kind="attention")
    model.eval()
    spec = model.spec
    x = torch.randn(2, len(spec.leads), spec.samples)
    with torch.no_grad():
        expected = model.head(model.forward_sequence(x))
        assert torch.equal(model(x), expected) and expected.shape == (2, 3)
    loaded = load_model(save_model(model, tmp_path / "m"))
    assert loaded.config.head == "attention"
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), expected)
    loaded.reset_head(2, kind="linear")  # back to the family's own head
    assert loaded.config.head == "linear" and loaded.eval()(x).shape == (2, 2)


# How many blocks each family reports intermediate features for.
BLOCKS = {
    "net1d": lambda m: len(m.stages),
    "hubert-ecg": lambda m: m.backbone.config.num_hidden_layers,
    "ecgfm": lambda m: len(m.encoder.layers),
    "s4": lambda m: len(m.layers),
    "resnet1d": lambda m: len(m.stages),
    "xresnet1d": lambda m: len(m.stages),
    "inception1d": lambda m: -(-len(m.blocks) // 3),  # residual units of three blocks
}


@pytest.mark.parametrize("name", SMALL)
def test_intermediate_layers_end_with_the_sequence(name: str) -> None:
    model, x = model_and_input(name)
    with torch.no_grad():
        layers, sequence = model.forward_intermediates(x), model.forward_sequence(x)
        picked = model.forward_intermediates(x, indices=[0, -1])
    assert len(layers) == BLOCKS[model.family](model) > 1
    assert all(layer.ndim == 3 and layer.shape[0] == 2 for layer in layers)
    torch.testing.assert_close(layers[-1], sequence, rtol=0, atol=0)
    assert torch.equal(picked[0], layers[0]) and torch.equal(picked[1], sequence)
    with pytest.raises(IndexError, match=rf"has {len(layers)} blocks; indices \[{len(layers)}\]"):
        model.forward_intermediates(x, indices=[len(layers)])
