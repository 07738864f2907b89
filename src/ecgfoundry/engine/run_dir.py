"""A run folder: claimed by its configuration (a rerun resumes, another configuration is
refused), and the JSONL log of finished epochs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ecgfoundry.atomic import atomic_write_text
from ecgfoundry.errors import ReportedError


class RunConfigError(ValueError, ReportedError):
    """RUN_DIR holds a run with a different configuration."""


def claim_run_dir(out: Path, config: dict[str, Any], *, write: bool) -> None:
    """Check that ``out/config.json`` is this run's, or make it so (the process with ``write``
    checks and writes; the others, racing it before a barrier, compare a config.json that is
    there and never judge the folder's other files, such as its temporary file). A folder of
    another configuration, or a non-empty folder that holds no run, is refused: finished work
    is never silently reused or overwritten."""
    if out.exists() and not out.is_dir():
        raise RunConfigError(f"{out} is a file, not a run folder: use another --out")
    path = out / "config.json"
    if path.exists():
        before = json.loads(path.read_text())
        if before != config:
            changed = sorted(k for k in set(before) | set(config) if before.get(k) != config.get(k))
            raise RunConfigError(
                f"{out} holds a run with a different configuration (differs in {changed}); "
                "use another --out, or delete the folder to start over"
            )
        return
    if not write:
        return
    if out.exists() and any(p.name != "config.json" for p in out.iterdir()):
        raise RunConfigError(f"{out} is not empty and holds no ecgfoundry run: use another --out")
    atomic_write_text(path, json.dumps(config, indent=1))


class EpochLog:
    """Where the engine reports each finished epoch. ``restart`` receives the history of the
    epochs already run (empty unless resuming) before the first new record; this base class
    keeps nothing (processes other than the main one, or Python use without a log)."""

    def restart(self, history: list[dict[str, Any]]) -> None:
        """Start over from ``history``: the records of a resumed run's finished epochs."""

    def __call__(self, record: dict[str, Any]) -> None:
        """Record one finished epoch."""


class JsonlLog(EpochLog):
    """RUN_DIR/log.jsonl: one line per epoch. Rewritten from the checkpoint's history on
    resume, so a killed run never leaves duplicate or missing lines."""

    def __init__(self, path: Path):
        self.path = path

    def restart(self, history: list[dict[str, Any]]) -> None:
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in history))

    def __call__(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
