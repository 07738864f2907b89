"""The benchmark's results as one tidy table, rebuilt from the cell folders (their source of
truth): one row per cell and evaluated split, with macro AUROC and AUPRC and their bootstrap
95 % CIs, the leakage check, and what the cell trained on. Written as ``results.parquet`` and
``results.csv`` beside the cells."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from ecgfoundry.atomic import atomic_write_text
from ecgfoundry.benchmark.grid import CELL_FILE, RUN

COLUMNS = (
    "cell", "setup", "model", "data", "task", "mode", "fraction", "seed", "status", "split",
    "macro_auroc", "macro_auroc_low", "macro_auroc_high", "macro_auprc", "macro_auprc_low",
    "macro_auprc_high", "labels", "records", "train_records", "leakage_check",
    "leakage_overlap", "model_weights", "seconds",
)  # fmt: skip


def _rows(folder: Path) -> list[dict[str, Any]]:
    cell = json.loads((folder / CELL_FILE).read_text())
    metrics_file = folder / RUN / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    run = metrics.get("run", {})
    check = run.get("leakage_check") or {}
    common = {"cell": cell["name"], "setup": cell["setup"], "model": cell["model"],
              "data": cell["data"], "task": cell["task"], "mode": cell["mode"],
              "fraction": cell["fraction"], "seed": cell["seed"],
              "train_records": run.get("train_records"), "leakage_check": check.get("status"),
              "leakage_overlap": check.get("overlap"), "model_weights": cell["model_weights"],
              "seconds": cell.get("seconds")}  # fmt: skip
    splits = [s for s in ("val", "test") if s in metrics]
    if not splits:
        status = "refused" if check.get("status") == "overlap" else "unfinished"
        return [common | {"status": status, "split": None}]
    rows = []
    for split in splits:
        m = metrics[split]
        ci = m.get("ci", {})
        rows.append(common | {
            "status": "done", "split": split, "macro_auroc": m["macro_auroc"],
            "macro_auroc_low": ci.get("macro_auroc", [None, None])[0],
            "macro_auroc_high": ci.get("macro_auroc", [None, None])[1],
            "macro_auprc": m["macro_auprc"],
            "macro_auprc_low": ci.get("macro_auprc", [None, None])[0],
            "macro_auprc_high": ci.get("macro_auprc", [None, None])[1],
            "labels": len(m.get("per_label", {})) or None,
            "records": run.get(f"{split}_records"),
        })  # fmt: skip
    return rows


def collect(out: str | Path) -> pd.DataFrame:
    """Every cell folder under ``out/cells`` as rows (cells not finished: one row, no split)."""
    folders = sorted(p.parent for p in Path(out).glob(f"cells/*/{CELL_FILE}"))
    rows = [row for folder in folders for row in _rows(folder)]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write_results(out: str | Path, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Write ``results.parquet`` and ``results.csv`` in ``out`` (atomically); returns them."""
    out = Path(out)
    table = collect(out) if table is None else table
    partial = out / ".results.parquet.partial"
    table.to_parquet(partial, index=False)
    partial.replace(out / "results.parquet")
    atomic_write_text(out / "results.csv", table.to_csv(index=False))
    return table


def summary(table: pd.DataFrame, split: str = "val") -> list[dict[str, Any]]:
    """Mean (and sd over seeds) macro AUROC and AUPRC per model, task, mode and fraction on
    ``split`` (``"val"`` or ``"test"``), with the mean over seeds of each cell's bootstrap CI
    bounds (``_low``/``_high``)."""
    done = table[(table["status"] == "done") & (table["split"] == split)]
    out = []
    keys = ["model", "data", "task", "mode", "fraction"]
    for key, group in done.groupby(keys, sort=True):
        entry = dict(zip(keys, key, strict=True))
        entry |= {"split": split, "seeds": sorted(group["seed"].tolist())}
        for metric in ("macro_auroc", "macro_auprc"):
            values = group[metric].astype(float)
            entry[metric] = float(values.mean())
            entry[f"{metric}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else None
            for bound in ("low", "high"):
                entry[f"{metric}_{bound}"] = float(group[f"{metric}_{bound}"].astype(float).mean())
        out.append(entry)
    return json.loads(json.dumps(out))


def summary_with_test(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The validation :func:`summary`, each row with its test split's summary under ``"test"``
    where the data has a test split (PTB-XL fold 10 when present; CinC folders, tables)."""
    keys = ("model", "data", "task", "mode", "fraction")
    tested = {tuple(r[k] for k in keys): r for r in summary(table, "test")}
    rows = []
    for row in summary(table):
        test = tested.get(tuple(row[k] for k in keys))
        rows.append(row | ({"test": {k: v for k, v in test.items() if k not in keys}}
                           if test else {}))  # fmt: skip
    return rows


__all__ = ["COLUMNS", "collect", "summary", "summary_with_test", "write_results"]
