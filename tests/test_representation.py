"""Embedding-space numbers: each checked on constructions whose answer is known, and against a
direct computation where one exists."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ecgfoundry.analysis import (
    dataset_separability,
    effective_rank,
    knn_auroc,
    linear_cka,
    linear_probe_auroc,
    silhouette,
    trustworthiness,
)

RNG = np.random.default_rng(0)


def clusters(n: int, dims: int, shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two labels; a record's label-1 flag moves it by ``shift`` along the first axis."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=(n, 2))
    x = rng.normal(size=(n, dims))
    x[:, 0] += shift * y[:, 0]
    return x, y


def test_knn_auroc_finds_a_separable_label_and_not_a_random_one() -> None:
    x, y = clusters(400, 8, 6.0, 0)
    xt, yt = clusters(200, 8, 6.0, 1)
    separable = knn_auroc(x, y[:, :1], xt, yt[:, :1], k=10)
    noise = knn_auroc(x, y[:, 1:], xt, yt[:, 1:], k=10)
    assert separable > 0.95 and abs(noise - 0.5) < 0.1
    assert knn_auroc(x, y, xt, yt) == pytest.approx((separable + noise) / 2, abs=1e-12)


def test_knn_auroc_votes_of_the_k_nearest_by_cosine() -> None:
    train = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    y = np.array([1, 1, 0, 0])
    test = np.array([[2.0, 0.1], [0.1, 3.0], [1.0, 1.0]])
    # votes with k=2: 1, 0, and the diagonal's two nearest are [0.9,0.1] and [0.1,0.9]: 0.5
    votes = np.array([1.0, 0.0, 0.5])
    expected = roc_auc_score([1, 0, 1], votes)
    assert knn_auroc(train, y, test, np.array([1, 0, 1]), k=2) == pytest.approx(expected)


def test_linear_probe_matches_a_direct_logistic_regression_and_leaves_out_constant_labels() -> None:
    x, y = clusters(300, 6, 2.0, 2)
    xt, yt = clusters(150, 6, 2.0, 3)
    constant = np.zeros((300, 1))
    value = linear_probe_auroc(x, np.hstack([y[:, :1], constant]), xt,
                               np.hstack([yt[:, :1], RNG.integers(0, 2, (150, 1))]))  # fmt: skip
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    fitted = LogisticRegression(max_iter=2000).fit(scaler.transform(x), y[:, 0])
    direct = roc_auc_score(yt[:, 0], fitted.decision_function(scaler.transform(xt)))
    assert value == pytest.approx((direct + 0.5) / 2)  # the constant label scores chance


def test_silhouette_is_high_for_separated_groups_and_near_zero_for_mixed() -> None:
    x = np.vstack([RNG.normal([5, 0, 0], 0.3, (100, 3)), RNG.normal([0, 5, 0], 0.3, (100, 3))])
    groups = np.repeat(["a", "b"], 100)
    assert silhouette(x, groups) > 0.8
    assert abs(silhouette(x, RNG.permutation(groups))) < 0.1
    with pytest.raises(ValueError, match="at least 2 groups"):
        silhouette(x, np.repeat("a", 200))


def test_effective_rank_counts_the_directions_used() -> None:
    assert effective_rank(RNG.normal(size=(2000, 4))) == pytest.approx(4, rel=0.05)
    line = np.outer(RNG.normal(size=500), RNG.normal(size=16))
    assert effective_rank(line) == pytest.approx(1.0, abs=1e-6)
    assert effective_rank(np.ones((10, 3))) == 0.0


def test_dataset_separability_from_chance_to_full() -> None:
    x = RNG.normal(size=(300, 5))
    datasets = np.repeat(["ptbxl", "georgia", "cpsc"], 100)
    mixed = dataset_separability(x, datasets)
    assert mixed["chance"] == pytest.approx(1 / 3) and abs(mixed["separability"]) < 0.15
    shifted = x + np.repeat(np.eye(5)[:3] * 8, 100, axis=0)
    assert dataset_separability(shifted, datasets)["separability"] > 0.97
    with pytest.raises(ValueError, match=">= 5 records"):
        dataset_separability(x[:12], datasets[98:110])


def test_linear_cka_is_invariant_to_rotation_and_scale_and_low_for_independent() -> None:
    a = RNG.normal(size=(500, 10))
    rotation, _ = np.linalg.qr(RNG.normal(size=(10, 10)))
    assert linear_cka(a, 3.0 * a @ rotation) == pytest.approx(1.0)
    assert linear_cka(a, RNG.normal(size=(500, 6))) < 0.1
    x = RNG.normal(size=(50, 4))
    a, b = x - x.mean(0), (x @ RNG.normal(size=(4, 3))) ** 2
    b = b - b.mean(0)
    direct = np.trace(a @ a.T @ b @ b.T) / np.sqrt(
        np.trace(a @ a.T @ a @ a.T) * np.trace(b @ b.T @ b @ b.T)
    )  # the HSIC form of the definition
    assert linear_cka(a, b) == pytest.approx(direct)


def test_trustworthiness_of_a_faithful_and_a_scrambled_map() -> None:
    x = RNG.normal(size=(200, 10))
    x[:, 2:] *= 0.01  # essentially 2-D
    assert trustworthiness(x, x[:, :2], k=5) > 0.99
    assert trustworthiness(x, RNG.permutation(x[:, :2]), k=5) < 0.7


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="train must be"):
        knn_auroc(np.ones(3), [1, 0, 1], np.ones((2, 2)), [1, 0])
    with pytest.raises(ValueError, match="y_test must be 0/1"):
        knn_auroc(np.ones((3, 2)), [1, 0, 1], np.ones((2, 2)), [2, 0])
    with pytest.raises(ValueError, match="k must be"):
        knn_auroc(np.ones((3, 2)), [1, 0, 1], np.ones((2, 2)), [1, 0], k=5)
    with pytest.raises(ValueError, match="NaN"):
        effective_rank(np.array([[np.nan, 1.0], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="same records"):
        linear_cka(np.ones((4, 2)), np.ones((5, 2)))
