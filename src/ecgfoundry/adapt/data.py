"""Task data for supervised adaptation: cached records, labels, splits and model-sized windows.

Records are cached once at the model's input spec (leads, rate, filters, normalisation; 10 s
for PTB-XL). Training takes one random crop of the model's input length per record per epoch
(seeded by epoch, so a resumed run sees the same crops); evaluation scores every window of a
sliding grid (stride half a window) and aggregates per record, as the PTB-XL benchmark does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ecgfoundry.data import ptbxl
from ecgfoundry.data.cache import ArrayStore
from ecgfoundry.data.record import ECGInputError
from ecgfoundry.data.transforms import Compose, CropPad, pipeline_for, window_starts
from ecgfoundry.engine import distributed as dist
from ecgfoundry.spec import InputSpec


@dataclass(frozen=True)
class Split:
    """Rows of the cached signal array with their labels."""

    signals: np.ndarray  # [records in the cache, leads, samples] (memmap)
    rows: np.ndarray  # int [R]: which cache rows belong to this split
    y: np.ndarray  # float32 [R, labels]
    ids: np.ndarray  # [R] record ids (ecg_id)

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class TaskData:
    labels: list[str]
    window: int  # samples per model input
    train: Split
    val: Split
    test: Split | None
    description: dict

    def train_crops(self, order: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One crop offset per training row in ``order``."""
        slack = self.train.signals.shape[-1] - self.window
        if slack <= 0:
            return np.zeros(len(order), dtype=np.int64)
        return rng.integers(0, slack + 1, len(order))

    def eval_windows(self, split: Split) -> tuple[np.ndarray, np.ndarray]:
        """(split row, offset) of every evaluation window: stride half a window."""
        starts = window_starts(split.signals.shape[-1], self.window)
        owner = np.repeat(np.arange(len(split)), len(starts))
        return owner, np.tile(starts, len(split))


def read_windows(signals: np.ndarray, rows: np.ndarray, offsets: np.ndarray,
                 window: int) -> np.ndarray:  # fmt: skip
    """Inputs [B, leads, window]: cache rows ``rows`` cut at ``offsets``."""
    order = np.argsort(rows, kind="stable")  # memmap reads in ascending order
    records = np.empty((len(rows), *signals.shape[1:]), dtype=np.float32)
    records[order] = signals[rows[order]]
    picks = offsets[:, None] + np.arange(window)[None, :]
    return np.take_along_axis(records, picks[:, None, :], axis=2)


class WindowDataset(torch.utils.data.Dataset):
    """Model inputs cut from a split of the memory-mapped cache. A key is (split index,
    offset); a batch of keys is read at once (``__getitems__``) as {"x", "y", "index"}.
    Picklable for DataLoader workers: each worker re-opens the memmap instead of copying it."""

    def __init__(self, split: Split, window: int):
        self.split, self.window = split, window

    def __len__(self) -> int:
        return len(self.split)

    def __getitems__(self, keys: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
        index = np.fromiter((k[0] for k in keys), dtype=np.int64, count=len(keys))
        offsets = np.fromiter((k[1] for k in keys), dtype=np.int64, count=len(keys))
        x = read_windows(self.split.signals, self.split.rows[index], offsets, self.window)
        return {"x": torch.from_numpy(x), "y": torch.from_numpy(self.split.y[index]),
                "index": torch.from_numpy(index)}  # fmt: skip

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        signals = self.split.signals
        if isinstance(signals, np.memmap) and signals.filename:
            state["split"] = dataclasses.replace(self.split, signals=None)
            state["signals_path"] = signals.filename
        return state

    def __setstate__(self, state: dict) -> None:
        path = state.pop("signals_path", None)
        self.__dict__.update(state)
        if path is not None:
            signals = np.load(path, mmap_mode="r")
            self.split = dataclasses.replace(self.split, signals=signals)


def _as_is(batch: Any) -> Any:
    return batch


def window_loader(
    split: Split,
    window: int,
    batches: list[list[tuple[int, int]]],
    *,
    workers: int = 0,
    device: torch.device | None = None,
) -> DataLoader:
    """A DataLoader yielding the given batches of (split index, offset) keys, in order;
    ``workers`` background processes; pinned memory when feeding a GPU. It draws its workers'
    base seed from a generator of its own, so iterating it leaves torch's global generator
    (dropout, drop path) untouched: results do not depend on how batches are fed."""
    pin = device is not None and device.type == "cuda"
    return DataLoader(WindowDataset(split, window), batch_sampler=batches, collate_fn=_as_is,
                      num_workers=workers, pin_memory=pin,
                      generator=torch.Generator().manual_seed(0))  # fmt: skip


def source_rate(root: str | Path, spec: InputSpec) -> int:
    """Which PTB-XL records to read: 500 Hz when the model wants more than 100 Hz and the copy
    has them, else 100 Hz (resampled up if needed)."""
    return 500 if spec.fs > 100 and (Path(root) / "records500").is_dir() else 100


PTBXL_SECONDS = 10.0


def ptbxl_cache(
    root: str | Path,
    spec: InputSpec,
    *,
    cache_dir: str | Path | None = None,
    workers: int = 1,
    db: ptbxl.PTBXL | None = None,
) -> ArrayStore:
    """The cache training and evaluation at ``spec`` read (built on first use): each record
    through ``pipeline_for(spec, crop=False)`` and cut or padded to PTB-XL's 10 s.
    ``ecgfoundry data cache ptbxl --model M`` builds this same cache ahead of time."""
    if spec.seconds > PTBXL_SECONDS:
        raise ECGInputError(root, f"the model wants {spec.seconds} s; PTB-XL records are 10 s")
    db = db if db is not None else ptbxl.load(root, fs=source_rate(root, spec))
    transform = Compose((*pipeline_for(spec, crop=False).transforms, CropPad(PTBXL_SECONDS)))
    return db.cache(cache_dir=cache_dir, workers=workers, transform=transform)


def ptbxl_task(
    root: str | Path,
    task: str,
    spec: InputSpec,
    *,
    fraction: float = 1.0,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    workers: int = 1,
) -> TaskData:
    """A PTB-XL task at the model's input spec: folds 1-8 (``fraction`` of them, nested and
    stratified), 9 for validation, 10 for test when present."""
    db = ptbxl.load(root, fs=source_rate(root, spec))
    if dist.is_main():  # one process builds the cache; the others wait, then open it
        ptbxl_cache(root, spec, cache_dir=cache_dir, workers=workers, db=db)
    dist.barrier()
    store = ptbxl_cache(root, spec, cache_dir=cache_dir, db=db)
    labelled = db.task(task)
    row_of = dict(zip(store.index["ecg_id"].to_numpy(), store.index["row"].to_numpy(), strict=True))

    def split(index: np.ndarray) -> Split:
        ids = labelled.ecg_ids[index]
        missing = [int(i) for i in ids if i not in row_of]
        if missing:
            raise ECGInputError(root, f"records {missing[:10]} are labelled but not in the cache")
        rows = np.array([row_of[i] for i in ids], dtype=np.int64)
        return Split(store.signals, rows, labelled.y[index].astype(np.float32), ids)

    sizes = labelled.split_sizes()
    if not sizes["train"] or not sizes["val"]:
        raise ECGInputError(root, f"task {task!r} needs training folds 1-8 and validation fold 9; "
                            f"this copy has folds {db.folds_present}")  # fmt: skip
    return TaskData(
        labels=list(labelled.labels),
        window=spec.samples,
        train=split(labelled.train_subset(fraction, seed)),
        val=split(labelled.split("val")),
        test=split(labelled.split("test")) if sizes["test"] else None,
        description={
            "dataset": "ptbxl",
            "task": task,
            "fraction": fraction,
            "folds_present": db.folds_present,
            "test_fold_present": bool(sizes["test"]),
            "cache": str(store.path),
        },
    )
