"""Evaluation: metrics with honest exclusions, bootstrap CIs, thresholds, window aggregation."""

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

__all__ = [
    "aggregate_windows",
    "auprc_per_label",
    "auroc_per_label",
    "bootstrap_ci",
    "bootstrap_difference",
    "evaluate",
    "f1_per_label",
    "tune_thresholds",
]
