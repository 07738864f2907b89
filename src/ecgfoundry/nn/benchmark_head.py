"""Building blocks shared by the PTB-XL benchmark's task-specific CNNs (Strodthoff et al. 2021,
``helme/ecg_ptbxl_benchmarking``): the concat-pooling classification head, its config fields,
a conv-BN-ReLU helper, the benchmark's weight initialisation and its input spec.

Written from the published definitions (``code/models/basic_conv1d.py`` ``create_head1d`` and
``AdaptiveConcatPool1d``, fastai 1.0.61 ``bn_drop_lin``; ``code/models/fastai_model.py``):

* pooling: adaptive max pooling and adaptive average pooling over time, concatenated **max
  first** (``AdaptiveConcatPool1d.forward`` is ``cat([max, avg])``), so ``2 * C`` features;
* head: for each hidden size ``h`` of ``lin_ftrs_head`` (published ``[128]``)
  ``BatchNorm1d -> Dropout -> Linear(., h) -> ReLU``, then ``BatchNorm1d -> Dropout ->
  Linear(., num_classes)``. ``ps_head`` (published 0.5) given as one number follows fastai's
  rule: the hidden layers get ``ps / 2`` and the output layer ``ps``, i.e. Dropout(0.25) before
  the hidden Linear and Dropout(0.5) before the output Linear. No final BatchNorm
  (``bn_final_head=False``). The benchmark's head is ``BN(2C) Drop(.25) Linear(2C,128) ReLU
  BN(128) Drop(.5) Linear(128,n)``: ``4C + 256C + 128 + 256 + 129n`` parameters;
* initialisation: training from scratch, ``fastai_model.fit`` calls
  ``learn.model.apply(weight_init)`` (``basic_conv1d.py``) on the whole network, which sets every
  Conv1d/Linear weight with ``kaiming_normal_`` (fan-in, gain sqrt 2) and zeroes its bias, and
  every BatchNorm1d to weight 1, bias 0. This replaces whatever the model constructors did
  (e.g. XResNet1d's own ``init_cnn`` and zero-initialised BatchNorms), so it is what the
  published numbers were trained from; :func:`init_benchmark_weights` does the same.
  Fine-tuning replaces the output Linear by a fresh kaiming-normal one (``apply_init``), which
  is what :class:`BenchmarkHead` gives too.

Input (:data:`PTBXL_BENCHMARK_SPEC`): PTB-XL ``records100`` (100 Hz), the 12 leads in the
file order (I, II, III, aVR, aVL, aVF, V1-V6), random 2.5 s crops (250 samples) in training.
The benchmark standardises with ONE mean and ONE standard deviation fitted by a
``StandardScaler`` on all training samples of all leads (``utils.preprocess_signals``): an
affine map of the whole input, which the first convolution followed by BatchNorm absorbs, so the
spec says normalisation ``"none"`` (millivolts); apply the fitted scaler yourself to reproduce the
published pipeline exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ecgfoundry.spec import STANDARD_LEADS, InputSpec

PTBXL_BENCHMARK_SPEC: dict[str, Any] = InputSpec(
    fs=100.0, seconds=2.5, leads=STANDARD_LEADS, normalisation="none"
).to_dict()

# The benchmark's head hyperparameters (fastai_model.__init__ defaults, used by every config).
BENCHMARK_HEAD_HIDDEN: tuple[int, ...] = (128,)  # lin_ftrs_head
BENCHMARK_HEAD_DROPOUT = 0.5  # ps_head


@dataclass
class BenchmarkHeadConfig:
    """Head fields the three benchmark families share (mixed into their configs).

    ``head_hidden``: hidden sizes (``lin_ftrs_head``). ``head_dropout``: ``ps_head``, one number
    (hidden layers get half of it, the output layer all of it) or one rate per Linear.
    ``head_bn``: BatchNorm before each Linear. ``concat_pooling``: max ++ average pooling
    (False: average pooling only; the reference would fall back to a non-adaptive
    ``MaxPool1d(2)`` + flatten, which is not supported here).
    """

    head_hidden: list[int] = field(default_factory=lambda: list(BENCHMARK_HEAD_HIDDEN))
    head_dropout: float | list[float] = BENCHMARK_HEAD_DROPOUT
    head_bn: bool = True
    concat_pooling: bool = True

    def head_dropouts(self) -> list[float]:
        """The dropout rate before each Linear of the head (fastai's ``ps`` rule)."""
        return head_dropouts(self.head_dropout, len(self.head_hidden))

    def benchmark_problems(self, in_channels: int) -> list[str]:
        """Problems with the shared fields; fills an empty ``spec`` for 12 leads."""
        problems = []
        self.head_hidden = [int(h) for h in self.head_hidden]
        if isinstance(self.head_dropout, list | tuple):
            self.head_dropout = [float(p) for p in self.head_dropout]
        if any(h < 1 for h in self.head_hidden):
            problems.append(f"head_hidden sizes must be >= 1, got {self.head_hidden}")
        try:
            rates = self.head_dropouts()
            if any(not 0.0 <= p < 1.0 for p in rates):
                problems.append(f"head dropout rates must be in [0, 1), got {rates}")
        except ValueError as error:
            problems.append(str(error))
        drop_path_rate = getattr(self, "drop_path_rate", 0.0)
        if not 0.0 <= drop_path_rate < 1.0:
            problems.append(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        labels, num_classes = getattr(self, "labels", None), getattr(self, "num_classes", None)
        if labels is not None and len(labels) != (num_classes or 0):
            problems.append(f"{len(labels)} labels for {num_classes} classes")
        if in_channels < 1:
            problems.append(f"in_channels must be >= 1, got {in_channels}")
        spec = getattr(self, "spec", None)
        if not spec:
            if in_channels == len(STANDARD_LEADS):
                self.spec = dict(PTBXL_BENCHMARK_SPEC)  # type: ignore[attr-defined]
            else:
                problems.append(f"in_channels {in_channels}: give a spec naming the leads")
        else:
            leads = InputSpec.from_dict(spec).leads
            if len(leads) != in_channels:
                problems.append(f"spec has {len(leads)} leads but in_channels is {in_channels}")
        return problems


def head_dropouts(ps: float | list[float], n_hidden: int) -> list[float]:
    """Dropout before each of the ``n_hidden + 1`` Linears: one number ``p`` gives
    ``[p / 2] * n_hidden + [p]`` (fastai's ``create_head``), a list is used as it is."""
    if isinstance(ps, list | tuple):
        if len(ps) != n_hidden + 1:
            raise ValueError(f"head_dropout has {len(ps)} rates for {n_hidden + 1} Linear layers")
        return [float(p) for p in ps]
    return [float(ps) / 2] * n_hidden + [float(ps)]


class ConcatPool1d(nn.Module):
    """Adaptive max pooling ++ adaptive average pooling over time: [B, C, T] -> [B, 2C]
    (max first, as the benchmark's ``AdaptiveConcatPool1d``); ``concat=False``: average only."""

    def __init__(self, concat: bool = True):
        super().__init__()
        self.concat = concat

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(-1)
        return torch.cat([x.amax(-1), mean], dim=1) if self.concat else mean

    def extra_repr(self) -> str:
        return f"concat={self.concat}"


class BenchmarkHead(nn.Sequential):
    """The benchmark's classification head on pooled features: per layer ``[BatchNorm1d]
    [Dropout] Linear`` with ReLU between layers (kaiming-normal Linears, zero biases)."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: list[int] | tuple[int, ...] = BENCHMARK_HEAD_HIDDEN,
        dropout: float | list[float] = BENCHMARK_HEAD_DROPOUT,
        bn: bool = True,
    ):
        sizes = [in_features, *hidden, num_classes]
        rates = head_dropouts(dropout, len(hidden))
        layers: list[nn.Module] = []
        for i, (n_in, n_out, p) in enumerate(zip(sizes[:-1], sizes[1:], rates, strict=True)):
            if bn:
                layers.append(nn.BatchNorm1d(n_in))
            if p:
                layers.append(nn.Dropout(p))
            layers.append(nn.Linear(n_in, n_out))
            if i < len(hidden):
                layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)
        init_benchmark_weights(self)

    @classmethod
    def from_config(
        cls, config: BenchmarkHeadConfig, in_features: int, num_classes: int
    ) -> BenchmarkHead:
        return cls(
            in_features,
            num_classes,
            hidden=config.head_hidden,
            dropout=config.head_dropout,
            bn=config.head_bn,
        )


def conv_bn_relu(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    *,
    relu: bool = True,
) -> nn.Sequential:
    """Conv1d (padding ``(k - 1) // 2``, no bias) -> BatchNorm1d [-> ReLU]."""
    layers: list[nn.Module] = [
        nn.Conv1d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=(kernel_size - 1) // 2,
            bias=False,
        ),
        nn.BatchNorm1d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


@torch.no_grad()
def init_benchmark_weights(module: nn.Module) -> None:
    """The benchmark's ``weight_init``: kaiming-normal Conv1d/Linear weights (fan-in, ReLU
    gain), zero biases; BatchNorm1d weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv1d | nn.Linear):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def check_input(x: Tensor, in_channels: int, name: str) -> None:
    """A ValueError naming the expected [batch, leads, samples] layout."""
    if x.ndim != 3 or x.shape[1] != in_channels:
        raise ValueError(
            f"{name} expects [batch, {in_channels} leads, samples], got {tuple(x.shape)}"
        )


__all__ = [
    "BENCHMARK_HEAD_DROPOUT",
    "BENCHMARK_HEAD_HIDDEN",
    "PTBXL_BENCHMARK_SPEC",
    "BenchmarkHead",
    "BenchmarkHeadConfig",
    "ConcatPool1d",
    "check_input",
    "conv_bn_relu",
    "head_dropouts",
    "init_benchmark_weights",
]
