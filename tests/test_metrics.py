"""Metrics agree with scikit-learn, exclude labels honestly, and bootstrap reproducibly."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from ecgfoundry.evaluate.metrics import (
    aggregate_windows,
    auprc_per_label,
    auroc_per_label,
    bootstrap_ci,
    bootstrap_difference,
    evaluate,
    f1_per_label,
    tune_thresholds,
)


def multilabel(seed: int, n: int = 300, labels: int = 6, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < rng.uniform(0.05, 0.5, labels)).astype(int)
    score = y * rng.uniform(0.2, 1.0, labels) + rng.normal(0, 0.6, (n, labels))
    if ties:
        score = np.round(score, 1)
    return y, score


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), ties=st.booleans(), n=st.integers(5, 200))
def test_auroc_and_auprc_match_sklearn(seed: int, ties: bool, n: int) -> None:
    y, score = multilabel(seed, n=n, ties=ties)
    auroc, auprc = auroc_per_label(y, score), auprc_per_label(y, score)
    for j in range(y.shape[1]):
        if 0 < y[:, j].sum() < n:
            assert auroc[j] == pytest.approx(roc_auc_score(y[:, j], score[:, j]), abs=1e-12)
            assert auprc[j] == pytest.approx(
                average_precision_score(y[:, j], score[:, j]), abs=1e-12
            )
        else:
            assert np.isnan(auroc[j]) and np.isnan(auprc[j])


def test_labels_without_positives_are_excluded_and_listed() -> None:
    y, score = multilabel(1)
    y[:, 2] = 0
    report = evaluate(y, score, list("abcdef"), n_resamples=200)
    assert report["excluded_labels"] == ["c"] and report["labels_evaluated"] == 5
    kept = [j for j in range(6) if j != 2]
    expected = roc_auc_score(y[:, kept], score[:, kept], average="macro")
    assert report["macro_auroc"] == pytest.approx(expected, abs=1e-12)
    assert report["per_label"][2] == {"label": "c", "positives": 0, "auroc": None, "auprc": None}


def test_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    y, score = multilabel(2, n=500)
    first = bootstrap_ci(y, score, n_resamples=300, seed=7)
    assert first == bootstrap_ci(y, score, n_resamples=300, seed=7)
    assert first != bootstrap_ci(y, score, n_resamples=300, seed=8)
    low, high = first["macro_auroc"]
    assert low < np.nanmean(auroc_per_label(y, score)) < high and high - low < 0.1


def test_paired_difference_is_exact_and_narrower_than_either_ci() -> None:
    y, score = multilabel(5, n=600)
    rng = np.random.default_rng(0)
    better = score + 0.3 * y  # separates the classes more for every label
    worse = [score + rng.normal(0, 0.3, score.shape) for _ in range(2)]  # two "seeds"
    report = bootstrap_difference(y, [better], worse, n_resamples=300, seed=1)
    expected = np.nanmean(auroc_per_label(y, better)) - np.mean(
        [np.nanmean(auroc_per_label(y, w)) for w in worse]
    )
    assert report["macro_auroc"]["difference"] == pytest.approx(expected, abs=1e-12)
    low, high = report["macro_auroc"]["ci"]
    assert 0 < low < expected < high
    single = bootstrap_ci(y, better, n_resamples=300, seed=1)["macro_auroc"]
    assert high - low < single[1] - single[0]  # pairing removes the shared record noise
    same = bootstrap_difference(y, [score], [score], n_resamples=50)
    assert same["macro_auprc"] == {"difference": 0.0, "ci": [0.0, 0.0], "relative_pct": 0.0}


def test_thousand_resamples_are_quick() -> None:
    y, score = multilabel(3, n=2200, labels=71)
    start = time.perf_counter()
    bootstrap_ci(y, score, n_resamples=1000)
    assert time.perf_counter() - start < 60


def test_thresholds_maximise_f1() -> None:
    y, score = multilabel(4, ties=True)
    thresholds = tune_thresholds(y, score)
    f1 = f1_per_label(y, score, thresholds)
    for j in range(y.shape[1]):
        best = max(f1_score(y[:, j], score[:, j] >= t) for t in np.unique(score[:, j]))
        assert f1[j] == pytest.approx(best, abs=1e-12)
        assert f1[j] == pytest.approx(f1_score(y[:, j], score[:, j] >= thresholds[j]), abs=1e-12)


def test_window_aggregation() -> None:
    values = np.array([[0.1, 0.9], [0.5, 0.1], [0.3, 0.3]])
    owner = np.array([0, 0, 1])
    np.testing.assert_allclose(aggregate_windows(values, owner, 2, "max"), [[0.5, 0.9], [0.3, 0.3]])
    np.testing.assert_allclose(
        aggregate_windows(values, owner, 2, "mean"), [[0.3, 0.5], [0.3, 0.3]]
    )
    with pytest.raises(ValueError, match="mean' or 'max"):
        aggregate_windows(values, owner, 2, "median")


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="binary"):
        auroc_per_label(np.array([[0, 2]]), np.array([[0.1, 0.2]]))
    with pytest.raises(ValueError, match="NaN"):
        auroc_per_label(np.array([[0], [1]]), np.array([[np.nan], [0.2]]))
    with pytest.raises(ValueError, match="must be"):
        auroc_per_label(np.zeros((3, 2)), np.zeros((3, 3)))
