"""Numbers about embeddings, since maps alone mislead (Filice et al. 2026): what a model's
embedding space holds, independent of any adaptation.

Every function takes embeddings ``[N, D]`` (one row per record) and plain label arrays:

- :func:`knn_auroc`: macro AUROC of a k-nearest-neighbour vote (cosine) from training to test
  records, per label of a multi-label task;
- :func:`linear_probe_auroc`: macro AUROC of a logistic regression per label (standardised
  embeddings), trained on one split and scored on another;
- :func:`silhouette`: cosine silhouette of single-label groups (a label, a dataset);
- :func:`effective_rank`: ``exp`` of the entropy of the normalised singular values (Roy and
  Vetterli 2007): how many directions the embeddings actually use;
- :func:`dataset_separability`: how well a cross-validated logistic regression tells datasets
  apart from the embeddings (balanced accuracy beside its chance level; 1 = fully separable);
- :func:`linear_cka`: linear centred kernel alignment between two models' embeddings of the
  same records (Kornblith et al. 2019; 1 = the same up to rotation and scale);
- :func:`trustworthiness`: how well a 2-D map (UMAP) keeps each point's neighbours (Venna and
  Kaski 2001; scikit-learn's definition).
"""

from __future__ import annotations

import numpy as np

from ecgfoundry.evaluate.metrics import auroc_per_label, macro


def _embeddings(x: np.ndarray, name: str = "embeddings") -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"{name} must be [records >= 2, dims], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} has NaN or infinite values")
    return x


def _labels(y: np.ndarray, rows: int, name: str) -> np.ndarray:
    y = np.asarray(y)
    y = y[:, None] if y.ndim == 1 else y
    if y.ndim != 2 or len(y) != rows or not np.isin(y, (0, 1)).all():
        raise ValueError(f"{name} must be 0/1 [records, labels] with {rows} records")
    return y.astype(np.float64)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_auroc(train: np.ndarray, y_train: np.ndarray, test: np.ndarray, y_test: np.ndarray,
              k: int = 10, chunk: int = 1024) -> float:  # fmt: skip
    """Macro AUROC on ``test`` of the share of each record's ``k`` most cosine-similar
    ``train`` records that carry a label (labels without positives or negatives in ``test``
    are left out)."""
    train, test = _embeddings(train, "train"), _embeddings(test, "test")
    y_train = _labels(y_train, len(train), "y_train")
    y_test = _labels(y_test, len(test), "y_test")
    if not 1 <= k <= len(train):
        raise ValueError(f"k must be in [1, {len(train)}] (the training records), got {k}")
    train_unit, votes = _unit(train), np.empty((len(test), y_train.shape[1]))
    for start in range(0, len(test), chunk):
        similarity = _unit(test[start : start + chunk]) @ train_unit.T
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        votes[start : start + chunk] = y_train[nearest].mean(axis=1)
    return macro(auroc_per_label(y_test, votes))


def linear_probe_scores(train: np.ndarray, y_train: np.ndarray, test: np.ndarray,
                        c: float = 1.0, seed: int = 0) -> np.ndarray:  # fmt: skip
    """Scores [test records, labels] of one L2-regularised logistic regression per label
    (inverse strength ``c``) on standardised embeddings, fitted on ``train``; a label
    without positives or negatives in ``train`` scores a constant."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    train, test = _embeddings(train, "train"), _embeddings(test, "test")
    y_train = _labels(y_train, len(train), "y_train")
    scaler = StandardScaler().fit(train)
    train, test = scaler.transform(train), scaler.transform(test)
    scores = np.zeros((len(test), y_train.shape[1]))
    for label in range(y_train.shape[1]):
        if 0 < y_train[:, label].sum() < len(y_train):
            fitted = LogisticRegression(C=c, max_iter=2000, random_state=seed)
            scores[:, label] = fitted.fit(train, y_train[:, label]).decision_function(test)
    return scores


def linear_probe_auroc(train: np.ndarray, y_train: np.ndarray, test: np.ndarray,
                       y_test: np.ndarray, c: float = 1.0, seed: int = 0) -> float:  # fmt: skip
    """Macro AUROC on ``test`` of :func:`linear_probe_scores` (a constant-scored label
    counts 0.5)."""
    y_test = _labels(y_test, len(_embeddings(test, "test")), "y_test")
    return macro(auroc_per_label(y_test, linear_probe_scores(train, y_train, test, c, seed)))


def silhouette(embeddings: np.ndarray, groups: np.ndarray, *, sample: int | None = 5000,
               seed: int = 0) -> float:  # fmt: skip
    """Mean cosine silhouette of ``groups`` (one group per record, e.g. its only label or its
    dataset), on at most ``sample`` records drawn without replacement. In [-1, 1]."""
    from sklearn.metrics import silhouette_score

    x, groups = _embeddings(embeddings), np.asarray(groups)
    if groups.shape != (len(x),):
        raise ValueError(f"groups must have one entry per record ({len(x)}), got {groups.shape}")
    if not 2 <= len(np.unique(groups)) < len(x):
        raise ValueError("silhouette needs at least 2 groups and fewer groups than records")
    size = None if sample is None or sample >= len(x) else sample
    return float(silhouette_score(x, groups, metric="cosine", sample_size=size, random_state=seed))


def effective_rank(embeddings: np.ndarray) -> float:
    """``exp(H(p))`` with ``p`` the centred embeddings' singular values divided by their sum:
    between 1 (one direction) and ``min(N, D)`` (all directions equally)."""
    x = _embeddings(embeddings)
    singular = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    if singular.sum() <= 0:
        return 0.0  # every record embedded at one point
    p = singular / singular.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def dataset_separability(embeddings: np.ndarray, datasets: np.ndarray, *, folds: int = 5,
                         seed: int = 0) -> dict[str, float]:  # fmt: skip
    """How well the embeddings tell the ``datasets`` (one name per record) apart: balanced
    accuracy of a ``folds``-fold cross-validated logistic regression (stratified, standardised
    embeddings), its chance level (1 / number of datasets) and their normalised gap
    ``(accuracy - chance) / (1 - chance)`` (0: indistinguishable, 1: fully separable)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, datasets = _embeddings(embeddings), np.asarray(datasets)
    names, counts = np.unique(datasets, return_counts=True)
    if datasets.shape != (len(x),) or len(names) < 2:
        raise ValueError("datasets must name 2 or more datasets, one entry per record")
    if counts.min() < folds:
        raise ValueError(f"each dataset needs >= {folds} records (folds), got {counts.min()}")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    split = StratifiedKFold(folds, shuffle=True, random_state=seed)
    predicted = cross_val_predict(model, x, datasets, cv=split)
    recall = [np.mean(predicted[datasets == name] == name) for name in names]
    accuracy, chance = float(np.mean(recall)), 1.0 / len(names)
    return {"balanced_accuracy": accuracy, "chance": chance,
            "separability": (accuracy - chance) / (1.0 - chance)}  # fmt: skip


def linear_cka(a: np.ndarray, b: np.ndarray) -> float:
    """Linear CKA between two embeddings of the same records (rows aligned; any widths):
    ``||B'ᵀA'||²_F / (||A'ᵀA'||_F ||B'ᵀB'||_F)`` of the centred matrices, in [0, 1]."""
    a, b = _embeddings(a, "a"), _embeddings(b, "b")
    if len(a) != len(b):
        raise ValueError(f"a and b must embed the same records: {len(a)} vs {len(b)} rows")
    a, b = a - a.mean(axis=0), b - b.mean(axis=0)
    cross = np.linalg.norm(b.T @ a) ** 2
    scale = np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b)
    return float(cross / scale) if scale > 0 else 0.0


def trustworthiness(embeddings: np.ndarray, projected: np.ndarray, k: int = 10) -> float:
    """How far a low-dimensional map keeps neighbourhoods: 1 when each point's ``k`` nearest
    neighbours on the map are among its nearest in the embedding space (scikit-learn's
    ``trustworthiness``, Euclidean)."""
    from sklearn.manifold import trustworthiness as sklearn_trustworthiness

    x, y = _embeddings(embeddings), _embeddings(projected, "projected")
    if len(x) != len(y):
        raise ValueError(f"projected has {len(y)} rows for {len(x)} embeddings")
    if not 1 <= k < len(x) / 2:
        raise ValueError(f"k must be in [1, {len(x) / 2}) (half the records), got {k}")
    return float(sklearn_trustworthiness(x, y, n_neighbors=k))


__all__ = [
    "dataset_separability",
    "effective_rank",
    "knn_auroc",
    "linear_cka",
    "linear_probe_auroc",
    "linear_probe_scores",
    "silhouette",
    "trustworthiness",
]
