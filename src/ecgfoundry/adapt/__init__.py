"""Supervised adaptation: one training loop, strategies as recipes, resumable runs."""

from ecgfoundry.adapt.loop import EpochLog, Trainer, TrainingError
from ecgfoundry.adapt.recipe import STRATEGIES, Recipe, Stage, recipe_for
from ecgfoundry.adapt.run import RunConfigError, finetune

__all__ = [
    "STRATEGIES",
    "EpochLog",
    "Recipe",
    "RunConfigError",
    "Stage",
    "Trainer",
    "TrainingError",
    "finetune",
    "recipe_for",
]
