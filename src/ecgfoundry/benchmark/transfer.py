"""Cross-dataset transfer: models adapted on a PTB-XL task, scored on PhysioNet/CinC challenge
databases whose labels are SNOMED-CT codes (:mod:`ecgfoundry.data.snomed` maps them to PTB-XL's
labels; the challenge's own copies of PTB-XL records are left out).

For every finished cell of a transfer task at the configuration's largest label fraction
(each model, mode and seed) and every target folder, per label:

- ``in_domain``: the cell's AUROC on its own validation records (PTB-XL fold 9);
- ``zero_shot``: the adapted model's AUROC on all the target's records, as it is;
- ``probe``: a linear probe on the adapted model's embeddings, trained on the target's
  training split (80 %, record level: the headers carry no patient ids) and scored on its
  test split (10 %): how much of the label the representation still holds there.

A target's records are checked against the adapted model's manifest (its pretraining and
training records) first, as the cells are: overlap is refused unless ``allow_overlap``, and
each row records the check (``leakage_check``, ``leakage_overlap``).

``analysis/transfer.json``: one row per cell, target and label.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgfoundry.adapt.objective import predict_split
from ecgfoundry.adapt.recipe import Recipe
from ecgfoundry.adapt.run import split_record_ids
from ecgfoundry.adapt.sources import cinc_ptbxl_task
from ecgfoundry.analysis.embeddings import embed_split
from ecgfoundry.analysis.representation import linear_probe_scores
from ecgfoundry.atomic import atomic_write_text
from ecgfoundry.benchmark.config import BenchmarkConfig
from ecgfoundry.benchmark.grid import ANALYSIS, RUN, Cell, finished_at_largest_fraction
from ecgfoundry.evaluate.metrics import auroc_per_label
from ecgfoundry.models.registry import load_model
from ecgfoundry.pretrain.leakage import check_leakage

TRANSFER_FILE = "transfer.json"


def _value(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def transfer(config: BenchmarkConfig, grid: list[Cell], out: Path,
             cache_dir: str | Path | None = None, *,
             allow_overlap: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    """Score the adapted models (``grid``: the configuration's cells) on the configured
    targets; returns (and writes) the rows."""
    settings = config.transfer
    if settings is None:
        return []
    rows = []
    for cell in finished_at_largest_fraction(grid, out):
        if cell.task.name not in settings.tasks:
            continue
        run = cell.folder(out) / RUN
        model = load_model(run / "model")
        labels = list(model.config.labels or [])
        metrics = json.loads((run / "metrics.json").read_text())
        in_domain = {r["label"]: r["auroc"] for r in metrics["val"]["per_label"]}
        recipe = Recipe.from_dict(cell.recipe)
        for target in settings.targets:
            data = cinc_ptbxl_task(target.root, model.spec, labels, cache_dir=cache_dir)
            splits = [data.train, data.val, data.test]
            ids = [i for s in splits for i in split_record_ids(data, s)]
            check = check_leakage(run / "model", ids, allow=allow_overlap)
            scores = np.concatenate([predict_split(model, data, s, recipe, torch.device("cpu"))
                                     for s in splits])  # fmt: skip
            y = np.concatenate([s.y for s in splits])
            zero_shot = auroc_per_label(y, scores)
            train, test = embed_split(model, data, data.train), embed_split(model, data, data.test)
            test_y = data.test.y
            probe = auroc_per_label(test_y, linear_probe_scores(train, data.train.y, test))
            for j, label in enumerate(labels):
                rows.append({
                    "model": cell.model, "mode": cell.mode, "seed": cell.seed,
                    "task": cell.task.name, "target": target.name, "label": label,
                    "records": len(y), "positives": int(y[:, j].sum()),
                    "test_positives": int(test_y[:, j].sum()),
                    "in_domain": in_domain.get(label), "zero_shot": _value(zero_shot[j]),
                    "probe": _value(probe[j]),
                    "ptbxl_records_left_out": data.description["ptbxl_records_left_out"],
                    "leakage_check": check["status"], "leakage_overlap": check["overlap"],
                })  # fmt: skip
    atomic_write_text(out / ANALYSIS / TRANSFER_FILE, json.dumps(rows, indent=1))
    return rows


__all__ = ["TRANSFER_FILE", "transfer"]
