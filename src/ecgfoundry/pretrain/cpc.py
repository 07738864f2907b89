"""Contrastive predictive coding (CPC) as ECG-CPC pretrains, as an objective of the engine.

What the original does (AI4HealthUOL/ecg-fm-benchmarking, ``code/clinical_ts``:
``loss/selfsupervised.py`` ``CPCLoss``, ``template_modules.py`` ``TimeSeriesEncoder.forward``,
``ts/head.py`` ``MLPHead``, ``template_model.py`` ``get_params``/``configure_optimizers``,
``conf/config_cpc_ecg_s4_heedb.yaml``):

* targets are the encoder outputs ``z`` [B, T, C] (cloned, not detached: gradients reach the
  encoder through them too); the causal S4 stack gives the context ``c`` [B, T, D]; one SSL
  head, a Linear(D, C, no bias) shared by every step, turns ``c_t`` into a prediction;
* one horizon: ``c_t`` predicts ``z_{t+14}`` (``steps_predicted: 14``), for every ``t`` with a
  target; scored by dot product (no normalisation, temperature 1) against 128 negatives drawn
  uniformly, with replacement, from the *same* sequence's other steps (any step but ``t + 14``;
  ``negatives_from_same_seq_only: True``), fresh for every step; InfoNCE cross-entropy with
  the true future at index 0; accuracy: how often it scores highest;
* AdamW, weight decay 1e-3, constant learning rate 1e-3 for the SSL head, 1e-4 for the S4
  stack and 1e-5 for the encoder (``discriminative_lr_factor: 0.1`` is not switched off for
  pretraining), batch 64, 200 epochs, fp32, no gradient clipping; random crops of 10 s at
  240 Hz (``input_size: 10``; HEEDB records are 10 s); validation on non-overlapping 10 s
  windows of held-out records; the released checkpoint is the last epoch's.

Where this differs: the loss is the *mean* over steps and rows (the original sums the per-step
batch means over the steps; with Adam only the scale of the number differs); all scores
come from one [B, T - k, T] product instead of a loop over steps (the same numbers, far less
memory); validation draws its negatives from a fixed seed per batch, so it is deterministic
(the original draws them afresh); a last training batch smaller than ``batch_size`` is kept
(the original drops it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ecgfoundry.adapt.data import Split, window_loader
from ecgfoundry.engine import distributed as dist
from ecgfoundry.engine.objective import StagePlan, StageSetup, StepOutput, batch_starts
from ecgfoundry.engine.seeding import CROPS, SHUFFLE, epoch_rng
from ecgfoundry.models.s4 import S4Model
from ecgfoundry.pretrain.settings import PretrainSettings

Autocast = Callable[[], AbstractContextManager[None]]


@dataclass(frozen=True)
class CPCConfig(PretrainSettings):
    """CPC pretraining settings; defaults are ECG-CPC's published ones.

    ``lr`` is the SSL head's; the S4 stack trains at ``lr * lr_factor`` and the encoder at
    ``lr * lr_factor ** 2``. The rest: :class:`~ecgfoundry.pretrain.settings.PretrainSettings`.
    """

    lr: float = 1e-3
    weight_decay: float = 1e-3
    steps_ahead: int = 14
    negatives: int = 128
    temperature: float = 1.0
    lr_factor: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        self._at_least(1, "steps_ahead", "negatives")
        self._positive("temperature", "lr_factor")


def sample_negatives(batch: int, tokens: int, steps: int, count: int, *,
                     device: torch.device | None = None,
                     generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
    """Negatives' step indices [batch, tokens - steps, count]: for the prediction at step t,
    uniform with replacement over the sequence's steps other than the true future t + steps."""
    if tokens <= steps:
        raise ValueError(f"steps_ahead {steps} needs more than {steps} tokens, got {tokens}")
    shape = (batch, tokens - steps, count)
    if generator is not None:
        device = generator.device
    draw = torch.randint(0, tokens - 1, shape, generator=generator, device=device)
    future = torch.arange(steps, tokens, device=draw.device)[None, :, None]
    return draw + (draw >= future).long()


def cpc_logits(predictions: Tensor, targets: Tensor, steps: int, negatives: Tensor,
               temperature: float = 1.0) -> Tensor:  # fmt: skip
    """Scores [B, T - steps, 1 + N] in float32: the prediction at step t against the target at
    t + steps (column 0) and at the ``negatives`` steps, by dot product / ``temperature``."""
    with torch.autocast(predictions.device.type, enabled=False):
        predictions, targets = predictions.float(), targets.float()
        positions = targets.shape[1] - steps
        scores = predictions[:, :positions] @ targets.transpose(1, 2)  # [B, P, T]
        positive = scores.diagonal(offset=steps, dim1=1, dim2=2)  # [B, P]
        negative = scores.gather(2, negatives)
        return torch.cat((positive.unsqueeze(-1), negative), dim=-1) / temperature


def info_nce(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Per-step cross-entropy with the true future at index 0, and whether it scored highest
    (ties count as right, as ``argmax`` picks the first)."""
    return -logits.log_softmax(-1)[..., 0], logits.argmax(-1) == 0


class CPCNet(nn.Module):
    """The path CPC trains, as one forward (what DistributedDataParallel wraps): input ->
    (SSL-head predictions from the causal context, encoder outputs), both [B, T, C]."""

    def __init__(self, model: S4Model):
        super().__init__()
        if model.ssl_head is None:
            raise ValueError("model: CPC needs the SSL head; create it with ssl_head=True")
        self.model = model

    def parameter_groups(self) -> list[list[nn.Parameter]]:
        """The weights CPC trains, in the optimiser's group order: SSL head, S4 stack, encoder."""
        model = self.model
        stack = list(model.layers.parameters())
        if model.proj is not None:
            stack += model.proj.parameters()
        return [list(model.ssl_head.parameters()), stack, list(model.encoder.parameters())]

    @property
    def has_unused_parameters(self) -> bool:
        used = {id(p) for group in self.parameter_groups() for p in group}
        return any(id(p) not in used for p in self.model.parameters())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        tokens = self.model.forward_tokens(x)
        return self.model.ssl_head(self.model.forward_context(tokens)), tokens


def _no_autocast() -> AbstractContextManager[None]:
    return torch.autocast("cpu", enabled=False)


class CPCObjective:
    """CPC on random crops of ``train``; ``val_loss`` (monitored, ``min``) and
    ``val_accuracy`` on fixed windows of ``val``. Labels in the splits are ignored (an
    unlabelled split has ``y`` of shape [records, 0]).

    ``autocast`` and ``device`` come from the engine (``engine.autocast``, ``engine.device``).
    """

    def __init__(
        self,
        model: S4Model,
        train: Split,
        val: Split,
        *,
        config: CPCConfig | None = None,
        seed: int = 0,
        device: torch.device | None = None,
        autocast: Autocast = _no_autocast,
        workers: int = 0,
    ):
        self.config = config or CPCConfig()
        self.device = device or torch.device("cpu")
        self.model = model.to(self.device)
        self.net = CPCNet(self.model)
        self.window = self.config.crop_window(model.spec.samples, train, val)
        self.train, self.val, self.seed = train, val, seed
        self.autocast, self.workers = autocast, workers

    def stages(self) -> list[StagePlan]:
        return [self.config.stage_plan()]

    def setup_stage(self, index: int) -> StageSetup:
        groups = []
        for depth, params in enumerate(self.net.parameter_groups()):
            for p in params:
                p.requires_grad = True
            groups.append({"params": params, "lr": self.config.lr * self.config.lr_factor**depth})
        steps = len(batch_starts(len(self.train), self.config.batch_size, dist.world()))
        return StageSetup(groups, steps, distribute=self.net)

    def _batches(self, rows: np.ndarray,
                 offsets: np.ndarray) -> tuple[list[list[tuple[int, int]]], list[int]]:  # fmt: skip
        """This process's slice of each global batch of (row, offset) keys, and the global
        batch sizes (:func:`~ecgfoundry.engine.objective.batch_starts`)."""
        keys = list(zip(rows.tolist(), offsets.tolist(), strict=True))
        size = self.config.batch_size
        batches = [keys[s : s + size] for s in batch_starts(len(keys), size, dist.world())]
        return [b[dist.rank() :: dist.world()] for b in batches], [len(b) for b in batches]

    def train_batches(self, index: int, epoch: int, skip: int) -> Iterator[dict[str, Any]]:
        rows = epoch_rng(self.seed, index, epoch, SHUFFLE).permutation(len(self.train))
        slack = self.train.signals.shape[-1] - self.window
        offsets = epoch_rng(self.seed, index, epoch, CROPS).integers(0, slack + 1, len(rows))
        batches, sizes = self._batches(rows, offsets)
        loader = window_loader(self.train, self.window, batches[skip:], workers=self.workers,
                               device=self.device)  # fmt: skip
        for batch, whole in zip(loader, sizes[skip:], strict=True):
            yield batch | {"size": whole}

    def _scores(self, net: nn.Module, x: Tensor, generator: torch.Generator | None) -> Tensor:
        predictions, targets = net(x.to(self.device, non_blocking=True))
        batch, tokens = targets.shape[:2]
        negatives = sample_negatives(batch, tokens, self.config.steps_ahead,
                                     self.config.negatives, device=self.device,
                                     generator=generator)  # fmt: skip
        return cpc_logits(predictions, targets, self.config.steps_ahead,
                          negatives.to(self.device), self.config.temperature)  # fmt: skip

    def training_step(self, net: nn.Module, batch: dict[str, Any], index: int) -> StepOutput:
        """Negatives come from torch's generator, which the engine seeds per epoch and
        restores on resume."""
        loss, correct = info_nce(self._scores(net, batch["x"], None))
        # this process's sum / (global batch x steps) x world: DDP's mean = whole batch's
        scaled = loss.sum() * dist.world() / (batch["size"] * loss.shape[1])
        return StepOutput(scaled, batch["size"], {"accuracy": correct.float().mean().item()})

    @torch.no_grad()
    def evaluate(self, index: int) -> dict[str, float]:
        """The loss and accuracy over every non-overlapping window of ``val``, negatives from
        a fixed seed per batch (the same numbers on every call)."""
        self.model.eval()
        starts = range(0, self.val.signals.shape[-1] - self.window + 1, self.window)
        keys = [(row, start) for row in range(len(self.val)) for start in starts]
        size = self.config.batch_size
        batches = [keys[i : i + size] for i in range(0, len(keys), size)]
        mine = list(range(dist.rank(), len(batches), dist.world()))
        loader = window_loader(self.val, self.window, [batches[i] for i in mine],
                               workers=self.workers, device=self.device)  # fmt: skip
        loss = correct = count = 0.0
        for number, batch in zip(mine, loader, strict=True):
            with self.autocast():
                logits = self._scores(self.net, batch["x"], torch.Generator().manual_seed(number))
            step_loss, step_correct = info_nce(logits)
            loss += step_loss.sum().item()
            correct += step_correct.sum().item()
            count += step_loss.numel()
        count = dist.all_sum(count)
        return {
            "val_loss": dist.all_sum(loss) / count,
            "val_accuracy": dist.all_sum(correct) / count,
        }
