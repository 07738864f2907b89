"""Data layer: files -> Record -> transforms -> cached arrays + index table.

Knows nothing of models or training; a model's InputSpec becomes a pipeline through
:func:`ecgfoundry.data.transforms.pipeline_for`.
"""

from ecgfoundry.data.ecg_xml import read_ecg_xml
from ecgfoundry.data.edf import read_edf
from ecgfoundry.data.readers import (
    find_records,
    read_annotations,
    read_array,
    read_challenge,
    read_csv,
    read_numpy,
    read_record,
    read_wfdb,
)
from ecgfoundry.data.record import STANDARD_LEADS, Annotations, ECGInputError, Record
from ecgfoundry.data.transforms import pipeline_for

__all__ = [
    "STANDARD_LEADS",
    "Annotations",
    "ECGInputError",
    "Record",
    "find_records",
    "pipeline_for",
    "read_annotations",
    "read_array",
    "read_challenge",
    "read_csv",
    "read_ecg_xml",
    "read_edf",
    "read_numpy",
    "read_record",
    "read_wfdb",
]
