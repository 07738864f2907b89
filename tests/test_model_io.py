"""Safe checkpoint loading: weights only by default, numpy scalars allowed, pickles refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from ecgfoundry.models.io import (
    CheckpointError,
    UnsafeCheckpointError,
    load_state_dict_strict,
    load_torch_checkpoint,
    read_model_folder,
)


class Exploit:
    """A pickle payload: unpickling it would create a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "payload": Exploit(marker)}, path)
    with pytest.raises(
        UnsafeCheckpointError, match=r"evil\.pt: .*it needs posix\.system.*--allow-unsafe"
    ):
        load_torch_checkpoint(path)
    assert not marker.exists()


def test_plain_and_numpy_scalar_checkpoints_load(tmp_path: Path) -> None:
    import numpy as np

    path = tmp_path / "ok.pth"
    torch.save({"state_dict": {"w": torch.ones(3)}, "val_auroc": np.float64(0.9), "epoch": 3}, path)
    loaded = load_torch_checkpoint(path)
    assert loaded["val_auroc"] == pytest.approx(0.9) and torch.equal(
        loaded["state_dict"]["w"], torch.ones(3)
    )


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="file not found"):
        load_torch_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pt: "):
        load_torch_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match=r"config\.json: not found"):
        read_model_folder(tmp_path)


def test_a_run_folder_points_to_its_model(tmp_path: Path) -> None:
    """Given a finetune run folder (its own config.json, the model in model/), the error names
    the model folder to use."""
    from ecgfoundry.models import create_model, save_model
    from ecgfoundry.models.registry import resolve_model

    save_model(create_model("net1d-tiny"), tmp_path / "run" / "model")
    (tmp_path / "run" / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"run: a run folder, not a model folder: its "
                       r"model is .*run/model$"):  # fmt: skip
        resolve_model(tmp_path / "run")


def test_strict_loading_lists_every_mismatch() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    state = dict(model.state_dict())
    state.pop("1.bias")
    state["0.weight"] = torch.zeros(5, 3)
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        load_state_dict_strict(model, state, "ckpt.pt")
    message = str(info.value)
    assert message.startswith("ckpt.pt: checkpoint does not match the model")
    assert "1 missing: 1.bias" in message and "1 unexpected: extra.weight" in message
    assert "0.weight: checkpoint (5, 3) vs model (4, 3)" in message
