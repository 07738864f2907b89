"""The interface every model family implements (timm-style).

A family subclasses :class:`ECGModel`, keeps its hyperparameters in a config dataclass that
subclasses :class:`ModelConfig`, and implements ``forward_features`` (the embedding),
``forward_sequence`` (per-step features) and ``intermediates`` (those after each block). The
head, ``forward``, ``forward_intermediates``, ``reset_head`` and stochastic depth control live
here once.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from torch import Tensor, nn

from ecgfoundry.nn.attention import AttentionHead
from ecgfoundry.nn.layers import DropPath, drop_path_rates
from ecgfoundry.spec import InputSpec

HEAD_KINDS = ("linear", "attention")


@dataclass
class ModelConfig:
    """Fields every family config has; families add their architecture hyperparameters.

    ``num_classes`` 0 or None means no head (``forward`` returns the embedding).
    ``labels`` optionally names the outputs. ``spec`` is the input the model expects.
    ``head``: ``linear`` (on the pooled embedding; the family's own head) or ``attention``
    (learnable-query attention pooling over ``forward_sequence``, then linear).
    """

    # the field that holds the number of input leads, if the family has one: set from a spec
    # given to create_model (a 1-lead spec makes a 1-lead model), unless given itself
    leads_field: ClassVar[str | None] = None

    num_classes: int | None = None
    drop_path_rate: float = 0.0
    labels: list[str] | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    head: str = "linear"

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain data; ``head`` only when not ``linear`` (it came later: so the
        configs, fingerprints and run folders of linear-head models stay as they were)."""
        data = dataclasses.asdict(self)
        if data.get("head") == "linear":
            del data["head"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{cls.__name__} has no field(s) {unknown}")
        return cls(**data)


def last_output(outputs: Iterable[Tensor]) -> Tensor:
    """The last output of a block-by-block pass (an iterator of each block's output), holding
    one block's output at a time: what ``forward`` needs without keeping every intermediate."""
    tail = deque(outputs, maxlen=1)
    if not tail:
        raise ValueError("a model with no blocks")
    return tail[0]


class ECGModel(nn.Module):
    """Base class: ``forward_features(x) -> [B, D]``, ``forward_sequence(x) -> [B, T, D]``,
    ``forward_intermediates(x) -> [[B, T_i, D_i], ...]``, ``forward_head``, ``forward``.

    Input ``x`` is [B, leads, samples] prepared according to :attr:`spec`. ``origin``: the
    folder :func:`~ecgfoundry.models.load_model` read the weights from (None for a model built
    in memory); its ``manifest.json`` lists the records those weights were trained on.
    """

    family: ClassVar[str] = ""
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    origin: Path | None = None

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.head: nn.Module = nn.Identity()

    # -- to implement ------------------------------------------------------------------------
    @property
    def num_features(self) -> int:
        """Size of the embedding ``forward_features`` returns."""
        raise NotImplementedError

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_sequence(self, x: Tensor) -> Tensor:
        """Per-time-step features ``[B, T, D]`` of the last layer: what ``forward_features``
        pools (pretraining objectives and representation analyses use it)."""
        raise NotImplementedError

    @property
    def num_sequence_features(self) -> int:
        """Size of the per-step features ``forward_sequence`` returns."""
        return self.num_features

    def intermediates(self, x: Tensor) -> list[Tensor]:
        """Per-step features ``[B, T, D]`` after each block of the backbone (stage, residual
        unit or layer), input side first; the last is ``forward_sequence(x)``."""
        raise NotImplementedError

    @property
    def has_unused_parameters(self) -> bool:
        """Whether a training step leaves some parameters without a gradient (e.g. layers kept
        for checkpoint compatibility but not applied). DistributedDataParallel then searches
        for them every step, which costs, so only such models ask for it."""
        return False

    # -- shared ------------------------------------------------------------------------------
    @property
    def spec(self) -> InputSpec:
        return InputSpec.from_dict(self.config.spec)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes or 0

    def forward_head(self, features: Tensor) -> Tensor:
        return self.head(features)

    def forward_intermediates(
        self, x: Tensor, indices: Sequence[int] | None = None
    ) -> list[Tensor]:
        """The per-step features ``[B, T, D]`` after each block (:meth:`intermediates`), or
        after the blocks at ``indices`` (negative ones count from the last block), for probing
        or analysing layers other than the last."""
        layers = self.intermediates(x)
        if indices is None:
            return layers
        count = len(layers)
        if bad := [i for i in indices if not -count <= i < count]:
            raise IndexError(f"{type(self).__name__} has {count} blocks; indices {bad} are out "
                             "of range")  # fmt: skip
        return [layers[i] for i in indices]

    def forward(self, x: Tensor) -> Tensor:
        if self.config.head == "attention" and self.num_classes:
            return self.head(self.forward_sequence(x))
        return self.forward_head(self.forward_features(x))

    def reset_head(self, num_classes: int | None, labels: list[str] | None = None,
                   kind: str | None = None) -> None:  # fmt: skip
        """A fresh head with ``num_classes`` outputs (None/0: no head): ``kind`` ``linear``
        or ``attention`` (None: the config's)."""
        kind = kind or self.config.head
        if kind not in HEAD_KINDS:
            raise ValueError(f"head must be one of {HEAD_KINDS}, got {kind!r}")
        if labels is not None and num_classes and len(labels) != num_classes:
            raise ValueError(f"{len(labels)} labels for {num_classes} classes")
        if not num_classes:
            self.head = nn.Identity()
        elif kind == "attention":
            self.head = AttentionHead(self.num_sequence_features, num_classes)
        else:
            self.head = nn.Linear(self.num_features, num_classes)
        self.config.num_classes = num_classes or None
        self.config.labels = list(labels) if labels else None
        self.config.head = kind

    def drop_path_modules(self) -> list[DropPath]:
        """The DropPath modules in depth order (module registration order)."""
        return [m for m in self.modules() if isinstance(m, DropPath)]

    def set_drop_path_rate(self, rate: float) -> None:
        """Stochastic depth rising linearly with depth to ``rate`` (identity in eval mode)."""
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {rate}")
        modules = self.drop_path_modules()
        for module, p in zip(modules, drop_path_rates(rate, len(modules)), strict=True):
            module.p = p
        self.config.drop_path_rate = rate
