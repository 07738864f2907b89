"""Supervised adaptation as an objective of the engine: every strategy's recipe (scratch,
linear probe, finetune, LP-FT, post-train, the benchmark's supervised training).

Head-only stages (linear probing) embed the training and validation windows once with the
frozen backbone in eval mode and train the head on those features: the backbone cannot change
and each probing epoch costs almost nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import fields
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ecgfoundry.adapt.data import Split, TaskData, window_loader
from ecgfoundry.adapt.recipe import Recipe, Stage
from ecgfoundry.engine import distributed as dist
from ecgfoundry.engine.objective import StagePlan, StageSetup, StepOutput, batch_starts
from ecgfoundry.engine.seeding import CROPS, SHUFFLE, epoch_rng
from ecgfoundry.evaluate.metrics import aggregate_windows, auroc_per_label, macro
from ecgfoundry.models.base import ECGModel

MONITOR = "val_macro_auroc"


Autocast = Callable[[], AbstractContextManager[None]]


def _no_autocast() -> AbstractContextManager[None]:
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def forward_windows(
    fn: Callable[[Tensor], Tensor],
    data: TaskData,
    split: Split,
    *,
    batch_size: int,
    device: torch.device,
    autocast: Autocast = _no_autocast,
    workers: int = 0,
) -> tuple[Tensor, np.ndarray]:
    """``fn`` on every evaluation window of ``split`` (shared out across processes, gathered
    back in order); returns (outputs [W, ...], owner [W])."""
    owner, offsets = data.eval_windows(split)
    mine = np.arange(dist.rank(), len(owner), dist.world())
    if len(mine) == 0:  # more processes than windows: learn the output shape from one window
        mine = np.arange(1)
    keys = list(zip(owner[mine].tolist(), offsets[mine].tolist(), strict=True))
    batches = [keys[i : i + batch_size] for i in range(0, len(keys), batch_size)]
    outputs = []
    for batch in window_loader(split, data.window, batches, workers=workers, device=device):
        with autocast():
            outputs.append(fn(batch["x"].to(device, non_blocking=True)).float())
    local = torch.cat(outputs)[: len(range(dist.rank(), len(owner), dist.world()))]
    return dist.gather_rows(local, len(owner)).cpu(), owner


def predict_split(
    model: ECGModel,
    data: TaskData,
    split: Split,
    recipe: Recipe,
    device: torch.device,
    autocast: Autocast | None = None,
) -> np.ndarray:
    """Per-record probabilities [R, labels], windows aggregated by ``recipe.eval_aggregate``."""
    model.eval()
    logits, owner = forward_windows(model, data, split, batch_size=recipe.batch_size,
                                    device=device, autocast=autocast or _no_autocast)  # fmt: skip
    probabilities = torch.sigmoid(logits).numpy()
    return aggregate_windows(probabilities, owner, len(split), recipe.eval_aggregate)


def _set_trainable(model: ECGModel, stage: Stage) -> list[dict[str, Any]]:
    """Freeze or unfreeze, and return the optimizer's parameter groups."""
    head = {id(p) for p in model.head.parameters()}
    for p in model.parameters():
        p.requires_grad = stage.train == "all" or id(p) in head  # head, attention: the head
    groups = [{"params": list(model.head.parameters()), "lr": stage.head_lr or stage.lr}]
    if stage.train == "all":
        body = [p for p in model.parameters() if id(p) not in head]
        groups.insert(0, {"params": body, "lr": stage.lr})
    return groups


def plan_for(stage: Stage, *, grad_clip: float | None) -> StagePlan:
    """The engine's plan of a recipe stage: every field the two share is carried over (so none
    can be dropped on the way), validation macro AUROC is monitored upwards."""
    shared = {f.name for f in fields(StagePlan)} & {f.name for f in fields(Stage)}
    values = {name: getattr(stage, name) for name in shared}
    values["betas"] = tuple(stage.betas)
    return StagePlan(**values, monitor=MONITOR, mode="max", grad_clip=grad_clip)


class SupervisedObjective:
    """Multi-label BCE on a task's training split; fold-9 macro AUROC monitored.

    ``autocast`` and ``device`` come from the engine (``engine.autocast``, ``engine.device``).
    """

    def __init__(
        self,
        model: ECGModel,
        recipe: Recipe,
        data: TaskData,
        *,
        seed: int,
        device: torch.device,
        autocast: Autocast = _no_autocast,
        workers: int = 0,
    ):
        self.model = model.to(device)
        self.recipe, self.data, self.seed, self.device = recipe, data, seed, device
        self.autocast, self.workers = autocast, workers
        self.loss = nn.BCEWithLogitsLoss(pos_weight=self._pos_weight(), reduction="sum")
        self._features: dict[str, tuple[Tensor, np.ndarray]] | None = None

    def _pos_weight(self) -> Tensor | None:
        if not self.recipe.pos_weight:
            return None
        y = self.data.train.y
        positives = y.sum(axis=0)
        weight = (len(y) - positives) / np.maximum(positives, 1)
        return torch.tensor(np.clip(weight, 1.0, 100.0), dtype=torch.float32, device=self.device)

    def stages(self) -> list[StagePlan]:
        return [plan_for(s, grad_clip=self.recipe.grad_clip) for s in self.recipe.stages]

    def setup_stage(self, index: int) -> StageSetup:
        stage = self.recipe.stages[index]
        self.model.set_drop_path_rate(stage.drop_path_rate)
        groups = _set_trainable(self.model, stage)
        self._features = None
        size = self.recipe.batch_size
        if self._head_only(index):
            rows = len(self.data.eval_windows(self.data.train)[0])
            return StageSetup(groups, len(batch_starts(rows, size)), distribute=None)
        steps = len(batch_starts(len(self.data.train), size, dist.world()))
        return StageSetup(groups, steps, distribute=self.model)

    def _head_only(self, index: int) -> bool:
        return self.recipe.stages[index].train in ("head", "attention")

    def _frozen(self, x: Tensor) -> Tensor:
        """What a head-only stage's head reads from the frozen backbone: the embedding, or,
        for an attention head, the (reduced) per-step features."""
        if self.model.config.head == "attention":
            return self.model.head.reduce(self.model.forward_sequence(x))
        return self.model.forward_features(x)

    def _head(self, features: Tensor) -> Tensor:
        if self.model.config.head == "attention":
            return self.model.head.classify(features)
        return self.model.head(features)

    def features(self) -> dict[str, tuple[Tensor, np.ndarray]]:
        """Frozen-backbone outputs of every train and validation window (once a stage)."""
        if self._features is None:
            self.model.eval()
            self._features = {}
            for name, split in (("train", self.data.train), ("val", self.data.val)):
                feats, owner = forward_windows(
                    self._frozen, self.data, split,
                    batch_size=self.recipe.batch_size, device=self.device,
                    autocast=self.autocast, workers=self.workers,
                )  # fmt: skip
                self._features[name] = (feats.to(self.device), owner)
        return self._features

    def train_batches(self, index: int, epoch: int, skip: int) -> Iterator[Any]:
        order = epoch_rng(self.seed, index, epoch, SHUFFLE)
        size = self.recipe.batch_size
        if self._head_only(index):
            feats, owner = self.features()["train"]
            y = torch.from_numpy(self.data.train.y).to(self.device)[torch.from_numpy(owner)]
            rows = order.permutation(len(feats))
            for start in batch_starts(len(rows), size)[skip:]:
                pick = torch.from_numpy(rows[start : start + size])
                yield {"features": feats[pick], "y": y[pick], "size": len(pick)}
            return
        rows = order.permutation(len(self.data.train))
        offsets = self.data.train_crops(rows, epoch_rng(self.seed, index, epoch, CROPS))
        keys = list(zip(rows.tolist(), offsets.tolist(), strict=True))
        batches, sizes = [], []
        for start in batch_starts(len(keys), size, dist.world()):
            batch = keys[start : start + size]
            batches.append(batch[dist.rank() :: dist.world()])
            sizes.append(len(batch))
        loader = window_loader(self.data.train, self.data.window, batches[skip:],
                               workers=self.workers, device=self.device)  # fmt: skip
        for batch, whole in zip(loader, sizes[skip:], strict=True):
            yield batch | {"size": whole}

    def training_step(self, net: nn.Module, batch: dict[str, Any], index: int) -> StepOutput:
        y = batch["y"].to(self.device, non_blocking=True)
        if self._head_only(index):
            logits = self._head(batch["features"])
            loss = self.loss(logits.float(), y) / (batch["size"] * y.shape[1])
            return StepOutput(loss, batch["size"])
        logits = net(batch["x"].to(self.device, non_blocking=True))
        # this process's sum / global batch x world: DDP's gradient mean = whole batch
        loss = self.loss(logits.float(), y) * dist.world() / (batch["size"] * y.shape[1])
        return StepOutput(loss, batch["size"])

    @torch.no_grad()
    def predict_val(self, index: int) -> np.ndarray:
        """Fold-9 probabilities per record, as this stage trains."""
        if self._head_only(index):
            feats, owner = self.features()["val"]
            self.model.head.eval()
            probabilities = torch.sigmoid(self._head(feats).float()).cpu().numpy()
            return aggregate_windows(probabilities, owner, len(self.data.val),
                                     self.recipe.eval_aggregate)  # fmt: skip
        return predict_split(self.model, self.data, self.data.val, self.recipe, self.device,
                             self.autocast)  # fmt: skip

    def evaluate(self, index: int) -> dict[str, float]:
        probabilities = self.predict_val(index)
        return {MONITOR: macro(auroc_per_label(self.data.val.y, probabilities))}
