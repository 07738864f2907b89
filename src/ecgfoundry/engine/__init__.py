"""The training engine: one way to train anything (see :mod:`ecgfoundry.engine.engine`);
objectives say what is trained (:mod:`ecgfoundry.engine.objective`)."""

from ecgfoundry.engine.checkpoint import Progress
from ecgfoundry.engine.engine import Engine, TrainingError, check_run_options, is_out_of_memory
from ecgfoundry.engine.objective import Objective, StagePlan, StageSetup, StepOutput
from ecgfoundry.engine.precision import autocast_dtype
from ecgfoundry.engine.run_dir import EpochLog, JsonlLog, RunConfigError, claim_run_dir

__all__ = [
    "Engine",
    "EpochLog",
    "JsonlLog",
    "Objective",
    "Progress",
    "RunConfigError",
    "StagePlan",
    "StageSetup",
    "StepOutput",
    "TrainingError",
    "autocast_dtype",
    "check_run_options",
    "claim_run_dir",
    "is_out_of_memory",
]
