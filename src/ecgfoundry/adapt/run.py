"""``finetune``: one adaptation run from a model and a task to RUN_DIR/{metrics.json, model/,
log.jsonl, predictions/predictions.npz}. Running the same call again resumes it; a folder made
with another configuration is refused, never silently reused."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgfoundry.adapt.data import TaskData, source_rate
from ecgfoundry.adapt.objective import SupervisedObjective, predict_split
from ecgfoundry.adapt.recipe import Recipe, recipe_for
from ecgfoundry.adapt.sources import task_data as load_task_data
from ecgfoundry.atomic import atomic_dir, atomic_write_text, json_default
from ecgfoundry.data.ptbxl import TASKS
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


def build_model(model: str | Path | ECGModel, init: str) -> ECGModel:
    """The starting model: a model folder's (or object's) weights (``pretrained``), or its
    architecture (or a registry preset's) freshly initialised (``random``, seeded by the
    caller). An object is copied, never trained in place."""
    if isinstance(model, ECGModel):
        if init == "pretrained":
            return copy.deepcopy(model)
        return type(model)(type(model).config_class.from_dict(model.config.to_dict()))
    return resolve_model(model, weights=init == "pretrained")


def _sha256(chunks: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return f"sha256:{digest.hexdigest()[:16]}"


def _tensor_bytes(model: ECGModel) -> Iterator[bytes]:
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        yield f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\n".encode()
        yield flat.view(torch.uint8).numpy().tobytes()


def model_fingerprint(model: str | Path | ECGModel) -> str:
    """What identifies the starting weights: a hash of an object's tensors or of a folder's
    weights file, else the name."""
    if isinstance(model, ECGModel):
        return _sha256(_tensor_bytes(model))
    weights = Path(str(model)) / "model.safetensors"
    if weights.is_file():
        with weights.open("rb") as handle:
            return _sha256(iter(lambda: handle.read(1 << 20), b""))
    return str(model)


def model_description(model: str | Path | ECGModel) -> str | dict[str, Any]:
    """How the run config names the model: its path or name, or an object's family and config."""
    if isinstance(model, ECGModel):
        return _as_json({"family": model.family, "config": model.config.to_dict()})
    return str(model)


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (so that a resumed run's config compares equal)."""
    return json.loads(json.dumps(value, default=json_default))


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
    model: str | Path | ECGModel,
    *,
    root: str | Path | None = None,
    task: str | None = None,
    strategy: str,
    out: str | Path,
    data: str | Path | TaskData = "ptbxl",
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
    """Adapt ``model`` (a model folder, registry name or :class:`ECGModel`, which is copied) to
    a task with a strategy; returns (and writes) the metrics.

    ``data``: ``"ptbxl"`` (``root`` and ``task`` needed), ``"cinc"`` (a PhysioNet/CinC
    challenge folder as ``root``; ``task``: comma-separated SNOMED-CT codes, else every code
    with 10+ positives), a ``.csv`` table (``task``: optional label columns), or a prepared
    :class:`TaskData`; see :mod:`ecgfoundry.adapt.sources`. ``evaluate_test=False`` never
    scores the test split (for tuning runs such as hyperparameter sweeps, which must see
    validation only)."""
    ptbxl = not isinstance(data, TaskData) and str(data) == "ptbxl"
    if ptbxl and (root is None or task not in TASKS):
        raise RunConfigError(f"PTB-XL needs root (the copy's folder) and task, one of "
                             f"{list(TASKS)}; got root={root}, task={task!r}")  # fmt: skip
    device = dist.setup()
    recipe = recipe_for(strategy, config=config, epochs=epochs)
    out = Path(out)
    try:
        check_fractions([fraction])
    except ValueError as error:
        raise RunConfigError(f"--fraction: {error}") from error
    torch.manual_seed(seed)
    network = build_model(model, recipe.init)
    common = {"format": RUN_FORMAT, "model": model_description(model),
              "model_weights": model_fingerprint(model)}  # fmt: skip
    run = {"seed": seed, "precision": str(autocast_dtype(recipe.precision, device) or "float32"),
           "world_size": dist.world(), "evaluate_test": evaluate_test,
           "recipe": recipe.to_dict()}  # fmt: skip
    load = {"root": root, "task": task, "fraction": fraction, "seed": seed,
            "cache_dir": cache_dir, "workers": workers}  # fmt: skip
    if ptbxl:  # claimed before the cache is built; the keys of the first runs, kept
        run_config = {**common, "data": "ptbxl", "root": str(Path(root).resolve()),
                      "source_fs": source_rate(root, network.spec), "task": task,
                      "fraction": fraction, **run}  # fmt: skip
        claim_run_dir(out, run_config, write=dist.is_main())
        dist.barrier()
        task_data = load_task_data(data, network.spec, **load)
    else:
        task_data = load_task_data(data, network.spec, **load)
        described = {k: v for k, v in task_data.description.items() if k != "cache"}
        run_config = {**common, "data": _as_json(described), "labels": task_data.labels,
                      "fraction": fraction, **run}  # fmt: skip
        claim_run_dir(out, run_config, write=dist.is_main())
        dist.barrier()
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
        "model": run_config["model"], "task": task, "fraction": fraction, "seed": seed,
        "strategy": strategy,
        "train_records": len(task_data.train),
        "val_records": len(task_data.val),
        "test_records": len(task_data.test) if task_data.test is not None else 0,
    }  # fmt: skip
    if ptbxl:
        metrics["run"]["folds_present"] = task_data.description["folds_present"]
    else:
        metrics["run"]["data"] = run_config["data"]
    metrics["run"] |= {
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
