"""``finetune``: one adaptation run from a model and a task to RUN_DIR/{metrics.json, model/,
log.jsonl, predictions/predictions.npz}. Running the same call again resumes it; a folder made
with another configuration is refused, never silently reused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgfoundry.adapt import distributed as dist
from ecgfoundry.adapt.checkpoint import load_checkpoint
from ecgfoundry.adapt.data import TaskData, ptbxl_task
from ecgfoundry.adapt.loop import Trainer, predict_split
from ecgfoundry.adapt.recipe import Recipe, recipe_for
from ecgfoundry.atomic import atomic_dir, atomic_write_text
from ecgfoundry.errors import ReportedError
from ecgfoundry.evaluate.metrics import evaluate, tune_thresholds
from ecgfoundry.models.base import ECGModel
from ecgfoundry.models.io import read_model_folder, save_model
from ecgfoundry.models.registry import create_model, family_class, load_model, model_names

RUN_FORMAT = 1


class RunConfigError(ValueError, ReportedError):
    """RUN_DIR holds a run with a different configuration."""


def build_model(model: str | Path, init: str) -> ECGModel:
    """The starting model: a model folder's weights (``pretrained``), or its architecture (or a
    registry preset's) freshly initialised (``random``, seeded by the caller)."""
    text = str(model)
    if Path(text).exists():
        if init == "pretrained":
            return load_model(text)
        config, _ = read_model_folder(text)
        cls = family_class(config["family"])
        return cls(cls.config_class.from_dict(config["config"]))
    if text in model_names():
        if init == "pretrained":
            raise RunConfigError(
                f"{text} is a bare architecture: pretrained strategies need a model folder "
                "with weights (use --strategy scratch to train it from random initialisation)"
            )
        return create_model(text)
    raise RunConfigError(f"{text}: neither a model folder nor a registered model")


def _claim(out: Path, config: dict[str, Any]) -> None:
    """Write RUN_DIR/config.json, or check that the one there is the same run."""
    path = out / "config.json"
    if path.exists():
        before = json.loads(path.read_text())
        if before != config:
            changed = sorted(k for k in set(before) | set(config) if before.get(k) != config.get(k))
            raise RunConfigError(
                f"{out} holds a run with a different configuration (differs in {changed}); "
                "use another --out, or delete the folder to start over"
            )
        return
    if out.exists() and any(out.iterdir()):
        raise RunConfigError(f"{out} is not empty and holds no ecgfoundry run: use another --out")
    atomic_write_text(path, json.dumps(config, indent=1))


class JsonlLog:
    """RUN_DIR/log.jsonl: one line per epoch. Rewritten from the checkpoint's history on
    resume, so a killed run never leaves duplicate or missing lines."""

    def __init__(self, path: Path, history: list[dict[str, Any]]):
        self.path = path
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in history))

    def __call__(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def evaluate_run(
    model: ECGModel, data: TaskData, recipe: Recipe, device: torch.device, *, seed: int
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Validation and (when fold 10 exists) test reports, F1 thresholds tuned on validation;
    and the predictions they were computed from."""
    predictions = {"labels": np.array(data.labels)}
    metrics: dict[str, Any] = {}
    thresholds = None
    for name, split in (("val", data.val), ("test", data.test)):
        if split is None:
            continue
        probabilities = predict_split(model, data, split, recipe, device)
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
    progress_bar: bool = True,
) -> dict[str, Any]:
    """Adapt ``model`` to a PTB-XL task with a strategy; returns (and writes) the metrics."""
    if data != "ptbxl":
        raise RunConfigError(f"data {data!r} is not supported yet; use ptbxl")
    device = dist.setup()
    recipe = recipe_for(strategy, config=config, epochs=epochs)
    out = Path(out)
    run_config = {
        "format": RUN_FORMAT, "model": str(model), "data": data,
        "root": str(Path(root).resolve()), "task": task, "fraction": fraction, "seed": seed,
        "recipe": recipe.to_dict(),
    }  # fmt: skip
    if dist.is_main():
        _claim(out, run_config)
    dist.barrier()
    torch.manual_seed(seed)
    network = build_model(model, recipe.init)
    task_data = ptbxl_task(root, task, network.spec, fraction=fraction, seed=seed,
                           cache_dir=cache_dir, workers=workers)  # fmt: skip
    torch.manual_seed(seed)
    network.reset_head(len(task_data.labels), task_data.labels)
    saved = load_checkpoint(out / "checkpoint")
    log = JsonlLog(out / "log.jsonl", saved.progress.history if saved else []) if dist.is_main() \
        else (lambda record: None)  # fmt: skip
    trainer = Trainer(network, recipe, task_data, out, seed=seed, device=device, log=log,
                      progress_bar=progress_bar)  # fmt: skip
    progress = trainer.fit()
    metrics, predictions = evaluate_run(network, task_data, recipe, device, seed=seed)
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
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1, default=_jsonable))
    dist.barrier()
    return metrics


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
