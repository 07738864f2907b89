"""Random streams keyed by (seed, stage, epoch): a resumed run draws what an uninterrupted one
would. Data order and crops are the same in every process (each takes its slice of the global
batch); dropout and drop-path masks differ between processes."""

from __future__ import annotations

import numpy as np

SHUFFLE, CROPS, TORCH = 0, 1, 2
LEAD_MASKS, TIME_MASKS = 3, 4  # pretraining augmentations (W2V+CMSC+RLM)


def epoch_rng(seed: int, stage: int, epoch: int, stream: int) -> np.random.Generator:
    """An independent generator per (seed, stage, epoch, stream)."""
    return np.random.default_rng([seed, stage, epoch, stream])


def torch_seed(seed: int, stage: int, epoch: int, rank: int = 0) -> int:
    """The seed of torch's (and numpy's global) generator for an epoch in process ``rank``:
    distinct per process, so processes draw different dropout masks (rank 0 keeps the
    single-process stream)."""
    key = [seed, stage, epoch, TORCH] + ([rank] if rank else [])
    return int(np.random.default_rng(key).integers(2**62))
