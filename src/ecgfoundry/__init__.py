"""ecgfoundry: load, adapt, personalise and benchmark ECG foundation models."""

from typing import Any

from ecgfoundry.spec import InputSpec

__version__ = "0.1.0"
__all__ = ["InputSpec", "__version__", "create_model", "list_models", "load_model"]

_MODEL_API = ("create_model", "list_models", "load_model")


def __getattr__(name: str) -> Any:
    """``ecgfoundry.create_model`` etc., imported on first use (torch is slow to import)."""
    if name in _MODEL_API:
        from ecgfoundry import models

        return getattr(models, name)
    raise AttributeError(f"module 'ecgfoundry' has no attribute {name!r}")
