"""ecgfoundry: load, adapt, personalise and benchmark ECG foundation models."""

from ecgfoundry.spec import InputSpec

__version__ = "0.1.0"
__all__ = ["InputSpec", "__version__"]
