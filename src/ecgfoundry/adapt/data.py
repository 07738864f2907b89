"""Task data for supervised adaptation: cached records, labels, splits and model-sized windows.

Records are cached once at the model's input spec (leads, rate, filters, normalisation; 10 s
for PTB-XL). Training takes one random crop of the model's input length per record per epoch
(seeded by epoch, so a resumed run sees the same crops); evaluation scores every window of a
sliding grid (stride half a window) and aggregates per record, as the PTB-XL benchmark does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgfoundry.adapt import distributed as dist
from ecgfoundry.data import ptbxl
from ecgfoundry.data.cache import ArrayStore
from ecgfoundry.data.record import ECGInputError
from ecgfoundry.data.transforms import Compose, CropPad, pipeline_for, window_starts
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

    def batch(self, split: Split, index: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Inputs [B, leads, window] for split rows ``index`` cropped at ``offsets``."""
        rows = split.rows[index]
        order = np.argsort(rows, kind="stable")  # memmap reads in ascending order
        records = np.empty((len(rows), *split.signals.shape[1:]), dtype=np.float32)
        records[order] = split.signals[rows[order]]
        picks = offsets[:, None] + np.arange(self.window)[None, :]
        return np.take_along_axis(records, picks[:, None, :], axis=2)

    def eval_windows(self, split: Split) -> tuple[np.ndarray, np.ndarray]:
        """(split row, offset) of every evaluation window: stride half a window."""
        starts = window_starts(split.signals.shape[-1], self.window)
        owner = np.repeat(np.arange(len(split)), len(starts))
        return owner, np.tile(starts, len(split))


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
