"""Model zoo: one registry over the families (ECGFounder Net1D, ECG-FM wav2vec 2.0, HuBERT-ECG,
the PTB-XL benchmark's task-specific CNNs, ...).

Importing this package imports every family file in it (each registers its own presets), so
adding a family is adding one file.
"""

import importlib
import pkgutil

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
    resolve_model,
)

_NOT_FAMILIES = {"base", "io", "registry"}
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _NOT_FAMILIES and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

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
    "resolve_model",
    "save_model",
]
