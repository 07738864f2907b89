"""DICOM waveforms (12-lead and general ECG waveform storage) -> :class:`Record`.

Hospitals archive ECGs in PACS as DICOM (cardiographs and MUSE-like systems export them). The
Waveform module holds multiplex groups, each a set of channels sampled together; a resting ECG
usually has a ``RHYTHM`` group (10 s, all leads) and a ``MEDIAN BEAT`` group. The reader takes
the group labelled ``RHYTHM``, else the longest, and per channel:

* the lead from the channel source code: SCP-ECG's ``5.6.3-9-N`` or MDC's ``2:N`` (N as in
  SCP-ECG's lead table: 1 I, 2 II, 3-8 V1-V6, 61-64 III, aVR, aVL, aVF, 65 -aVR, which is
  turned back into aVR), else its meaning (``Lead I (Einthoven)``);
* the value ``sample x sensitivity x correction factor + baseline`` (DICOM PS3.3 C.10.9.1.4.3),
  in the channel's sensitivity unit (uV, mV, V), as millivolts; samples equal to the group's
  padding value are missing (NaN, then the NaN policy).

Age, sex, acquisition time and the unformatted annotation texts (``statements``) go into the
metadata. Files are read with pydicom; a file that is not DICOM, holds no waveform (an image),
or codes its samples by mu-law/A-law is refused with an error naming it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from ecgfoundry.data.quality import FlatPolicy, NanPolicy, clean
from ecgfoundry.data.record import (
    ECGInputError,
    Record,
    canonical_lead_name,
    canonical_leads,
    millivolts_per_unit,
)
from ecgfoundry.data.scp import SCP_LEAD_CODES, SIGN_FLIPPED_AVR

DICOM_SUFFIXES = (".dcm", ".dicom")
_SAMPLE_TYPES = {("SS", 16): "<i2", ("US", 16): "<u2", ("SB", 8): "i1", ("UB", 8): "u1",
                 ("SL", 32): "<i4", ("UL", 32): "<u4"}  # fmt: skip
_LEAD_CODE = re.compile(r"^(?:5\.6\.3-9-|2:)(\d+)$")
_AGE_UNITS = {"Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}


def is_dicom(path: Path) -> bool:
    """Whether ``path`` is a file with DICOM's preamble and ``DICM`` prefix."""
    try:
        with path.open("rb") as file:
            return file.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _group(dataset: Any, path: Path) -> Any:
    """The multiplex group to read: the first labelled RHYTHM, else the longest."""
    groups = list(dataset.get("WaveformSequence", []))
    if not groups:
        kind = getattr(dataset.get("SOPClassUID"), "name", "unknown")
        raise ECGInputError(path, f"a DICOM file without waveforms ({kind})")
    rhythm = [g for g in groups if str(g.get("MultiplexGroupLabel", "")).upper() == "RHYTHM"]
    return rhythm[0] if rhythm else max(groups, key=lambda g: g.get("NumberOfWaveformSamples", 0))


def _lead(channel: Any, number: int) -> tuple[str, bool]:
    """A channel's lead name, and whether it is stored sign-flipped (-aVR)."""
    source = (channel.get("ChannelSourceSequence") or [None])[0]
    code = _LEAD_CODE.match(str(source.get("CodeValue", ""))) if source is not None else None
    if code and int(code[1]) in SCP_LEAD_CODES:
        return SCP_LEAD_CODES[int(code[1])], int(code[1]) == SIGN_FLIPPED_AVR
    meaning = str(source.get("CodeMeaning", "")) if source is not None else ""
    plain = re.sub(r"\s*\(.*\)\s*$", "", meaning)
    return canonical_lead_name(plain) or plain or f"channel {number}", False


def _samples(group: Any, path: Path) -> np.ndarray:
    """The group's stored integers as float [channels, samples], NaN where padded."""
    kind = (str(group.get("WaveformSampleInterpretation", "")), group.get("WaveformBitsAllocated"))
    if kind not in _SAMPLE_TYPES:
        taken = sorted({k for k, _ in _SAMPLE_TYPES})
        raise ECGInputError(path, f"waveform samples coded as {kind[0]} in {kind[1]} bits; "
                            f"this reader takes {taken}")  # fmt: skip
    channels, count = group.NumberOfWaveformChannels, group.NumberOfWaveformSamples
    dtype = np.dtype(_SAMPLE_TYPES[kind])
    data = bytes(group.get("WaveformData", b""))
    needed = channels * count * dtype.itemsize
    if len(data) < needed:
        raise ECGInputError(path, f"the waveform data hold {len(data)} bytes, {channels} "
                            f"channels x {count} samples need {needed}")  # fmt: skip
    stored = np.frombuffer(data, dtype=dtype, count=channels * count).reshape(count, channels)
    values = stored.T.astype(np.float64)
    padding = group.get("WaveformPaddingValue")
    if padding is not None:
        values[np.frombuffer(bytes(padding), dtype=dtype)[0] == stored.T] = np.nan
    return values


def _millivolts(channel: Any, name: str, path: Path) -> tuple[float, float]:
    """(scale, offset) that turn a channel's stored integers into millivolts."""
    if "ChannelSensitivity" not in channel:
        raise ECGInputError(path, f"lead {name} gives no channel sensitivity: its samples have "
                            "no unit")  # fmt: skip
    units = (channel.get("ChannelSensitivityUnitsSequence") or [None])[0]
    unit = str(units.get("CodeValue", "")) if units is not None else ""
    to_mv = millivolts_per_unit(unit or None, path)
    scale = float(channel.ChannelSensitivity) * float(
        channel.get("ChannelSensitivityCorrectionFactor", 1) or 1
    )
    return scale * to_mv, float(channel.get("ChannelBaseline", 0) or 0) * to_mv


def _metadata(dataset: Any) -> dict[str, Any]:
    """Age, sex, acquisition time and annotation texts, where the file states them."""
    out: dict[str, Any] = {}
    age = re.fullmatch(r"(\d{1,3})([DWMY])", str(dataset.get("PatientAge", "")).strip())
    if age:
        out["age"] = float(int(int(age[1]) * _AGE_UNITS[age[2]]))
    sex = str(dataset.get("PatientSex", "")).strip().upper()
    if sex in ("M", "F"):
        out["sex"] = "Male" if sex == "M" else "Female"
    stamp = str(dataset.get("AcquisitionDateTime", "")).split(".")[0][:14]
    with contextlib.suppress(ValueError):  # absent or not a full date and time
        out["start"] = dt.datetime.strptime(stamp, "%Y%m%d%H%M%S").isoformat(sep=" ")
    annotations = dataset.get("WaveformAnnotationSequence", [])
    texts = [str(a.get("UnformattedTextValue", "")).strip() for a in annotations]
    if any(texts):
        out["statements"] = [t for t in texts if t]
    return out


def read_dicom_ecg(
    path: str | Path, *, nan: NanPolicy = "interpolate", flat: FlatPolicy = "flag"
) -> Record:
    """Read the rhythm waveform of a DICOM ECG as millivolts."""
    path = Path(path)
    try:
        dataset = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError, ValueError) as error:
        raise ECGInputError(path, f"not a readable DICOM file ({error})") from None
    group = _group(dataset, path)
    channels = list(group.get("ChannelDefinitionSequence", []))
    if len(channels) != group.get("NumberOfWaveformChannels"):
        raise ECGInputError(path, f"{len(channels)} channel definitions for "
                            f"{group.get('NumberOfWaveformChannels')} channels")  # fmt: skip
    values = _samples(group, path)
    names, original = [], []
    for number, (channel, row) in enumerate(zip(channels, values, strict=True), start=1):
        name, flipped = _lead(channel, number)
        scale, offset = _millivolts(channel, name, path)
        row *= -scale if flipped else scale
        row += -offset if flipped else offset
        names.append(name)
        original.append("-aVR" if flipped else name)
    record = Record(
        signal=values.astype(np.float32),
        fs=float(group.SamplingFrequency),
        leads=canonical_leads(names),
        source=str(path),
        metadata={
            "format": "DICOM ECG",
            "record_name": path.stem,
            "original_leads": original,
            "multiplex_group": str(group.get("MultiplexGroupLabel", "")),
            **_metadata(dataset),
        },
    )
    return clean(record, nan=nan, flat=flat)


__all__ = ["DICOM_SUFFIXES", "is_dicom", "read_dicom_ecg"]
