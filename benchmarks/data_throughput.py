"""One epoch over PTB-XL read through wfdb + preprocessing, against the same epoch from the cache.

Prints one JSON object. Usage:

    python benchmarks/data_throughput.py --root DIR/ptbxl [--cache-dir DIR] [--workers 2]

Both paths produce the same model input (12 leads, 100 Hz, 10 s, z-scored per lead); the cache
epoch reads shuffled batches of 64 from the memory map into torch tensors, as training does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from ecgfoundry.data import STANDARD_LEADS, pipeline_for, ptbxl, read_wfdb
from ecgfoundry.spec import InputSpec

SPEC = InputSpec(fs=100, seconds=10, leads=STANDARD_LEADS, normalisation="zscore")


def wfdb_epoch(db: ptbxl.PTBXL) -> tuple[float, np.ndarray]:
    pipeline = pipeline_for(SPEC)
    start = time.perf_counter()
    checksum = np.zeros((12, 1000))
    for ecg_id in db.table.index:
        x = torch.from_numpy(pipeline(read_wfdb(db.record_path(ecg_id))).signal)
        checksum += x.numpy()
    return time.perf_counter() - start, checksum


def cache_epoch(store, batch_size: int = 64, seed: int = 0) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    checksum = np.zeros((12, 1000))
    for _, batch in store.batches(batch_size=batch_size, shuffle=True, seed=seed):
        x = torch.from_numpy(batch)
        checksum += x.sum(dim=0).numpy()
    return time.perf_counter() - start, checksum


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(".cache/shared-data/ptbxl"))
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/benchmark-cache"))
    parser.add_argument("--workers", type=int, default=2, help="processes for the cache build")
    args = parser.parse_args()
    torch.set_num_threads(2)

    start = time.perf_counter()
    db = ptbxl.load(args.root, fs=100)
    load_s = time.perf_counter() - start

    start = time.perf_counter()
    store = db.cache(cache_dir=args.cache_dir, workers=args.workers, transform=pipeline_for(SPEC))
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    store = db.cache(cache_dir=args.cache_dir, transform=pipeline_for(SPEC))
    reuse_s = time.perf_counter() - start

    wfdb_s, wfdb_sum = wfdb_epoch(db)
    cache_first_s, cache_sum = cache_epoch(store)
    cache_second_s, _ = cache_epoch(store, seed=1)
    cache_s = max(cache_first_s, cache_second_s)
    n = len(store)
    result = {
        "benchmark": "data_throughput",
        "records": n,
        "folds": db.folds_present,
        "input": SPEC.to_dict(),
        "load_s": round(load_s, 2),
        "cache_build_s": round(build_s, 1),
        "cache_build_workers": args.workers,
        "cache_reuse_s": round(reuse_s, 2),
        "cache_bytes": int(store.signals.nbytes),
        "wfdb_epoch_s": round(wfdb_s, 2),
        "wfdb_records_per_s": round(len(db.table) / wfdb_s),
        "cache_epoch_s": [round(cache_first_s, 3), round(cache_second_s, 3)],
        "cache_records_per_s": round(n / cache_s),
        "speedup": round(wfdb_s / cache_s, 1),
        "same_data": bool(np.allclose(wfdb_sum, cache_sum, atol=1e-2)),
        "targets_met": {"speedup>=50": wfdb_s / cache_s >= 50, "cache_epoch<=2s": cache_s <= 2},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
