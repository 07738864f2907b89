"""``finetune``: one adaptation run from a model and a task to RUN_DIR/{metrics.json, model/,
log.jsonl, predictions/predictions.npz}. Running the same call again resumes it; a folder made
with another configuration is refused, never silently reused."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgfoundry.adapt.data import TaskData, ptbxl_task, source_rate
from ecgfoundry.adapt.objective import SupervisedObjective, predict_split
from ecgfoundry.adapt.recipe import Recipe, recipe_for
from ecgfoundry.atomic import atomic_dir, atomic_write_text, json_default
from ecgfoundry.data.stratify import check_fractions
from ecgfoundry.engine import (
    Engine,
    EpochLog,
    JsonlLog,
    RunConfigError,
    autocast_dtype,
    claim_run_dir,
)
from ecgfoundry.engine import distributed as dist
from ecgfoundry.evaluate.metrics import evaluate, tune_thresholds
from ecgfoundry.models.base import ECGModel
from ecgfoundry.models.io import save_model
from ecgfoundry.models.registry import resolve_model

RUN_FORMAT = 1


def build_model(model: str | Path, init: str) -> ECGModel:
    """The starting model: a model folder's weights (``pretrained``), or its architecture (or a
    registry preset's) freshly initialised (``random``, seeded by the caller)."""
    return resolve_model(model, weights=init == "pretrained")


def model_fingerprint(model: str | Path) -> str:
    """What identifies the starting weights: a hash of a folder's weights file, else the name."""
    weights = Path(str(model)) / "model.safetensors"
    if weights.is_file():
        digest = hashlib.sha256()
        with weights.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return f"sha256:{digest.hexdigest()[:16]}"
    return str(model)


def evaluate_run(
    model: ECGModel,
    data: TaskData,
    recipe: Recipe,
    device: torch.device,
    *,
    seed: int,
    test: bool = True,
    engine: Engine | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Validation and (when fold 10 exists and ``test``) test reports, F1 thresholds tuned on
    validation; and the predictions they were computed from."""
    predictions = {"labels": np.array(data.labels)}
    metrics: dict[str, Any] = {}
    thresholds = None
    for name, split in (("val", data.val), ("test", data.test if test else None)):
        if split is None:
            continue
        probabilities = predict_split(model, data, split, recipe, device,
                                      engine.autocast if engine else None)  # fmt: skip
        if thresholds is None:
            thresholds = tune_thresholds(split.y, probabilities)
        metrics[name] = evaluate(split.y, probabilities, data.labels, thresholds=thresholds,
                                 seed=seed)  # fmt: skip
        predictions |= {f"{name}_ids": split.ids, f"{name}_y": split.y,
                        f"{name}_probabilities": probabilities}  # fmt: skip
    return metrics, predictions


def finetune(
    model: str | Path,
    *,
    root: str | Path,
    task: str,
    strategy: str,
    out: str | Path,
    data: str = "ptbxl",
    fraction: float = 1.0,
    seed: int = 0,
    config: str | Path | dict[str, Any] | None = None,
    epochs: int | None = None,
    cache_dir: str | Path | None = None,
    workers: int = 1,
    loader_workers: int = 0,
    checkpoint_every_minutes: float | None = None,
    progress_bar: bool = True,
    evaluate_test: bool = True,
) -> dict[str, Any]:
    """Adapt ``model`` to a PTB-XL task with a strategy; returns (and writes) the metrics.

    ``evaluate_test=False`` never scores fold 10 (for tuning runs such as hyperparameter
    sweeps, which must see validation only)."""
    if data != "ptbxl":
        raise RunConfigError(f"data {data!r} is not supported yet; use ptbxl")
    device = dist.setup()
    recipe = recipe_for(strategy, config=config, epochs=epochs)
    out = Path(out)
    try:
        check_fractions([fraction])
    except ValueError as error:
        raise RunConfigError(f"--fraction: {error}") from error
    torch.manual_seed(seed)
    network = build_model(model, recipe.init)
    run_config = {
        "format": RUN_FORMAT, "model": str(model), "model_weights": model_fingerprint(model),
        "data": data, "root": str(Path(root).resolve()),
        "source_fs": source_rate(root, network.spec), "task": task, "fraction": fraction,
        "seed": seed, "precision": str(autocast_dtype(recipe.precision, device) or "float32"),
        "world_size": dist.world(), "evaluate_test": evaluate_test, "recipe": recipe.to_dict(),
    }  # fmt: skip
    claim_run_dir(out, run_config, write=dist.is_main())
    dist.barrier()
    task_data = ptbxl_task(root, task, network.spec, fraction=fraction, seed=seed,
                           cache_dir=cache_dir, workers=workers)  # fmt: skip
    torch.manual_seed(seed)
    network.reset_head(len(task_data.labels), task_data.labels)
    log = JsonlLog(out / "log.jsonl") if dist.is_main() else EpochLog()
    engine = Engine(out, seed=seed, device=device, precision=recipe.precision, log=log,
                    progress_bar=progress_bar,
                    checkpoint_every_minutes=checkpoint_every_minutes)  # fmt: skip
    objective = SupervisedObjective(network, recipe, task_data, seed=seed, device=device,
                                    autocast=engine.autocast, workers=loader_workers)  # fmt: skip
    progress = engine.fit(objective)
    metrics, predictions = evaluate_run(network, task_data, recipe, device, seed=seed,
                                        test=evaluate_test, engine=engine)  # fmt: skip
    metrics["run"] = {
        **{k: run_config[k] for k in ("model", "task", "fraction", "seed")},
        "strategy": strategy,
        "train_records": len(task_data.train),
        "val_records": len(task_data.val),
        "test_records": len(task_data.test) if task_data.test is not None else 0,
        "folds_present": task_data.description["folds_present"],
        "epochs_run": [
            sum(1 for h in progress.history if h["stage"] == i) for i in range(len(recipe.stages))
        ],
        "best_val_macro_auroc_per_stage": [
            max(
                (h["val_macro_auroc"] for h in progress.history if h["stage"] == i),
                default=float("nan"),
            )
            for i in range(len(recipe.stages))
        ],
    }
    if dist.is_main():
        save_model(network, out / "model")
        with atomic_dir(out / "predictions") as tmp:
            np.savez(tmp / "predictions.npz", **predictions)
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1, default=json_default))
    dist.barrier()
    dist.cleanup()
    return metrics
