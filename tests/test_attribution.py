"""SHAP attribution over leads x segments: exact on a linear model, additive on a real CNN, and
the sanity checks tell a model that uses its weights from a randomised one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from ecgfoundry.analysis.attribution import explain, map_similarity, sanity_checks
from ecgfoundry.models import create_model
from ecgfoundry.models.base import ECGModel, ModelConfig

SPEC = {"fs": 100.0, "seconds": 2.0, "leads": ["I", "II", "V1"], "normalisation": "none"}


@dataclass
class LinearConfig(ModelConfig):
    pass


class Linear(ECGModel):
    """logit = <w, x> over every lead and sample: SHAP values are w * (x - baseline)."""

    family = "linear-test"
    config_class = LinearConfig

    def __init__(self, config: LinearConfig):
        super().__init__(config)
        self.w = nn.Parameter(torch.randn(len(config.spec["leads"]), 200))
        self.reset_head(config.num_classes)

    @property
    def num_features(self) -> int:
        return 1

    def forward_features(self, x: Tensor) -> Tensor:
        return (x * self.w).sum(dim=(1, 2))[:, None]

    def reset_head(self, num_classes, labels=None) -> None:
        super().reset_head(num_classes, labels)
        if num_classes:
            with torch.no_grad():
                self.head.weight.fill_(1.0)
                self.head.bias.zero_()


def planted() -> Linear:
    torch.manual_seed(0)
    model = Linear(LinearConfig(spec=SPEC, num_classes=1))
    with torch.no_grad():
        model.w.zero_()
        model.w[1, 50:100] = 1.0  # lead II, second of four 0.5-s segments
    return model


def test_the_values_are_exact_on_a_linear_model_and_sum_to_the_logit_gap() -> None:
    model, x, background = planted(), torch.randn(5, 3, 200), torch.randn(1, 3, 200)
    result = explain(model, x, 0, background, segments=4, steps=2)
    exact = (model.w.detach() * (x - background)).numpy().reshape(5, 3, 4, 50).sum(-1)
    assert np.allclose(result.values, exact, atol=1e-4)
    assert result.additivity_error() < 1e-4 and result.segment_seconds == 0.5
    assert result.leads == ["I", "II", "V1"]
    assert np.argmax(result.lead_importance()) == 1 and result.lead_importance().sum() == 1.0


def test_a_randomised_model_is_told_apart_and_seeds_agree() -> None:
    model, x = planted(), torch.randn(8, 3, 200)
    background = torch.randn(4, 3, 200)
    checks = sanity_checks(model, x, 0, background, segments=4, steps=4)
    assert checks["randomisation_passes"] and checks["randomisation_similarity"] < 0.5
    assert checks["explainer_seed_agreement"] > 0.9
    options = {"segments": 4, "steps": 4}
    same = explain(model, x, 0, background, **options)  # what the checks would compute
    assert sanity_checks(model, x, 0, background, reference=same, **options) == checks
    other = explain(model, x, 0, torch.randn(4, 3, 200), **options)  # another background
    reused = sanity_checks(model, x, 0, background, reference=other, **options)
    assert reused["additivity_error"] == other.additivity_error()  # the given map is used
    assert reused["randomisation_similarity"] != checks["randomisation_similarity"]
    same = explain(model, x, 0, torch.randn(4, 3, 200), segments=4, steps=4)
    assert map_similarity(same, same) == pytest.approx(1.0)


def test_every_family_can_be_explained_and_more_steps_approach_additivity() -> None:
    torch.manual_seed(0)
    model = create_model("resnet1d-wang", num_classes=2).eval()
    x, background = torch.randn(6, 12, model.spec.samples), torch.randn(4, 12, model.spec.samples)
    fine = [explain(model, x, 1, background, segments=5, steps=32, seed=s) for s in (0, 1)]
    assert fine[0].values.shape == (6, 12, 5) and np.isfinite(fine[0].values).all()
    coarse = [explain(model, x, 1, background, steps=1, seed=s) for s in (0, 1)]
    errors = [r.additivity_error() for r in fine], [r.additivity_error() for r in coarse]
    assert max(errors[0]) < 0.3 < min(errors[1])  # a random ReLU net is rough: slow, but sure


def test_bad_arguments_are_named() -> None:
    model = planted()
    with pytest.raises(ValueError, match="target must be a class index"):
        explain(model, torch.randn(2, 3, 200), 3, torch.randn(1, 3, 200))
    with pytest.raises(ValueError, match=r"x must be model inputs \[records, 3, 200\]"):
        explain(model, torch.randn(2, 3, 100), 0, torch.randn(1, 3, 200))
    with pytest.raises(ValueError, match="segments"):
        explain(model, torch.randn(2, 3, 200), 0, torch.randn(1, 3, 200), segments=0)
