"""The one training engine: runs any objective's stages and knows nothing of losses, labels or
datasets.

It owns: optimizers and schedules, precision (bfloat16 autocast where it pays), several
processes (torchrun; DistributedDataParallel, with the unused-parameter search only for models
that declare it), seeding by (seed, stage, epoch) with a distinct dropout stream per process,
atomic checkpoints at every epoch end and every N steps or minutes, exact resume after a kill
(also mid-epoch: the skipped batches, the running loss and the random generators' states are
restored), guards against non-finite losses and out-of-memory errors, the epoch log and the
progress bar, early stopping on a named metric in a given direction, and best-weight selection.

Determinism: a run killed at any point and started again finishes with the same weights as an
uninterrupted one (on CPU; GPU kernels are not guaranteed bit-deterministic).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import numbers
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from ecgfoundry.engine import distributed as dist
from ecgfoundry.engine.checkpoint import (
    Checkpoint,
    Progress,
    load_checkpoint,
    rank_rng_state,
    rng_state,
    save_checkpoint,
)
from ecgfoundry.engine.checkpoint import set_rng_state as restore_rng
from ecgfoundry.engine.objective import Objective, StagePlan, StageSetup, StepOutput
from ecgfoundry.engine.precision import Precision, autocast_dtype
from ecgfoundry.engine.reporter import Reporter
from ecgfoundry.engine.run_dir import EpochLog, RunConfigError
from ecgfoundry.engine.seeding import torch_seed
from ecgfoundry.errors import ReportedError, UsageError

T = TypeVar("T")
_END = object()


class TrainingError(RuntimeError, ReportedError):
    """Training stopped (non-finite loss, out of memory); the last checkpoint is intact."""


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA raises OutOfMemoryError; a failed CPU allocation is a plain RuntimeError."""
    text = str(error)
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError)
        and ("out of memory" in text or "can't allocate memory" in text)
    )


def _whole(value: Any, least: int) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= least


def check_run_options(
    *,
    loader_workers: int = 0,
    checkpoint_every_minutes: float | None = None,
    checkpoint_every_steps: int | None = None,
) -> None:
    """The run options every training command shares, checked before any data is read: a bad
    one raises :class:`~ecgfoundry.errors.UsageError` naming it."""
    if not _whole(loader_workers, 0):
        raise UsageError(f"loader_workers must be a whole number >= 0, got {loader_workers!r}")
    minutes = checkpoint_every_minutes
    if minutes is not None and not (isinstance(minutes, numbers.Real) and 0 < minutes < math.inf):
        raise UsageError(f"checkpoint_every_minutes must be a positive number, got {minutes!r}")
    steps = checkpoint_every_steps
    if steps is not None and not _whole(steps, 1):
        raise UsageError(f"checkpoint_every_steps must be a whole number >= 1, got {steps!r}")


def fingerprint_changes(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints: top-level keys, and ``stage N FIELD`` for plans."""
    changed = [k for k in sorted(set(before) | set(now))
               if k != "stages" and before.get(k) != now.get(k)]  # fmt: skip
    old, new = before.get("stages", []), now.get("stages", [])
    if len(old) != len(new):
        return [*changed, f"stages ({len(old)} -> {len(new)})"]
    for index, (a, b) in enumerate(zip(old, new, strict=True)):
        changed += [f"stage {index} {k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return changed


def build_optimizer(plan: StagePlan, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    if plan.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=groups[0]["lr"], weight_decay=plan.weight_decay)
    kind = torch.optim.AdamW if plan.optimizer == "adamw" else torch.optim.Adam
    return kind(groups, lr=groups[0]["lr"], betas=tuple(plan.betas),
                weight_decay=plan.weight_decay)  # fmt: skip


def build_schedule(plan: StagePlan, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Any:
    total = max(plan.epochs * steps_per_epoch, 1)
    if plan.schedule == "one-cycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total,
            pct_start=0.3, anneal_strategy="cos", div_factor=25.0, final_div_factor=1e4,
            cycle_momentum=plan.optimizer != "sgd",
            base_momentum=0.85, max_momentum=0.95,
        )  # fmt: skip
    warmup = plan.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if plan.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min((step - warmup) / max(total - warmup, 1), 1)))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Engine:
    """Trains objectives in a run folder: ``Engine(run_dir, seed=0).fit(objective)``."""

    def __init__(
        self,
        run_dir: str | Path,
        *,
        seed: int = 0,
        device: torch.device | None = None,
        precision: Precision = "auto",
        log: EpochLog | None = None,
        progress_bar: bool = True,
        checkpoint_every_steps: int | None = None,
        checkpoint_every_minutes: float | None = None,
    ):
        check_run_options(checkpoint_every_minutes=checkpoint_every_minutes,
                          checkpoint_every_steps=checkpoint_every_steps)  # fmt: skip
        self.checkpoint_dir = Path(run_dir) / "checkpoint"
        self.seed = seed
        self.device = device or torch.device("cpu")
        self.dtype = autocast_dtype(precision, self.device)
        self.log = log if log is not None else EpochLog()
        self.progress_bar = progress_bar
        self.every_steps = checkpoint_every_steps
        self.every_seconds = checkpoint_every_minutes * 60 if checkpoint_every_minutes else None

    @contextmanager
    def autocast(self) -> Iterator[None]:
        """The precision policy around a forward pass (objectives use it in evaluation too)."""
        enabled = self.dtype is not None
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=enabled):
            yield

    def fingerprint(self, objective: Objective, plans: list[StagePlan]) -> dict[str, Any]:
        """What a run trains, as JSON: the objective's class, the seed, the precision and every
        stage's plan. A checkpoint is resumed only by a run of the same fingerprint."""
        return json.loads(json.dumps({
            "objective": type(objective).__name__, "seed": self.seed,
            "precision": str(self.dtype or torch.float32),
            "stages": [dataclasses.asdict(plan) for plan in plans],
        }))  # fmt: skip

    def fit(self, objective: Objective) -> Progress:
        """Run (or resume) every stage of ``objective``. A run folder whose checkpoint another
        setup wrote (another objective, seed, precision or stage plan) is refused with a
        :class:`RunConfigError`: finished work is never silently returned as this run's."""
        plans = objective.stages()
        fingerprint = self.fingerprint(objective, plans)
        saved = load_checkpoint(self.checkpoint_dir)
        if saved is not None and saved.progress.fingerprint not in (None, fingerprint):
            raise RunConfigError(
                f"{self.checkpoint_dir.parent} holds a checkpoint of another training setup "
                f"(differs in {fingerprint_changes(saved.progress.fingerprint, fingerprint)}); "
                "use another folder, or delete it to start over"
            )
        progress = saved.progress if saved else Progress()
        progress.fingerprint = fingerprint
        self.log.restart(progress.history)
        if saved is not None:
            objective.model.load_state_dict(saved.model)
        self.reporter = Reporter(self.progress_bar)
        try:
            for index in range(progress.stage, len(plans)):
                resume = saved if saved and saved.progress.stage == index else None
                progress = self._stage(objective, index, plans[index], resume, progress)
                saved = None
            if dist.is_main():  # the position after the last stage: a rerun only evaluates
                save_checkpoint(self.checkpoint_dir, objective.model, None, None, None, progress)
        finally:
            self.reporter.close()
        return progress

    def _guard(self, where: str, work: Callable[[], T]) -> T:
        try:
            return work()
        except RuntimeError as error:
            if is_out_of_memory(error):
                raise TrainingError(
                    f"out of memory at {where}; the last good checkpoint ({self.checkpoint_dir}) "
                    "is intact: lower batch_size and run the same command again to resume"
                ) from error
            raise

    def _stage(self, objective: Objective, index: int, plan: StagePlan,
               resume: Checkpoint | None, before: Progress) -> Progress:  # fmt: skip
        if plan.epochs == 0:  # a stage switched off (e.g. an ablation)
            return Progress(stage=index + 1, step=before.step, history=before.history)
        model = objective.model
        setup = self._guard(f"stage {plan.name}, set-up", lambda: objective.setup_stage(index))
        optimizer = build_optimizer(plan, setup.param_groups)
        scheduler = build_schedule(plan, optimizer, setup.steps_per_epoch)
        progress = Progress(stage=index, step=before.step, history=list(before.history))
        best = None
        if resume is not None:
            progress, best = resume.progress, resume.best
            if resume.optimizer is not None:
                optimizer.load_state_dict(resume.optimizer["optimizer"])
                scheduler.load_state_dict(resume.optimizer["scheduler"])
        net = self._distribute(setup) or model
        for epoch in range(progress.epoch, plan.epochs):
            if progress.batch and resume is not None and resume.rng is not None:
                # mid-epoch: each process's generators as they were at the kill
                restore_rng(rank_rng_state(resume.rng, dist.rank()))
            else:
                seed = torch_seed(self.seed, index, epoch, dist.rank())
                torch.manual_seed(seed)
                np.random.seed(seed % 2**32)  # e.g. SpecAugment masks
            self._epoch(
                objective,
                net,
                index,
                plan,
                epoch,
                optimizer,
                scheduler,
                progress,
                best,
                setup.steps_per_epoch,
            )
            evaluated = (epoch + 1) % plan.eval_every == 0 or epoch + 1 == plan.epochs
            metrics, improved = {}, False
            if evaluated:
                where = f"evaluation after epoch {epoch + 1} of stage {plan.name}"
                metrics = self._guard(where, lambda: objective.evaluate(index))
                improved = self._improved(plan, metrics, progress)
                if improved:
                    progress.best_metric, progress.best_epoch = metrics[plan.monitor], epoch
                    progress.patience_used = 0
                    best = copy.deepcopy(model.state_dict())
                else:
                    progress.patience_used += 1
            seen = max(progress.epoch_seen, 1)
            logs = {f"train_{k}": v / seen for k, v in progress.epoch_logs.items()}
            record = {
                "stage": index, "name": plan.name, "epoch": epoch, "step": progress.step,
                "loss": progress.epoch_loss / seen, **logs, **metrics,
                "best": improved, "lr": [g["lr"] for g in optimizer.param_groups],
                "samples_per_s": progress.epoch_seen / max(progress.epoch_seconds, 1e-9),
                "seconds": progress.epoch_seconds,
            }  # fmt: skip
            progress.history.append(record)
            progress.epoch, progress.batch = epoch + 1, 0
            progress.epoch_loss, progress.epoch_seen, progress.epoch_seconds = 0.0, 0, 0.0
            progress.epoch_logs = {}
            stop = plan.patience is not None and progress.patience_used >= plan.patience
            stop = dist.broadcast_flag(stop)
            if stop or progress.epoch == plan.epochs:
                progress.epoch = plan.epochs  # the stage is done
            if dist.is_main():
                save_checkpoint(self.checkpoint_dir, model, optimizer, scheduler, best, progress)
                self.log(record)
            dist.barrier()
            resume = None
            if stop:
                break
        if best is not None and plan.restore_best:
            model.load_state_dict(best)
        return Progress(stage=index + 1, step=progress.step, history=progress.history)

    def _improved(self, plan: StagePlan, metrics: dict[str, float], progress: Progress) -> bool:
        if plan.monitor not in metrics:
            raise KeyError(f"the objective's evaluation has no {plan.monitor!r}: {metrics}")
        metric = metrics[plan.monitor]
        self.reporter.metric = f"{plan.monitor} {metric:.4f}"
        limit = progress.best_metric
        if limit is None:
            limit = -math.inf if plan.mode == "max" else math.inf
        return metric > limit if plan.mode == "max" else metric < limit

    def _distribute(self, setup: StageSetup) -> nn.Module | None:
        """``setup.distribute``, wrapped in DistributedDataParallel under several processes."""
        module = setup.distribute
        if module is None or dist.world() == 1:
            return module
        search = bool(getattr(module, "has_unused_parameters", False))
        return nn.parallel.DistributedDataParallel(module, find_unused_parameters=search)

    def _epoch(self, objective: Objective, net: nn.Module, index: int, plan: StagePlan,
               epoch: int, optimizer: torch.optim.Optimizer, scheduler: Any,
               progress: Progress, best: dict[str, Tensor] | None,
               steps_per_epoch: int) -> None:  # fmt: skip
        objective.model.train()
        params = [p for g in optimizer.param_groups for p in g["params"]]
        task = self.reporter.epoch(f"{plan.name} {epoch + 1}/{plan.epochs}", steps_per_epoch)
        start, last_save = time.perf_counter(), time.perf_counter()
        steps_since = 0
        where_epoch = f"stage {plan.name}, epoch {epoch + 1}"
        batches = iter(objective.train_batches(index, epoch, progress.batch))
        while True:
            where = f"{where_epoch}, step {progress.step + 1}"
            batch = self._guard(where, lambda: next(batches, _END))
            if batch is _END:
                break

            def step(batch: Any = batch, where: str = where) -> tuple[StepOutput, float]:
                with self.autocast():
                    out = objective.training_step(net, batch, index)
                loss = out.loss.float()
                value = self._check(loss, where)
                loss.backward()
                if plan.grad_clip:
                    nn.utils.clip_grad_norm_(params, plan.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                return out, value

            out, value = self._guard(where, step)
            size = out.size
            batch_loss = dist.all_sum(value) / dist.world()  # the whole batch's mean
            progress.step += 1
            progress.batch += 1
            progress.epoch_loss += batch_loss * size
            for name, logged in out.logs.items():
                mean = dist.all_sum(float(logged)) / dist.world()
                progress.epoch_logs[name] = progress.epoch_logs.get(name, 0.0) + mean * size
            progress.epoch_seen += size
            self.reporter.update(task, size, batch_loss)
            steps_since += 1
            due = (self.every_steps is not None and steps_since >= self.every_steps) or (
                self.every_seconds is not None
                and time.perf_counter() - last_save >= self.every_seconds
            )
            if dist.broadcast_flag(due):
                progress.epoch_seconds += time.perf_counter() - start
                start = time.perf_counter()
                states = dist.gather_tensors(rng_state())  # every process takes part
                if dist.is_main():
                    save_checkpoint(self.checkpoint_dir, objective.model, optimizer, scheduler,
                                    best, progress, rng=states)  # fmt: skip
                dist.barrier()
                steps_since, last_save = 0, time.perf_counter()
        progress.epoch_seconds += time.perf_counter() - start

    def _check(self, loss: Tensor, where: str) -> float:
        """The loss's value; every process stops together, before the update, if any
        process's loss is not finite."""
        value = loss.detach().item()
        bad = float(not math.isfinite(value))
        if dist.all_sum(bad) > 0:
            raise TrainingError(
                f"non-finite loss at {where}; stopped before updating the weights. The last "
                f"good checkpoint ({self.checkpoint_dir}) is intact: lower the learning rate "
                "or check the data, then run the same command again to resume."
            )
        return value
