"""Strategies are recipes: data saying which parameters train when, how fast, with which
drop-path rate. The supervised objective (:mod:`ecgfoundry.adapt.objective`) turns any of them
into stages of the one training engine (:mod:`ecgfoundry.engine`).

Strategies (defaults below; every field can be overridden from YAML or the CLI):

- ``scratch``: random initialisation, every parameter trains.
- ``linear-probe``: the pretrained backbone is frozen; only a linear head trains.
- ``finetune``: the baseline, ECGFounder's published recipe: Adam, lr 1e-4, BCE, all parameters.
- ``lp-ft``: linear probing to convergence, then full fine-tuning at a lower rate
  (Kumar et al. 2022).
- ``post-train``: Zhou et al. 2025: a short *preview* linear probe initialises the head, then
  full fine-tuning regularised with stochastic depth. Defaults (10 preview epochs, drop-path
  rate 0.3, fine-tuning lr 1e-4) chosen by a validation sweep on PTB-XL fold 9
  (``benchmarks/post_training.py --variants sweep``; the README gives the table).

Fine-tuning stages may run 100 epochs and are ended by early stopping (patience 5): with a
20-epoch cap, fine-tuning on 10 % of PTB-XL's rhythm labels was cut off while still improving.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ecgfoundry.engine.objective import Schedule
from ecgfoundry.errors import ReportedError
from ecgfoundry.evaluate.metrics import DEFAULT_AGGREGATE, Aggregate

Trainable = Literal["head", "attention", "all"]


@dataclass
class Stage:
    """One phase of training.

    ``train``: ``head`` (frozen backbone, linear head on its embeddings), ``attention``
    (frozen backbone, an attention-pooling head on its per-step features) or ``all``. ``lr``
    is the backbone's rate and ``head_lr`` the head's (default: ``lr``; with ``one-cycle``
    both are peak rates).
    ``schedule``: ``constant`` or ``cosine`` (after ``warmup_epochs`` of linear warm-up), or
    ``one-cycle`` (fastai's, as the PTB-XL benchmark trains; see
    :class:`ecgfoundry.engine.StagePlan`). ``patience``: early stopping on validation macro
    AUROC, in validations without improvement (epochs when ``eval_every`` is 1; None: off).
    ``restore_best``: end with the best validation epoch's weights (else the last epoch's: no
    selection on the validation fold). ``eval_every``: validate every N epochs (and after the
    last).
    """

    name: str = "finetune"
    epochs: int = 20
    train: Trainable = "all"
    optimizer: Literal["adam", "adamw"] = "adam"
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    lr: float = 1e-4
    head_lr: float | None = None
    weight_decay: float = 0.0
    schedule: Schedule = "constant"
    warmup_epochs: float = 0.0
    drop_path_rate: float = 0.0
    patience: int | None = 5
    restore_best: bool = True
    eval_every: int = 1

    def __post_init__(self) -> None:
        for name in ("lr", "head_lr", "weight_decay", "warmup_epochs", "drop_path_rate"):
            value = getattr(self, name)
            if value is not None:  # YAML reads 3e-5 (no dot) as a string
                setattr(self, name, _number(value, f"stage {self.name}: {name}"))
        _choice(self.train, ("head", "attention", "all"), f"stage {self.name}: train")
        _choice(self.optimizer, ("adam", "adamw"), f"stage {self.name}: optimizer")
        _choice(self.schedule, ("constant", "cosine", "one-cycle"), f"stage {self.name}: schedule")
        self.betas = [_number(b, f"stage {self.name}: betas") for b in self.betas]
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"stage {self.name}: betas must be two numbers in [0, 1)")
        if not isinstance(self.eval_every, int) or self.eval_every < 1:
            raise ValueError(f"stage {self.name}: eval_every must be a whole number >= 1")
        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise ValueError(f"stage {self.name}: epochs must be a whole number >= 0")
        if self.lr <= 0 or (self.head_lr is not None and self.head_lr <= 0):
            raise ValueError(f"stage {self.name}: learning rates must be > 0")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"stage {self.name}: drop_path_rate must be in [0, 1)")


def _number(value: Any, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None


def _choice(value: Any, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {list(allowed)}, got {value!r}")


@dataclass
class Recipe:
    """A strategy: its stages plus what holds for all of them."""

    strategy: str
    stages: list[Stage] = field(default_factory=list)
    init: Literal["pretrained", "random"] = "pretrained"
    batch_size: int = 64
    grad_clip: float | None = 1.0
    pos_weight: bool = False  # weight positives by negatives/positives per label (capped)
    eval_aggregate: Aggregate = DEFAULT_AGGREGATE  # predict's default too: one aggregation
    precision: Literal["auto", "fp32", "bf16"] = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a whole number >= 1, got {self.batch_size!r}")
        _choice(self.init, ("pretrained", "random"), "init")
        _choice(self.eval_aggregate, ("max", "mean"), "eval_aggregate")
        _choice(self.precision, ("auto", "fp32", "bf16"), "precision")
        if self.grad_clip is not None:
            self.grad_clip = _number(self.grad_clip, "grad_clip")
        if not self.stages:
            raise ValueError("a recipe needs at least one stage")

    @property
    def head(self) -> str:
        """The head the model gets: ``attention`` when a stage trains one, else ``linear``."""
        return "attention" if any(s.train == "attention" for s in self.stages) else "linear"

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


def _attention_probe() -> Recipe:
    probe = Stage("probe", epochs=100, train="attention", lr=1e-3, patience=10)
    return Recipe("attention-probe", [probe])


def _finetune() -> Recipe:
    return Recipe("finetune", [Stage("finetune", epochs=100, lr=1e-4, patience=5)])


def _lp_ft() -> Recipe:
    return Recipe(
        "lp-ft",
        [
            Stage("probe", epochs=100, train="head", lr=1e-3, patience=10),
            Stage("finetune", epochs=100, lr=1e-5, patience=5),
        ],
    )


def _post_train() -> Recipe:
    return Recipe(
        "post-train",
        [
            Stage("preview-probe", epochs=10, train="head", lr=1e-3, patience=None),
            Stage("finetune", epochs=100, lr=1e-4, drop_path_rate=0.3, patience=5),
        ],
    )


def _supervised() -> Recipe:
    """The PTB-XL benchmark's training of its task-specific models (Strodthoff et al. 2021,
    fastai 1's ``fit_one_cycle``): random init, Adam with betas (0.9, 0.99) and decoupled weight
    decay 0.01 on every parameter, one-cycle to lr 0.01, 50 epochs, batch 128, no early stopping
    and no selection on fold 9 (the last epoch's weights). Random crops of the model's input
    (2.5 s for those models) and the max over sliding windows come from the data."""
    return Recipe("supervised", [Stage("train", epochs=50, optimizer="adamw", lr=1e-2,
                                       betas=[0.9, 0.99],
                                       weight_decay=1e-2, schedule="one-cycle", patience=None,
                                       restore_best=False, eval_every=5)],
                  init="random", batch_size=128, grad_clip=None)  # fmt: skip


STRATEGIES = {
    "scratch": _scratch,
    "linear-probe": _linear_probe,
    "attention-probe": _attention_probe,
    "finetune": _finetune,
    "lp-ft": _lp_ft,
    "post-train": _post_train,
    "supervised": _supervised,
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
        raise RecipeError(f"unknown strategy {strategy!r}; choose from {sorted(STRATEGIES)}")
    if epochs is not None and (not isinstance(epochs, numbers.Integral) or epochs < 1):
        raise RecipeError(f"epochs must be a whole number >= 1 (the main stage's), got {epochs!r}")
    recipe = STRATEGIES[strategy]()
    source = "the recipe overrides" if isinstance(config, dict) else str(config)
    try:
        if config is not None:
            overrides = (
                config if isinstance(config, dict) else yaml.safe_load(Path(config).read_text())
            )
            if not isinstance(overrides or {}, dict):
                raise ValueError("expected a mapping of recipe fields")
            recipe = recipe.with_overrides(overrides or {})
        if epochs is not None:
            recipe = recipe.with_overrides({f"stages.{len(recipe.stages) - 1}.epochs": int(epochs)})
    except (OSError, yaml.YAMLError, ValueError, KeyError, TypeError, IndexError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        raise RecipeError(f"{source}: {message}") from error
    return recipe


class RecipeError(ValueError, ReportedError):
    """A recipe that cannot be used: the message names the file and the field."""
