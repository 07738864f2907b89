"""Nested, seeded, label-stratified fractions: unit and property tests."""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecgfoundry.data.stratify import check_fractions, nested_subsets, stratified_order, subset

FRACTIONS = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0]


def power_law_labels(n: int, n_labels: int, seed: int, exponent: float = 1.6) -> np.ndarray:
    """Multi-label data like PTB-XL's: prevalences from ~60% down to a handful of records."""
    rng = np.random.default_rng(seed)
    prevalence = 0.6 * np.arange(1, n_labels + 1) ** -exponent
    y = (rng.random((n, n_labels)) < prevalence).astype(np.uint8)
    y[:, 1] |= y[:, 0] & (rng.random(n) < 0.3)  # some co-occurrence
    return y


@st.composite
def labelled(draw, groups: bool = False):
    n = draw(st.integers(1, 150))
    n_labels = draw(st.integers(1, 6))
    rates = draw(st.lists(st.floats(0.0, 1.0), min_size=n_labels, max_size=n_labels))
    data_seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(data_seed)
    y = (rng.random((n, n_labels)) < np.array(rates) ** 2).astype(np.uint8)
    g = None
    if groups:
        n_groups = draw(st.integers(1, n))
        g = rng.integers(0, n_groups, n)
    return y, g


seeds = st.integers(0, 2**31 - 1)
fraction_lists = st.lists(
    st.floats(0.0, 1.0, exclude_min=True), min_size=1, max_size=5, unique=True
)
fast = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fast
@given(labelled(groups=True), fraction_lists, seeds)
def test_nested_sorted_and_full(data, fractions, seed):
    y, groups = data
    out = nested_subsets(y, [*fractions, 1.0], seed, groups=groups)
    assert set(out) == {*fractions, 1.0}
    np.testing.assert_array_equal(out[1.0], np.arange(len(y)))
    ordered = sorted(out)
    for f in ordered:
        s = out[f]
        assert s.dtype.kind == "i" and len(s) >= 1
        assert np.all(np.diff(s) > 0) and s[0] >= 0 and s[-1] < len(y)
    for small, large in itertools.pairwise(ordered):
        assert np.isin(out[small], out[large]).all()


@fast
@given(labelled(groups=True), fraction_lists, seeds)
def test_deterministic_and_independent_of_the_other_fractions(data, fractions, seed):
    y, groups = data
    once = nested_subsets(y, fractions, seed, groups=groups)
    again = nested_subsets(y, list(reversed(fractions)), seed, groups=groups)
    for f in fractions:
        np.testing.assert_array_equal(once[f], again[f])
        np.testing.assert_array_equal(once[f], subset(y, f, seed, groups=groups))


@fast
@given(labelled(groups=True), fraction_lists, seeds)
def test_groups_are_never_split(data, fractions, seed):
    y, groups = data
    sizes = np.bincount(groups)
    for f, s in nested_subsets(y, fractions, seed, groups=groups).items():
        inside = np.zeros(len(y), dtype=bool)
        inside[s] = True
        for g in np.unique(groups):
            members = inside[groups == g]
            assert members.all() or not members.any()
        target = max(1, math.floor(f * len(y) + 0.5))
        # the nearest whole-group cut: off by at most half a group (or one group when the
        # smallest possible subset, one group, is already past the target)
        assert abs(len(s) - target) <= sizes.max() / 2 or len(s) <= sizes.max()


@fast
@given(labelled(), fraction_lists, seeds)
def test_sizes_without_groups(data, fractions, seed):
    y, _ = data
    for f, s in nested_subsets(y, fractions, seed).items():
        assert len(s) == max(1, math.floor(f * len(y) + 0.5))


@fast
@given(labelled(groups=True), fraction_lists, seeds)
def test_every_prefix_is_stratified(data, fractions, seed):
    """Each label's count stays within a few records of its share (random order does not)."""
    y, groups = data
    n_labels = y.shape[1]
    largest = 1 if groups is None else int(np.bincount(groups).max())
    totals = y.sum(axis=0)
    for f, s in nested_subsets(y, fractions, seed, groups=groups).items():
        counts = y[s].sum(axis=0)
        assert np.all(np.abs(counts - f * totals) <= n_labels / 2 + largest + 0.5)


@fast
@given(st.integers(1, 400), st.floats(0.0, 1.0), seeds, seeds)
def test_one_label_is_exact_to_a_record(n, rate, data_seed, seed):
    y = (np.random.default_rng(data_seed).random(n) < rate).astype(np.uint8)
    order = stratified_order(y, seed)
    prefix = np.cumsum(y[order])
    expected = np.arange(1, n + 1) * y.sum() / n
    assert np.all(np.abs(prefix - expected) <= 1.0)


def test_seeds_give_different_subsets():
    y = power_law_labels(2000, 20, seed=0)
    a = nested_subsets(y, [0.1], seed=1)[0.1]
    b = nested_subsets(y, [0.1], seed=2)[0.1]
    assert len(a) == len(b) == 200
    assert len(np.intersect1d(a, b)) < 100


def _errors_vs_chance(y, groups, seeds, fractions):
    """|count - expected| per label and subset, ours and for random (whole-group) draws."""
    totals = y.sum(axis=0)
    rng = np.random.default_rng(0)
    ours, chance = [], []
    for seed in seeds:
        for s in nested_subsets(y, fractions, seed, groups=groups).values():
            ours.append(np.abs(y[s].sum(axis=0) - totals * len(s) / len(y)))
            if groups is None:
                drawn = rng.choice(len(y), len(s), replace=False)
            else:
                order = rng.permutation(np.unique(groups))
                ends = np.cumsum(np.bincount(groups)[order])
                drawn = np.flatnonzero(np.isin(groups, order[: np.searchsorted(ends, len(s)) + 1]))
            chance.append(np.abs(y[drawn].sum(axis=0) - totals * len(drawn) / len(y)))
    return np.array(ours), np.array(chance)


def test_closer_to_the_full_prevalence_than_random_sampling():
    y = power_law_labels(5000, 30, seed=3)
    ours, chance = _errors_vs_chance(y, None, range(3), FRACTIONS[:-1])
    assert ours.mean() < chance.mean() / 4
    assert ours.max() <= 6 < chance.max()


def test_rare_labels_get_a_positive_once_the_fraction_allows():
    y = power_law_labels(5000, 30, seed=4, exponent=2.2)
    totals = y.sum(axis=0)
    assert (totals <= 10).sum() >= 5  # the data has rare labels
    for seed in range(3):
        for f, s in nested_subsets(y, FRACTIONS, seed).items():
            counts = y[s].sum(axis=0)
            assert np.all(counts[f * totals >= 1] >= 1), (seed, f)


def test_patient_groups_on_multi_record_patients():
    rng = np.random.default_rng(5)
    y = power_law_labels(3000, 15, seed=5)
    groups = rng.integers(0, 2000, len(y))  # ~1.9 records per patient, up to 8
    ours, chance = _errors_vs_chance(y, groups, range(3), [0.05, 0.1, 0.3, 0.5, 0.7])
    assert ours.mean() < chance.mean() / 3
    assert np.percentile(ours, 99) < np.percentile(chance, 99) / 1.5
    assert ours.max() <= 20  # lumpy: a patient's records move together
    for s in nested_subsets(y, [0.1, 0.5], seed=0, groups=groups).values():
        assert not np.intersect1d(groups[s], np.delete(groups, s)).size


def test_all_negative_rows_and_no_labels():
    y = np.zeros((10, 3), dtype=np.uint8)
    out = nested_subsets(y, [0.3, 1.0], seed=0)
    assert len(out[0.3]) == 3 and len(out[1.0]) == 10
    assert len(nested_subsets(np.zeros((7, 0)), [0.5], seed=0)[0.5]) == 4
    assert len(nested_subsets(np.zeros((0, 4)), [0.5], seed=0)[0.5]) == 0


def test_boolean_and_one_dimensional_labels():
    y = np.arange(20) % 4 == 0
    np.testing.assert_array_equal(
        nested_subsets(y, [0.5], seed=3)[0.5], nested_subsets(y.astype(float), [0.5], seed=3)[0.5]
    )


@pytest.mark.parametrize(
    "bad", [[0.0], [-0.1], [1.5], [float("nan")], [float("inf")], ["0.1"], [True], 0.5, "0.5"]
)
def test_bad_fractions_are_refused(bad):
    with pytest.raises(ValueError, match="fraction"):
        nested_subsets(np.ones((5, 1)), bad, seed=0)


def test_check_fractions_accepts_numpy_and_ints():
    assert check_fractions(np.array([0.25, 1])) == [0.25, 1.0]
    assert check_fractions((1,)) == [1.0]


def test_bad_labels_and_groups_are_refused():
    with pytest.raises(ValueError, match="binary"):
        nested_subsets(np.array([[0, 2]]), [0.5], seed=0)
    with pytest.raises(ValueError, match="2-D"):
        nested_subsets(np.zeros((2, 2, 2)), [0.5], seed=0)
    with pytest.raises(ValueError, match="groups"):
        nested_subsets(np.ones((4, 1)), [0.5], seed=0, groups=np.arange(3))
    with pytest.raises(ValueError, match="NaN"):
        nested_subsets(np.ones((2, 1)), [0.5], seed=0, groups=np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="n_chunks"):
        nested_subsets(np.ones((2, 1)), [0.5], seed=0, n_chunks=0)


def test_fast_enough_for_ptbxl_sized_data():
    y = power_law_labels(17000, 71, seed=1)
    groups = np.random.default_rng(1).integers(0, 15000, len(y))
    best = math.inf
    for _ in range(2):
        start = time.perf_counter()
        nested_subsets(y, FRACTIONS, seed=0, groups=groups)
        best = min(best, time.perf_counter() - start)
    assert best < 1.0
