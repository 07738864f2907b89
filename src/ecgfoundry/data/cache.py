"""Preprocessed cache: a dataset converted once into a memory-mapped array plus an index table.

Layout of one cache (a folder under the cache directory)::

    <name>-<id>/signals.npy     float32 [N, leads, samples], read with mmap
    <name>-<id>/index.parquet   one row per stored record (``row`` = position in signals.npy)
    <name>-<id>/meta.json       key, transform config, unreadable records; written last

The key hashes the source files (path, size, mtime) and the reader and transform configs: a
change to either rebuilds. A cache is built in a temporary folder and renamed into place only
when complete, so a crash mid-build never leaves a valid-looking cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgfoundry.atomic import atomic_dir, json_default, recover_dir
from ecgfoundry.data.record import ECGInputError, Record

CACHE_FORMAT = 1


class NoReadableRecords(ECGInputError):
    """Not one of a dataset's records could be read, so there is nothing to cache."""


def default_cache_dir() -> Path:
    """``$ECGFOUNDRY_CACHE``, else ``~/.cache/ecgfoundry``."""
    env = os.environ.get("ECGFOUNDRY_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "ecgfoundry"


@dataclass(frozen=True)
class ArrayStore:
    """A built cache: ``signals`` is a read-only memmap, ``index`` its row table."""

    path: Path
    signals: np.ndarray
    index: pd.DataFrame
    meta: dict[str, Any]

    def __len__(self) -> int:
        return len(self.index)

    @classmethod
    def open(cls, path: Path) -> ArrayStore:
        meta = json.loads((path / "meta.json").read_text())
        signals = np.load(path / "signals.npy", mmap_mode="r")
        index = pd.read_parquet(path / "index.parquet")
        if len(index) != len(signals):
            raise ECGInputError(path, f"index has {len(index)} rows, signals {len(signals)}")
        return cls(path=path, signals=signals, index=index, meta=meta)

    def batches(
        self,
        rows: np.ndarray | None = None,
        batch_size: int = 64,
        *,
        shuffle: bool = False,
        seed: int = 0,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (rows, signals[rows]) batches; rows are sorted within a batch for fast reads."""
        rows = np.arange(len(self)) if rows is None else np.asarray(rows)
        if shuffle:
            rows = np.random.default_rng(seed).permutation(rows)
        for start in range(0, len(rows), batch_size):
            batch = np.sort(rows[start : start + batch_size])
            yield batch, np.asarray(self.signals[batch])


def source_signature(files: Sequence[str | Path]) -> str:
    """A hash of each file's path, size and modification time."""
    digest = hashlib.sha256()
    for file in files:
        stat = os.stat(file)
        digest.update(f"{file}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _config_hash(config: Any) -> str:
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _read_chunk(
    read: Callable[[Any], Record], items: list[Any]
) -> list[tuple[np.ndarray | None, str | None]]:
    out: list[tuple[np.ndarray | None, str | None]] = []
    for item in items:
        try:
            out.append((read(item).signal, None))
        except ECGInputError as error:
            out.append((None, str(error)))
    return out


def _read_all(
    read: Callable[[Any], Record], items: list[Any], workers: int, chunk: int = 256
) -> Iterator[tuple[np.ndarray | None, str | None]]:
    chunks = [items[i : i + chunk] for i in range(0, len(items), chunk)]
    if workers <= 1:
        for part in chunks:
            yield from _read_chunk(read, part)
        return
    with ProcessPoolExecutor(workers) as pool:
        for result in pool.map(_read_chunk, [read] * len(chunks), chunks):
            yield from result


def _clean_stale_temporaries(cache_dir: Path, name: str) -> None:
    for tmp in cache_dir.glob(f".{name}-*.tmp-*"):
        try:
            os.kill(int(tmp.name.rsplit("-", 2)[-2]), 0)  # a build still running: leave it
        except (OSError, ValueError):
            shutil.rmtree(tmp, ignore_errors=True)


def build_cache(
    name: str,
    items: Sequence[Any],
    read: Callable[[Any], Record],
    *,
    sources: Sequence[str | Path],
    columns: pd.DataFrame,
    config: dict[str, Any],
    cache_dir: str | Path | None = None,
    workers: int = 1,
    rebuild: bool = False,
) -> ArrayStore:
    """Build (or reuse) the cache for ``items``, each turned into a Record by ``read``.

    ``read`` must be picklable when ``workers > 1`` (a module-level function or a partial).
    ``sources`` are the files the items come from (they key the cache), ``columns`` one row
    per item copied into the index table, ``config`` describes the reader and transforms.
    Every record must come out with the same shape (end pipelines with a crop/pad). Items
    whose ``read`` raises :class:`ECGInputError` are left out and listed in
    ``meta["unreadable"]``.
    """
    if len(columns) != len(items):
        raise ValueError(f"{len(columns)} index rows for {len(items)} items")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = _config_hash({"format": CACHE_FORMAT, "config": config, "n": len(items)})
    sources_hash = source_signature(sources)
    final = recover_dir(cache_dir / f"{name}-{key[:16]}")
    if final.exists() and not rebuild:
        try:
            store = ArrayStore.open(final)
            if store.meta.get("sources") == sources_hash and store.meta.get("complete"):
                return store
        except (OSError, ValueError, KeyError):
            pass  # unreadable or foreign: rebuilt below
    _clean_stale_temporaries(cache_dir, name)
    with atomic_dir(final) as tmp:
        meta = _write(tmp, list(items), read, columns, workers)
        meta.update(
            name=name,
            key=key,
            sources=sources_hash,
            config=config,
            format=CACHE_FORMAT,
            complete=True,
        )
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=json_default))
    return ArrayStore.open(final)


def _write(
    tmp: Path,
    items: list[Any],
    read: Callable[[Any], Record],
    columns: pd.DataFrame,
    workers: int,
) -> dict[str, Any]:
    """Decode every item into tmp/signals.npy and tmp/index.parquet; return partial meta."""
    signals: np.ndarray | None = None
    kept: list[int] = []
    unreadable: list[dict[str, Any]] = []
    for i, (signal, problem) in enumerate(_read_all(read, items, workers)):
        if signal is None:
            unreadable.append({"item": i, "problem": problem})
            continue
        if signals is None:
            signals = np.lib.format.open_memmap(
                tmp / "signals.npy", mode="w+", dtype=np.float32, shape=(len(items), *signal.shape)
            )
            shape = signal.shape
        if signal.shape != shape:
            raise ECGInputError(
                columns.iloc[i].to_dict().get("path", i),
                f"shape {signal.shape} differs from the first record's {shape}: "
                "end the transform pipeline with CropPad",
            )
        signals[len(kept)] = signal
        kept.append(i)
    if signals is None:
        raise NoReadableRecords(tmp, "no readable record to cache")
    signals.flush()
    del signals
    _truncate_npy(tmp / "signals.npy", len(kept))
    index = columns.iloc[kept].reset_index(drop=True)
    index.insert(0, "row", np.arange(len(kept)))
    index.to_parquet(tmp / "index.parquet", index=False)
    for entry in unreadable:
        entry.update(columns.iloc[entry.pop("item")].to_dict())
    return {"records": len(kept), "unreadable": unreadable}


def _truncate_npy(path: Path, rows: int) -> None:
    """Shrink the first dimension of an .npy file in place (drops unused trailing rows)."""
    full = np.load(path, mmap_mode="r")
    if rows == len(full):
        return
    shape, dtype = (rows, *full.shape[1:]), full.dtype
    del full
    resized = path.with_suffix(".resized.npy")
    out = np.lib.format.open_memmap(resized, mode="w+", dtype=dtype, shape=shape)
    out[:] = np.load(path, mmap_mode="r")[:rows]
    out.flush()
    del out
    os.replace(resized, path)
