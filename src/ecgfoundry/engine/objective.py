"""What an objective hands the engine: stage plans, a set-up per stage, training batches, a
training step and an evaluation. The engine (:mod:`ecgfoundry.engine.engine`) owns the rest.

How each kind of training plugs in:

- **Supervised adaptation** (:class:`ecgfoundry.adapt.objective.SupervisedObjective`, all five
  strategies and the benchmark's ``supervised`` recipe): a stage per recipe stage;
  ``setup_stage`` freezes or unfreezes the backbone, sets the drop-path rate and, for
  head-only stages, embeds the windows once; ``train_batches`` is a DataLoader of random crops
  over the memory-mapped cache; ``training_step`` is multi-label BCE; ``evaluate`` scores
  fold 9 by sliding windows and returns ``val_macro_auroc`` (monitored, ``max``).
- **Pretraining** (:class:`ecgfoundry.pretrain.CPCObjective`; W2V+CMSC+RLM the same way):
  one stage, ``monitor="val_loss"``, ``mode="min"``; ``train_batches`` is a DataLoader of
  random crops over the corpus cache (CMSC: pairs of segments of the same patient; RLM: lead
  masks from a generator seeded by (seed, epoch)); ``setup_stage`` returns discriminative
  parameter groups and, as ``distribute``, a module whose forward gives what the loss needs
  (CPC: the SSL head's predictions on the causal context and the encoder's tokens);
  ``training_step`` returns the loss with its parts in ``logs``; ``evaluate`` computes the
  same loss on held-out records with fixed negatives and masks. Hours-long epochs rely on
  the engine's step checkpoints (``checkpoint_every_steps`` / ``checkpoint_every_minutes``)
  and exact mid-epoch resume.
- **MAML** (personalisation, :class:`ecgfoundry.personalize.maml.MetaObjective`): one stage; a
  "batch" is a meta-batch of episodes (support and query windows of a few subjects, sampled by
  subject, in curriculum order given the epoch); ``training_step`` adapts a copy of the weights
  on each support set with ``torch.func.functional_call`` + ``torch.func.grad`` (second order
  by keeping the graph, first order by detaching the inner gradients) and returns the mean
  query loss, which the engine back-propagates into the meta-parameters; ``evaluate`` adapts to
  validation subjects and returns their AUROC. ``setup_stage`` returns the meta-parameters as
  the only parameter group; ``distribute=None`` when episodes are not split across processes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from torch import Tensor, nn

from ecgfoundry.errors import UsageError

Schedule = Literal["constant", "cosine", "one-cycle"]


@dataclass(frozen=True)
class StagePlan:
    """One stage as the engine runs it.

    ``optimizer``: ``adam``, ``adamw`` (decoupled weight decay) or ``sgd``; learning rates
    come with the parameter groups; ``betas`` are Adam's. ``schedule``: ``constant`` or
    ``cosine`` after ``warmup_epochs`` of linear warm-up, or ``one-cycle`` (fastai's
    ``fit_one_cycle``: cosine warm-up from lr/25 over 30 % of the steps, cosine annealing to
    lr/25e4, Adam's beta1 cycled 0.95 -> 0.85 -> 0.95). ``monitor``: the metric of
    ``evaluate`` that early stopping (``patience`` evaluations without improvement; None: off)
    and best-weight selection follow, in direction ``mode``. ``restore_best``: end the stage
    with the best epoch's weights (else the last epoch's). ``eval_every``: evaluate every N
    epochs and after the last one.
    """

    name: str
    epochs: int
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    schedule: Schedule = "constant"
    warmup_epochs: float = 0.0
    patience: int | None = None
    monitor: str = "val_loss"
    mode: Literal["max", "min"] = "min"
    restore_best: bool = True
    eval_every: int = 1
    grad_clip: float | None = None


@dataclass
class StageSetup:
    """What an objective prepares before a stage's first (or resumed) epoch.

    ``param_groups``: the optimizer's groups, each with its ``lr``. ``steps_per_epoch``: for
    the schedule. ``distribute``: the module whose forward the training step calls, wrapped in
    DistributedDataParallel under several processes (None: the step's work is not split
    across processes, e.g. a head trained on features every process holds).
    """

    param_groups: list[dict[str, Any]]
    steps_per_epoch: int
    distribute: nn.Module | None = None


@dataclass
class StepOutput:
    """A training step's result: the loss to back-propagate (already scaled so that DDP's
    gradient mean is the whole batch's gradient), the number of samples it stands for in the
    whole batch (for the epoch mean), and numbers to log (averaged over processes and the
    epoch like the loss; the epoch's log line has them as ``train_<name>``)."""

    loss: Tensor
    size: int
    logs: dict[str, float] = field(default_factory=dict)


class Objective(Protocol):
    """What is trained, on what, with which loss."""

    model: nn.Module  # the weights the engine checkpoints, restores and selects

    def stages(self) -> list[StagePlan]: ...

    def setup_stage(self, index: int) -> StageSetup: ...

    def train_batches(self, index: int, epoch: int, skip: int) -> Iterable[Any]:
        """The epoch's batches for this process, the same on every call with these arguments
        (seed them by stage and epoch), starting after the first ``skip`` (a resumed epoch)."""
        ...

    def training_step(self, net: nn.Module, batch: Any, index: int) -> StepOutput:
        """``net`` is ``setup.distribute`` as wrapped for this run (the model when None)."""
        ...

    def evaluate(self, index: int) -> dict[str, float]: ...


def batch_starts(rows: int, size: int, world: int = 1) -> range:
    """Where each training batch of ``rows`` starts. A last batch too small to give every
    process two rows is left out: BatchNorm cannot train on a single row."""
    full, rest = divmod(rows, size)
    starts = range(0, (full + (rest >= 2 * world)) * size, size)
    if not starts:
        raise UsageError(f"too little data: {rows} training row(s), and training needs at "
                         f"least {2 * world} ({world} process(es), two rows each)")  # fmt: skip
    return starts
