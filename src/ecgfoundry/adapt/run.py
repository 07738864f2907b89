"""``finetune``: one adaptation run from a model and a task to RUN_DIR/{metrics.json, model/,
log.jsonl, predictions/predictions.npz}. Running the same call again resumes it; a folder made
with another configuration is refused, never silently reused."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgfoundry.adapt.data import Split, TaskData, source_rate
from ecgfoundry.adapt.objective import SupervisedObjective, predict_split
from ecgfoundry.adapt.recipe import Recipe, recipe_for
from ecgfoundry.adapt.sources import source_kind
from ecgfoundry.adapt.sources import task_data as load_task_data
from ecgfoundry.atomic import atomic_dir, atomic_write_text, json_default
from ecgfoundry.data.cache import ArrayStore
from ecgfoundry.data.ptbxl import TASKS
from ecgfoundry.data.snomed import describe_code
from ecgfoundry.data.stratify import check_fractions
from ecgfoundry.engine import (
    Engine,
    EpochLog,
    JsonlLog,
    RunConfigError,
    autocast_dtype,
    check_run_options,
    claim_run_dir,
)
from ecgfoundry.engine import distributed as dist
from ecgfoundry.errors import shortened
from ecgfoundry.evaluate.metrics import evaluate, tune_thresholds
from ecgfoundry.inference import save_thresholds
from ecgfoundry.models.base import ECGModel
from ecgfoundry.models.io import model_description, model_fingerprint, save_model
from ecgfoundry.models.registry import model_folder, resolve_model
from ecgfoundry.pretrain.leakage import (
    LeakageError,
    check_leakage,
    file_record_id,
    read_manifest,
    record_id,
    write_manifest,
)

RUN_FORMAT = 1


def check_positives(labels: list[str], y: np.ndarray, fraction: float, seed: int) -> None:
    """Refuse training data that leaves a label without a positive record (nothing to learn,
    and its AUROC would rest on an untrained output)."""
    absent = [label for label, count in zip(labels, y.sum(axis=0), strict=True) if count == 0]
    if absent:
        raise RunConfigError(f"the training records (fraction {fraction:g}, seed {seed}) have no "
                             f"positive for label(s) {absent}: use a larger fraction, or a "
                             "task without them")  # fmt: skip


def build_model(model: str | Path | ECGModel, init: str) -> ECGModel:
    """The starting model: a model folder's (or object's) weights (``pretrained``), or its
    architecture (or a registry preset's) freshly initialised (``random``, seeded by the
    caller). An object is copied, never trained in place."""
    if isinstance(model, ECGModel):
        if init == "pretrained":
            return copy.deepcopy(model)
        return type(model)(type(model).config_class.from_dict(model.config.to_dict()))
    return resolve_model(model, weights=init == "pretrained")


def weights_folder(model: str | Path | ECGModel) -> Path | None:
    """Where a model's weights were read from (a folder, bundled weights, or the folder an
    object was loaded from): the folder whose manifest the leakage guard reads."""
    return model.origin if isinstance(model, ECGModel) else model_folder(model)


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (so that a resumed run's config compares equal)."""
    return json.loads(json.dumps(value, default=json_default))


def split_record_ids(data: TaskData, split: Split) -> list[str]:
    """A split's records in the manifests' id scheme (:mod:`ecgfoundry.pretrain.leakage`):
    ``ptbxl:<ecg_id>``, ``cinc:<record>``, ``table:<record>#<content hash>``."""
    dataset = str(data.description.get("dataset", "data"))
    if dataset != "table":
        return [record_id(dataset, record) for record in split.ids]
    folder = Path(data.description["table"]).parent
    return [file_record_id(dataset, folder, folder / str(record)) for record in split.ids]


def describe_splits(data: TaskData, evaluate_test: bool = True) -> dict[str, str]:
    """Which records each split holds, in words: PTB-XL's folds (fold 10 marked absent when the
    copy lacks it), else the split rule and shares of the data source."""
    sizes = {"train": len(data.train), "val": len(data.val),
             "test": len(data.test) if data.test is not None else 0}  # fmt: skip
    about = data.description
    if about.get("dataset") == "ptbxl":
        words = {"train": "folds 1-8", "val": "fold 9", "test": "fold 10"}
    else:
        level, shares = about.get("split"), about.get("shares")
        rule = {"given": "as the table's split column", None: "as prepared"}.get(
            level, f"{level}-level, seeded")  # fmt: skip
        words = {name: (f"{shares[name] * 100:g} %, " if shares else "") + rule for name in sizes}
    if (share := about.get("fraction", 1.0)) < 1:
        words["train"] += f" ({share * 100:g} % of them, nested)"
    out = {name: f"{words[name]}: {sizes[name]} records" for name in ("train", "val")}
    if data.test is None:
        out["test"] = ("absent: this copy has no fold 10" if about.get("dataset") == "ptbxl"
                       else "absent: no test records")  # fmt: skip
    elif not evaluate_test:
        out["test"] = f"{words['test']}: {sizes['test']} records, not scored (evaluate_test=False)"
    else:
        out["test"] = f"{words['test']}: {sizes['test']} records"
    return out


def trained_records(data: TaskData) -> list[dict[str, Any]]:
    """The manifest entries of the training records (PTB-XL's with their patients)."""
    ids = split_record_ids(data, data.train)
    patients: list[str | None] = [None] * len(ids)
    if data.description.get("dataset") == "ptbxl":
        index = ArrayStore.open(Path(data.description["cache"])).index
        patient_of = dict(zip(index["ecg_id"], index["patient_id"], strict=True))
        patients = [f"ptbxl:{patient_of[int(i)]}" for i in data.train.ids]
    return [{"id": i, "patient": p} for i, p in zip(ids, patients, strict=True)]


def evaluate_run(
    model: ECGModel,
    data: TaskData,
    recipe: Recipe,
    device: torch.device,
    *,
    seed: int,
    test: bool = True,
    engine: Engine | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray], np.ndarray]:
    """Validation and (when fold 10 exists and ``test``) test reports, F1 thresholds tuned on
    validation; the predictions they were computed from; and those thresholds."""
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
    return metrics, predictions, thresholds


def _labels_text(labels: list[str], shown: int = 12) -> str:
    """``"5: CD, HYP, MI, NORM, STTC"``; SNOMED-CT codes named; past ``shown``, a count."""
    return f"{len(labels)}: " + ", ".join(shortened([describe_code(x) for x in labels], shown))


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
    checkpoint_every_steps: int | None = None,
    progress_bar: bool = True,
    evaluate_test: bool = True,
    allow_overlap: bool = False,
) -> dict[str, Any]:
    """Adapt ``model`` (a model folder, registry name or :class:`ECGModel`, which is copied) to
    a task with a strategy; returns (and writes) the metrics.

    ``data``: ``"ptbxl"`` (``root`` and ``task`` needed), ``"cinc"`` (a PhysioNet/CinC
    challenge folder as ``root``; ``task``: comma-separated SNOMED-CT codes or the challenges'
    abbreviations of them, else every code with 10+ positives), a ``.csv`` table (``task``:
    optional label columns), or a prepared :class:`TaskData`; see
    :mod:`ecgfoundry.adapt.sources`. With ``progress_bar``, the labels are named on stderr
    before training. ``evaluate_test=False`` never
    scores the test split (for tuning runs such as hyperparameter sweeps, which must see
    validation only).

    Leakage guard: when the starting weights come from a model folder with a ``manifest.json``
    (the records it was pretrained or trained on; for an object, the folder it was loaded
    from, :attr:`ECGModel.origin`), the validation and (evaluated) test records
    are checked against it before training; overlap stops the run with a
    :class:`~ecgfoundry.pretrain.leakage.LeakageError` naming the records, unless
    ``allow_overlap``. The check is recorded in ``metrics["run"]["leakage_check"]`` (also when
    refused). ``OUT/model/manifest.json`` lists the training records and those of the
    starting model's manifest."""
    check_run_options(loader_workers=loader_workers,
                      checkpoint_every_minutes=checkpoint_every_minutes,
                      checkpoint_every_steps=checkpoint_every_steps)  # fmt: skip
    ptbxl = not isinstance(data, TaskData) and str(data) == "ptbxl"
    if ptbxl and (root is None or task not in TASKS):
        raise RunConfigError(f"PTB-XL needs root (the copy's folder) and task, one of "
                             f"{list(TASKS)}; got root={root}, task={task!r}")  # fmt: skip
    if not isinstance(data, TaskData):
        source_kind(str(data), root)  # a wrong data/root is named before the model is loaded
    device = dist.setup()
    recipe = recipe_for(strategy, config=config, epochs=epochs)
    out = Path(out)
    try:
        check_fractions([fraction])
    except ValueError as error:
        raise RunConfigError(f"--fraction: {error}") from error
    torch.manual_seed(seed)
    network = build_model(model, recipe.init)
    backbone = weights_folder(model) if recipe.init == "pretrained" else None
    weights = model if isinstance(model, ECGModel) else backbone or model
    common = {"format": RUN_FORMAT, "model": model_description(model),
              "model_weights": model_fingerprint(weights)}  # fmt: skip
    manifest = read_manifest(backbone) if backbone is not None else None
    if manifest is not None:  # only then: run folders of models without one still resume
        common["backbone_manifest"] = manifest["hash"]
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
    check_positives(task_data.labels, task_data.train.y, fraction, seed)
    if progress_bar and dist.is_main():  # before hours of training: what it learns
        print(f"labels: {_labels_text(task_data.labels)}", file=sys.stderr)
    evaluated = [task_data.val]
    if evaluate_test and task_data.test is not None:
        evaluated.append(task_data.test)
    evaluated_ids = [i for split in evaluated for i in split_record_ids(task_data, split)]
    try:
        leakage_check = check_leakage(backbone, evaluated_ids, allow=allow_overlap)
    except LeakageError as error:
        if dist.is_main():
            refused = {"run": {"model": run_config["model"], "leakage_check": error.record}}
            atomic_write_text(out / "metrics.json", json.dumps(refused, indent=1))
        raise
    torch.manual_seed(seed)
    network.reset_head(len(task_data.labels), task_data.labels, kind=recipe.head)
    log = JsonlLog(out / "log.jsonl") if dist.is_main() else EpochLog()
    engine = Engine(out, seed=seed, device=device, precision=recipe.precision, log=log,
                    progress_bar=progress_bar,
                    checkpoint_every_minutes=checkpoint_every_minutes,
                    checkpoint_every_steps=checkpoint_every_steps)  # fmt: skip
    objective = SupervisedObjective(network, recipe, task_data, seed=seed, device=device,
                                    autocast=engine.autocast, workers=loader_workers)  # fmt: skip
    progress = engine.fit(objective)
    metrics, predictions, tuned = evaluate_run(network, task_data, recipe, device, seed=seed,
                                               test=evaluate_test, engine=engine)  # fmt: skip
    metrics["run"] = {
        "model": run_config["model"], "task": task, "fraction": fraction, "seed": seed,
        "strategy": strategy,
        "train_records": len(task_data.train),
        "val_records": len(task_data.val),
        "test_records": len(task_data.test) if task_data.test is not None else 0,
        "leakage_check": leakage_check,
        "splits": describe_splits(task_data, evaluate_test),
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
                (
                    h["val_macro_auroc"]
                    for h in progress.history
                    if h["stage"] == i and "val_macro_auroc" in h
                ),  # evaluated epochs only
                default=float("nan"),
            )
            for i in range(len(recipe.stages))
        ],
    }
    if dist.is_main():
        save_model(network, out / "model")
        inherited = manifest["records"] if manifest is not None else []
        write_manifest(out / "model", [*trained_records(task_data), *inherited])
        untuned = [label for label, n in zip(task_data.labels, task_data.val.y.sum(axis=0),
                                             strict=True) if not n]  # fmt: skip
        save_thresholds(out / "model", task_data.labels, tuned,
                        tuned_on=f"validation, {metrics['run']['splits']['val']}",
                        aggregate=recipe.eval_aggregate, untuned=untuned)  # fmt: skip
        with atomic_dir(out / "predictions") as tmp:
            np.savez(tmp / "predictions.npz", **predictions)
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1, default=json_default))
    dist.cleanup()
    return metrics
