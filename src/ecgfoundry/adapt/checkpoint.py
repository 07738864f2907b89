"""Training checkpoints: written atomically at each epoch end, loaded without unpickling.

A checkpoint folder holds ``model.safetensors`` (current weights), ``best.safetensors`` (the
best weights of the current stage), ``optimizer.pt`` (optimizer and scheduler state: tensors
and numbers only, so ``weights_only=True`` loads it) and ``state.json`` (where training is).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ecgfoundry.atomic import atomic_dir, recover_dir
from ecgfoundry.models.io import CheckpointError, load_torch_checkpoint


@dataclass
class Progress:
    """Where training stands: the next stage/epoch to run and the stage's best so far."""

    stage: int = 0
    epoch: int = 0
    step: int = 0
    best_metric: float = float("-inf")
    best_epoch: int = -1
    patience_used: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def save_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any,
    best: dict[str, torch.Tensor] | None,
    progress: Progress,
) -> None:
    with atomic_dir(folder) as tmp:
        save_file(_tensors(model.state_dict()), str(tmp / "model.safetensors"))
        if best is not None:
            save_file(_tensors(best), str(tmp / "best.safetensors"))
        if optimizer is not None:
            states = {"optimizer": optimizer.state_dict()}
            if scheduler is not None:
                states["scheduler"] = scheduler.state_dict()
            torch.save(states, tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps(progress.__dict__, indent=1))


@dataclass
class Checkpoint:
    model: dict[str, torch.Tensor]
    best: dict[str, torch.Tensor] | None
    optimizer: dict[str, Any] | None
    progress: Progress


def load_checkpoint(folder: Path) -> Checkpoint | None:
    """The checkpoint in ``folder``, or None if there is none."""
    recover_dir(folder)
    if not (folder / "state.json").is_file():
        return None
    try:
        progress = Progress(**json.loads((folder / "state.json").read_text()))
        best = folder / "best.safetensors"
        optimizer = folder / "optimizer.pt"
        return Checkpoint(
            model=load_file(str(folder / "model.safetensors")),
            best=load_file(str(best)) if best.exists() else None,
            optimizer=load_torch_checkpoint(optimizer) if optimizer.exists() else None,
            progress=progress,
        )
    except (OSError, ValueError, TypeError) as error:
        raise CheckpointError(
            folder, f"unreadable training checkpoint ({error}); delete it to start the run over"
        ) from error
