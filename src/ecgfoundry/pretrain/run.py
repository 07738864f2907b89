"""``pretrain_cpc``: one CPC pretraining run to RUN_DIR/{config.json, log.jsonl, checkpoint/,
model/}. Running the same call again resumes it; a folder made with another configuration is
refused, never silently reused."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from ecgfoundry.adapt.data import Split
from ecgfoundry.atomic import json_default
from ecgfoundry.engine import Engine, EpochLog, JsonlLog, Progress, autocast_dtype, claim_run_dir
from ecgfoundry.engine import distributed as dist
from ecgfoundry.engine.precision import Precision
from ecgfoundry.models.io import model_description, model_fingerprint, save_model
from ecgfoundry.models.s4 import S4Model
from ecgfoundry.pretrain.cpc import CPCConfig, CPCObjective
from ecgfoundry.pretrain.leakage import write_manifest

RUN_FORMAT = 1


def split_fingerprint(split: Split) -> dict[str, Any]:
    """What identifies a split's records: their number, the cache's shape and a hash of the
    record ids and cache rows."""
    digest = hashlib.sha256()
    for array in (split.ids, split.rows):
        digest.update(str(array.tolist()).encode())
    return {"records": len(split), "shape": list(split.signals.shape),
            "ids": f"sha256:{digest.hexdigest()[:16]}"}  # fmt: skip


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
    out = Path(out)
    device = dist.setup()
    run_config = {
        "format": RUN_FORMAT, "objective": "cpc", "model": model_description(model),
        "model_weights": model_fingerprint(model), "train": split_fingerprint(train),
        "val": split_fingerprint(val), "seed": seed,
        "precision": str(autocast_dtype(precision, device) or "float32"),
        "world_size": dist.world(), "config": dataclasses.asdict(config),
    }  # fmt: skip
    claim_run_dir(out, json.loads(json.dumps(run_config, default=json_default)),
                  write=dist.is_main())  # fmt: skip
    dist.barrier()
    log = JsonlLog(out / "log.jsonl") if dist.is_main() else EpochLog()
    engine = Engine(out, seed=seed, device=device, precision=precision, log=log,
                    progress_bar=progress_bar, checkpoint_every_steps=checkpoint_every_steps,
                    checkpoint_every_minutes=checkpoint_every_minutes)  # fmt: skip
    objective = CPCObjective(model, train, val, config=config, seed=seed, device=device,
                             autocast=engine.autocast, workers=workers)  # fmt: skip
    progress = engine.fit(objective)
    if dist.is_main():
        save_model(model, out / "model")
        if records is not None:
            write_manifest(out / "model", records)
    dist.barrier()
    dist.cleanup()
    return progress
