"""``pretrain_w2v``: one W2V+CMSC+RLM pretraining run to RUN_DIR/{config.json, log.jsonl,
checkpoint/, model/}; ``model/`` holds the encoder (the project's model folder), its
``pretraining_head.safetensors`` (to continue pretraining) and ``manifest.json``. Running the
same call again resumes it; a folder made with another configuration is refused."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ecgfoundry.adapt.data import Split
from ecgfoundry.atomic import json_default
from ecgfoundry.engine import Engine, EpochLog, JsonlLog, Progress, autocast_dtype, claim_run_dir
from ecgfoundry.engine import distributed as dist
from ecgfoundry.engine.precision import Precision
from ecgfoundry.models.io import model_description, model_fingerprint, save_model
from ecgfoundry.models.wav2vec2 import Wav2Vec2ECG
from ecgfoundry.pretrain.leakage import write_manifest
from ecgfoundry.pretrain.run import RUN_FORMAT, split_fingerprint
from ecgfoundry.pretrain.w2v import (
    W2VCMSCRLMObjective,
    W2VConfig,
    W2VPretrainingHead,
    save_pretraining_head,
)


def _digest(chunks: list[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return f"sha256:{digest.hexdigest()[:16]}"


def head_description(head: W2VPretrainingHead | None) -> dict[str, Any] | None:
    """What identifies a starting head: its sizes and a hash of its tensors (None: new)."""
    if head is None:
        return None
    chunks = [f"{k}\0{tuple(v.shape)}\n".encode() + v.detach().cpu().float().numpy().tobytes()
              for k, v in sorted(head.state_dict().items())]  # fmt: skip
    return {"config": dataclasses.asdict(head.config), "weights": _digest(chunks)}


def patients_fingerprint(patients: Any) -> str | None:
    """A hash of the patient ids per row (None: the record ids pair segments)."""
    if patients is None:
        return None
    return _digest([str(np.asarray(patients).tolist()).encode()])


def pretrain_w2v(
    model: Wav2Vec2ECG,
    train: Split,
    val: Split,
    out: str | Path,
    *,
    config: W2VConfig | None = None,
    head: W2VPretrainingHead | None = None,
    seed: int = 0,
    precision: Precision = "auto",
    workers: int = 0,
    checkpoint_every_steps: int | None = None,
    checkpoint_every_minutes: float | None = None,
    progress_bar: bool = True,
    records: list[dict[str, Any]] | None = None,
    patients_train: Any = None,
    patients_val: Any = None,
) -> Progress:
    """Pretrain ``model`` (in place) with W2V+CMSC+RLM on ``train``, validating on ``val``;
    saves it to ``out/model`` with the pretraining head beside it. ``head``: continue one
    (:func:`~ecgfoundry.pretrain.w2v.load_pretraining_head`,
    :func:`~ecgfoundry.pretrain.w2v.convert_pretraining_head`; None: a new head).
    ``patients_train`` / ``patients_val``: a patient id per split row (``Corpus.patient_ids``;
    None: the record ids). ``records``: the manifest entries (``Corpus.records()``), written to
    ``out/model/manifest.json``. ``workers``: DataLoader background processes."""
    config = config or W2VConfig()
    out = Path(out)
    device = dist.setup()
    run_config = {
        "format": RUN_FORMAT, "objective": "w2v-cmsc-rlm", "model": model_description(model),
        "model_weights": model_fingerprint(model), "head": head_description(head),
        "train": split_fingerprint(train), "val": split_fingerprint(val),
        "patients": {"train": patients_fingerprint(patients_train),
                     "val": patients_fingerprint(patients_val)},
        "seed": seed, "precision": str(autocast_dtype(precision, device) or "float32"),
        "world_size": dist.world(), "config": dataclasses.asdict(config),
    }  # fmt: skip
    claim_run_dir(out, json.loads(json.dumps(run_config, default=json_default)),
                  write=dist.is_main())  # fmt: skip
    dist.barrier()
    log = JsonlLog(out / "log.jsonl") if dist.is_main() else EpochLog()
    engine = Engine(out, seed=seed, device=device, precision=precision, log=log,
                    progress_bar=progress_bar, checkpoint_every_steps=checkpoint_every_steps,
                    checkpoint_every_minutes=checkpoint_every_minutes)  # fmt: skip
    objective = W2VCMSCRLMObjective(
        model, train, val, head=head, patients_train=patients_train, patients_val=patients_val,
        config=config, seed=seed, device=device, autocast=engine.autocast, workers=workers,
    )  # fmt: skip
    progress = engine.fit(objective)
    if dist.is_main():
        save_model(model, out / "model")
        save_pretraining_head(objective.head, out / "model")
        if records is not None:
            write_manifest(out / "model", records)
    dist.barrier()
    dist.cleanup()
    return progress
