"""A benchmark's cells and how one runs.

A cell is (model, task, mode, fraction, seed). It runs as one :func:`ecgfoundry.adapt.finetune`
into its own folder ``OUT/cells/<name>-<setup>/``, where ``setup`` hashes everything the result
depends on besides the name: the model's weights, the data's location, the recipe as it runs.
So a rerun skips finished cells, resumes a killed one from its checkpoint, and runs again
exactly the cells whose inputs changed (their old folders stay, unused). Each folder keeps
``cell.json`` (what it is) and the finetune run in ``run/`` (``metrics.json``, ``log.jsonl``,
the evaluation probabilities in ``predictions/predictions.npz``), so new metrics and paired
comparisons never need training.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ecgfoundry.atomic import atomic_write_text
from ecgfoundry.benchmark.config import BenchmarkConfig, TaskSpec
from ecgfoundry.models.registry import weights_fingerprint
from ecgfoundry.pretrain.leakage import LeakageError

CELL_FILE = "cell.json"
RUN = "run"  # the finetune run folder inside a cell's folder
ANALYSIS = "analysis"  # the analyses' folder in a benchmark folder


@dataclass(frozen=True)
class Cell:
    """One run of a benchmark: a model adapted to a task in a mode, on a share of the
    training labels, with a seed."""

    model: str
    task: TaskSpec
    mode: str
    fraction: float
    seed: int
    recipe_json: str  # the recipe as it runs, as sorted JSON
    weights: str  # the model's weights fingerprint (its name when it has no weights file)

    @property
    def recipe(self) -> dict[str, Any]:
        return json.loads(self.recipe_json)

    @property
    def name(self) -> str:
        model = "-".join(Path(self.model.removeprefix("hf-hub:")).parts[-2:])
        text = f"{model}__{self.task.data.name}-{self.task.task}__{self.mode}__f{self.fraction:g}"
        return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{text}__s{self.seed}")

    @property
    def setup(self) -> str:
        """A hash of what the result depends on besides the name."""
        depends = {"weights": self.weights, "data": asdict(self.task.data),
                   "task": self.task.task, "recipe": self.recipe}  # fmt: skip
        text = json.dumps(depends, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def folder(self, out: str | Path) -> Path:
        return Path(out) / "cells" / f"{self.name}-{self.setup}"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "setup": self.setup, "model": self.model,
                "model_weights": self.weights, "data": self.task.data.name,
                "data_kind": self.task.data.kind, "data_root": self.task.data.root,
                "task": self.task.task, "mode": self.mode, "fraction": self.fraction,
                "seed": self.seed, "recipe": self.recipe}  # fmt: skip


def cells(config: BenchmarkConfig) -> list[Cell]:
    """Every cell, in running order: task, fraction, seed, model, mode (so that a short run
    covers every model and mode on the first task and seed first)."""
    recipes = {mode: json.dumps(config.recipe(mode), sort_keys=True)
               for modes in config.models.values() for mode in modes}  # fmt: skip
    weights = {model: weights_fingerprint(model) for model in config.models}
    return [Cell(model, task, mode, fraction, seed, recipes[mode], weights[model])
            for task in config.tasks for fraction in config.fractions for seed in config.seeds
            for model, modes in config.models.items() for mode in modes]  # fmt: skip


def cell_status(cell: Cell, out: str | Path) -> str:
    """``done``, ``refused`` (the leakage guard), ``started`` or ``pending``."""
    folder = cell.folder(out)
    metrics = folder / RUN / "metrics.json"
    if metrics.is_file():
        return "done" if "val" in json.loads(metrics.read_text()) else "refused"
    return "started" if (folder / CELL_FILE).is_file() else "pending"


def finished_at_largest_fraction(grid: list[Cell], out: str | Path) -> list[Cell]:
    """The finished cells at the grid's largest label fraction (what the analyses explain and
    transfer), in grid order."""
    largest = max(c.fraction for c in grid)
    return [c for c in grid if c.fraction == largest and cell_status(c, out) == "done"]


def run_cell(cell: Cell, out: str | Path, *, cache_dir: str | Path | None = None,
             workers: int = 1, allow_overlap: bool = False, threads: int | None = None,
             progress_bar: bool = False) -> str:  # fmt: skip
    """Run (or resume) one cell into its folder; returns its status. A leakage refusal is a
    result (recorded in the cell's metrics.json), not an error."""
    from ecgfoundry.adapt import finetune

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    folder = cell.folder(out)
    if (status := cell_status(cell, out)) in ("done", "refused"):
        return status
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / CELL_FILE, json.dumps(cell.describe(), indent=1))
    start = time.perf_counter()
    try:
        finetune(cell.model, **cell.task.source_arguments(), strategy=cell.recipe["strategy"],
                 out=folder / RUN, fraction=cell.fraction, seed=cell.seed, config=cell.recipe,
                 cache_dir=cache_dir, workers=workers, progress_bar=progress_bar,
                 allow_overlap=allow_overlap)  # fmt: skip
    except LeakageError:
        return "refused"
    described = cell.describe() | {"seconds": round(time.perf_counter() - start, 1)}
    atomic_write_text(folder / CELL_FILE, json.dumps(described, indent=1))
    return "done"


__all__ = [
    "ANALYSIS",
    "CELL_FILE",
    "RUN",
    "Cell",
    "cell_status",
    "cells",
    "finished_at_largest_fraction",
    "run_cell",
]
