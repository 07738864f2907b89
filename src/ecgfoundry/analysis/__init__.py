"""Representation analysis: what embeddings hold (numbers beside the maps)."""

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
    "dataset_separability",
    "effective_rank",
    "knn_auroc",
    "linear_cka",
    "linear_probe_auroc",
    "silhouette",
    "trustworthiness",
]
