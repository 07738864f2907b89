"""What ecgfoundry reads in a file or folder, before any model runs: ``ecgfoundry data inspect``.

One row per ECG: its format, rate, leads, length, heart rate, age and sex where the file says,
what was repaired, and — given a model's input spec — the model input it becomes through the
same path ``predict`` and ``embed`` take. A file that cannot be read or prepared gets a row
with its problem instead of stopping the rest.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ecgfoundry.data.readers import find_records
from ecgfoundry.data.record import ECGInputError, Record, describe_repair
from ecgfoundry.data.rpeaks import heart_rate
from ecgfoundry.data.transforms import MissingLeads
from ecgfoundry.inference import load_inputs, record_windows
from ecgfoundry.spec import InputSpec


def _name(source: str | None, base: Path) -> str:
    """A record's id: its path relative to ``base`` (the folder inspected), else as read."""
    if source is None:
        return "<array>"
    try:
        return Path(source).resolve().relative_to(base).as_posix()
    except ValueError:
        return source


COLUMNS = ("record", "format", "fs", "leads", "seconds", "heart_rate_bpm", "age", "sex",
           "flat_leads", "repairs", "model_input", "windows", "problem")  # fmt: skip


def _row(
    record: Record, name: str, spec: InputSpec | None, missing_leads: MissingLeads
) -> dict[str, Any]:
    lead = "II" if "II" in record.leads else record.leads[0]
    rate = heart_rate(record.lead(lead), record.fs)
    row: dict[str, Any] = {
        **dict.fromkeys(COLUMNS),
        "record": name,
        "format": record.metadata.get("format"),
        "fs": record.fs,
        "leads": list(record.leads),
        "seconds": round(record.seconds, 2),
        "heart_rate_bpm": round(rate) if rate else None,
        "age": record.metadata.get("age"),
        "sex": record.metadata.get("sex"),
        "flat_leads": record.metadata.get("flat_leads", []),
        "repairs": [describe_repair(r) for r in record.metadata.get("repairs", [])],
        "problem": None,
    }
    if spec is not None:
        try:
            windows, prepared = record_windows(record, spec, missing_leads)
        except ECGInputError as error:
            row["problem"] = error.problem
            return row
        row["model_input"], row["windows"] = list(windows.shape[1:]), len(windows)
        row["repairs"] = [describe_repair(r) for r in prepared.metadata.get("repairs", [])]
    return row


def inspect_records(
    source: str | Path | Sequence[str | Path],
    *,
    spec: InputSpec | None = None,
    fs: float | None = None,
    leads: list[str] | None = None,
    missing_leads: MissingLeads = "raise",
) -> list[dict[str, Any]]:
    """One row per ECG in a record file, a folder of them or a list of files (``fs``/``leads``
    as :func:`ecgfoundry.inference.load_inputs` takes them), named by its path relative to the
    folder (or the files' common folder). With ``spec`` (a model's ``model.spec``) each row
    also gives ``model_input`` [leads, samples] and the number of ``windows`` the record
    becomes, or the ``problem`` that stops it. Every row has the keys of ``COLUMNS`` (None
    where they do not apply)."""
    if isinstance(source, str | Path) and Path(source).is_dir():
        base, files = Path(source).resolve(), find_records(source)
        if not files:
            raise ECGInputError(source, "no ECG records in this folder")
    else:
        files = [Path(source)] if isinstance(source, str | Path) else [Path(s) for s in source]
        if not files:
            raise ECGInputError(None, "no files to inspect")
        base = Path(os.path.commonpath([f.resolve().parent for f in files]))
    rows = []
    for file in files:
        try:
            records = load_inputs(file, fs=fs, leads=leads)
        except ECGInputError as error:
            rows.append({**dict.fromkeys(COLUMNS), "record": _name(str(file), base),
                         "problem": error.problem})  # fmt: skip
            continue
        rows.extend(_row(record, _name(record.source, base), spec, missing_leads)
                    for record in records)  # fmt: skip
    return rows


__all__ = ["COLUMNS", "inspect_records"]
