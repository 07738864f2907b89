"""Re-run one committed cell of the post-training grid and compare it with the committed row.

Shows that a change to the training code leaves results unchanged: the cell is trained again
in a fresh run folder from the recipe stored in its row, and its fold-9 macro AUROC/AUPRC and
per-record probabilities are compared with the committed ones. ``--precision fp32`` (default)
matches the committed cells, which ran on a CPU without AVX512-BF16/AMX (``auto`` chose fp32
there; on a CPU with them ``auto`` would choose bfloat16 and change the numbers).

    python benchmarks/rerun_post_training_cell.py --cell superdiagnostic/post-train/f0.1/s0 \\
        --root DIR/ptbxl [--cache-dir .cache/ecgfoundry]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from post_training import (
    PREDICTIONS_HELP,
    is_current,
    predictions_beside,
    predictions_file,
    read_rows,
)

from ecgfoundry.adapt import finetune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", required=True, help="e.g. superdiagnostic/post-train/f0.1/s0")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument(
        "--results", type=Path, default=Path("benchmarks/results/post_training.jsonl")
    )
    parser.add_argument("--predictions", type=Path, help=PREDICTIONS_HELP)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "auto", "bf16"])
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: temporary)")
    args = parser.parse_args()
    args.predictions = args.predictions or predictions_beside(args.results)

    rows = [r for r in read_rows(args.results) if r["cell"] == args.cell and is_current(r)]
    if not rows:
        parser.error(f"{args.cell}: no current row in {args.results}")
    row = rows[-1]
    out = args.out or Path(tempfile.mkdtemp(prefix="rerun-")) / "run"
    start = time.perf_counter()
    metrics = finetune(
        row["backbone"], root=args.root, task=row["task"], strategy=row["strategy"], out=out,
        fraction=row["fraction"], seed=row["seed"],
        config={**row["recipe"], "precision": args.precision}, cache_dir=args.cache_dir,
        progress_bar=False, evaluate_test=False,
    )  # fmt: skip
    with np.load(predictions_file(args.predictions, row)) as before:
        committed = before["val_probabilities"]
    with np.load(out / "predictions" / "predictions.npz") as after:
        rerun = after["val_probabilities"]
    report = {
        "cell": args.cell,
        "setup": row["setup"],
        "precision": args.precision,
        "seconds": round(time.perf_counter() - start, 1),
        "committed": {k: row["metrics"]["val"][k] for k in ("macro_auroc", "macro_auprc")},
        "rerun": {k: metrics["val"][k] for k in ("macro_auroc", "macro_auprc")},
        "max_abs_probability_difference": float(np.abs(committed - rerun).max()),
        "epochs_run": {
            "committed": row["metrics"]["run"]["epochs_run"],
            "rerun": metrics["run"]["epochs_run"],
        },
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
