"""Supervised adaptation: strategies as recipes, run by the engine as one objective."""

from ecgfoundry.adapt.objective import SupervisedObjective
from ecgfoundry.adapt.recipe import STRATEGIES, Recipe, Stage, recipe_for
from ecgfoundry.adapt.run import finetune
from ecgfoundry.adapt.sources import (
    cinc_cache,
    cinc_task,
    source_cache,
    table_cache,
    table_task,
)
from ecgfoundry.engine import RunConfigError, TrainingError

__all__ = [
    "STRATEGIES",
    "Recipe",
    "RunConfigError",
    "Stage",
    "SupervisedObjective",
    "TrainingError",
    "cinc_cache",
    "cinc_task",
    "finetune",
    "recipe_for",
    "source_cache",
    "table_cache",
    "table_task",
]
