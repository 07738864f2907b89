"""A pretrained foundation model as a personalisation baseline: the post-train recipe (Zhou et
al. 2025: a preview linear probe, then fine-tuning with stochastic depth) on one person's
support set, scored on the same test windows as every other method.

The person's one-lead windows become the model's input: resampled to the model's rate, placed
where it expects lead II (MLII, vfdb's and CUDB's ECG lead), the other leads zero (as
:class:`~ecgfoundry.data.transforms.SelectLeads` fills a missing lead), 2 s long as they are.
Amplitudes follow the model's input spec: a model that takes millivolts (normalisation
``none``, as the bundled ``ecgfoundry-cpc``) gets them centred on the support set's mean;
any other the split's z-scoring. Either way the statistics are the split's (the support set's
under the leak-free protocol).

With 10 windows a class there is nothing to stop early on: both stages take a fixed number of
full-batch Adam steps. BatchNorm keeps the pretrained statistics (as the MAML models keep
theirs); stochastic depth and dropout are on while fine-tuning. How many steps, and the
fine-tuning rate, are chosen on the meta-validation subjects (:func:`select_config`), never on
the test subjects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import Tensor, nn

from ecgfoundry.data.transforms import resample_signal
from ecgfoundry.errors import UsageError
from ecgfoundry.models import resolve_model
from ecgfoundry.models.base import ECGModel
from ecgfoundry.personalize.data import Subject
from ecgfoundry.personalize.maml import probabilities
from ecgfoundry.personalize.protocol import Split, SubjectSkipped, split_subject
from ecgfoundry.spec import InputSpec

SUBJECT_LEAD = "II"


@dataclass(frozen=True)
class FoundationConfig:
    """The post-train recipe on a support set, in full-batch steps."""

    model: str = "ecgfoundry-cpc"
    preview_steps: int = 100  # linear probe on the frozen backbone's embeddings
    preview_lr: float = 1e-3
    finetune_steps: int = 30  # then every parameter; 0: the linear probe alone
    finetune_lr: float = 1e-4
    drop_path_rate: float = 0.3
    grad_clip: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The grid :func:`select_config` searches (on meta-validation subjects).
CANDIDATES: tuple[dict[str, Any], ...] = (
    {"finetune_steps": 0},
    {"finetune_steps": 10},
    {"finetune_steps": 30},
    {"finetune_steps": 100},
    {"finetune_steps": 30, "finetune_lr": 1e-3},
    {"finetune_steps": 100, "finetune_lr": 1e-3},
)


def model_input_slot(spec: InputSpec) -> int:
    """Where a subject's one lead goes among the leads of ``spec`` (lead II, or the only
    lead), or a :class:`UsageError`."""
    if SUBJECT_LEAD in spec.leads:
        return spec.leads.index(SUBJECT_LEAD)
    if len(spec.leads) == 1:
        return 0
    raise UsageError(f"the model's leads {list(spec.leads)} have no lead {SUBJECT_LEAD} "
                     "to place the subject's one lead in")  # fmt: skip


def check_foundation(config: FoundationConfig) -> ECGModel:
    """The pretrained model of ``config`` if it can be post-trained on a subject's windows
    (it loads; it has lead II or a single lead), else a :class:`UsageError` naming it."""
    pretrained = resolve_model(config.model)
    try:
        model_input_slot(pretrained.spec)
    except UsageError as error:
        raise UsageError(f"foundation model {config.model}: {error}") from None
    return pretrained


def model_input(subject: Subject, split: Split, index: np.ndarray, spec: InputSpec) -> Tensor:
    """Windows ``index`` of ``subject`` as inputs [n, leads, samples] of a model with ``spec``
    (see the module doc)."""
    slot = model_input_slot(spec)
    x = subject.x[index, 0] - split.mean
    if spec.normalisation != "none":
        x = x / split.sd
    x = resample_signal(x.astype(np.float32), subject.fs, spec.fs)
    out = np.zeros((len(index), len(spec.leads), x.shape[-1]), dtype=np.float32)
    out[:, slot] = x
    return torch.from_numpy(out)


def _fit(model: nn.Module, params: list[Tensor], x: Tensor, y: Tensor, steps: int, lr: float,
         clip: float) -> None:  # fmt: skip
    optimizer = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        F.binary_cross_entropy_with_logits(model(x).reshape(-1), y).backward()
        nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()


def post_train(pretrained: ECGModel, x: Tensor, y: Tensor, config: FoundationConfig,
               seed: int = 0) -> ECGModel:  # fmt: skip
    """A copy of ``pretrained`` with a one-output head, post-trained on (x, y): the preview
    probe on frozen embeddings, then fine-tuning of everything with stochastic depth. In eval
    mode."""
    torch.manual_seed(seed)
    model = _copy(pretrained)
    model.reset_head(1)
    model.eval()
    y = y.float()
    with torch.no_grad():
        features = model.forward_features(x)
    _fit(model.head, list(model.head.parameters()), features, y, config.preview_steps,
         config.preview_lr, config.grad_clip)  # fmt: skip
    if config.finetune_steps:
        model.set_drop_path_rate(config.drop_path_rate)
        model.train()
        for m in model.modules():  # the pretrained BatchNorm statistics stay
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        _fit(model, list(model.parameters()), x, y, config.finetune_steps, config.finetune_lr,
             config.grad_clip)  # fmt: skip
    return model.eval()


def _copy(model: ECGModel) -> ECGModel:
    out = type(model)(type(model).config_class.from_dict(model.config.to_dict()))
    out.load_state_dict(model.state_dict())
    return out


class FoundationScorer:
    """``score(subject, split) -> (labels, probabilities)`` for the harness: the pretrained
    model post-trained on the split's support windows."""

    def __init__(self, config: FoundationConfig, pretrained: ECGModel | None = None,
                 seed: int = 0):  # fmt: skip
        self.config, self.seed = config, seed
        self.pretrained = pretrained if pretrained is not None else resolve_model(config.model)

    def __call__(self, subject: Subject, split: Split) -> tuple[np.ndarray, np.ndarray]:
        spec = self.pretrained.spec
        x = model_input(subject, split, split.support, spec)
        model = post_train(self.pretrained, x, torch.from_numpy(subject.y[split.support]),
                           self.config, self.seed)  # fmt: skip
        test = model_input(subject, split, split.test, spec)
        return subject.y[split.test], probabilities(model, test)


def select_config(
    subjects: Sequence[Subject],
    base: FoundationConfig,
    shots: int = 10,
    candidates: Sequence[dict[str, Any]] = CANDIDATES,
    seed: int = 0,
    pretrained: ECGModel | None = None,
) -> tuple[FoundationConfig, list[dict[str, Any]]]:
    """The candidate (fields over ``base``) with the best pooled AUROC on ``subjects`` (the
    meta-validation subjects) at ``shots`` per class, leak-free; and every candidate's
    score. ``pretrained``: ``base.model`` already loaded (else it is loaded here)."""
    splits = []
    for subject in subjects:
        try:
            splits.append((subject, split_subject(subject, shots)))
        except SubjectSkipped:
            continue
    if not splits:
        raise UsageError(f"no validation subject has {shots} support windows per class "
                         "and windows after them to score")  # fmt: skip
    pretrained = pretrained if pretrained is not None else resolve_model(base.model)
    table = []
    for fields in candidates:
        config = dataclasses.replace(base, **fields)
        score = FoundationScorer(config, pretrained, seed)
        scored = [score(subject, split) for subject, split in splits]
        y = np.concatenate([s[0] for s in scored])
        p = np.concatenate([s[1] for s in scored])
        table.append({**fields, "val_auroc": float(roc_auc_score(y, p))})
    best = max(range(len(table)), key=lambda i: table[i]["val_auroc"])
    return dataclasses.replace(base, **candidates[best]), table


__all__ = ["CANDIDATES", "FoundationConfig", "FoundationScorer", "check_foundation", "model_input",
           "model_input_slot", "post_train", "select_config"]  # fmt: skip
