"""Record embeddings (computed once per model and data, cached) and their UMAP maps.

A record's embedding is the mean of ``forward_features`` over its evaluation windows (the
windows evaluation and ``embed`` use). Embeddings are cached under a key of the model's
weights and the split's records, so the analyses of a benchmark never embed a dataset twice.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import torch

from ecgfoundry.adapt.data import Split, TaskData
from ecgfoundry.adapt.objective import forward_windows
from ecgfoundry.models.base import ECGModel
from ecgfoundry.models.io import model_fingerprint


def _key(model: ECGModel, split: Split, window: int) -> str:
    digest = hashlib.sha256(model_fingerprint(model).encode())
    for array in (split.ids, split.rows):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(f"{split.signals.shape}|{window}".encode())
    return digest.hexdigest()[:16]


@torch.no_grad()
def embed_split(model: ECGModel, data: TaskData, split: Split, *, batch_size: int = 64,
                cache_dir: str | Path | None = None) -> np.ndarray:  # fmt: skip
    """Embeddings [records, D] of ``split``: ``forward_features`` averaged over each record's
    evaluation windows; read from / written to ``cache_dir`` when given."""
    name = f"embeddings-{_key(model, split, data.window)}.npy"
    path = Path(cache_dir) / name if cache_dir is not None else None
    if path is not None and path.is_file():
        return np.load(path)
    model = model.eval()
    features, owner = forward_windows(model.forward_features, data, split, batch_size=batch_size,
                                      device=torch.device("cpu"))  # fmt: skip
    sums = np.zeros((len(split), features.shape[1]))
    np.add.at(sums, owner, features.double().numpy())
    embeddings = (sums / np.bincount(owner, minlength=len(split))[:, None]).astype(np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial.npy")
        np.save(partial, embeddings)
        partial.replace(path)
    return embeddings


def umap_map(embeddings: np.ndarray, *, neighbours: int = 15, min_dist: float = 0.1,
             seed: int = 0) -> np.ndarray:  # fmt: skip
    """A 2-D UMAP map [records, 2] of the embeddings (cosine metric, seeded: reproducible).
    The first call in a process compiles UMAP's kernels (about 40 s)."""
    import umap

    if len(embeddings) <= neighbours:
        raise ValueError(f"UMAP needs more records ({len(embeddings)}) than neighbours "
                         f"({neighbours})")  # fmt: skip
    reducer = umap.UMAP(n_neighbors=neighbours, min_dist=min_dist, metric="cosine",
                        random_state=seed, n_jobs=1)  # fmt: skip
    return reducer.fit_transform(np.asarray(embeddings, dtype=np.float32))


def map_figure(coordinates: np.ndarray, colours: dict[str, np.ndarray], *, title: str = "",
               size: float = 3.0) -> bytes:  # fmt: skip
    """A PNG of the map, one panel per colouring (``name -> one value per record``: labels,
    datasets, sex as categories; age as numbers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(colours), figsize=(size * len(colours), size),
                                squeeze=False, constrained_layout=True)  # fmt: skip
    for axis, (name, values) in zip(axes[0], colours.items(), strict=True):
        values = np.asarray(values)
        if values.dtype.kind in "fc" and len(np.unique(values[np.isfinite(values)])) > 10:
            points = axis.scatter(*coordinates.T, c=values, s=3, cmap="viridis")
            figure.colorbar(points, ax=axis, shrink=0.8)
        else:
            for category in sorted(set(values.tolist()), key=str):
                mask = values == category
                axis.scatter(*coordinates[mask].T, s=3, label=str(category))
            axis.legend(markerscale=3, fontsize=7, frameon=False)
        axis.set_title(name, fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    if title:
        figure.suptitle(title, fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


__all__ = ["embed_split", "map_figure", "umap_map"]
