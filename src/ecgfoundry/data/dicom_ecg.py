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
metadata, with channels the file marks as bad (Channel Status) and any sample skew. Files are
read with pydicom (header only, little- or big-endian), as ``.dcm``/``.dicom`` or under PACS
names (no suffix, or a UID). A file that is not DICOM, holds no waveform (an image) or median
beats only, codes its samples by mu-law/A-law, or lacks or garbles an attribute the waveform
needs is refused with an error naming it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

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
_SAMPLE_TYPES = {("SS", 16): "i2", ("US", 16): "u2", ("SB", 8): "i1", ("UB", 8): "u1",
                 ("SL", 32): "i4", ("UL", 32): "u4"}  # fmt: skip
_LEAD_CODE = re.compile(r"^(?:5\.6\.3-9-|2:)(\d+)$")
_AGE_UNITS = {"Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}
_BAD_STATUS = ("DISCONNECTED", "INVALID", "TEST DATA", "UNCALIBRATED")
# What a malformed attribute raises once pydicom decodes it (lazily, on first access).
_MALFORMED = (AttributeError, KeyError, TypeError, ValueError, NotImplementedError, IndexError)


def is_dicom(path: Path) -> bool:
    """Whether ``path`` is a file with DICOM's preamble and ``DICM`` prefix."""
    try:
        with path.open("rb") as file:
            return file.read(132)[128:] == b"DICM"
    except OSError:
        return False


def may_be_dicom(path: Path) -> bool:
    """Whether a file in a folder is worth testing for DICOM: PACS exports name files without
    a suffix (``IM0001``) or by UID (``1.2.840...10``: a numeric suffix)."""
    return path.suffix == "" or path.suffix[1:].isdigit()


def _required(item: Dataset, keyword: str, path: Path) -> Any:
    """An attribute the waveform cannot do without, or ECGInputError naming it."""
    if keyword not in item or item.get(keyword) in (None, ""):
        raise ECGInputError(path, f"the waveform has no {keyword}")
    return item.get(keyword)


def _seconds(group: Dataset) -> float:
    """A multiplex group's duration (0 where it states no rate)."""
    rate = float(group.get("SamplingFrequency") or 0)
    return float(group.get("NumberOfWaveformSamples") or 0) / rate if rate > 0 else 0.0


def _group(dataset: Dataset, path: Path) -> Dataset:
    """The multiplex group to read: the first labelled RHYTHM, else the longest in seconds."""
    groups = list(dataset.get("WaveformSequence", []))
    if not groups:
        kind = getattr(dataset.get("SOPClassUID"), "name", "unknown")
        hint = " (truncated?)" if "Waveform" in kind else ""
        raise ECGInputError(path, f"a DICOM file without waveforms ({kind}){hint}")
    rhythm = [g for g in groups if str(g.get("MultiplexGroupLabel", "")).upper() == "RHYTHM"]
    group = rhythm[0] if rhythm else max(groups, key=_seconds)
    if "MEDIAN" in str(group.get("MultiplexGroupLabel", "")).upper():
        raise ECGInputError(path, "holds median beats only, no rhythm waveform")
    return group


def _lead(channel: Dataset, number: int) -> tuple[str, bool]:
    """A channel's lead name, and whether it is stored sign-flipped (-aVR)."""
    source = (channel.get("ChannelSourceSequence") or [None])[0]
    code = _LEAD_CODE.match(str(source.get("CodeValue", ""))) if source is not None else None
    if code and int(code[1]) in SCP_LEAD_CODES:
        return SCP_LEAD_CODES[int(code[1])], int(code[1]) == SIGN_FLIPPED_AVR
    meaning = str(source.get("CodeMeaning", "")) if source is not None else ""
    plain = re.sub(r"\s*\(.*\)\s*$", "", meaning)
    return canonical_lead_name(plain) or plain or f"channel {number}", False


def _samples(group: Dataset, little_endian: bool, path: Path) -> np.ndarray:
    """The group's stored integers as float [channels, samples], NaN where padded."""
    kind = (str(group.get("WaveformSampleInterpretation", "")), group.get("WaveformBitsAllocated"))
    if kind not in _SAMPLE_TYPES:
        taken = sorted({k for k, _ in _SAMPLE_TYPES})
        raise ECGInputError(path, f"waveform samples coded as {kind[0] or '(unstated)'} in "
                            f"{kind[1]} bits; this reader takes {taken}")  # fmt: skip
    channels = int(_required(group, "NumberOfWaveformChannels", path))
    count = int(_required(group, "NumberOfWaveformSamples", path))
    if channels < 1 or count < 1:
        raise ECGInputError(path, f"the waveform has {channels} channels of {count} samples")
    dtype = np.dtype(_SAMPLE_TYPES[kind]).newbyteorder("<" if little_endian else ">")
    data, needed = bytes(_required(group, "WaveformData", path)), channels * count * dtype.itemsize
    if len(data) < needed:
        raise ECGInputError(path, f"the waveform data hold {len(data)} bytes, {channels} "
                            f"channels x {count} samples need {needed}")  # fmt: skip
    stored = np.frombuffer(data, dtype=dtype, count=channels * count).reshape(count, channels).T
    values = stored.astype(np.float64)
    padding = bytes(group.get("WaveformPaddingValue") or b"")
    if len(padding) >= dtype.itemsize:
        values[np.frombuffer(padding[: dtype.itemsize], dtype=dtype)[0] == stored] = np.nan
    return values


def _number(item: Dataset, keyword: str, default: float) -> float:
    """An optional numeric attribute, ``default`` where absent or empty."""
    value = item.get(keyword)
    return default if value in (None, "") else float(value)


def _as_list(value: Any) -> list[Any]:
    """A DICOM value of multiplicity 0, 1 or more as a list."""
    if value in (None, ""):
        return []
    return list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]


def _millivolts(channel: Dataset, name: str, path: Path) -> tuple[float, float]:
    """(scale, offset) that turn a channel's stored integers into millivolts."""
    if channel.get("ChannelSensitivity") in (None, ""):
        raise ECGInputError(path, f"lead {name} gives no channel sensitivity: its samples have "
                            "no unit")  # fmt: skip
    units = (channel.get("ChannelSensitivityUnitsSequence") or [None])[0]
    unit = str(units.get("CodeValue", "")).strip() if units is not None else ""
    if not unit:
        raise ECGInputError(path, f"lead {name} gives a sensitivity without its unit")
    to_mv = millivolts_per_unit(unit, path)
    scale = float(channel.ChannelSensitivity)
    scale *= _number(channel, "ChannelSensitivityCorrectionFactor", 1.0)
    return scale * to_mv, _number(channel, "ChannelBaseline", 0.0) * to_mv


def _metadata(dataset: Dataset) -> dict[str, Any]:
    """Age, sex, acquisition time and annotation texts, where the file states them."""
    out: dict[str, Any] = {}
    age = re.fullmatch(r"(\d{1,3})([DWMY])", str(dataset.get("PatientAge", "")).strip())
    if age:
        out["age"] = float(int(int(age[1]) * _AGE_UNITS[age[2]]))
    sex = str(dataset.get("PatientSex", "")).strip().upper()
    if sex in ("M", "F"):
        out["sex"] = "Male" if sex == "M" else "Female"
    stamp = re.split(r"[.+-]", str(dataset.get("AcquisitionDateTime", "")))[0][:14]
    with contextlib.suppress(ValueError):  # absent or not a full date and time
        out["start"] = dt.datetime.strptime(stamp, "%Y%m%d%H%M%S").isoformat(sep=" ")
    annotations = dataset.get("WaveformAnnotationSequence", [])
    texts = [str(a.get("UnformattedTextValue", "")).strip() for a in annotations]
    if any(texts):
        out["statements"] = [t for t in texts if t]
    return out


def _channel_notes(channels: list[Dataset], names: list[str]) -> dict[str, Any]:
    """Channels the file marks as bad (Channel Status) or sampled with a skew, by lead."""
    notes: dict[str, Any] = {}
    pairs = list(zip(names, channels, strict=True))
    status = {n: [str(v) for v in _as_list(c.get("ChannelStatus"))] for n, c in pairs}
    bad = {n: s for n, s in status.items() if any(v in _BAD_STATUS for v in s)}
    if bad:
        notes["channel_status"] = bad
    skews = {n: _number(c, "ChannelSampleSkew", 0.0) for n, c in pairs}
    if any(skews.values()):
        notes["channel_sample_skew_ms"] = skews
    return notes


def _read(dataset: Dataset, path: Path) -> Record:
    """The chosen multiplex group of a parsed file as a Record in millivolts."""
    group = _group(dataset, path)
    channels = list(group.get("ChannelDefinitionSequence") or [])
    stated = int(_required(group, "NumberOfWaveformChannels", path))
    if len(channels) != stated:
        raise ECGInputError(path, f"{len(channels)} channel definitions for {stated} channels")
    rate = float(_required(group, "SamplingFrequency", path))
    if not rate > 0:
        raise ECGInputError(path, f"sampling frequency {rate}")
    little_endian = getattr(dataset, "original_encoding", (None, True))[1] is not False
    values = _samples(group, little_endian, path)
    names: list[str] = []
    original: list[str] = []
    for number, (channel, row) in enumerate(zip(channels, values, strict=True), start=1):
        name, flipped = _lead(channel, number)
        scale, offset = _millivolts(channel, name, path)
        row[:] = -(row * scale + offset) if flipped else row * scale + offset
        names.append(name)
        original.append("-aVR" if flipped else name)
    return Record(
        signal=values.astype(np.float32),
        fs=rate,
        leads=canonical_leads(names),
        source=str(path),
        metadata={
            "format": "DICOM ECG",
            "record_name": path.stem if path.suffix.lower() in DICOM_SUFFIXES else path.name,
            "original_leads": original,
            "multiplex_group": str(group.get("MultiplexGroupLabel", "")),
            **_channel_notes(channels, names),
            **_metadata(dataset),
        },
    )


def read_dicom_ecg(
    path: str | Path, *, nan: NanPolicy = "interpolate", flat: FlatPolicy = "flag"
) -> Record:
    """Read the rhythm waveform of a DICOM ECG as millivolts."""
    path = Path(path)
    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, EOFError, ValueError) as error:
        raise ECGInputError(path, f"not a readable DICOM file ({error})") from None
    try:
        record = _read(dataset, path)
    except ECGInputError:
        raise
    except _MALFORMED as error:
        raise ECGInputError(path, f"malformed waveform ({type(error).__name__}: {error})") from None
    return clean(record, nan=nan, flat=flat)


__all__ = ["DICOM_SUFFIXES", "is_dicom", "may_be_dicom", "read_dicom_ecg"]
