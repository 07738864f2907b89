"""Make the demo's PTB-XL subset that ships in the package (``samples/ptbxl_demo.tar.xz``):
unmodified PTB-XL 1.0.3 files at 100 Hz of ``--train`` records of folds 1-8 and ``--val``
records of fold 9 (seeded; the six sample records are left out), with their rows of
``ptbxl_database.csv`` and ``scp_statements.csv``, in PTB-XL's layout under ``ptbxl/``.

    python benchmarks/make_demo_data.py --root DIR/ptbxl [--train 240 --val 120 --seed 0]
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd

from ecgfoundry.data import ptbxl
from ecgfoundry.data.samples import DEMO_ARCHIVE, sample_dir, sample_labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--train", type=int, default=240)
    parser.add_argument("--val", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    table = pd.read_csv(args.root / ptbxl.DATABASE_CSV, index_col="ecg_id")
    samples = set(sample_labels()["ecg_id"])
    rng = np.random.default_rng(args.seed)
    train_pool = table.index[table.strat_fold.between(1, 8) & ~table.index.isin(samples)]
    val_pool = table.index[(table.strat_fold == 9) & ~table.index.isin(samples)]
    ids = sorted(rng.choice(train_pool, args.train, replace=False).tolist()
                 + rng.choice(val_pool, args.val, replace=False).tolist())  # fmt: skip
    archive = sample_dir() / DEMO_ARCHIVE
    with tarfile.open(archive, "w:xz", preset=9) as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(f"ptbxl/{name}")
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))

        rows = (args.root / ptbxl.DATABASE_CSV).read_text().splitlines(keepends=True)
        wanted = {str(i) for i in ids}
        kept = [r for r in rows[1:] if r.split(",", 1)[0] in wanted]
        add(ptbxl.DATABASE_CSV, "".join([rows[0], *kept]).encode())
        add(ptbxl.STATEMENTS_CSV, (args.root / ptbxl.STATEMENTS_CSV).read_bytes())
        for ecg_id in ids:
            base = table.loc[ecg_id, "filename_lr"]
            for suffix in (".hea", ".dat"):
                add(f"{base}{suffix}", (args.root / f"{base}{suffix}").read_bytes())
    folds = table.loc[ids, "strat_fold"]
    counts = {"train": int((folds <= 8).sum()), "val": int((folds == 9).sum())}
    print(json.dumps({"archive": str(archive), "bytes": archive.stat().st_size, **counts}))


if __name__ == "__main__":
    main()
