"""``ecgfoundry demo``: the main job on the bundled samples, offline.

For now it reads each bundled record, reports what the data layer sees (format, rate, leads,
heart rate, labels, repairs) and preprocesses it to the default 12-lead input spec.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from ecgfoundry.data.readers import read_record
from ecgfoundry.data.record import STANDARD_LEADS
from ecgfoundry.data.rpeaks import heart_rate
from ecgfoundry.data.samples import sample_dir, sample_labels, sample_records
from ecgfoundry.data.transforms import pipeline_for
from ecgfoundry.spec import InputSpec

DEMO_SPEC = InputSpec(fs=100, seconds=10, leads=STANDARD_LEADS, normalisation="zscore")


def _labels(path: Path, metadata: dict[str, Any]) -> str:
    if metadata.get("dx"):
        return "SNOMED-CT " + " ".join(metadata["dx"])
    table = sample_labels().set_index("record")
    key = path.relative_to(sample_dir()).with_suffix("").as_posix()
    if key not in table.index:
        return ""
    codes = ast.literal_eval(table.loc[key, "scp_codes"])
    return " ".join(code for code, likelihood in codes.items() if likelihood > 0) or " ".join(codes)


def run_demo(spec: InputSpec = DEMO_SPEC) -> list[dict[str, Any]]:
    """One row per bundled record: what was read and what the model input looks like."""
    pipeline = pipeline_for(spec)
    rows = []
    for path in sample_records():
        record = read_record(path)
        prepared = pipeline(record)
        lead = "II" if "II" in record.leads else record.leads[0]
        rate = heart_rate(record.lead(lead), record.fs)
        rows.append(
            {
                "record": path.relative_to(sample_dir()).with_suffix("").as_posix(),
                "format": "CinC .mat" if path.with_suffix(".mat").exists() else "WFDB",
                "fs": record.fs,
                "leads": record.n_leads,
                "seconds": round(record.seconds, 2),
                "heart_rate_bpm": round(rate) if rate else None,
                "labels": _labels(path, record.metadata),
                "model_input": list(prepared.signal.shape),
                "repairs": [r["kind"] for r in prepared.metadata.get("repairs", [])],
            }
        )
    return rows
