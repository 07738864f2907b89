"""What every pretraining objective's configuration holds: batch, optimiser, schedule and
stopping, their validation, and the one engine stage they make."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ecgfoundry.engine.objective import Schedule, StagePlan

if TYPE_CHECKING:
    from ecgfoundry.adapt.data import Split

MONITOR = "val_loss"


@dataclass(frozen=True)
class PretrainSettings:
    """Settings shared by the pretraining objectives (each subclass sets its own defaults).

    ``lr``: the objective's base learning rate. ``window``: samples per model input (None: the
    model's input length). ``restore_best``: end with the lowest-``val_loss`` epoch's weights
    (the published checkpoints are the last epoch's). ``patience``: early stopping on
    ``val_loss``, in evaluations (None: off).
    """

    batch_size: int = 64
    epochs: int = 200
    lr: float = 1e-3
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    weight_decay: float = 0.0
    schedule: Schedule = "constant"
    warmup_epochs: float = 0.0
    patience: int | None = None
    eval_every: int = 1
    restore_best: bool = False
    grad_clip: float | None = None
    window: int | None = None

    def __post_init__(self) -> None:
        self._at_least(1, "batch_size", "eval_every")
        self._at_least(0, "epochs")
        self._positive("lr")
        if self.weight_decay < 0:
            self._refuse("weight_decay", "must be >= 0")
        if self.window is not None and self.window < 1:
            self._refuse("window", "must be >= 1 or None")

    def stage_plan(self, **optimizer: Any) -> StagePlan:
        """The one stage the engine runs; ``optimizer``: further optimiser settings (betas)."""
        return StagePlan(name="pretrain", epochs=self.epochs, optimizer=self.optimizer,
                         weight_decay=self.weight_decay, schedule=self.schedule,
                         warmup_epochs=self.warmup_epochs, patience=self.patience,
                         monitor=MONITOR, mode="min", restore_best=self.restore_best,
                         eval_every=self.eval_every, grad_clip=self.grad_clip,
                         **optimizer)  # fmt: skip

    def crop_window(self, model_samples: int, train: Split, val: Split) -> int:
        """The samples each crop holds (``window``, else ``model_samples``); refuses an empty
        split, or one whose records are shorter than that."""
        window = self.window or model_samples
        for name, split in (("train", train), ("val", val)):
            if len(split) == 0:
                raise ValueError(f"{name}: no records")
            if split.signals.shape[-1] < window:
                raise ValueError(f"window: {window} samples is longer than the {name} "
                                 f"records ({split.signals.shape[-1]} samples)")  # fmt: skip
        return window

    def _at_least(self, floor: int, *names: str) -> None:
        for name in names:
            if getattr(self, name) < floor:
                self._refuse(name, f"must be >= {floor}")

    def _positive(self, *names: str) -> None:
        for name in names:
            if not getattr(self, name) > 0:
                self._refuse(name, "must be > 0")

    def _refuse(self, name: str, problem: str) -> None:
        raise ValueError(f"{type(self).__name__}: {name} {problem}, got {getattr(self, name)!r}")
