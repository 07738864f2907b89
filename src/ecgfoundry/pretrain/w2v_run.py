"""``pretrain_w2v``: one W2V+CMSC+RLM pretraining run to RUN_DIR/{config.json, log.jsonl,
checkpoint/, model/}; ``model/`` holds the encoder (the project's model folder), its
``pretraining_head.safetensors`` (to continue pretraining) and ``manifest.json``. Running the
same call again resumes it; a folder made with another configuration is refused."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgfoundry.adapt.data import Split
from ecgfoundry.engine import Progress
from ecgfoundry.engine.precision import Precision
from ecgfoundry.models.wav2vec2 import Wav2Vec2ECG
from ecgfoundry.pretrain.cpc import Autocast
from ecgfoundry.pretrain.run import RunOptions, run_pretraining, split_fingerprint
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
    options = RunOptions(seed, precision, workers, checkpoint_every_steps,
                         checkpoint_every_minutes, progress_bar, records)  # fmt: skip
    settings = {
        "objective": "w2v-cmsc-rlm", "head": head_description(head),
        "train": split_fingerprint(train), "val": split_fingerprint(val),
        "patients": {"train": patients_fingerprint(patients_train),
                     "val": patients_fingerprint(patients_val)},
        "config": dataclasses.asdict(config),
    }  # fmt: skip

    def objective(device: torch.device, autocast: Autocast) -> W2VCMSCRLMObjective:
        return W2VCMSCRLMObjective(
            model, train, val, head=head, patients_train=patients_train,
            patients_val=patients_val, config=config, seed=seed, device=device,
            autocast=autocast, workers=workers,
        )  # fmt: skip

    def save_head(objective: W2VCMSCRLMObjective, folder: Path) -> None:
        save_pretraining_head(objective.head, folder)

    return run_pretraining(model, out, settings, objective, options, save_head)
