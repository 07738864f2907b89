"""EDF, EDF+ and BDF (BioSemi's 24-bit EDF) -> :class:`Record`.

Holters, patch monitors and sleep labs export EDF. A file may hold other signals beside the
ECG (respiration, SpO2, accelerometers, EDF+ annotations), each at its own rate, while a
Record has one rate: the reader keeps the channels named as ECG leads (``"ECG V1"``, ``"II"``),
else those whose label starts with ECG/EKG, else every signal channel, and lists the channels
it left out in ``metadata["dropped_channels"]``. The kept channels must share one rate.
Physical values are ``pmin + (digital - dmin) * (pmax - pmin) / (dmax - dmin)``, per the EDF
specification (Kemp et al. 1992; EDF+: Kemp & Olivan 2003).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecgfoundry.data.quality import FlatPolicy, NanPolicy, clean
from ecgfoundry.data.record import (
    ECGInputError,
    Record,
    age_in_years,
    canonical_lead_name,
    canonical_leads,
    millivolts_per_unit,
)

EDF_SUFFIXES = (".edf", ".bdf")
_ANNOTATIONS = ("EDF ANNOTATIONS", "BDF ANNOTATIONS")
# Per-signal header fields: name and width in bytes, in the order the header stores them.
_SIGNAL_FIELDS = (
    ("label", 16), ("transducer", 80), ("unit", 8), ("physical_min", 8), ("physical_max", 8),
    ("digital_min", 8), ("digital_max", 8), ("prefiltering", 80), ("samples", 8), ("reserved", 32),
)  # fmt: skip


@dataclass(frozen=True)
class EDFHeader:
    """What an EDF/BDF header says: the file, then one entry per signal in each list."""

    bytes_per_sample: int  # 2 for EDF, 3 for BDF
    patient: str
    recording: str
    start: str  # "dd.mm.yy hh.mm.ss"
    header_bytes: int
    reserved: str  # "EDF+C", "EDF+D", "24BIT", ...
    n_records: int  # -1: unknown (the writer did not finish)
    record_seconds: float
    signals: dict[str, list[str]]

    def values(self, field: str, path: Path) -> np.ndarray:
        """A numeric per-signal field, or ECGInputError naming the signal whose value is bad."""
        out = []
        for label, text in zip(self.signals["label"], self.signals[field], strict=True):
            try:
                out.append(float(text.replace(",", ".")))
            except ValueError:
                raise ECGInputError(
                    path,
                    f"EDF header: {field.replace('_', ' ')} of signal {label!r} is "
                    f"{text!r}, not a number",
                ) from None
        return np.array(out, dtype=np.float64)


def _text(raw: bytes) -> str:
    """A header field: ASCII padded with spaces (some writers pad with NULs)."""
    return raw.split(b"\0", 1)[0].decode("latin-1").strip()


def read_edf_header(path: str | Path) -> EDFHeader:
    """Parse the header of an EDF/EDF+/BDF file (ECGInputError naming the file if malformed)."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            fixed = handle.read(256)
            if len(fixed) < 256:
                raise ECGInputError(path, f"{len(fixed)} bytes: too short for an EDF header")
            if fixed[:8] == b"\xffBIOSEMI":
                bytes_per_sample = 3
            elif _text(fixed[:8]) == "0":
                bytes_per_sample = 2
            else:
                raise ECGInputError(path, f"not an EDF or BDF file (version field {fixed[:8]!r})")
            try:
                header_bytes, n_records = int(_text(fixed[184:192])), int(_text(fixed[236:244]))
                record_seconds = float(_text(fixed[244:252]).replace(",", "."))
                n_signals = int(_text(fixed[252:]))
            except ValueError as error:
                raise ECGInputError(path, f"malformed EDF header ({error})") from None
            if n_signals < 1 or header_bytes != 256 * (n_signals + 1):
                raise ECGInputError(
                    path,
                    f"EDF header announces {n_signals} signals in {header_bytes} header "
                    "bytes; expected 256 x (signals + 1)",
                )
            block = handle.read(256 * n_signals)
    except OSError as error:
        raise ECGInputError(path, f"cannot open ({error})") from error
    if len(block) < 256 * n_signals:
        raise ECGInputError(path, "the EDF header ends before its signal descriptions")
    signals, offset = {}, 0
    for name, width in _SIGNAL_FIELDS:
        signals[name] = [
            _text(block[offset + i * width : offset + (i + 1) * width]) for i in range(n_signals)
        ]
        offset += width * n_signals
    return EDFHeader(
        bytes_per_sample=bytes_per_sample,
        patient=_text(fixed[8:88]),
        recording=_text(fixed[88:168]),
        start=f"{_text(fixed[168:176])} {_text(fixed[176:184])}",
        header_bytes=header_bytes,
        reserved=_text(fixed[192:236]),
        n_records=n_records,
        record_seconds=record_seconds,
        signals=signals,
    )


def _is_voltage(unit: str) -> bool:
    try:
        millivolts_per_unit(unit, None)
    except ECGInputError:
        return False
    return bool(unit)


def _chosen_channels(labels: list[str], units: list[str]) -> list[int]:
    """ECG leads by name (on a voltage channel: an accelerometer's X is not Frank's X), else
    ECG/EKG-labelled channels, else every voltage channel."""
    signal = [i for i, label in enumerate(labels) if label.upper() not in _ANNOTATIONS]
    named = [
        i for i in signal if canonical_lead_name(labels[i]) is not None and _is_voltage(units[i])
    ]
    ecg = [i for i in signal if labels[i].upper().startswith(("ECG", "EKG"))]
    return named or ecg or [i for i in signal if _is_voltage(units[i])]


def _start(header: EDFHeader) -> dt.datetime | None:
    """The recording's start (EDF's two-digit years: 85-99 are 19xx, 00-84 20xx)."""
    try:
        start = dt.datetime.strptime(header.start, "%d.%m.%y %H.%M.%S")
    except ValueError:
        return None
    return start.replace(year=start.year + 100) if start.year < 1985 else start


def _patient(header: EDFHeader, start: dt.datetime | None) -> dict[str, Any]:
    """Sex and age from an EDF+ patient field ("code sex birthdate name", 'X' when unknown)."""
    fields = header.patient.split()
    if not header.reserved.startswith(("EDF+", "BDF+")) or len(fields) < 3:
        return {}
    out: dict[str, Any] = {}
    if fields[1] in ("M", "F"):
        out["sex"] = "Male" if fields[1] == "M" else "Female"
    try:
        born = dt.datetime.strptime(fields[2].title(), "%d-%b-%Y")
    except ValueError:
        return out
    age = age_in_years(born, start) if start is not None else None
    if age is not None:
        out["age"] = age
    return out


def _records(path: Path, header: EDFHeader, record_bytes: int) -> tuple[int, dict[str, Any]]:
    """How many whole data records to read, and the repair when the file disagrees with its
    header (a recording that was not closed, a copy cut short): the whole records it holds."""
    size = path.stat().st_size - header.header_bytes
    held, partial = divmod(size, record_bytes)
    stated = header.n_records
    if held == 0:
        raise ECGInputError(path, f"no whole data record of {record_bytes} bytes after the "
                            f"header ({size} bytes)")  # fmt: skip
    if 0 <= stated <= held:
        return stated, {}  # any bytes after the records the header counts are not signal
    said = "an unknown number (-1)" if stated < 0 else str(stated)
    detail = f"header says {said} data records, the file holds {held}" + (
        f" and {partial} bytes of a partial one (left out)" if partial else ""
    )
    return held, {"kind": "data_records_from_file_size", "detail": detail}


def _channel(digital: np.ndarray, start: int, count: int, bytes_per_sample: int) -> np.ndarray:
    """One channel's digital values from the data records [records, bytes per record], as
    float32 (exact for 16- and 24-bit integers)."""
    block = np.asarray(digital[:, start * bytes_per_sample : (start + count) * bytes_per_sample])
    if bytes_per_sample == 2:
        return np.ascontiguousarray(block).view("<i2").reshape(-1).astype(np.float32)
    triplets = block.reshape(-1, 3).astype(np.int32)
    values = triplets[:, 0] | (triplets[:, 1] << 8) | (triplets[:, 2] << 16)
    return np.where(values >= 1 << 23, values - (1 << 24), values).astype(np.float32)


def read_edf(
    path: str | Path, *, nan: NanPolicy = "interpolate", flat: FlatPolicy = "flag"
) -> Record:
    """Read the ECG channels of an EDF, EDF+ (continuous) or BDF file."""
    path = Path(path)
    header = read_edf_header(path)
    if header.reserved.startswith(("EDF+D", "BDF+D")):
        raise ECGInputError(path, "EDF+D: an interrupted recording (its data records have gaps "
                            "in time); export it as continuous EDF+C")  # fmt: skip
    if header.record_seconds <= 0:
        raise ECGInputError(path, f"data record duration {header.record_seconds} s: no signal")
    labels, units = header.signals["label"], header.signals["unit"]
    samples = header.values("samples", path).astype(np.int64)
    chosen = _chosen_channels(labels, units)
    if not chosen:
        pairs = zip(labels, units, strict=True)
        listed = ", ".join(f"{label} ({unit or 'no unit'})" for label, unit in pairs)
        raise ECGInputError(path, f"no ECG channel: none named as a lead or ECG, none in volts "
                            f"(channels: {listed})")  # fmt: skip
    for i in chosen:
        if units[i] and not _is_voltage(units[i]):
            raise ECGInputError(path, f"channel {labels[i]!r} is in {units[i]!r}, not a voltage "
                                "(mV, uV, V)")  # fmt: skip
    rates = {labels[i]: samples[i] / header.record_seconds for i in chosen}
    if len(set(rates.values())) > 1:
        listed = ", ".join(f"{label} {rate:g} Hz" for label, rate in rates.items())
        raise ECGInputError(path, f"the channels read as ECG have different sampling rates "
                            f"({listed})")  # fmt: skip
    record_bytes = int(samples.sum()) * header.bytes_per_sample
    n_records, repair = _records(path, header, record_bytes)
    digital = np.memmap(path, dtype=np.uint8, mode="r", offset=header.header_bytes,
                        shape=(n_records, record_bytes))  # fmt: skip
    starts = np.concatenate([[0], np.cumsum(samples)])
    pmin, pmax = header.values("physical_min", path), header.values("physical_max", path)
    dmin, dmax = header.values("digital_min", path), header.values("digital_max", path)
    signal = []
    for i in chosen:
        if dmax[i] == dmin[i] or pmax[i] == pmin[i]:
            raise ECGInputError(path, f"signal {labels[i]!r}: equal minimum and maximum in the "
                                "header, so its values cannot be scaled")  # fmt: skip
        # physical = pmin + (digital - dmin) * (pmax - pmin) / (dmax - dmin), in mV, as
        # gain * digital + offset: float32 arrays (a day-long Holter), float64 coefficients.
        millivolts = millivolts_per_unit(units[i], path)
        gain = (pmax[i] - pmin[i]) / (dmax[i] - dmin[i]) * millivolts
        offset = pmin[i] * millivolts - dmin[i] * gain
        values = _channel(digital, starts[i], samples[i], header.bytes_per_sample)
        values *= np.float32(gain)
        values += np.float32(offset)
        signal.append(values)
    start = _start(header)
    file_format = "BDF" if header.bytes_per_sample == 3 else "EDF"
    metadata: dict[str, Any] = {
        "format": f"{file_format}+"
        if header.reserved.startswith(("EDF+", "BDF+"))
        else file_format,
        "record_name": path.stem,
        "original_leads": [labels[i] for i in chosen],
        "units": [units[i] for i in chosen],
        "dropped_channels": [label for i, label in enumerate(labels) if i not in chosen],
        **_patient(header, start),
    }
    if start is not None:
        metadata["start"] = start.isoformat(sep=" ")
    record = Record(
        signal=np.stack(signal),
        fs=float(next(iter(rates.values()))),
        leads=canonical_leads([labels[i] for i in chosen]),
        source=str(path),
        metadata=metadata,
    )
    return clean(record.with_repair(**repair) if repair else record, nan=nan, flat=flat)


__all__ = ["EDF_SUFFIXES", "EDFHeader", "read_edf", "read_edf_header"]
