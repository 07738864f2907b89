"""Atomic writes: a finished file or folder appears under its name, or nothing does."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import Any

import numpy as np


def _set_aside(final: Path) -> list[Path]:
    return sorted(final.parent.glob(f".{final.name}.old-*"), key=lambda p: p.stat().st_mtime)


def recover_dir(final: str | Path) -> Path:
    """Undo a replacement cut short between its two renames: if ``final`` is missing but a
    copy was set aside, put the newest one back. Returns ``final``."""
    final = Path(final)
    if not final.exists() and final.parent.is_dir():
        aside = _set_aside(final)
        if aside:
            os.rename(aside[-1], final)
    return final


@contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; on success it replaces ``final`` (an old
    one is set aside first, then deleted; :func:`recover_dir` undoes a crash in between).
    On error the temporary folder is removed."""
    final = recover_dir(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        if final.exists():
            os.rename(final, old)
        os.rename(tmp, final)
        for leftover in _set_aside(final):
            shutil.rmtree(leftover, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` for numpy scalars and paths."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write a text file via a temporary file and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
