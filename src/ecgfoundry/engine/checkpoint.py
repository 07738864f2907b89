"""Training checkpoints: written atomically, at epoch ends and every N steps or minutes within
an epoch; loaded without unpickling.

A checkpoint folder holds ``model.safetensors`` (current weights), ``best.safetensors`` (the
best weights of the current stage), ``optimizer.pt`` (optimizer and scheduler state: tensors
and numbers only, so ``weights_only=True`` loads it), ``rng.safetensors`` (every process's
random generator states, ``rank<N>.<generator>``, taken mid-epoch so that each process of a
resumed epoch draws the same dropout masks as before) and
``state.json`` (where training is).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ecgfoundry.atomic import atomic_dir, recover_dir
from ecgfoundry.models.io import CheckpointError, load_torch_checkpoint


@dataclass
class Progress:
    """Where training stands: the next stage, epoch and batch to run; the stage's best so far;
    the running loss of a part-finished epoch; the history of finished epochs."""

    stage: int = 0
    epoch: int = 0
    batch: int = 0  # batches of ``epoch`` already run (> 0 only in a mid-epoch checkpoint)
    step: int = 0
    epoch_loss: float = 0.0  # sum of (batch loss x batch size) over those batches
    epoch_logs: dict[str, float] = field(default_factory=dict)  # the same for each logged value
    epoch_seen: int = 0
    epoch_seconds: float = 0.0
    best_metric: float | None = None
    best_epoch: int = -1
    patience_used: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    # what was trained (:meth:`Engine.fingerprint`); None in checkpoints written before it was kept
    fingerprint: dict[str, Any] | None = None


def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def rng_state() -> dict[str, torch.Tensor]:
    """torch's (and CUDA's) generator states and numpy's legacy global state, as tensors."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    assert name == "MT19937"
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
        "numpy_rest": torch.tensor([pos, has_gauss, gauss], dtype=torch.float64),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def rank_rng_state(saved: dict[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor]:
    """One process's generator states from a checkpoint's ``rng.safetensors`` (a checkpoint
    written before states were kept per process holds one, unprefixed: the main process's)."""
    if not any(k.startswith("rank") for k in saved):
        return saved
    prefix = f"rank{rank}."
    mine = {k[len(prefix) :]: v for k, v in saved.items() if k.startswith(prefix)}
    if not mine:
        raise CheckpointError("rng.safetensors", f"no generator states for process {rank}")
    return mine


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch"])
    pos, has_gauss, gauss = state["numpy_rest"].tolist()
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, int(pos), int(has_gauss), float(gauss)))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any,
    best: dict[str, torch.Tensor] | None,
    progress: Progress,
    rng: list[dict[str, torch.Tensor]] | None = None,
) -> None:
    """Replace ``folder`` with this state, atomically (a crash leaves the previous one).
    ``rng``: every process's generator states (:func:`rng_state`), for a mid-epoch save."""
    with atomic_dir(folder) as tmp:
        save_file(_tensors(model.state_dict()), str(tmp / "model.safetensors"))
        if best is not None:
            save_file(_tensors(best), str(tmp / "best.safetensors"))
        if optimizer is not None:
            states = {"optimizer": optimizer.state_dict()}
            if scheduler is not None:
                states["scheduler"] = scheduler.state_dict()
            torch.save(states, tmp / "optimizer.pt")
        if progress.batch:
            states = rng if rng is not None else [rng_state()]
            flat = {f"rank{r}.{k}": v for r, state in enumerate(states) for k, v in state.items()}
            save_file(flat, str(tmp / "rng.safetensors"))
        (tmp / "state.json").write_text(json.dumps(progress.__dict__, indent=1))


@dataclass
class Checkpoint:
    model: dict[str, torch.Tensor]
    best: dict[str, torch.Tensor] | None
    optimizer: dict[str, Any] | None
    rng: dict[str, torch.Tensor] | None
    progress: Progress


def load_checkpoint(folder: Path) -> Checkpoint | None:
    """The checkpoint in ``folder``, or None if there is none."""
    recover_dir(folder)
    if not (folder / "state.json").is_file():
        return None
    try:
        progress = Progress(**json.loads((folder / "state.json").read_text()))
        best, optimizer, rng = (folder / n for n in ("best.safetensors", "optimizer.pt",
                                                      "rng.safetensors"))  # fmt: skip
        return Checkpoint(
            model=load_file(str(folder / "model.safetensors")),
            best=load_file(str(best)) if best.exists() else None,
            optimizer=load_torch_checkpoint(optimizer) if optimizer.exists() else None,
            rng=load_file(str(rng)) if rng.exists() else None,
            progress=progress,
        )
    except (OSError, ValueError, TypeError) as error:
        raise CheckpointError(
            folder, f"unreadable training checkpoint ({error}); delete it to start the run over"
        ) from error
