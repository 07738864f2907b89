"""Model zoo: one registry over the families (ECGFounder Net1D, ECG-FM wav2vec 2.0, HuBERT-ECG).

Importing this package registers every family's presets.
"""

from ecgfoundry.models import hubert, net1d, wav2vec2  # noqa: F401  (registers the presets)
from ecgfoundry.models.base import ECGModel, ModelConfig
from ecgfoundry.models.io import CheckpointError, UnsafeCheckpointError, save_model
from ecgfoundry.models.registry import (
    build_config,
    count_parameters,
    create_model,
    list_models,
    load_model,
    model_names,
    register_model,
)

__all__ = [
    "CheckpointError",
    "ECGModel",
    "ModelConfig",
    "UnsafeCheckpointError",
    "build_config",
    "count_parameters",
    "create_model",
    "list_models",
    "load_model",
    "model_names",
    "register_model",
    "save_model",
]
