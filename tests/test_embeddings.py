"""Record embeddings: the mean of forward_features over a record's evaluation windows, cached
by model weights and records; maps render as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ecgfoundry.adapt.data import Split, TaskData, read_windows
from ecgfoundry.analysis.embeddings import embed_split, map_figure
from ecgfoundry.models import create_model


def task(records: int, samples: int, window: int) -> TaskData:
    signals = np.random.default_rng(0).normal(size=(records, 12, samples)).astype(np.float32)
    split = Split(signals, np.arange(records), np.zeros((records, 1), np.float32),
                  np.arange(100, 100 + records))  # fmt: skip
    return TaskData(["x"], window, split, split, None, {})


def test_a_records_embedding_is_its_windows_mean_and_is_cached(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("s4-tiny").eval()
    data = task(5, 1500, model.spec.samples)  # 15-s records of a 10-s model: 2 windows each
    embeddings = embed_split(model, data, data.val, cache_dir=tmp_path)
    owner, offsets = data.eval_windows(data.val)
    assert sorted(set(offsets.tolist())) == [0, 500]
    windows = read_windows(data.val.signals, owner, offsets, data.window)
    with torch.no_grad():
        features = model.forward_features(torch.from_numpy(windows)).numpy()
    expected = np.stack([features[owner == r].mean(axis=0) for r in range(5)])
    assert embeddings.shape == (5, model.num_features)
    assert np.allclose(embeddings, expected, atol=1e-5)
    (cached,) = tmp_path.glob("embeddings-*.npy")
    np.save(cached, np.zeros_like(embeddings))  # the cache is what a second call reads
    assert not embed_split(model, data, data.val, cache_dir=tmp_path).any()
    other = create_model("s4-tiny").eval()  # other weights: another key
    assert embed_split(other, data, data.val, cache_dir=tmp_path).any()


def test_a_map_renders_categories_and_numbers() -> None:
    rng = np.random.default_rng(0)
    png = map_figure(rng.normal(size=(60, 2)), {"dataset": np.repeat(["ptbxl", "georgia"], 30),
                                                "age": rng.uniform(20, 90, 60)})  # fmt: skip
    assert png.startswith(b"\x89PNG") and len(png) > 5000
