"""What ecgfoundry reads in a file or folder, before any model runs: ``ecgfoundry data inspect``.

One row per ECG: its format, rate, leads, length, heart rate, age and sex where the file says,
flat leads, what was repaired, and — given a model's input spec — the model input it becomes
through the path ``predict`` and ``embed`` take. In a folder, a file that cannot be read or
prepared gets a row with its problem instead of stopping the rest. Records are named as
``predict``/``embed`` name them (their path as given), so the rows match their outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ecgfoundry.data.readers import find_records
from ecgfoundry.data.record import ECGInputError, Record, describe_repair
from ecgfoundry.data.rpeaks import heart_rate
from ecgfoundry.data.transforms import MissingLeads, window_starts
from ecgfoundry.inference import (
    NO_RECORDS,
    existing_path,
    load_inputs,
    prepared_input,
    print_notes,
    read_file,
)
from ecgfoundry.spec import InputSpec

COLUMNS = ("record", "format", "fs", "leads", "seconds", "heart_rate_bpm", "labels", "age", "sex",
           "flat_leads", "repairs", "model_input", "windows", "problem")  # fmt: skip


def _row(record: Record, spec: InputSpec | None, missing_leads: MissingLeads) -> dict[str, Any]:
    """One record's row; ``labels``: the SNOMED-CT codes of a challenge header (``#Dx``)."""
    lead = "II" if "II" in record.leads else record.leads[0]
    rate = heart_rate(record.lead(lead), record.fs)
    row: dict[str, Any] = {
        **dict.fromkeys(COLUMNS),
        "record": record.source,
        "format": record.metadata.get("format"),
        "fs": record.fs,
        "leads": list(record.leads),
        "seconds": round(record.seconds, 2),
        "heart_rate_bpm": round(rate) if rate else None,
        "labels": record.metadata.get("dx") or None,
        "age": record.metadata.get("age"),
        "sex": record.metadata.get("sex"),
        "flat_leads": record.metadata.get("flat_leads", []),
        "repairs": [describe_repair(r) for r in record.metadata.get("repairs", [])],
    }
    if spec is not None:
        try:
            prepared = prepared_input(record, spec, missing_leads)
        except ECGInputError as error:
            row["problem"] = error.problem
            return row
        row["model_input"] = [prepared.n_leads, spec.samples]
        row["windows"] = len(window_starts(prepared.n_samples, spec.samples))
        row["repairs"] = [describe_repair(r) for r in prepared.metadata.get("repairs", [])]
    return row


def inspect_records(
    source: str | Path | Sequence[str | Path],
    *,
    spec: InputSpec | None = None,
    fs: float | None = None,
    leads: list[str] | None = None,
    missing_leads: MissingLeads = "raise",
    units: str = "mV",
) -> list[dict[str, Any]]:
    """One row per ECG in a record file, a folder of them or a list of both (``fs``/``leads``/
    ``units`` as :func:`ecgfoundry.inference.load_inputs` takes them). With ``spec`` (a model's
    ``model.spec``) each row also gives ``model_input`` [leads, samples] and the number of
    ``windows`` the record becomes, or the ``problem`` that stops it. Every row has the keys
    of ``COLUMNS`` (None where they do not apply). A path that does not exist, an empty
    folder, or a single file that cannot be read raises ECGInputError, as ``predict`` does."""
    reading = {"fs": fs, "leads": leads, "units": units}
    if isinstance(source, str | Path):
        path = existing_path(Path(source))
        if not path.is_dir():
            return [_row(r, spec, missing_leads) for r in load_inputs(path, **reading)]
        files = find_records(path)
        if not files:
            raise ECGInputError(path, NO_RECORDS)
    else:
        files = [f for s in source for f in (find_records(s) if Path(s).is_dir() else [Path(s)])]
    rows, notes = [], []
    for file in files:
        try:
            records, note = read_file(file, **reading)
        except ECGInputError as error:
            rows.append({**dict.fromkeys(COLUMNS), "record": str(file), "problem": error.problem})
            continue
        notes.extend([note] if note else [])
        rows.extend(_row(record, spec, missing_leads) for record in records)
    print_notes(notes)
    return rows


__all__ = ["COLUMNS", "inspect_records"]
