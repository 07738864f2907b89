"""Representation analysis: what embeddings hold (numbers beside the maps) and what
predictions rest on (SHAP values over leads x time segments, with sanity checks)."""

from ecgfoundry.analysis.attribution import Attribution, explain, sanity_checks
from ecgfoundry.analysis.representation import (
    dataset_separability,
    effective_rank,
    knn_auroc,
    linear_cka,
    linear_probe_auroc,
    silhouette,
    trustworthiness,
)

__all__ = [
    "Attribution",
    "dataset_separability",
    "effective_rank",
    "explain",
    "knn_auroc",
    "linear_cka",
    "linear_probe_auroc",
    "sanity_checks",
    "silhouette",
    "trustworthiness",
]
