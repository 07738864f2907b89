"""Multi-label metrics: macro AUROC/AUPRC, per-label table, bootstrap CIs, tuned F1 thresholds.

Definitions follow scikit-learn (``roc_auc_score``, ``average_precision_score``; the tests check
agreement) but are vectorised so that 1000 bootstrap resamples take seconds. Labels without a
positive (or without a negative) in the evaluated set have no AUROC: they are excluded from the
macro averages and listed in ``excluded_labels``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np


def _check(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.ndim == 1:
        y_true, y_score = y_true[:, None], y_score.reshape(-1, 1)
    if y_true.shape != y_score.shape or y_true.ndim != 2:
        raise ValueError(f"y_true {y_true.shape} and y_score {y_score.shape} must be [N, labels]")
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError("y_true must be binary (0/1)")
    if not np.isfinite(y_score).all():
        raise ValueError("y_score has NaN or infinite values")
    return y_true.astype(bool), y_score


def evaluable(y_true: np.ndarray) -> np.ndarray:
    """Labels with at least one positive and one negative (the only ones with an AUROC)."""
    positives = np.asarray(y_true).sum(axis=0)
    return (positives > 0) & (positives < len(y_true))


@dataclass(frozen=True)
class _Ranking:
    """Scores sorted once per label (descending): resamples then only re-weight rows."""

    order: np.ndarray  # [N, L] row indices, best score first
    hits: np.ndarray  # [N, L] labels in that order
    end: np.ndarray  # [N, L] True at the last row of each group of tied scores

    @classmethod
    def of(cls, y_true: np.ndarray, y_score: np.ndarray) -> _Ranking:
        order = np.argsort(-y_score, axis=0, kind="stable")
        scores = np.take_along_axis(y_score, order, axis=0)
        end = np.ones(order.shape, dtype=bool)
        end[:-1] = scores[1:] != scores[:-1]
        return cls(order, np.take_along_axis(y_true, order, axis=0), end)

    def metrics(self, counts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(AUROC, average precision) per label, each row counted ``counts[row]`` times (a
        bootstrap resample); NaN for labels without positives or negatives."""
        weight = np.ones(self.order.shape) if counts is None else counts[self.order]
        tp = np.cumsum(weight * self.hits, axis=0)
        fp = np.cumsum(weight * ~self.hits, axis=0)
        # tp/fp at the previous group end (both non-decreasing, so a running max carries them)
        tp_before = _shift(np.maximum.accumulate(np.where(self.end, tp, 0), axis=0))
        fp_before = _shift(np.maximum.accumulate(np.where(self.end, fp, 0), axis=0))
        new_tp = np.where(self.end, tp - tp_before, 0.0)
        new_fp = np.where(self.end, fp - fp_before, 0.0)
        positives, negatives = tp[-1], fp[-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.nan_to_num(tp / (tp + fp))
            ap = (new_tp * precision).sum(axis=0) / positives
            auroc = (new_fp * (tp_before + 0.5 * new_tp)).sum(axis=0) / (positives * negatives)
        valid = (positives > 0) & (negatives > 0)
        return np.where(valid, auroc, np.nan), np.where(valid, ap, np.nan)


def _shift(x: np.ndarray) -> np.ndarray:
    return np.vstack([np.zeros((1, x.shape[1])), x[:-1]])


def auroc_per_label(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """AUROC per label (ties count one half); NaN where a label has no positive or negative."""
    return _Ranking.of(*_check(y_true, y_score)).metrics()[0]


def auprc_per_label(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """Average precision per label (scikit-learn's step-wise definition: tied scores form one
    threshold); NaN without positives or negatives."""
    return _Ranking.of(*_check(y_true, y_score)).metrics()[1]


def macro(values: np.ndarray) -> float:
    """Mean over labels that have a value."""
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def bootstrap_ci(
    y_true: np.ndarray,
    y_score: np.ndarray,
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Percentile CIs of macro AUROC and AUPRC over record resamples with replacement.

    As in the PTB-XL benchmark, a resample in which an evaluated label has no positive (or no
    negative) is redrawn, so every resample averages the same labels.
    """
    values, redrawn = _resampled(y_true, [y_score], n_resamples, seed)
    return {
        "level": level,
        "resamples": n_resamples,
        "redrawn": redrawn,
        **{name: _percentiles(values[:, 0, i], level) for i, name in enumerate(_MACROS)},
    }


def bootstrap_difference(
    y_true: np.ndarray,
    y_scores: Sequence[np.ndarray],
    baseline_scores: Sequence[np.ndarray],
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Paired bootstrap of a difference in macro AUROC and AUPRC on one evaluation set.

    The difference is the mean over ``y_scores`` (e.g. one model per seed) minus the mean over
    ``baseline_scores``, recomputed on the same record resamples for both, so the CI reflects
    the comparison and not the spread of either model alone. Also gives the relative change in %.
    """
    if not y_scores or not baseline_scores:
        raise ValueError("need at least one set of scores on each side")
    values, redrawn = _resampled(y_true, [*y_scores, *baseline_scores], n_resamples, seed)
    point = np.array([[macro(v) for v in _Ranking.of(*_check(y_true, s)).metrics()]
                      for s in [*y_scores, *baseline_scores]])  # fmt: skip  # one sort per model
    split = len(y_scores)
    out: dict[str, Any] = {"level": level, "resamples": n_resamples, "redrawn": redrawn}
    for i, name in enumerate(_MACROS):
        ours, theirs = point[:split, i].mean(), point[split:, i].mean()
        deltas = values[:, :split, i].mean(axis=1) - values[:, split:, i].mean(axis=1)
        out[name] = {
            "difference": float(ours - theirs),
            "ci": _percentiles(deltas, level),
            "relative_pct": float(100 * (ours - theirs) / theirs),
        }
    return out


_MACROS = ("macro_auroc", "macro_auprc")


def _resampled(
    y_true: np.ndarray, y_scores: Sequence[np.ndarray], n_resamples: int, seed: int
) -> tuple[np.ndarray, int]:
    """Macro (AUROC, AUPRC) of each score set on the same record resamples, as
    [resamples, score sets, 2], and how many resamples were redrawn because a label lost all
    its positives or negatives."""
    checked = [_check(y_true, y_score) for y_score in y_scores]
    keep = evaluable(checked[0][0])
    rankings = [_Ranking.of(y[:, keep], score[:, keep]) for y, score in checked]
    rng = np.random.default_rng(seed)
    n = len(checked[0][0])
    rows, draws = [], 0
    while len(rows) < n_resamples:
        draws += 1
        if draws > 20 * n_resamples:
            raise ValueError("too few positives to bootstrap: most resamples lose a label")
        counts = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        metrics = [ranking.metrics(counts) for ranking in rankings]
        if np.isnan(metrics[0][0]).any():  # the same labels go missing for every score set
            continue
        rows.append([[auroc.mean(), auprc.mean()] for auroc, auprc in metrics])
    return np.array(rows), draws - n_resamples


def _percentiles(values: np.ndarray, level: float) -> list[float]:
    tail = (1 - level) / 2 * 100
    return [float(v) for v in np.percentile(values, [tail, 100 - tail])]


def tune_thresholds(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """Per-label threshold maximising F1 (tune on validation, apply to test); 0.5 for labels
    without positives."""
    y_true, y_score = _check(y_true, y_score)
    thresholds = np.full(y_true.shape[1], 0.5)
    for j in np.flatnonzero(y_true.any(axis=0)):
        order = np.argsort(-y_score[:, j], kind="stable")
        scores, hits = y_score[order, j], y_true[order, j]
        last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
        tp = np.cumsum(hits)[last]
        f1 = 2 * tp / (last + 1 + hits.sum())
        thresholds[j] = scores[last[int(np.argmax(f1))]]
    return thresholds


def f1_per_label(y_true: np.ndarray, y_score: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """F1 of ``score >= threshold`` per label (0 where there are no positives predicted or
    present)."""
    y_true, y_score = _check(y_true, y_score)
    predicted = y_score >= np.asarray(thresholds)[None, :]
    tp = (predicted & y_true).sum(axis=0)
    denominator = predicted.sum(axis=0) + y_true.sum(axis=0)
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def evaluate(
    y_true: np.ndarray,
    y_score: np.ndarray,
    labels: Sequence[str],
    *,
    thresholds: np.ndarray | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The full report for one split: macro AUROC/AUPRC, CIs, per-label table, excluded labels.

    ``thresholds`` (tuned on validation) add F1 per label and macro F1.
    """
    y_true_b, y_score = _check(y_true, y_score)
    if len(labels) != y_true_b.shape[1]:
        raise ValueError(f"{len(labels)} label names for {y_true_b.shape[1]} columns")
    auroc = auroc_per_label(y_true_b, y_score)
    auprc = auprc_per_label(y_true_b, y_score)
    f1 = f1_per_label(y_true_b, y_score, thresholds) if thresholds is not None else None
    positives = y_true_b.sum(axis=0)
    per_label = []
    for j, name in enumerate(labels):
        row: dict[str, Any] = {"label": name, "positives": int(positives[j])}
        row["auroc"] = None if np.isnan(auroc[j]) else float(auroc[j])
        row["auprc"] = None if np.isnan(auprc[j]) else float(auprc[j])
        if f1 is not None:
            row["threshold"] = float(thresholds[j])
            row["f1"] = float(f1[j])
        per_label.append(row)
    keep = evaluable(y_true_b)
    report: dict[str, Any] = {
        "n": len(y_true_b),
        "macro_auroc": macro(auroc),
        "macro_auprc": macro(auprc),
        "labels_evaluated": int(keep.sum()),
        "excluded_labels": [name for name, k in zip(labels, keep, strict=True) if not k],
    }
    if f1 is not None:
        report["macro_f1"] = float(np.mean(f1[keep])) if keep.any() else float("nan")
    report["ci"] = bootstrap_ci(y_true_b, y_score, n_resamples=n_resamples, seed=seed)
    report["per_label"] = per_label
    return report


Aggregate = Literal["mean", "max"]
# How evaluation (and, by default, `predict`) turns a record's window scores into one: the
# maximum, as the PTB-XL benchmark does (a finding anywhere in the record counts).
DEFAULT_AGGREGATE: Aggregate = "max"


def aggregate_windows(
    values: np.ndarray, owner: np.ndarray, n_records: int, how: Aggregate = "mean"
) -> np.ndarray:
    """Per-record values from per-window values (``owner[w]`` = record of window ``w``)."""
    if how not in ("mean", "max"):
        raise ValueError(f"aggregate must be 'mean' or 'max', got {how!r}")
    reduce = np.max if how == "max" else np.mean
    return np.stack([reduce(values[owner == i], axis=0) for i in range(n_records)])
