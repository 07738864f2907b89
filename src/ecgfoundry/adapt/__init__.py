"""Supervised adaptation: one training loop, strategies as recipes, resumable runs."""

from ecgfoundry.adapt.loop import Trainer, TrainingError
from ecgfoundry.adapt.recipe import STRATEGIES, Recipe, Stage, recipe_for
from ecgfoundry.adapt.run import RunConfigError, finetune

__all__ = [
    "STRATEGIES",
    "Recipe",
    "RunConfigError",
    "Stage",
    "Trainer",
    "TrainingError",
    "finetune",
    "recipe_for",
]
