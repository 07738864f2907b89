"""Layers the model families share."""

from ecgfoundry.nn.layers import DropPath, SamePad, drop_path, drop_path_rates, nonzero_mean

__all__ = ["DropPath", "SamePad", "drop_path", "drop_path_rates", "nonzero_mean"]
