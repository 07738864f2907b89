"""A benchmark's analyses beside its scores: what each model's embeddings hold, and what the
adapted models' predictions rest on. Written under ``OUT/analysis/`` for the report.

- **Representation** (every model with weights, before adaptation; each task's data):
  embeddings of up to ``records`` training and validation records (cached), then k-NN and
  linear-probe macro AUROC (training -> validation records), effective rank, cosine
  silhouette by label (records with exactly one label), UMAP maps with their trustworthiness,
  linear CKA between every two models, and dataset separability when there are several
  datasets. ``representation.json`` and one PNG per model and data.
- **Attribution** (the adapted model of each model, mode and task, at the largest label
  fraction, first seed): SHAP values over leads x time segments of every class on
  ``records`` validation records (:mod:`ecgfoundry.analysis.attribution`), lead importance,
  and the sanity checks (randomised model, explainer seeds, second training seed when the
  grid has one). ``attribution.json`` and one PNG per model, mode and task.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgfoundry.adapt.data import Split, TaskData, read_windows
from ecgfoundry.adapt.sources import task_data
from ecgfoundry.analysis import attribution as shap
from ecgfoundry.analysis import representation as numbers
from ecgfoundry.analysis.embeddings import embed_split, map_figure, umap_map
from ecgfoundry.analysis.metadata import record_metadata
from ecgfoundry.atomic import atomic_write_text
from ecgfoundry.benchmark.config import AnalysisSettings, BenchmarkConfig, TaskSpec
from ecgfoundry.benchmark.grid import (
    ANALYSIS,
    RUN,
    Cell,
    cell_status,
    cells,
    finished_at_largest_fraction,
)
from ecgfoundry.benchmark.transfer import transfer
from ecgfoundry.models.registry import load_model, model_folder, resolve_model

MIN_MAP_RECORDS = 40  # fewer records: no UMAP map (its neighbourhoods would mean little)


def _sample(split: Split, count: int, seed: int) -> Split:
    if len(split) <= count:
        return split
    pick = np.sort(np.random.default_rng(seed).choice(len(split), count, replace=False))
    return Split(split.signals, split.rows[pick], split.y[pick], split.ids[pick])


def _first_windows(split: Split, window: int) -> torch.Tensor:
    """Each record's first model input [records, leads, window]."""
    starts = np.zeros(len(split), dtype=np.int64)
    return torch.from_numpy(read_windows(split.signals, split.rows, starts, window))


def _data(task: TaskSpec, model: Any, cache_dir: str | Path | None) -> TaskData:
    arguments = task.source_arguments()
    return task_data(arguments.pop("data"), model.spec, **arguments, cache_dir=cache_dir)


def _single_label(y: np.ndarray, labels: list[str]) -> np.ndarray:
    """Each record's only label, or "" when it has none or several."""
    names = np.array(labels, dtype=object)
    return np.array([names[row == 1][0] if row.sum() == 1 else "" for row in y], dtype=object)


def _save(out: Path, name: str, png: bytes) -> str:
    figure = out / ANALYSIS / "maps" / f"{_slug(name)}.png"
    figure.parent.mkdir(parents=True, exist_ok=True)
    figure.write_bytes(png)
    return str(figure.relative_to(out))


def _say(progress: bool, message: str) -> None:
    if progress:
        print(f"  {message}", file=sys.stderr, flush=True)


def representation(config: BenchmarkConfig, out: Path, settings: AnalysisSettings,
                   cache_dir: str | Path | None = None,
                   progress: bool = False) -> dict[str, Any]:  # fmt: skip
    """The representation numbers and maps of every model with weights on every task, and,
    with several data sources, one map per model across them (by dataset and continent)."""
    models = [m for m in config.models if model_folder(m) is not None]  # those with weights
    cache = Path(cache_dir or out / ANALYSIS / "embeddings")
    entries, embedded = [], {}
    for task in config.tasks:
        for name in models:
            _say(progress, f"embedding {task.name} with {name}")
            model = resolve_model(name)
            data = _data(task, model, cache_dir)
            train = _sample(data.train, settings.records, settings.seed)
            val = _sample(data.val, settings.records, settings.seed)
            train_x = embed_split(model, data, train, cache_dir=cache)
            val_x = embed_split(model, data, val, cache_dir=cache)
            about = record_metadata(task.data.kind, task.data.root, [str(i) for i in val.ids])
            embedded[(task.name, name)] = (val_x, val.ids, about)
            single = _single_label(val.y, data.labels)
            entry: dict[str, Any] = {
                "model": name, "task": task.name, "records": {"train": len(train), "val": len(val)},
                "knn_auroc": numbers.knn_auroc(train_x, train.y, val_x, val.y, k=10),
                "linear_probe_auroc": numbers.linear_probe_auroc(train_x, train.y, val_x, val.y),
                "effective_rank": numbers.effective_rank(val_x), "dimensions": val_x.shape[1],
            }  # fmt: skip
            labelled = single != ""
            if len(set(single[labelled])) >= 2:
                entry["silhouette_by_label"] = numbers.silhouette(val_x[labelled],
                                                                  single[labelled])  # fmt: skip
            if len(val_x) > MIN_MAP_RECORDS:
                _say(progress, f"UMAP of {name} on {task.name}")
                coordinates = umap_map(val_x, seed=settings.seed)
                entry["trustworthiness"] = numbers.trustworthiness(val_x, coordinates, k=10)
                colours = {"label": np.where(single == "", "several/none", single),
                           "sex": about["sex"].to_numpy(),
                           "age": about["age"].to_numpy()}  # fmt: skip
                if about["database"].nunique() > 1:
                    colours["database"] = about["database"].to_numpy()
                png = map_figure(coordinates, colours, title=f"{name} on {task.name}")
                entry["map"] = _save(out, f"{name}__{task.name}", png)
            entries.append(entry)
    cka = []
    for task in config.tasks:
        for a, b in combinations(models, 2):
            (xa, ia, _), (xb, ib, _) = embedded[(task.name, a)], embedded[(task.name, b)]
            if np.array_equal(ia, ib):  # the same records (the same sample of the same data)
                cka.append({"task": task.name, "models": [a, b],
                            "linear_cka": numbers.linear_cka(xa, xb)})  # fmt: skip
    across = []
    sources = {t.data.name: t for t in config.tasks}  # one task's records per data source
    if len(sources) >= 2:
        for name in models:
            parts = [(*embedded[(t.name, name)], t.data.name) for t in sources.values()]
            x = np.concatenate([part[0] for part in parts])
            datasets = np.concatenate([np.repeat(part[3], len(part[0])) for part in parts])
            continents = np.concatenate([part[2]["continent"].to_numpy() for part in parts])
            entry = {"model": name, "datasets": sorted(sources),
                     **numbers.dataset_separability(x, datasets),
                     "silhouette_by_dataset": numbers.silhouette(x, datasets)}  # fmt: skip
            if len(x) > MIN_MAP_RECORDS:
                coordinates = umap_map(x, seed=settings.seed)
                entry["trustworthiness"] = numbers.trustworthiness(x, coordinates, k=10)
                png = map_figure(coordinates, {"dataset": datasets, "continent": continents},
                                 title=f"{name} across datasets")  # fmt: skip
                entry["map"] = _save(out, f"{name}__datasets", png)
            across.append(entry)
    result = {"models": entries, "cka": cka, "dataset_separability": across}
    atomic_write_text(out / ANALYSIS / "representation.json", json.dumps(result, indent=1))
    return result


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in text)


def _adapted(grid: list[Cell], out: Path) -> dict[tuple[str, str, str], list[Path]]:
    """(model, mode, task) -> run folders of finished cells at the largest fraction, by seed."""
    found: dict[tuple[str, str, str], list[Path]] = {}
    for cell in finished_at_largest_fraction(grid, out):
        key = (cell.model, cell.mode, cell.task.name)
        found.setdefault(key, []).append(cell.folder(out) / RUN)
    return found


def attribution(config: BenchmarkConfig, grid: list[Cell], out: Path, settings: AnalysisSettings,
                cache_dir: str | Path | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """SHAP maps and sanity checks of the adapted models."""
    from ecgfoundry.benchmark.figures import attribution_figure

    entries = []
    tasks = {t.name: t for t in config.tasks}
    for (name, mode, task_name), runs in sorted(_adapted(grid, out).items()):
        model = load_model(runs[0] / "model")
        other = load_model(runs[1] / "model") if len(runs) > 1 else None
        data = _data(tasks[task_name], model, cache_dir)
        val = _sample(data.val, settings.attribution_records, settings.seed)
        background = _sample(data.train, 8, settings.seed)
        x, base = (_first_windows(s, data.window) for s in (val, background))
        classes = []
        for index, label in enumerate(data.labels):
            if not val.y[:, index].any():
                continue  # no positive record to explain
            result = shap.explain(model, x, index, base, segments=settings.segments,
                                  steps=settings.steps, seed=settings.seed)  # fmt: skip
            checks = shap.sanity_checks(model, x, index, base, other_model=other,
                                        segments=settings.segments, steps=settings.steps,
                                        seed=settings.seed, reference=result)  # fmt: skip
            classes.append({"label": label, "lead_importance": dict(zip(
                result.leads, result.lead_importance().round(4).tolist(), strict=True)),
                "checks": checks, "result": result, "positives": val.y[:, index]})  # fmt: skip
        if not classes:
            continue
        figure = out / ANALYSIS / "attribution" / f"{_slug(name)}__{mode}__{_slug(task_name)}.png"
        figure.parent.mkdir(parents=True, exist_ok=True)
        figure.write_bytes(attribution_figure(classes, x.numpy(), model.spec.fs))
        entries.append({
            "model": name, "mode": mode, "task": task_name, "records": len(val),
            "figure": str(figure.relative_to(out)),
            "classes": [{k: v for k, v in c.items() if k in ("label", "lead_importance", "checks")}
                        for c in classes],
        })  # fmt: skip
    atomic_write_text(out / ANALYSIS / "attribution.json",
                      json.dumps(entries, indent=1, default=float))  # fmt: skip
    return entries


def _inputs(config: BenchmarkConfig, grid: list[Cell], out: Path) -> str:
    """What the analyses depend on: their settings, the models' weights, the finished cells."""
    finished = sorted(f"{c.name}-{c.setup}" for c in grid if cell_status(c, out) == "done")
    weights = sorted({c.weights for c in grid})
    settings = {"analysis": asdict(config.analysis) if config.analysis else None,
                "transfer": repr(config.transfer)}  # fmt: skip
    text = json.dumps({"settings": settings, "weights": weights, "cells": finished})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def analyse(config: BenchmarkConfig, out: str | Path, cache_dir: str | Path | None = None,
            progress: bool = False, grid: list[Cell] | None = None,
            allow_overlap: bool = False) -> dict[str, Any]:  # fmt: skip
    """Run the configured analyses (``analysis:`` and ``transfer:``) into ``out/analysis``;
    skipped when they were made from the same settings, weights and finished cells
    (``analysis/inputs.txt``). ``grid``: the configuration's cells, when already built (each
    build hashes every model's weights file). ``allow_overlap``: score transfer targets that
    overlap a model's manifest (else refused, as in the cells)."""
    out, grid = Path(out), grid if grid is not None else cells(config)
    stamp, inputs = out / ANALYSIS / "inputs.txt", _inputs(config, grid, out)
    if stamp.is_file() and stamp.read_text() == inputs:
        return {"skipped": "up to date"}
    result: dict[str, Any] = {}
    settings = config.analysis
    if settings is not None and settings.representation:
        _say(progress, "representation: embeddings, numbers, UMAP maps")
        result["representation"] = representation(config, out, settings, cache_dir, progress)
    if settings is not None and settings.attribution:
        _say(progress, "attribution: SHAP maps and their sanity checks")
        result["attribution"] = attribution(config, grid, out, settings, cache_dir)
    if config.transfer is not None:
        _say(progress, "cross-dataset transfer")
        result["transfer"] = transfer(config, grid, out, cache_dir, allow_overlap=allow_overlap)
    atomic_write_text(stamp, inputs)
    return result


__all__ = ["analyse", "attribution", "representation"]
