"""Settings files: every ``--config`` is YAML (JSON, a subset of YAML, reads too)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ecgfoundry.errors import UsageError


def read_settings(path: str | Path, option: str = "--config") -> dict[str, Any]:
    """The mapping in a YAML (or JSON) file; a UsageError naming ``option`` and the file when
    it cannot be read or holds something else."""
    try:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise UsageError(f"{option} {path}: not a readable YAML file ({error})") from error
    if not isinstance(loaded, dict):
        raise UsageError(f"{option} {path}: expected a mapping of settings")
    return loaded


def typed_settings(kind: type, values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``values`` for the dataclass ``kind``, each checked against its field's default: a
    number YAML read as text (YAML 1.1 reads ``1e-3``, without a dot, as a string) becomes a
    float; a value of another type is a UsageError naming ``source`` and the field. Fields
    whose default is not a plain bool, int, float or string are left as given."""
    out = dict(values)
    for field in dataclasses.fields(kind):
        default, value = field.default, out.get(field.name, field.default)
        if not isinstance(default, bool | int | float | str):
            continue
        if value is None and "None" in str(field.type):
            continue
        if isinstance(default, float) and isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = out[field.name] = float(value)
        if not _same_kind(value, default):
            raise UsageError(f"{source}: {field.name} must be of type {type(default).__name__}, "
                             f"got {value!r}")  # fmt: skip
    return out


def _same_kind(value: Any, default: bool | int | float | str) -> bool:
    """Whether ``value`` has ``default``'s type (a whole number passes for a float)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))
