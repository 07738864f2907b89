"""Nested, seeded, label-stratified training fractions (for label-efficiency curves).

:func:`stratified_order` puts the records in an order in which every prefix is
label-stratified; :func:`nested_subsets` takes the first ``round(f * N)`` records of that one
order for each fraction ``f``, so the subsets are nested (10% ⊂ 30% ⊂ 100%) by construction
and the ordering does not depend on which fractions are asked for.

The order comes from a variant of iterative stratification (Sechidis, Tsoumakas & Vlahavas
2011) into ``n_chunks`` chunks that are laid out in a fixed sequence:

1. Labels are taken rarest first (fewest positives not yet placed). The unplaced positive
   units of that label, in seeded random order, are spread over the chunks so that the
   label's *cumulative* count up to each chunk follows its ideal straight line as closely as
   possible given the positives already placed through rarer labels (a monotone L∞ fit,
   computed with cumulative max/min; no per-record Python loop).
2. Units with no positive label are spread the same way by size.
3. Chunks are concatenated in sequence; units inside a chunk are in seeded random order.

A label with ``n`` positives thus has about ``f * n`` (typically within one) positives in the
first ``f`` of the order, and at least one as soon as ``f * n`` is about 0.5 or more. Rare
labels land at fixed cumulative positions (a single positive sits in the middle chunk); the
seed chooses *which* records go where.

A unit is a record, or with ``groups`` (patient ids) all records of one group: a group is
never split, so a fraction is cut at the group boundary nearest to ``round(f * N)`` records.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

DEFAULT_CHUNKS = 100
SHIFT = 0.0
MIX = True
PASSES = 1


def _low_discrepancy(n: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation of range(n) whose every prefix samples 0..n-1 evenly (bit reversal).

    A random digital shift (XOR) randomises it without losing the even spread.
    """
    if n <= 1:
        return np.arange(n)
    bits = int(n - 1).bit_length()
    t = np.arange(1 << bits, dtype=np.int64)
    rev = np.zeros_like(t)
    for b in range(bits):
        rev |= ((t >> b) & 1) << (bits - 1 - b)
    rev ^= int(rng.integers(1 << bits))
    return rev[rev < n]


def _mixed(
    units: np.ndarray,
    counts: np.ndarray,
    sizes: np.ndarray,
    by_frequency: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """The units reordered so that every prefix holds a fair share of each label pattern.

    Sorting by (size, most frequent label, next label, ...) puts alike units together; reading
    that sorted list in low-discrepancy order spreads each run of alike units evenly.
    """
    if len(units) <= 2:
        return units
    keys = counts[units][:, by_frequency] > 0
    columns = [keys[:, j] for j in range(keys.shape[1] - 1, -1, -1)]
    ranked = units[np.lexsort([*columns, sizes[units]])]  # stable: ties stay in random order
    return ranked[_low_discrepancy(len(units), rng)]



def _check_labels(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2:
        raise ValueError(f"labels must be a 2-D array [records, labels], got shape {y.shape}")
    if y.dtype == bool:
        return y.astype(np.int64)
    if not np.issubdtype(y.dtype, np.number):
        raise ValueError(f"labels must be numeric or boolean, got dtype {y.dtype}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be binary (0/1); found other values")
    return y.astype(np.int64)


def check_fractions(fractions: Sequence[float]) -> list[float]:
    """The fractions as floats; ValueError unless each is a number in (0, 1]."""
    if isinstance(fractions, str | bytes) or not isinstance(fractions, Sequence | np.ndarray):
        raise ValueError(f"fractions must be a sequence of numbers in (0, 1], got {fractions!r}")
    out = []
    for f in fractions:
        if isinstance(f, bool) or not isinstance(f, int | float | np.integer | np.floating):
            raise ValueError(f"fraction {f!r} is not a number; fractions must be in (0, 1]")
        value = float(f)
        if not (math.isfinite(value) and 0.0 < value <= 1.0):
            raise ValueError(f"fraction {f!r} is outside (0, 1]; e.g. use 0.1 for 10%")
        out.append(value)
    return out


def _units(
    n: int, groups: np.ndarray | None
) -> tuple[np.ndarray, int]:
    """Unit index of each record (0..G-1), and G."""
    if groups is None:
        return np.arange(n), n
    groups = np.asarray(groups)
    if groups.ndim != 1 or len(groups) != n:
        raise ValueError(f"groups must be 1-D with one entry per record ({n}), got {groups.shape}")
    if groups.dtype.kind == "f" and np.isnan(groups).any():
        raise ValueError("groups contain NaN; give every record a group id")
    _, unit_of = np.unique(groups, return_inverse=True)
    unit_of = unit_of.reshape(-1)
    return unit_of, int(unit_of.max()) + 1 if n else 0


def _spread(weights: np.ndarray, total: float, existing: np.ndarray, profile: np.ndarray, shift: float = 0.0) -> np.ndarray:
    """Chunks for units (in the given order) so that cumulative weight tracks its ideal line.

    ``total`` is the label's whole weight, ``existing`` [K] what chunks already hold; the
    units carry the rest. Returns the chunk of each unit.
    """
    k = len(existing)
    left = float(weights.sum())
    gap = total * profile + shift - np.cumsum(existing)
    gap[-1] = total - existing.sum()  # wanted cumulative additions
    low = np.clip(np.maximum.accumulate(gap), 0.0, left)
    high = np.clip(np.minimum.accumulate(gap[::-1])[::-1], 0.0, left)
    fit = (low + high) / 2.0  # the monotone curve closest (L∞) to ``gap``
    fit[-1] = left
    middles = np.cumsum(weights) - weights / 2.0
    return np.minimum(np.searchsorted(fit, middles, side="left"), k - 1)


def _chunks(counts: np.ndarray, sizes: np.ndarray, n_chunks: int, rng: np.random.Generator, profile=None):
    if profile is None:
        profile = np.arange(1, n_chunks + 1) / n_chunks
    """Chunk of each unit; ``counts`` [G, L] = positive records per unit and label."""
    n_units, n_labels = counts.shape
    chunk = np.full(n_units, -1, dtype=np.int64)
    held = np.zeros((n_chunks, n_labels))  # positives per chunk and label, placed so far
    totals = counts.sum(axis=0).astype(np.float64)
    remaining = totals.copy()
    positive = counts.T > 0  # [L, G], rows contiguous for the per-label scans
    by_frequency = np.argsort(-totals, kind="stable")
    while True:
        open_labels = np.flatnonzero(remaining > 0)
        if not open_labels.size:
            break
        label = open_labels[np.argmin(remaining[open_labels])]
        units = rng.permutation(np.flatnonzero(positive[label] & (chunk < 0)))
        if MIX:
            units = _mixed(units, counts, sizes, by_frequency, rng)
        where = _spread(counts[units, label].astype(np.float64), totals[label], held[:, label], profile, SHIFT * (rng.random() - 0.5))
        chunk[units] = where
        np.add.at(held, where, counts[units])
        remaining -= counts[units].sum(axis=0)
    rest = rng.permutation(np.flatnonzero(chunk < 0))
    if MIX:
        rest = _mixed(rest, counts, sizes, by_frequency, rng)
    if rest.size:
        placed = chunk >= 0
        filled = np.bincount(chunk[placed], weights=sizes[placed], minlength=n_chunks)
        chunk[rest] = _spread(sizes[rest].astype(np.float64), float(sizes.sum()), filled, profile)
    return chunk


def _ordered_units(
    y: np.ndarray, seed: int, groups: np.ndarray | None, n_chunks: int
) -> tuple[np.ndarray, np.ndarray]:
    """Record order, and the cumulative record count at the end of each unit in that order."""
    y = _check_labels(y)
    n = len(y)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if isinstance(n_chunks, bool) or not isinstance(n_chunks, int | np.integer) or n_chunks < 1:
        raise ValueError(f"n_chunks must be a positive integer, got {n_chunks!r}")
    rng = np.random.default_rng(seed)
    unit_of, n_units = _units(n, groups)
    sizes = np.bincount(unit_of, minlength=n_units)
    counts = np.zeros((n_units, y.shape[1]), dtype=np.int64)
    np.add.at(counts, unit_of, y)
    chunk = _chunks(counts, sizes, int(n_chunks), rng)
    for _ in range(PASSES - 1):
        prof = np.cumsum(np.bincount(chunk, weights=sizes, minlength=n_chunks)) / n
        rng = np.random.default_rng(seed)
        chunk = _chunks(counts, sizes, int(n_chunks), rng, prof)
    unit_order = np.lexsort((rng.permutation(n_units), chunk))
    rank = np.empty(n_units, dtype=np.int64)
    rank[unit_order] = np.arange(n_units)
    order = np.lexsort((np.arange(n), rank[unit_of]))
    return order, np.cumsum(sizes[unit_order])


def stratified_order(
    y: np.ndarray,
    seed: int,
    groups: np.ndarray | None = None,
    n_chunks: int = DEFAULT_CHUNKS,
) -> np.ndarray:
    """A seeded permutation of the record indices in which every prefix is label-stratified.

    ``y`` is binary [N, L] (or [N]); with ``groups`` a group's records are contiguous.
    """
    return _ordered_units(y, seed, groups, n_chunks)[0]


def nested_subsets(
    y: np.ndarray,
    fractions: Sequence[float],
    seed: int,
    groups: np.ndarray | None = None,
    n_chunks: int = DEFAULT_CHUNKS,
) -> dict[float, np.ndarray]:
    """Sorted record indices of a label-stratified subset for each fraction in (0, 1].

    Deterministic per ``seed``; nested (a smaller fraction's subset lies inside a larger
    one's, for any fractions asked for in any calls with the same data and seed); ``1.0`` is
    everything. Each subset holds ``round(f * N)`` records (at least one unit), or with
    ``groups`` the whole-group count nearest to it. ValueError for a fraction outside (0, 1].
    """
    wanted = check_fractions(fractions)
    order, ends = _ordered_units(y, seed, groups, n_chunks)
    n = len(order)
    out: dict[float, np.ndarray] = {}
    for f in wanted:
        if n == 0:
            out[f] = np.zeros(0, dtype=np.int64)
            continue
        target = max(1, math.floor(f * n + 0.5))
        i = int(np.searchsorted(ends, target))  # first unit end at or past the target
        if i >= len(ends):
            i = len(ends) - 1
        elif i > 0 and target - ends[i - 1] < ends[i] - target:
            i -= 1  # the boundary before is strictly nearer
        out[f] = np.sort(order[: ends[i]])
    return out


def subset(
    y: np.ndarray,
    fraction: float,
    seed: int,
    groups: np.ndarray | None = None,
    n_chunks: int = DEFAULT_CHUNKS,
) -> np.ndarray:
    """Sorted record indices of one fraction; the same as ``nested_subsets(...)[fraction]``."""
    return nested_subsets(y, [fraction], seed, groups, n_chunks)[float(fraction)]
