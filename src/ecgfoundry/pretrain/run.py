"""``pretrain_cpc``: one CPC pretraining run to RUN_DIR/{config.json, log.jsonl, checkpoint/,
model/}. Running the same call again resumes it; a folder made with another configuration is
refused, never silently reused. ``model/`` holds the weights, ``manifest.json`` (the records)
and ``pretraining.json`` (the run's settings, length, time, hardware and last metrics: what a
model card reports)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ecgfoundry import __version__
from ecgfoundry.adapt.data import Split
from ecgfoundry.atomic import atomic_write_text, json_default
from ecgfoundry.engine import Engine, EpochLog, JsonlLog, Progress, autocast_dtype, claim_run_dir
from ecgfoundry.engine import distributed as dist
from ecgfoundry.engine.precision import Precision, describe_hardware
from ecgfoundry.models.base import ECGModel
from ecgfoundry.models.io import model_description, model_fingerprint, save_model
from ecgfoundry.models.s4 import S4Model
from ecgfoundry.pretrain.cpc import Autocast, CPCConfig, CPCObjective
from ecgfoundry.pretrain.leakage import read_manifest, write_manifest

RUN_FORMAT = 1
PRETRAINING_FILE = "pretraining.json"


def split_fingerprint(split: Split) -> dict[str, Any]:
    """What identifies a split's records: their number, the cache's shape and a hash of the
    record ids and cache rows."""
    digest = hashlib.sha256()
    for array in (split.ids, split.rows):
        digest.update(str(array.tolist()).encode())
    return {"records": len(split), "shape": list(split.signals.shape),
            "ids": f"sha256:{digest.hexdigest()[:16]}"}  # fmt: skip


@dataclass(frozen=True)
class RunOptions:
    """How a pretraining run runs (not what it learns): seed, precision, DataLoader workers,
    step checkpoints, progress bar, and the manifest entries of its records."""

    seed: int = 0
    precision: Precision = "auto"
    workers: int = 0
    checkpoint_every_steps: int | None = None
    checkpoint_every_minutes: float | None = None
    progress_bar: bool = True
    records: list[dict[str, Any]] | None = None


def run_pretraining(
    model: ECGModel,
    out: str | Path,
    settings: dict[str, Any],
    make_objective: Callable[[torch.device, Autocast], Any],
    options: RunOptions,
    save_extra: Callable[[Any, Path], None] | None = None,
) -> Progress:
    """Claim ``out`` for this run (``settings`` plus the model, seed, precision and number of
    processes), fit the objective ``make_objective(device, autocast)`` on the engine, and save
    the model (and ``save_extra(objective, folder)``) with the manifest to ``out/model``: the
    run's records and, when pretraining continues from a model folder (``model.origin``), the
    records of that folder's manifest."""
    out = Path(out)
    device = dist.setup()
    run_config = {
        "format": RUN_FORMAT, "model": model_description(model),
        "model_weights": model_fingerprint(model), **settings, "seed": options.seed,
        "precision": str(autocast_dtype(options.precision, device) or "float32"),
        "world_size": dist.world(),
    }  # fmt: skip
    claim_run_dir(out, json.loads(json.dumps(run_config, default=json_default)),
                  write=dist.is_main())  # fmt: skip
    dist.barrier()
    log = JsonlLog(out / "log.jsonl") if dist.is_main() else EpochLog()
    engine = Engine(out, seed=options.seed, device=device, precision=options.precision,
                    log=log, progress_bar=options.progress_bar,
                    checkpoint_every_steps=options.checkpoint_every_steps,
                    checkpoint_every_minutes=options.checkpoint_every_minutes)  # fmt: skip
    objective = make_objective(device, engine.autocast)
    progress = engine.fit(objective)
    if dist.is_main():
        save_model(model, out / "model")
        if save_extra is not None:
            save_extra(objective, out / "model")
        if options.records is not None:
            start = read_manifest(model.origin) if model.origin is not None else None
            inherited = start["records"] if start is not None else []
            write_manifest(out / "model", [*options.records, *inherited])
        write_run_summary(out / "model", run_config, progress, device)
    dist.cleanup()
    return progress


def write_run_summary(folder: Path, run_config: dict[str, Any], progress: Progress,
                      device: torch.device) -> dict[str, Any]:  # fmt: skip
    """Write ``folder/pretraining.json``: the run's settings, epochs, optimiser steps, training
    time (the sum of the epochs' times over every process that ran them), mean samples/s, the
    last epoch's metrics, and the hardware and versions of the process that finished it."""
    history = progress.history
    last = {k: v for k, v in (history[-1] if history else {}).items()
            if k not in ("stage", "name", "epoch", "best", "lr")}  # fmt: skip
    summary = {
        "settings": {k: v for k, v in run_config.items() if k not in ("format", "model")},
        "epochs": len(history), "optimizer_steps": history[-1]["step"] if history else 0,
        "train_hours": round(sum(h.get("seconds", 0.0) for h in history) / 3600, 3),
        "samples_per_s": round(sum(h.get("samples_per_s", 0.0) for h in history)
                               / max(len(history), 1), 1),
        "last_epoch": last, "hardware": describe_hardware(device), "ecgfoundry": __version__,
        "finished": time.strftime("%Y-%m-%d", time.gmtime()),
    }  # fmt: skip
    atomic_write_text(folder / PRETRAINING_FILE,
                      json.dumps(summary, indent=1, default=json_default))  # fmt: skip
    return summary


def pretrain_cpc(
    model: S4Model,
    train: Split,
    val: Split,
    out: str | Path,
    *,
    config: CPCConfig | None = None,
    seed: int = 0,
    precision: Precision = "auto",
    workers: int = 0,
    checkpoint_every_steps: int | None = None,
    checkpoint_every_minutes: float | None = None,
    progress_bar: bool = True,
    records: list[dict[str, Any]] | None = None,
) -> Progress:
    """Pretrain ``model`` (in place) with CPC on ``train``, validating on ``val``; saves it to
    ``out/model``. ``workers``: DataLoader background processes. ``records``: the manifest
    entries of the pretraining records (``Corpus.records()``), written to
    ``out/model/manifest.json`` so that fine-tuning refuses to evaluate on them."""
    config = config or CPCConfig()
    options = RunOptions(seed, precision, workers, checkpoint_every_steps,
                         checkpoint_every_minutes, progress_bar, records)  # fmt: skip
    settings = {"objective": "cpc", "train": split_fingerprint(train),
                "val": split_fingerprint(val), "config": dataclasses.asdict(config)}  # fmt: skip

    def objective(device: torch.device, autocast: Autocast) -> CPCObjective:
        return CPCObjective(model, train, val, config=config, seed=seed, device=device,
                            autocast=autocast, workers=workers)  # fmt: skip

    return run_pretraining(model, out, settings, objective, options)
