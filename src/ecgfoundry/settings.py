"""Settings files: every ``--config`` is YAML (JSON, a subset of YAML, reads too)."""

from __future__ import annotations

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
