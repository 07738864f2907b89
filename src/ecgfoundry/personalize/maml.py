"""Model-agnostic meta-learning (MAML) for personalisation, on the training engine.

A task is one subject: a support set and a query set of its windows (``shots`` and ``query``
per class), z-scored with the support set's statistics as at test time. The inner loop adapts
a functional copy of the weights (``torch.func.functional_call``) by ``inner_steps`` SGD steps
on the support loss; the meta-loss is the query loss of the adapted weights, averaged over a
meta-batch of subjects. Second order keeps the inner gradients' graph; first order
(``first_order=True``) detaches them.

The network runs in eval mode throughout: its BatchNorm statistics are set once from the
meta-training windows (:func:`calibrate_batchnorm`) and then act as a fixed affine map, so a
person's model adapts and predicts one window at a time exactly as on a device; dropout is off.

Curriculum learning (:class:`Curriculum`): subjects are ranked from easy to hard by the query
loss of the initial model after the inner loop on one episode (MetaVA's measure, computed
once before meta-training); at a share ``p`` of the meta-training, the easiest
``start + (1 - start) * min(1, p / full_at)`` of the subjects are drawn from, uniformly.

Pre-fine-tuning (:func:`pre_finetune`, MetaVA's step for the changes within one person over
time): before the final adaptation, ``steps`` first-order meta-steps on the support set alone,
each adapting on its earlier half (in time, per class) and stepping on the loss of its later
half. MetaVA's released code takes plain gradient steps on the whole support set instead; its
paper describes the within-subject, earlier-to-later form used here.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import Tensor, nn
from torch.func import functional_call

from ecgfoundry.engine.objective import StagePlan, StageSetup, StepOutput
from ecgfoundry.errors import UsageError
from ecgfoundry.personalize.data import Subject
from ecgfoundry.personalize.protocol import Split, SubjectSkipped, normalised, split_subject
from ecgfoundry.settings import typed_settings

Params = dict[str, Tensor]


@dataclass(frozen=True)
class Curriculum:
    """Easy subjects first: ``start`` of them at the beginning, all from ``full_at`` of the
    meta-training on."""

    start: float = 0.3
    full_at: float = 0.5

    def available(self, progress: float, subjects: int) -> int:
        share = self.start + (1 - self.start) * min(1.0, progress / self.full_at)
        return max(1, min(subjects, math.ceil(share * subjects)))


@dataclass(frozen=True)
class MAMLConfig:
    """Meta-training and adaptation settings (defaults: small and CPU-friendly)."""

    shots: int = 10  # support windows per class in a meta-training episode
    query: int = 10  # query windows per class
    inner_lr: float = 0.05
    inner_steps: int = 5  # in meta-training
    adapt_steps: int = 20  # adapting to a new person
    first_order: bool = False
    meta_lr: float = 1e-3
    meta_batch: int = 4  # subjects per meta-step
    iterations: int = 50  # meta-steps per epoch
    epochs: int = 10
    grad_clip: float | None = 8.0
    curriculum: Curriculum | None = field(default_factory=Curriculum)
    pre_finetune_steps: int = 5  # 0: off
    pre_finetune_lr: float = 0.01
    val_shots: int = 5
    scratch_steps: int = 100  # the scratch baseline's Adam steps on the support set
    global_epochs: int = 5  # the global baseline's epochs over every meta-training window

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> MAMLConfig:
        """From a mapping of field names (``curriculum``: a mapping, or null for none); an
        unknown field is a :class:`UsageError` naming it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"{source}: unknown field(s) {unknown}; known: {sorted(known)}")
        values = typed_settings(cls, values, source)
        if isinstance(values.get("curriculum"), dict):
            values["curriculum"] = Curriculum(**values["curriculum"])
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | Path | None, source: str | None = None) -> MAMLConfig:
        """From a YAML file of field names (None: the defaults); a missing or unreadable file,
        invalid YAML, or a field it cannot take is a :class:`UsageError` naming the file."""
        if path is None:
            return cls()
        import yaml

        source = source or str(path)
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise UsageError(f"{source}: no such file") from None
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(f"{source}: cannot be read ({error})") from None
        except yaml.YAMLError as error:
            where = getattr(error, "problem_mark", None)
            at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise UsageError(f"{source}: not valid YAML{at}: {problem}") from None
        if not isinstance(values, dict):
            raise UsageError(f"{source}: expected a mapping of MAMLConfig fields (name: value)")
        try:
            return cls.from_dict(values, source=source)
        except TypeError as error:  # e.g. curriculum: {begin: 0.3}
            raise UsageError(f"{source}: {error}") from None


def loss_of(model: nn.Module, params: Params, buffers: Params, x: Tensor, y: Tensor) -> Tensor:
    logits = functional_call(model, (params, buffers), (x,)).reshape(-1)
    return F.binary_cross_entropy_with_logits(logits, y.float())


def inner_adapt(
    model: nn.Module,
    params: Params,
    buffers: Params,
    x: Tensor,
    y: Tensor,
    steps: int,
    lr: float,
    create_graph: bool = False,
) -> Params:
    """``steps`` SGD steps on (x, y) from ``params``; ``create_graph`` keeps the graph (second
    order)."""
    for _ in range(steps):
        grads = _grads(loss_of(model, params, buffers, x, y), params, create_graph)
        params = {k: p - lr * g for (k, p), g in zip(params.items(), grads, strict=True)}
    return params


def _grads(loss: Tensor, params: Params, create_graph: bool = False) -> list[Tensor]:
    """d loss / d params, zero for parameters the forward pass does not use."""
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph,
                                allow_unused=True)  # fmt: skip
    return [torch.zeros_like(p) if g is None else g
            for p, g in zip(params.values(), grads, strict=True)]  # fmt: skip


def detached(model: nn.Module) -> tuple[Params, Params]:
    """The model's weights as leaves to adapt from, and its buffers."""
    params = {k: p.detach().clone().requires_grad_() for k, p in model.named_parameters()}
    return params, {k: b.detach() for k, b in model.named_buffers()}


def pre_finetune(
    model: nn.Module, params: Params, buffers: Params, x: Tensor, y: Tensor, config: MAMLConfig
) -> Params:
    """First-order meta-steps from the support set's earlier half (in time, per class; ``x``
    is in time order) to its later half; unchanged when a class has a single window."""
    halves = [np.flatnonzero(y.numpy() == label) for label in (0, 1)]
    if config.pre_finetune_steps == 0 or min(len(h) for h in halves) < 2:
        return params
    early = torch.from_numpy(np.concatenate([h[: len(h) // 2] for h in halves]))
    late = torch.from_numpy(np.concatenate([h[len(h) // 2 :] for h in halves]))
    for _ in range(config.pre_finetune_steps):
        adapted = inner_adapt(model, params, buffers, x[early], y[early], config.inner_steps,
                              config.inner_lr)  # fmt: skip
        grads = _grads(loss_of(model, adapted, buffers, x[late], y[late]), params)
        params = {k: (p - config.pre_finetune_lr * g).detach().requires_grad_()
                  for (k, p), g in zip(params.items(), grads, strict=True)}  # fmt: skip
    return params


def probabilities(model: nn.Module, x: Tensor, batch: int = 512) -> np.ndarray:
    """P(VA) for each window of ``x`` (the model in eval mode, one output), ``batch`` windows
    at a time, so a long recording does not hold every window's activations at once."""
    model.eval()
    chunks = [np.empty(0, np.float32)]
    with torch.no_grad():
        for i in range(0, len(x), batch):
            chunks.append(torch.sigmoid(model(x[i : i + batch]).reshape(-1)).numpy())
    return np.concatenate(chunks)


def calibrate_batchnorm(model: nn.Module, windows: np.ndarray, batch: int = 256) -> None:
    """Set BatchNorm running statistics to those of ``windows`` (cumulative average)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for i in range(0, len(windows), batch):
            model(torch.from_numpy(windows[i : i + batch]))
    model.eval()


def episode(
    subject: Subject, shots: int, query: int, rng: np.random.Generator
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Support and query windows of one subject (drawn with replacement when it has too few),
    z-scored with the support's statistics."""
    support, queries = [], []
    for label in (0, 1):
        pool = np.flatnonzero(subject.y == label)
        chosen = rng.choice(pool, shots + query, replace=len(pool) < shots + query)
        support.append(chosen[:shots])
        queries.append(chosen[shots:])
    s, q = np.concatenate(support), np.concatenate(queries)
    mean, sd = float(subject.x[s].mean()), float(subject.x[s].std()) or 1.0
    as_x = lambda i: torch.from_numpy((subject.x[i] - mean) / sd)  # noqa: E731
    return as_x(s), torch.from_numpy(subject.y[s]), as_x(q), torch.from_numpy(subject.y[q])


def difficulties(
    model: nn.Module, subjects: list[Subject], config: MAMLConfig, seed: int = 0
) -> np.ndarray:
    """Each subject's query loss after the inner loop from ``model`` on one episode."""
    rng = np.random.default_rng([seed, 7])
    out = []
    for subject in subjects:
        sx, sy, qx, qy = episode(subject, config.shots, config.query, rng)
        params, buffers = detached(model)
        adapted = inner_adapt(model, params, buffers, sx, sy, config.inner_steps, config.inner_lr)
        with torch.no_grad():
            out.append(float(loss_of(model, adapted, buffers, qx, qy)))
    return np.asarray(out)


def personalised(model: nn.Module, x: Tensor, y: Tensor, config: MAMLConfig,
                 pre_finetuning: bool = True) -> nn.Module:  # fmt: skip
    """A copy of ``model`` adapted to one person's support windows ``x`` [n, 1, samples]
    (z-scored, in time order) with labels ``y`` (1 = VA): optional pre-fine-tuning, then
    ``adapt_steps`` SGD steps at ``inner_lr``. In eval mode, ready to predict or export."""
    params, buffers = detached(model)
    if pre_finetuning:
        params = pre_finetune(model, params, buffers, x, y, config)
    params = inner_adapt(model, params, buffers, x, y, config.adapt_steps, config.inner_lr)
    out = copy.deepcopy(model).eval()
    out.load_state_dict({**{k: p.detach() for k, p in params.items()}, **buffers})
    return out


def personalise_split(
    model: nn.Module, subject: Subject, split: Split, config: MAMLConfig, pre_finetuning: bool
) -> nn.Module:
    """:func:`personalised` on the split's support windows, z-scored with its statistics."""
    x = torch.from_numpy(normalised(subject, split, split.support))
    return personalised(model, x, torch.from_numpy(subject.y[split.support]), config,
                        pre_finetuning)  # fmt: skip


def adapt_split(
    model: nn.Module, subject: Subject, split: Split, config: MAMLConfig, pre_finetuning: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Adapt ``model`` to the split's support windows and score its test windows: (labels,
    probabilities)."""
    mine = personalise_split(model, subject, split, config, pre_finetuning)
    test = torch.from_numpy(normalised(subject, split, split.test))
    return subject.y[split.test], probabilities(mine, test)


class MetaObjective:
    """MAML as an objective of :class:`ecgfoundry.engine.Engine` (one stage; a batch is a
    meta-batch of episodes; evaluation adapts to the meta-validation subjects)."""

    def __init__(self, model: nn.Module, train: list[Subject], val: list[Subject],
                 config: MAMLConfig, seed: int = 0, order: np.ndarray | None = None):  # fmt: skip
        self.model, self.train, self.val, self.config, self.seed = model, train, val, config, seed
        self.order = order if order is not None else np.arange(len(train))  # easy -> hard

    def stages(self) -> list[StagePlan]:
        return [StagePlan(name="meta-train", epochs=self.config.epochs, optimizer="adam",
                          monitor="val_auroc", mode="max", restore_best=True,
                          grad_clip=self.config.grad_clip)]  # fmt: skip

    def setup_stage(self, index: int) -> StageSetup:
        return StageSetup([{"params": list(self.model.parameters()), "lr": self.config.meta_lr}],
                          steps_per_epoch=self.config.iterations)  # fmt: skip

    def pool(self, epoch: int) -> np.ndarray:
        """The subjects drawn from in ``epoch`` (all without a curriculum)."""
        if self.config.curriculum is None:
            return self.order
        progress = epoch / max(self.config.epochs, 1)
        return self.order[: self.config.curriculum.available(progress, len(self.order))]

    def train_batches(self, index: int, epoch: int, skip: int) -> list[list[tuple[Tensor, ...]]]:
        rng = np.random.default_rng([self.seed, epoch])
        pool, c = self.pool(epoch), self.config
        batches = []
        for _ in range(c.iterations):
            chosen = rng.choice(pool, c.meta_batch, replace=len(pool) < c.meta_batch)
            batches.append([episode(self.train[i], c.shots, c.query, rng) for i in chosen])
        return batches[skip:]

    def training_step(
        self, net: nn.Module, batch: list[tuple[Tensor, ...]], index: int
    ) -> StepOutput:
        net.eval()  # see the module doc: fixed BatchNorm statistics, no dropout
        params = dict(net.named_parameters())
        buffers = dict(net.named_buffers())
        losses, c = [], self.config
        for sx, sy, qx, qy in batch:
            adapted = inner_adapt(net, params, buffers, sx, sy, c.inner_steps, c.inner_lr,
                                  create_graph=not c.first_order)  # fmt: skip
            losses.append(loss_of(net, adapted, buffers, qx, qy))
        return StepOutput(loss=torch.stack(losses).mean(), size=len(batch))

    def evaluate(self, index: int) -> dict[str, float]:
        labels, scores = [], []
        for subject in self.val:
            try:
                split = split_subject(subject, self.config.val_shots)
            except SubjectSkipped:
                continue
            y, p = adapt_split(self.model, subject, split, self.config, pre_finetuning=False)
            labels.append(y)
            scores.append(p)
        if not labels:
            return {"val_auroc": float("nan")}
        return {"val_auroc": float(roc_auc_score(np.concatenate(labels), np.concatenate(scores)))}


__all__ = [
    "Curriculum",
    "MAMLConfig",
    "MetaObjective",
    "adapt_split",
    "calibrate_batchnorm",
    "difficulties",
    "episode",
    "inner_adapt",
    "personalise_split",
    "personalised",
    "pre_finetune",
    "probabilities",
]  # fmt: skip
