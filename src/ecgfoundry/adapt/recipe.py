"""Strategies are recipes: data saying which parameters train when, how fast, with which
drop-path rate. One training loop (:mod:`ecgfoundry.adapt.loop`) runs any of them.

Strategies (defaults below; every field can be overridden from YAML or the CLI):

- ``scratch``: random initialisation, every parameter trains.
- ``linear-probe``: the pretrained backbone is frozen; only a linear head trains.
- ``finetune``: the baseline, ECGFounder's published recipe: Adam, lr 1e-4, BCE, all parameters.
- ``lp-ft``: linear probing to convergence, then full fine-tuning at a lower rate
  (Kumar et al. 2022).
- ``post-train``: Zhou et al. 2025: a short *preview* linear probe initialises the head, then
  full fine-tuning regularised with stochastic depth.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

Trainable = Literal["head", "all"]


@dataclass
class Stage:
    """One phase of training.

    ``train``: ``head`` (frozen backbone) or ``all``. ``lr`` is the backbone's rate and
    ``head_lr`` the head's (default: ``lr``). ``schedule``: ``constant`` or ``cosine`` (after
    ``warmup_epochs`` of linear warm-up). ``patience``: early stopping on validation macro
    AUROC, in epochs (None: off); the best epoch's weights are restored at the end.
    """

    name: str = "finetune"
    epochs: int = 20
    train: Trainable = "all"
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-4
    head_lr: float | None = None
    weight_decay: float = 0.0
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_epochs: float = 0.0
    drop_path_rate: float = 0.0
    patience: int | None = 5

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"stage {self.name}: epochs must be >= 0")
        if self.train not in ("head", "all"):
            raise ValueError(f"stage {self.name}: train must be 'head' or 'all'")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"stage {self.name}: drop_path_rate must be in [0, 1)")


@dataclass
class Recipe:
    """A strategy: its stages plus what holds for all of them."""

    strategy: str
    stages: list[Stage] = field(default_factory=list)
    init: Literal["pretrained", "random"] = "pretrained"
    batch_size: int = 64
    grad_clip: float | None = 1.0
    pos_weight: bool = False  # weight positives by negatives/positives per label (capped)
    eval_aggregate: Literal["max", "mean"] = "max"
    precision: Literal["auto", "fp32", "bf16"] = "auto"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        data = dict(data)
        stages = [s if isinstance(s, Stage) else Stage(**s) for s in data.pop("stages", [])]
        return cls(stages=stages, **data)

    def with_overrides(self, overrides: dict[str, Any]) -> Recipe:
        """Overrides as nested dicts or dotted keys: ``{"batch_size": 32}``,
        ``{"stages.1.lr": 3e-5}``, ``{"stages": [{...}, {...}]}`` (replaces the stages)."""
        data = self.to_dict()
        for key, value in overrides.items():
            _set_dotted(data, key.split("."), value)
        return Recipe.from_dict(data)


def _set_dotted(data: Any, path: list[str], value: Any) -> None:
    key: Any = path[0]
    if isinstance(data, list):
        key = int(key)
        if not -len(data) <= key < len(data):
            raise KeyError(f"there is no stage {key} (the recipe has {len(data)})")
    elif key not in data:
        raise KeyError(f"unknown recipe field {key!r}; fields: {sorted(data)}")
    if len(path) > 1:
        _set_dotted(data[key], path[1:], value)
    elif isinstance(value, dict) and isinstance(data[key], dict | list):
        for inner, inner_value in value.items():  # nested YAML: merge field by field
            _set_dotted(data[key], str(inner).split("."), inner_value)
    else:
        data[key] = value


def _scratch() -> Recipe:
    return Recipe("scratch", [Stage("train", epochs=30, lr=1e-3, schedule="cosine",
                                    warmup_epochs=1, patience=8)], init="random")  # fmt: skip


def _linear_probe() -> Recipe:
    return Recipe("linear-probe", [Stage("probe", epochs=100, train="head", lr=1e-3, patience=10)])


def _finetune() -> Recipe:
    return Recipe("finetune", [Stage("finetune", epochs=20, lr=1e-4, patience=5)])


def _lp_ft() -> Recipe:
    return Recipe(
        "lp-ft",
        [
            Stage("probe", epochs=100, train="head", lr=1e-3, patience=10),
            Stage("finetune", epochs=20, lr=1e-5, patience=5),
        ],
    )


def _post_train() -> Recipe:
    return Recipe(
        "post-train",
        [
            Stage("preview-probe", epochs=5, train="head", lr=1e-3, patience=None),
            Stage("finetune", epochs=20, lr=1e-4, drop_path_rate=0.1, patience=5),
        ],
    )


STRATEGIES = {
    "scratch": _scratch,
    "linear-probe": _linear_probe,
    "finetune": _finetune,
    "lp-ft": _lp_ft,
    "post-train": _post_train,
}


def recipe_for(
    strategy: str,
    *,
    config: str | Path | dict[str, Any] | None = None,
    epochs: int | None = None,
) -> Recipe:
    """The strategy's default recipe, then a YAML file (or dict) of overrides, then ``epochs``
    (sets the last stage's epochs: the main training stage)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {sorted(STRATEGIES)}")
    recipe = STRATEGIES[strategy]()
    if config is not None:
        overrides = config if isinstance(config, dict) else yaml.safe_load(Path(config).read_text())
        recipe = recipe.with_overrides(overrides or {})
    if epochs is not None:
        recipe.stages[-1].epochs = epochs
    return recipe
