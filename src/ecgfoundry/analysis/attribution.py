"""What a prediction rests on: SHAP values over leads x time segments, with sanity checks.

Method: expected gradients (Erion et al. 2021; what SHAP's ``GradientExplainer`` computes): a
record's SHAP values are ``E_b E_a[grad f(b + a (x - b))] * (x - b)`` over background records
``b`` and path positions ``a`` in [0, 1], for one class logit ``f``. Why this one: it needs
only gradients, so it works for every family (CNNs, transformers, S4) with one code path, and
its cost is ``background x steps`` forward+backward passes per record whatever the number of
features, so a sample of records takes minutes on a CPU (KernelSHAP over 120 lead-segment
features would need thousands of forward passes per record). Unlike SHAP's and captum's
implementations, which draw ``a`` at random, each background record here gets ``steps``
stratified positions (one uniform draw in each of ``steps`` equal intervals): the same
expectation with far less variance, so that additivity (a record's values sum to its logit
minus the background's mean logit) holds closely at a few dozen passes; the error that
remains is reported (:meth:`Attribution.additivity_error`). Values are summed per (lead, time
segment).

Sanity checks (Adebayo et al. 2018), run by :func:`sanity_checks`:

- **model-parameter randomisation**: the same records explained by the same architecture with
  random weights must look different. Reported: Spearman rank correlation of the absolute
  (lead, segment) maps; a method "passes" when it is below ``RANDOMISATION_LIMIT``;
- **agreement across seeds**: two explanations with different random draws (and, given a
  second model trained with another seed, across models) should agree: Spearman correlation.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import Tensor

from ecgfoundry.models.base import ECGModel

RANDOMISATION_LIMIT = 0.5  # |Spearman| of trained vs randomised maps below this: passes


@dataclass(frozen=True)
class Attribution:
    """SHAP values of one class for a set of records, summed per (lead, time segment).

    ``values`` [records, leads, segments]; ``leads`` their names; ``segment_seconds`` the
    length of a segment; ``expected``: the background's mean logit (additivity: each record's
    values sum to about its logit minus ``expected``); ``logits`` the records' logits.
    """

    values: np.ndarray
    leads: list[str]
    segment_seconds: float
    expected: float
    logits: np.ndarray

    def lead_importance(self) -> np.ndarray:
        """Each lead's share of the total absolute attribution (sums to 1)."""
        totals = np.abs(self.values).sum(axis=(0, 2))
        return totals / max(totals.sum(), 1e-12)

    def additivity_error(self) -> float:
        """Largest |sum of a record's values - (logit - expected)|, relative to the spread of
        the logits: how far the sampled explanation is from exact."""
        gap = self.values.sum(axis=(1, 2)) - (self.logits - self.expected)
        return float(np.abs(gap).max() / max(np.abs(self.logits - self.expected).max(), 1e-12))


class _ClassLogit(torch.nn.Module):
    def __init__(self, model: ECGModel, target: int):
        super().__init__()
        self.model, self.target = model, target

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)[:, self.target]


def _check(model: ECGModel, x: Tensor, target: int, segments: int) -> None:
    if model.num_classes is None or not 0 <= target < model.num_classes:
        raise ValueError(f"target must be a class index in [0, {model.num_classes}), got {target}")
    expected = (len(model.spec.leads), model.spec.samples)
    if x.ndim != 3 or tuple(x.shape[1:]) != expected:
        raise ValueError(f"x must be model inputs [records, {expected[0]}, {expected[1]}], "
                         f"got {tuple(x.shape)}")  # fmt: skip
    if not 1 <= segments <= x.shape[-1]:
        raise ValueError(f"segments must be in [1, {x.shape[-1]}], got {segments}")


def expected_gradients(forward: torch.nn.Module, x: Tensor, background: Tensor, steps: int,
                       generator: torch.Generator, chunk: int = 256) -> Tensor:  # fmt: skip
    """Per-sample SHAP values [records, ...] of ``forward`` (inputs -> one value per row) by
    expected gradients with ``steps`` stratified path positions per background record."""
    out = torch.empty_like(x)
    for row, record in enumerate(x):
        draws = torch.arange(steps) + torch.rand(len(background), steps, generator=generator)
        alphas = (draws / steps).reshape(-1, *([1] * record.dim()))  # [K * steps, 1, 1]
        bases = background.repeat_interleave(steps, dim=0)
        total = torch.zeros_like(record)
        for start in range(0, len(bases), chunk):
            base, alpha = bases[start : start + chunk], alphas[start : start + chunk]
            point = (base + alpha * (record - base)).requires_grad_(True)
            (grad,) = torch.autograd.grad(forward(point).sum(), point)
            total += (grad * (record - base)).sum(dim=0)
        out[row] = total / len(bases)
    return out


def explain(model: ECGModel, x: Tensor, target: int, background: Tensor, *, segments: int = 10,
            steps: int = 4, seed: int = 0) -> Attribution:  # fmt: skip
    """Expected-gradient SHAP values of class ``target``'s logit for the model inputs ``x``
    [records, leads, samples] against ``background`` records (e.g. 8 training inputs), summed
    over ``segments`` equal time segments per lead. Cost per record: ``len(background) *
    steps`` forward+backward passes."""
    _check(model, x, target, segments)
    if steps < 1 or len(background) < 1:
        raise ValueError("steps and the background need at least one entry each")
    model = model.eval()
    forward = _ClassLogit(model, target)
    generator = torch.Generator().manual_seed(seed)
    values = expected_gradients(forward, x.float(), background.float(), steps, generator)
    with torch.no_grad():
        logits = forward(x.float()).numpy()
        expected = float(forward(background.float()).mean())
    edges = np.linspace(0, x.shape[-1], segments + 1).round().astype(int)
    summed = np.add.reduceat(values.numpy(), edges[:-1], axis=-1)
    return Attribution(summed, list(model.spec.leads), model.spec.seconds / segments, expected,
                       logits)  # fmt: skip


def map_similarity(a: Attribution, b: Attribution) -> float:
    """Spearman rank correlation of two explanations' absolute (record, lead, segment) values."""
    if a.values.shape != b.values.shape:
        raise ValueError(f"maps differ in shape: {a.values.shape} vs {b.values.shape}")
    rho = spearmanr(np.abs(a.values).ravel(), np.abs(b.values).ravel()).statistic
    return float(rho) if np.isfinite(rho) else 0.0


def randomised_copy(model: ECGModel, seed: int = 0) -> ECGModel:
    """The same architecture (and head size) with freshly initialised weights."""
    torch.manual_seed(seed)
    fresh = type(model)(type(model).config_class.from_dict(copy.deepcopy(model.config.to_dict())))
    return fresh.eval()


def sanity_checks(model: ECGModel, x: Tensor, target: int, background: Tensor, *,
                  other_model: ECGModel | None = None, segments: int = 10, steps: int = 4,
                  seed: int = 0,
                  reference: Attribution | None = None) -> dict[str, object]:  # fmt: skip
    """The checks the report shows beside every map: similarity to the explanation of a
    randomised model (and whether it stays below :data:`RANDOMISATION_LIMIT`), agreement
    between two explainer seeds, and with ``other_model`` (the same task trained with another
    seed) when given; plus the additivity error. ``reference``: the explanation the same
    arguments give (``explain(model, x, target, background, ...)``), when already made."""
    options = {"segments": segments, "steps": steps}
    if reference is None:
        reference = explain(model, x, target, background, seed=seed, **options)
    randomised = explain(randomised_copy(model, seed + 1), x, target, background, seed=seed,
                         **options)  # fmt: skip
    again = explain(model, x, target, background, seed=seed + 1, **options)
    similarity = map_similarity(reference, randomised)
    out: dict[str, object] = {
        "randomisation_similarity": similarity,
        "randomisation_passes": abs(similarity) < RANDOMISATION_LIMIT,
        "explainer_seed_agreement": map_similarity(reference, again),
        "additivity_error": reference.additivity_error(),
    }
    if other_model is not None:
        other = explain(other_model, x, target, background, seed=seed, **options)
        out["model_seed_agreement"] = map_similarity(reference, other)
    return out


__all__ = [
    "RANDOMISATION_LIMIT",
    "Attribution",
    "expected_gradients",
    "explain",
    "map_similarity",
    "randomised_copy",
    "sanity_checks",
]
