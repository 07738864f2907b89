"""The one training loop: runs any recipe's stages, resumes from the last checkpoint.

Determinism: each epoch's shuffling, crops and dropout/drop-path randomness are seeded by
(seed, stage, epoch), and checkpoints are taken at epoch ends, so a run killed at any point
and started again finishes with the same weights as an uninterrupted one (on CPU).

Head-only stages (linear probing) embed the training and validation windows once with the
frozen backbone in eval mode and train the head on those features: the backbone cannot change
and each probing epoch costs almost nothing.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ecgfoundry.adapt import distributed as dist
from ecgfoundry.adapt.checkpoint import Progress, load_checkpoint, save_checkpoint
from ecgfoundry.adapt.data import Split, TaskData
from ecgfoundry.adapt.recipe import Recipe, Stage
from ecgfoundry.errors import ReportedError
from ecgfoundry.evaluate.metrics import aggregate_windows, auroc_per_label, macro
from ecgfoundry.models.base import ECGModel


class TrainingError(RuntimeError, ReportedError):
    """Training stopped (non-finite loss, out of memory); the last checkpoint is intact."""


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bfloat16 where it pays (CUDA, or CPUs with AVX512-BF16/AMX), else None (float32)."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return torch.bfloat16 if (" avx512_bf16" in flags or " amx_bf16" in flags) else None


def _rng(seed: int, stage: int, epoch: int, stream: int) -> np.random.Generator:
    """Independent random streams per (seed, stage, epoch): 0 shuffles, 1 crops."""
    return np.random.default_rng([seed, stage, epoch, stream])


def _torch_seed(seed: int, stage: int, epoch: int) -> int:
    return int(_rng(seed, stage, epoch, 2).integers(2**62))


def _is_out_of_memory(error: BaseException) -> bool:
    """CUDA raises OutOfMemoryError; a failed CPU allocation is a plain RuntimeError."""
    text = str(error)
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError)
        and ("out of memory" in text or "can't allocate memory" in text)
    )


def _set_trainable(model: ECGModel, stage: Stage) -> list[dict[str, Any]]:
    """Freeze or unfreeze, and return the optimizer's parameter groups."""
    head = {id(p) for p in model.head.parameters()}
    for p in model.parameters():
        p.requires_grad = stage.train == "all" or id(p) in head
    groups = [{"params": list(model.head.parameters()), "lr": stage.head_lr or stage.lr}]
    if stage.train == "all":
        body = [p for p in model.parameters() if id(p) not in head]
        groups.insert(0, {"params": body, "lr": stage.lr})
    return groups


def _optimizer(stage: Stage, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    kind = torch.optim.AdamW if stage.optimizer == "adamw" else torch.optim.Adam
    return kind(groups, lr=stage.lr, weight_decay=stage.weight_decay)


def _scheduler(stage: Stage, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Any:
    warmup = stage.warmup_epochs * steps_per_epoch
    total = max(stage.epochs * steps_per_epoch, 1)

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if stage.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min((step - warmup) / max(total - warmup, 1), 1)))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.no_grad()
def forward_windows(
    fn: Callable[[Tensor], Tensor],
    data: TaskData,
    split: Split,
    *,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype | None = None,
) -> tuple[Tensor, np.ndarray]:
    """``fn`` on every evaluation window of ``split`` (shared out across processes, gathered
    back in order); returns (outputs [W, ...], owner [W])."""
    owner, offsets = data.eval_windows(split)
    mine = np.arange(dist.rank(), len(owner), dist.world())
    outputs = []
    for start in range(0, len(mine), batch_size):
        index = mine[start : start + batch_size]
        x = torch.from_numpy(data.batch(split, owner[index], offsets[index])).to(device)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            outputs.append(fn(x).float())
    if not outputs:  # more processes than windows: learn the output shape from one window
        one = torch.from_numpy(data.batch(split, owner[:1], offsets[:1])).to(device)
        outputs.append(fn(one).float()[:0])
    local = dist.gather_rows(torch.cat(outputs), len(owner))
    return local.cpu(), owner


def predict_split(
    model: ECGModel, data: TaskData, split: Split, recipe: Recipe, device: torch.device
) -> np.ndarray:
    """Per-record probabilities [R, labels], windows aggregated by ``recipe.eval_aggregate``."""
    model.eval()
    dtype = autocast_dtype(recipe.precision, device)
    logits, owner = forward_windows(model, data, split, batch_size=recipe.batch_size,
                                    device=device, dtype=dtype)  # fmt: skip
    probabilities = torch.sigmoid(logits).numpy()
    return aggregate_windows(probabilities, owner, len(split), recipe.eval_aggregate)


def _val_auroc(probabilities: np.ndarray, split: Split) -> float:
    return macro(auroc_per_label(split.y, probabilities))


class _Reporter:
    """A progress bar on an interactive terminal (loss, samples/s, last validation macro
    AUROC); silent otherwise (the JSONL log has everything)."""

    def __init__(self, enabled: bool):
        self.bar, self.metric, self.start, self.seen = None, float("nan"), 0.0, 0
        if enabled and dist.is_main() and sys.stderr.isatty():
            from rich.progress import Progress as Bar

            self.bar = Bar(*Bar.get_default_columns(), "{task.fields[info]}", transient=True)
            self.bar.start()

    def epoch(self, title: str, total: int) -> Any:
        self.start, self.seen = time.perf_counter(), 0
        return self.bar.add_task(title, total=total, info="") if self.bar else None

    def update(self, task: Any, advance: int, loss: float) -> None:
        self.seen += advance
        if self.bar is not None:
            rate = self.seen / max(time.perf_counter() - self.start, 1e-9)
            info = f"loss {loss:.4f}  {rate:.0f} samples/s  val macro AUROC {self.metric:.4f}"
            self.bar.update(task, advance=advance, info=info)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class EpochLog:
    """Where a Trainer reports each finished epoch. ``restart`` receives the history of the
    epochs already run (empty unless resuming) before the first new record; this base class
    keeps nothing (processes other than the main one, or Python use without a log)."""

    def restart(self, history: list[dict[str, Any]]) -> None:
        """Start over from ``history``: the records of a resumed run's finished epochs."""

    def __call__(self, record: dict[str, Any]) -> None:
        """Record one finished epoch."""


class Trainer:
    """Runs a recipe on a model and task data, checkpointing into ``run_dir/checkpoint``."""

    def __init__(
        self,
        model: ECGModel,
        recipe: Recipe,
        data: TaskData,
        run_dir: Path,
        *,
        seed: int,
        device: torch.device,
        log: EpochLog | None = None,
        progress_bar: bool = True,
    ):
        self.model = model.to(device)
        self.recipe, self.data, self.seed, self.device = recipe, data, seed, device
        self.log = log if log is not None else EpochLog()
        self.checkpoint_dir = Path(run_dir) / "checkpoint"
        self.dtype = autocast_dtype(recipe.precision, device)
        self.loss = nn.BCEWithLogitsLoss(pos_weight=self._pos_weight(), reduction="sum")
        self.reporter = _Reporter(progress_bar)

    def _pos_weight(self) -> Tensor | None:
        if not self.recipe.pos_weight:
            return None
        y = self.data.train.y
        positives = y.sum(axis=0)
        weight = (len(y) - positives) / np.maximum(positives, 1)
        return torch.tensor(np.clip(weight, 1.0, 100.0), dtype=torch.float32, device=self.device)

    def fit(self) -> Progress:
        """Run (or resume) every stage; the model ends with each stage's best weights."""
        saved = load_checkpoint(self.checkpoint_dir)
        progress = saved.progress if saved else Progress()
        self.log.restart(progress.history)
        if saved is not None:
            self.model.load_state_dict(saved.model)
        try:
            for index in range(progress.stage, len(self.recipe.stages)):
                resume = saved if saved and progress.stage == index else None
                progress = self._stage(index, resume, progress)
                saved = None
            if dist.is_main():  # the position after the last stage: a rerun only evaluates
                save_checkpoint(self.checkpoint_dir, self.model, None, None, None, progress)
        finally:
            self.reporter.close()
        return progress

    def _stage(self, index: int, saved: Any, before: Progress) -> Progress:
        """Run stage ``index`` (resuming from ``saved`` if given) after ``before``."""
        stage = self.recipe.stages[index]
        if stage.epochs == 0:  # a stage switched off (e.g. an ablation)
            return Progress(stage=index + 1, step=before.step, history=before.history)
        self.model.set_drop_path_rate(stage.drop_path_rate)
        groups = _set_trainable(self.model, stage)
        optimizer = _optimizer(stage, groups)
        steps = self._steps_per_epoch(stage)
        scheduler = _scheduler(stage, optimizer, steps)
        progress = Progress(stage=index, step=before.step, history=list(before.history))
        best = None
        if saved is not None:
            progress, best = saved.progress, saved.best
            optimizer.load_state_dict(saved.optimizer["optimizer"])
            scheduler.load_state_dict(saved.optimizer["scheduler"])
        remaining = progress.epoch < stage.epochs
        try:
            features = self._features() if stage.train == "head" and remaining else None
        except RuntimeError as error:
            if _is_out_of_memory(error):
                raise self._out_of_memory(f"stage {stage.name}, computing features") from error
            raise
        net: nn.Module = self.model
        if stage.train == "all" and dist.world() > 1:
            # some parameters may get no gradient (Net1D's unused BatchNorm, layer drop)
            net = nn.parallel.DistributedDataParallel(self.model, find_unused_parameters=True)
        for epoch in range(progress.epoch, stage.epochs):
            start = time.perf_counter()
            torch.manual_seed(_torch_seed(self.seed, index, epoch))
            np.random.seed(_torch_seed(self.seed, index, epoch) % 2**32)  # e.g. SpecAugment masks
            if features is None:
                loss, seen = self._epoch(net, stage, optimizer, scheduler, index, epoch, progress)
                try:
                    probabilities = predict_split(self.model, self.data, self.data.val,
                                                  self.recipe, self.device)  # fmt: skip
                except RuntimeError as error:
                    if _is_out_of_memory(error):
                        raise self._out_of_memory(f"validation after epoch {epoch + 1}") from error
                    raise
            else:
                loss, seen = self._head_epoch(
                    features, optimizer, scheduler, index, epoch, progress
                )
                probabilities = self._head_predict(features)
            metric = _val_auroc(probabilities, self.data.val)
            self.reporter.metric = metric
            improved = metric > progress.best_metric
            if improved:
                progress.best_metric, progress.best_epoch, progress.patience_used = metric, epoch, 0
                best = copy.deepcopy(self.model.state_dict())
            else:
                progress.patience_used += 1
            record = {
                "stage": index, "name": stage.name, "epoch": epoch, "step": progress.step,
                "loss": loss, "val_macro_auroc": metric, "best": improved,
                "lr": [g["lr"] for g in optimizer.param_groups],
                "samples_per_s": seen / (time.perf_counter() - start),
                "seconds": time.perf_counter() - start,
            }  # fmt: skip
            progress.history.append(record)
            progress.epoch = epoch + 1
            stop = stage.patience is not None and progress.patience_used >= stage.patience
            stop = dist.broadcast_flag(stop)
            if stop or progress.epoch == stage.epochs:
                progress.epoch = stage.epochs  # the stage is done
            if dist.is_main():
                save_checkpoint(
                    self.checkpoint_dir, self.model, optimizer, scheduler, best, progress
                )
                self.log(record)
            dist.barrier()
            if stop:
                break
        if best is not None:
            self.model.load_state_dict(best)
        return Progress(stage=index + 1, step=progress.step, history=progress.history)

    def _steps_per_epoch(self, stage: Stage) -> int:
        rows = len(self.data.train) if stage.train == "all" else self._feature_rows()
        return max(math.ceil(rows / self.recipe.batch_size), 1)

    def _feature_rows(self) -> int:
        owner, _ = self.data.eval_windows(self.data.train)
        return len(owner)

    def _check(self, loss: Tensor, where: str) -> None:
        bad = float(not torch.isfinite(loss.detach()).item())
        if dist.all_sum(bad) > 0:  # every process stops together
            raise TrainingError(
                f"non-finite loss at {where}; stopped before updating the weights. The last "
                f"good checkpoint ({self.checkpoint_dir}) is intact: lower the learning rate "
                "or check the data, then run the same command again to resume."
            )

    def _out_of_memory(self, where: str) -> TrainingError:
        return TrainingError(
            f"out of memory at {where}; the last good checkpoint ({self.checkpoint_dir}) is "
            "intact: lower batch_size and run the same command again to resume"
        )

    def _step(self, optimizer: Any, scheduler: Any, loss: Tensor, where: str, params: Any) -> None:
        self._check(loss, where)
        loss.backward()
        if self.recipe.grad_clip:
            nn.utils.clip_grad_norm_(params, self.recipe.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()

    def _epoch(self, net: nn.Module, stage: Stage, optimizer: Any, scheduler: Any, index: int,
               epoch: int, progress: Progress) -> tuple[float, int]:  # fmt: skip
        self.model.train()
        data, size = self.data, self.recipe.batch_size
        order = _rng(self.seed, index, epoch, 0).permutation(len(data.train))
        offsets = data.train_crops(order, _rng(self.seed, index, epoch, 1))
        params = [p for g in optimizer.param_groups for p in g["params"]]
        total, task = 0.0, self.reporter.epoch(f"{stage.name} {epoch + 1}/{stage.epochs}",
                                               len(order))  # fmt: skip
        for start in range(0, len(order), size):
            batch = np.arange(start, min(start + size, len(order)))
            if len(batch) < dist.world():
                continue  # a last batch too small to give every process a row
            mine = batch[dist.rank() :: dist.world()]
            x = torch.from_numpy(data.batch(data.train, order[mine], offsets[mine])).to(self.device)
            y = torch.from_numpy(data.train.y[order[mine]]).to(self.device)
            where = f"stage {stage.name}, epoch {epoch + 1}, step {progress.step + 1}"
            try:
                with torch.autocast(self.device.type, dtype=self.dtype or torch.float32,
                                    enabled=self.dtype is not None):  # fmt: skip
                    logits = net(x)
                # this process's sum / global batch x world: DDP's gradient mean = whole batch
                loss = self.loss(logits.float(), y) * dist.world() / (len(batch) * y.shape[1])
                self._step(optimizer, scheduler, loss, where, params)
            except RuntimeError as error:
                if _is_out_of_memory(error):
                    raise self._out_of_memory(where) from error
                raise
            progress.step += 1
            batch_loss = dist.all_sum(loss.item()) / dist.world()  # the whole batch's mean
            total += batch_loss * len(batch)
            self.reporter.update(task, len(batch), batch_loss)
        return total / len(order), len(order)

    def _features(self) -> dict[str, Any]:
        """Frozen-backbone embeddings of every train and validation window (computed once)."""
        self.model.eval()
        out = {}
        for name, split in (("train", self.data.train), ("val", self.data.val)):
            feats, owner = forward_windows(self.model.forward_features, self.data, split,
                                           batch_size=self.recipe.batch_size, device=self.device,
                                           dtype=self.dtype)  # fmt: skip
            out[name] = (feats.to(self.device), owner)
        return out

    def _head_epoch(self, features: dict[str, Any], optimizer: Any, scheduler: Any, index: int,
                    epoch: int, progress: Progress) -> tuple[float, int]:  # fmt: skip
        feats, owner = features["train"]
        y = torch.from_numpy(self.data.train.y).to(self.device)[torch.from_numpy(owner)]
        order = _rng(self.seed, index, epoch, 0).permutation(len(feats))
        head, size, total = self.model.head, self.recipe.batch_size, 0.0
        head.train()
        for start in range(0, len(order), size):
            rows = torch.from_numpy(order[start : start + size])
            loss = self.loss(head(feats[rows]), y[rows]) / (len(rows) * y.shape[1])
            where = f"stage {self.recipe.stages[index].name}, epoch {epoch + 1}"
            self._step(optimizer, scheduler, loss, where, list(head.parameters()))
            progress.step += 1
            total += loss.item() * len(rows)
        return total / len(order), len(order)

    @torch.no_grad()
    def _head_predict(self, features: dict[str, Any]) -> np.ndarray:
        feats, owner = features["val"]
        self.model.head.eval()
        probabilities = torch.sigmoid(self.model.head(feats)).cpu().numpy()
        return aggregate_windows(probabilities, owner, len(self.data.val),
                                 self.recipe.eval_aggregate)  # fmt: skip
