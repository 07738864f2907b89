"""Hospital ECG exports in XML -> :class:`Record`: GE MUSE, Philips and HL7 aECG.

- **GE MUSE** (``<RestingECG>``, restecg.dtd): the ``Rhythm`` waveform, each lead Base64
  little-endian integers (``LeadSampleSize`` bytes) times ``LeadAmplitudeUnitsPerBit`` in
  ``LeadAmplitudeUnits``, at ``SampleBase x 10^SampleExponent`` Hz. MUSE usually stores 8
  leads (I, II, V1-V6); the model's pipeline derives III, aVR, aVL, aVF from I and II.
- **Philips** (``<restingecgdata>``, SierraECG 1.03 and PhilipsECG 1.04 from PageWriter
  cardiographs and TraceMasterVue/IntelliSpace): ``parsedwaveforms``, Base64 (or plain
  numbers), XLI-compressed (:mod:`ecgfoundry.data.xli`) or not, ``resolution`` uV per unit
  at ``samplingrate`` Hz. XLI stores III, aVR, aVL and aVF as residuals against I and II;
  they are rebuilt as Philips' readers do. The calibration pulse that closes a recording
  (0.4 s, the same in every lead, after a stretch where all leads read 0) is cut with that
  stretch, listed as a repair.
- **HL7 aECG** (``<AnnotatedECG>``, the FDA's annotated ECG, namespace ``urn:hl7-org:v3``):
  the first rhythm ``series``; each lead a ``sequence`` coded ``MDC_ECG_LEAD_*`` whose
  ``SLIST_PQ`` value is ``origin + scale x digits``, timed by the ``GLIST`` increment of the
  series' time sequence. Median beats (``derivedSeries``) are not read.

MUSE and Philips give age and sex, aECG sex, where the file states them; MUSE's and Philips'
interpretation statements are kept in ``metadata["statements"]``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from ecgfoundry.data.quality import FlatPolicy, NanPolicy, clean
from ecgfoundry.data.record import ECGInputError, Record, canonical_leads, millivolts_per_unit
from ecgfoundry.data.xli import XLIError, decode_xli

_MUSE_UNITS = {"MICROVOLTS": "uV", "MILLIVOLTS": "mV", "VOLTS": "V", "NANOVOLTS": "nV"}
_YEARS_PER = {"YEARS": 1.0, "MONTHS": 1 / 12, "WEEKS": 7 / 365.25, "DAYS": 1 / 365.25}
_HL7 = "{urn:hl7-org:v3}"
_PHILIPS_LIMB_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF")
_PHILIPS_12_LEADS = (*_PHILIPS_LIMB_LEADS, "V1", "V2", "V3", "V4", "V5", "V6")
_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def _number(text: str | None, path: Path, what: str) -> float:
    if text is None or not text.strip():
        raise ECGInputError(path, f"{what} is missing")
    try:
        return float((text or "").strip().replace(",", "."))
    except ValueError:
        raise ECGInputError(path, f"{what} is {text!r}, not a number") from None


def _child(node: ET.Element | None, tag: str) -> str:
    """The stripped text of a direct child, '' when absent."""
    found = node.find(tag) if node is not None else None
    return (found.text or "").strip() if found is not None else ""


def _muse_lead(lead: ET.Element, path: Path) -> tuple[str, np.ndarray]:
    name = _child(lead, "LeadID")
    try:
        payload = base64.b64decode("".join(_child(lead, "WaveFormData").split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise ECGInputError(path, f"lead {name}: WaveFormData is not Base64 ({error})") from None
    size = int(_number(_child(lead, "LeadSampleSize") or "2", path, f"lead {name}'s sample size"))
    if size not in (1, 2, 4) or len(payload) % size:
        raise ECGInputError(path, f"lead {name}: {len(payload)} bytes are not whole samples of "
                            f"{size} bytes")  # fmt: skip
    for field in ("FirstSampleBaseline", "LeadOffsetFirstSample"):  # readers disagree on these
        if _number(_child(lead, field) or "0", path, field) != 0:
            raise ECGInputError(path, f"lead {name}: {field} {_child(lead, field)} is not 0, "
                                "which this reader does not interpret")  # fmt: skip
    digits = np.frombuffer(payload, dtype=f"<i{size}").astype(np.float64)
    stated = _child(lead, "LeadSampleCountTotal")
    if stated and int(_number(stated, path, "LeadSampleCountTotal")) != len(digits):
        raise ECGInputError(path, f"lead {name}: LeadSampleCountTotal says {stated} samples, "
                            f"its WaveFormData holds {len(digits)}")  # fmt: skip
    per_bit = _number(_child(lead, "LeadAmplitudeUnitsPerBit") or "1", path,
                      f"lead {name}'s LeadAmplitudeUnitsPerBit")  # fmt: skip
    unit_text = _child(lead, "LeadAmplitudeUnits").upper() or "MICROVOLTS"
    unit = _MUSE_UNITS.get(unit_text, unit_text)
    return name, digits * per_bit * millivolts_per_unit(unit, path)


def _muse(root: ET.Element, path: Path) -> tuple[dict[str, np.ndarray], float, dict[str, Any]]:
    kinds = [_child(w, "WaveformType").lower() for w in root.findall("Waveform")]
    if "rhythm" not in kinds:
        raise ECGInputError(path, f"no Rhythm waveform (found: {sorted(set(kinds)) or 'none'})")
    rhythm = root.findall("Waveform")[kinds.index("rhythm")]  # the first, as MUSE readers do
    base = _number(_child(rhythm, "SampleBase"), path, "SampleBase")
    exponent = _number(_child(rhythm, "SampleExponent") or "0", path, "SampleExponent")
    leads = _unique(path, [_muse_lead(lead, path) for lead in rhythm.findall("LeadData")])
    demographics, test = root.find("PatientDemographics"), root.find("TestDemographics")
    metadata: dict[str, Any] = {}
    sex = _child(demographics, "Gender").upper()
    if sex in ("MALE", "FEMALE"):
        metadata["sex"] = sex.title()
    age = _child(demographics, "PatientAge")
    years = _YEARS_PER.get(_child(demographics, "AgeUnits").upper() or "YEARS")
    if age and years:
        metadata["age"] = float(int(_number(age, path, "PatientAge") * years))
    acquired = f"{_child(test, 'AcquisitionDate')} {_child(test, 'AcquisitionTime')}"
    try:
        start = dt.datetime.strptime(acquired, "%m-%d-%Y %H:%M:%S")  # MUSE's date layout
        metadata["start"] = start.isoformat(sep=" ")
    except ValueError:
        pass
    statements = [s.text.strip() for s in root.iterfind("Diagnosis/DiagnosisStatement/StmtText")
                  if s.text and s.text.strip()]  # fmt: skip
    if statements:
        metadata["statements"] = statements
    return leads, base * 10**exponent, metadata


def _philips_payload(waveform: ET.Element, path: Path) -> bytes | list[int]:
    text = waveform.text or ""
    encoding = waveform.get("dataencoding", "Base64")
    if encoding == "Plain":
        try:
            return [int(value) for value in text.split()]
        except ValueError:
            raise ECGInputError(path, "parsedwaveforms: plain data that are not integers") from None
    if encoding != "Base64":
        raise ECGInputError(path, f"parsedwaveforms: data encoding {encoding!r}; this reader "
                            "knows Base64 and Plain")  # fmt: skip
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise ECGInputError(path, f"parsedwaveforms: not Base64 ({error})") from None


def _philips_limb_leads(leads: list[np.ndarray]) -> None:
    """XLI stores III, aVR, aVL and aVF as residuals against I and II: rebuild them in place,
    halving with truncation toward zero as Philips' C readers do (floor division, which two
    of sierra-ecg-tools' ports use, sits 0.14-0.21 units off Philips' own aECG conversion of
    a test file on average; truncation 0.04)."""

    def half(x: np.ndarray) -> np.ndarray:
        return np.sign(x) * (np.abs(x) // 2)

    one, two = leads[0], leads[1]
    leads[2] = two - one - leads[2]
    leads[3] = -leads[3] - half(one + two)
    leads[4] = half(one - leads[2]) - leads[4]
    leads[5] = half(two + leads[2]) - leads[5]


def _philips_age(age: ET.Element | None, ns: str, day: dt.date | None) -> float | None:
    """Whole years: stated in years (or months, weeks, days), else from the date of birth and
    ``day``, the acquisition's."""
    for unit, per in _YEARS_PER.items():
        value = _child(age, f"{ns}{unit.lower()}")
        if value.isdigit():
            return float(int(int(value) * per))
    try:
        birth = dt.date.fromisoformat(_child(age, f"{ns}dateofbirth"))
    except ValueError:
        return None
    if day is None or birth > day:
        return None
    return float(day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day)))


def _philips_metadata(root: ET.Element, ns: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    patient = root.find(f"{ns}patient/{ns}generalpatientdata")
    sex = _child(patient, f"{ns}sex").upper()
    if sex in ("MALE", "FEMALE"):
        metadata["sex"] = sex.title()
    acquired = root.find(f"{ns}dataacquisition")
    date, time = (acquired.get(k, "") if acquired is not None else "" for k in ("date", "time"))
    try:
        day = dt.date.fromisoformat(date)
    except ValueError:
        day = None
    with contextlib.suppress(ValueError):
        metadata["start"] = dt.datetime.fromisoformat(f"{date} {time}").isoformat(sep=" ")
    age = _philips_age(patient.find(f"{ns}age") if patient is not None else None, ns, day)
    if age is not None:
        metadata["age"] = age
    statements = []
    for statement in root.iterfind(f"{ns}interpretations/{ns}interpretation/{ns}statement"):
        left = _child(statement, f"{ns}leftstatement")
        right = _child(statement, f"{ns}rightstatement")
        if left:
            statements.append(f"{left} ({right})" if right else left)
    if statements:
        metadata["statements"] = statements
    return metadata


def _philips_names(waveform: ET.Element, signal: ET.Element, ns: str, path: Path) -> list[str]:
    """The leads' names: ``leadlabels`` (1.04), else the standard 12 of a 12-channel
    STD-12/10-WIRE acquisition (1.03)."""
    if waveform.get("leadlabels", "").strip():
        count = int(_number(waveform.get("numberofleads") or "0", path, "numberofleads"))
        return waveform.get("leadlabels", "").split()[: count or None]
    channels = _child(signal, f"{ns}numberchannelsallocated") or "12"
    kind = _child(signal, f"{ns}acquisitiontype")
    if kind not in ("STD-12", "10-WIRE") or channels != "12":
        raise ECGInputError(path, f"{channels} channels of acquisition type {kind!r} and no "
                            "leadlabels: the leads cannot be named")  # fmt: skip
    return list(_PHILIPS_12_LEADS)


def _philips_digits(waveform: ET.Element, names: list[str], samples: int, path: Path) -> list:
    """Each lead's integers, in the order of ``names``, ``samples`` long."""
    payload = _philips_payload(waveform, path)
    flagged = waveform.get("compressflag", "").lower() == "true"
    compression = waveform.get("compression") or (waveform.get("compressmethod") if flagged else "")
    if not compression:
        if isinstance(payload, bytes) and len(payload) % 2:
            raise ECGInputError(path, f"{len(payload)} bytes are not whole 16-bit samples")
        values = np.frombuffer(payload, "<i2") if isinstance(payload, bytes) else np.array(payload)
        if len(values) < samples * len(names):
            raise ECGInputError(path, f"{len(values)} samples for {len(names)} leads of "
                                f"{samples}")  # fmt: skip
        return [values[i * samples : (i + 1) * samples] for i in range(len(names))]
    if compression != "XLI" or not isinstance(payload, bytes):
        raise ECGInputError(path, f"{compression!r}-compressed {waveform.get('dataencoding')} "
                            "data; this reader knows XLI in Base64")  # fmt: skip
    if canonical_leads(names[:6]) != _PHILIPS_LIMB_LEADS:
        raise ECGInputError(path, f"XLI data with leads {' '.join(names)}: this reader rebuilds "
                            f"the limb leads of files that store {' '.join(_PHILIPS_LIMB_LEADS)} "
                            "first")  # fmt: skip
    try:
        digits = decode_xli(payload, leads=len(names))
    except XLIError as error:
        raise ECGInputError(path, f"XLI data: {error}") from None
    if len(digits) < len(names):
        raise ECGInputError(path, f"{len(digits)} XLI lead chunks for {len(names)} leads")
    for name, lead in zip(names, digits, strict=True):
        if len(lead) != samples:
            raise ECGInputError(path, f"lead {name}: {len(lead)} samples where "
                                f"durationperchannel says {samples}")  # fmt: skip
    _philips_limb_leads(digits)
    return digits


def _philips(root: ET.Element, path: Path) -> tuple[dict[str, np.ndarray], float, dict[str, Any]]:
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    signal = root.find(f"{ns}dataacquisition/{ns}signalcharacteristics")
    waveform = root.find(f"{ns}waveforms/{ns}parsedwaveforms")
    if signal is None or waveform is None:
        raise ECGInputError(path, "no rhythm data (waveforms/parsedwaveforms, dataacquisition/"
                            "signalcharacteristics) in this Philips file")  # fmt: skip
    rate = _child(signal, f"{ns}samplingrate") or waveform.get("samplespersecond")
    fs = _number(rate, path, "samplingrate")
    per_unit = (_child(signal, f"{ns}resolution") or _child(signal, f"{ns}signalresolution")
                or waveform.get("resolution"))  # fmt: skip
    resolution = _number(per_unit, path, "the resolution (uV per unit)")
    offset = _child(signal, f"{ns}signaloffset") or waveform.get("signaloffset") or "0"
    if _number(offset, path, "signaloffset") != 0:
        raise ECGInputError(path, f"signaloffset {offset} is not 0, which this reader does not "
                            "interpret")  # fmt: skip
    milliseconds = _number(waveform.get("durationperchannel"), path, "durationperchannel")
    samples = round(milliseconds * fs / 1000)  # per lead
    names = _philips_names(waveform, signal, ns, path)
    digits = _philips_digits(waveform, names, samples, path)
    metadata = _philips_metadata(root, ns)
    calibration = _calibration_samples(np.stack(digits), fs)
    if calibration:
        metadata["repairs"] = [{"kind": "calibration_pulse_cut", "samples": calibration}]
    end = samples - calibration
    leads = [
        (name, lead[:end] * resolution / 1000) for name, lead in zip(names, digits, strict=True)
    ]  # mV
    return _unique(path, leads), fs, metadata


def _calibration_samples(digits: np.ndarray, fs: float) -> int:
    """How many samples at the end to cut as a calibration pulse: Philips cardiographs close
    each lead with the same 1 mV square pulse, after a stretch of zeros, identical in every
    lead, which no ECG is (III = II - I). The run of samples identical in every lead at the
    end, when it lasts 0.1 s or more and is not all zero; else 0."""
    differs = np.flatnonzero(digits.min(axis=0) != digits.max(axis=0))
    run = digits.shape[1] - (differs[-1] + 1) if len(differs) else 0
    return int(run) if run >= 0.1 * fs and np.any(digits[0, -run:] != 0) else 0


def _seconds(value: ET.Element, path: Path) -> float:
    increment = value.find(f"{_HL7}increment")
    if increment is None:
        raise ECGInputError(path, "the time sequence has no increment (a sampling interval)")
    step = _number(increment.get("value"), path, "the time increment")
    unit = increment.get("unit", "s")
    if unit not in ("s", "ms", "us"):
        raise ECGInputError(path, f"time increment in {unit!r}; expected s, ms or us")
    return step * {"s": 1.0, "ms": 1e-3, "us": 1e-6}[unit]


def _hl7(root: ET.Element, path: Path) -> tuple[dict[str, np.ndarray], float, dict[str, Any]]:
    series = root.find(f"{_HL7}component/{_HL7}series")
    if series is None:
        raise ECGInputError(path, "no rhythm series (component/series) in this aECG")
    sequences = series.find(f"{_HL7}component/{_HL7}sequenceSet")  # the first set: its own time
    if sequences is None:
        raise ECGInputError(path, "the rhythm series holds no sequenceSet")
    leads, interval = [], None
    for sequence in sequences.iterfind(f"{_HL7}component/{_HL7}sequence"):
        code = sequence.find(f"{_HL7}code")
        value = sequence.find(f"{_HL7}value")
        if code is None or value is None:
            continue
        name, kind = code.get("code", ""), value.get(_XSI_TYPE, "")
        if name.startswith("TIME_"):
            interval = _seconds(value, path)
        elif kind.endswith("SLIST_PQ"):
            origin, scale = value.find(f"{_HL7}origin"), value.find(f"{_HL7}scale")
            digits_text = value.findtext(f"{_HL7}digits") or ""
            try:
                digits = np.array(digits_text.split(), dtype=np.float64)
            except ValueError:
                raise ECGInputError(path, f"{name}: digits that are not numbers") from None
            factors = []
            for part, default in ((origin, "0"), (scale, "1")):
                number = _number(part.get("value", default) if part is not None else default,
                                 path, f"{name}'s origin/scale")  # fmt: skip
                unit = part.get("unit", "uV") if part is not None else "uV"
                factors.append(number * millivolts_per_unit(unit, path))
            leads.append((name.removeprefix("MDC_ECG_LEAD_"), factors[0] + factors[1] * digits))
    if interval is None or interval <= 0:
        raise ECGInputError(path, "no time sequence with a positive increment in the series")
    metadata: dict[str, Any] = {}
    sex = root.find(f".//{_HL7}administrativeGenderCode")
    if sex is not None and sex.get("code") in ("M", "F"):
        metadata["sex"] = "Male" if sex.get("code") == "M" else "Female"
    return _unique(path, leads), 1.0 / interval, metadata


def _unique(path: Path, leads: list[tuple[str, np.ndarray]]) -> dict[str, np.ndarray]:
    names = [name for name, _ in leads]
    if len(set(names)) < len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        raise ECGInputError(path, f"lead(s) {', '.join(twice)} stored twice in one waveform")
    return dict(leads)


def _same_length(path: Path, leads: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    """Leads cut to the shortest when they differ by at most 1 % (devices drop a sample or
    two at the end); returns them and the samples cut from the longest."""
    lengths = {name: len(signal) for name, signal in leads.items()}
    shortest, longest = min(lengths.values()), max(lengths.values())
    if longest - shortest > 0.01 * longest:
        raise ECGInputError(path, f"leads of different lengths ({lengths})")
    return {name: signal[:shortest] for name, signal in leads.items()}, longest - shortest


def read_ecg_xml(
    path: str | Path, *, nan: NanPolicy = "interpolate", flat: FlatPolicy = "flag"
) -> Record:
    """Read a GE MUSE, Philips or HL7 aECG XML file (chosen by its root element)."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        raise ECGInputError(path, f"not well-formed XML ({error})") from None
    except OSError as error:
        raise ECGInputError(path, f"cannot open ({error})") from None
    if root.tag.lower() == "restingecg":
        file_format, (leads, fs, metadata) = "GE MUSE XML", _muse(root, path)
    elif root.tag == f"{_HL7}AnnotatedECG":
        file_format, (leads, fs, metadata) = "HL7 aECG XML", _hl7(root, path)
    elif root.tag.rpartition("}")[2] == "restingecgdata":
        file_format, (leads, fs, metadata) = "Philips XML", _philips(root, path)
    else:
        raise ECGInputError(path, f"root element <{root.tag}>: not a GE MUSE (<RestingECG>), "
                            "Philips (<restingecgdata>) or HL7 aECG (<AnnotatedECG>) "
                            "file")  # fmt: skip
    if not leads:
        raise ECGInputError(path, "no lead data in the rhythm waveform")
    leads, cut = _same_length(path, leads)
    record = Record(
        signal=np.stack(list(leads.values())).astype(np.float32),
        fs=float(fs),
        leads=canonical_leads(list(leads)),
        source=str(path),
        metadata={
            "format": file_format,
            "record_name": path.stem,
            "original_leads": list(leads),
            **metadata,
        },
    )
    if cut:
        record = record.with_repair(kind="leads_cut_to_shortest", samples=cut)
    return clean(record, nan=nan, flat=flat)


__all__ = ["read_ecg_xml"]
