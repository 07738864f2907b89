"""Readers: WFDB, PhysioNet/CinC challenge (.mat + .hea), EDF/BDF, GE MUSE / Philips / HL7 aECG
XML, NumPy and CSV -> :class:`Record`.

Every reader returns float32 millivolts, canonical lead names where the name is known, the
source path, and metadata; non-finite samples and flat leads go through
:func:`ecgfoundry.data.quality.clean` (see its policies). Problems raise
:class:`ECGInputError` naming the file.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np
import wfdb

from ecgfoundry.data.dicom_ecg import DICOM_SUFFIXES, is_dicom, may_be_dicom, read_dicom_ecg
from ecgfoundry.data.ecg_xml import read_ecg_xml
from ecgfoundry.data.edf import EDF_SUFFIXES, read_edf
from ecgfoundry.data.quality import FlatPolicy, NanPolicy, clean
from ecgfoundry.data.record import (
    Annotations,
    ECGInputError,
    Record,
    canonical_lead_name,
    canonical_leads,
    millivolts_per_unit,
    require_known_leads,
)
from ecgfoundry.data.scp import SCP_SUFFIXES, read_scp

# Bytes per sample of the WFDB storage formats whose file size follows from the header.
_BYTES_PER_SAMPLE = {
    "8": 1, "16": 2, "24": 3, "32": 4, "61": 2, "80": 1, "160": 2, "212": 1.5, "310": 4 / 3,
    "311": 4 / 3,
}  # fmt: skip
RECORD_SUFFIXES = (".hea", ".mat", ".dat", *EDF_SUFFIXES, ".xml", *SCP_SUFFIXES, *DICOM_SUFFIXES,
                   ".npy", ".csv")  # fmt: skip
# What find_records lists in a folder (a WFDB record once, by its header).
FOLDER_SUFFIXES = (".hea", *EDF_SUFFIXES, ".xml", *SCP_SUFFIXES, *DICOM_SUFFIXES, ".npy", ".csv")


def _record_base(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".hea", ".dat", ".mat", ".atr") else path


def _check_wfdb_sizes(header: wfdb.Record | SimpleNamespace, base: Path) -> None:
    """Compare each signal file's size with what the header implies."""
    files: dict[str, list[int]] = {}
    for i, name in enumerate(header.file_name or []):
        files.setdefault(name, []).append(i)
    spf = header.samps_per_frame or [1] * header.n_sig
    for name, channels in files.items():
        formats = [str(header.fmt[i]) for i in channels]
        if any(f not in _BYTES_PER_SAMPLE for f in formats):
            continue  # compressed or exotic formats: wfdb's own checks apply
        path = base.parent / name
        if not path.exists():
            raise ECGInputError(path, "signal file named in the header does not exist")
        offset = (header.byte_offset or [0] * header.n_sig)[channels[0]] or 0
        frame = sum(_BYTES_PER_SAMPLE[f] * spf[i] for f, i in zip(formats, channels, strict=True))
        expected = offset + math.ceil(header.sig_len * frame)
        actual = path.stat().st_size
        if actual < expected or actual > expected + 4:
            held = int((actual - offset) / frame)
            problem = (
                f"header {base.name}.hea says {header.sig_len} samples x {len(channels)} signals "
                f"(format {'/'.join(sorted(set(formats)))}, {expected} bytes) but the file has "
                f"{actual} bytes (~{held} samples): "
            )
            problem += "truncated signal file" if actual < expected else "header understates length"
            raise ECGInputError(path, problem)


def _quick_header(hea: Path) -> SimpleNamespace | None:
    """The few header fields the size check needs, parsed without wfdb (~50x faster).

    Returns None for layouts the size check does not cover (multi-segment, no length).
    """
    lines = [ln for ln in hea.read_text(errors="replace").splitlines() if ln and ln[0] != "#"]
    first = lines[0].split() if lines else []
    if len(first) < 4 or "/" in first[0]:
        return None
    n_sig, sig_len = int(first[1]), int(first[3])
    names, fmts, spfs, offsets = [], [], [], []
    for line in lines[1 : 1 + n_sig]:
        name, spec = line.split()[:2]
        match = re.fullmatch(r"(\d+)(?:x(\d+))?(?::-?\d+)?(?:\+(\d+))?", spec)
        if match is None:
            raise ValueError(f"malformed format field {spec!r}")
        names.append(name)
        fmts.append(match[1])
        spfs.append(int(match[2] or 1))
        offsets.append(int(match[3] or 0))
    if len(names) != n_sig:
        raise ValueError(f"header announces {n_sig} signals but lists {len(names)}")
    return SimpleNamespace(
        n_sig=n_sig,
        sig_len=sig_len,
        file_name=names,
        fmt=fmts,
        samps_per_frame=spfs,
        byte_offset=offsets,
    )


def check_wfdb_files(path: str | Path) -> str | None:
    """A fast structural check of a WFDB record: None if sound, else the problem in words.

    Checks that the header exists and parses, and that every signal file exists with the size
    the header implies. It does not decode samples (reading does that).
    """
    base = _record_base(path)
    hea = base.with_suffix(".hea")
    if not hea.exists():
        return f"{hea}: WFDB header not found"
    try:
        header = _quick_header(hea)
    except (ValueError, IndexError) as error:
        return f"{hea}: unreadable WFDB header ({error})"
    try:
        if header is not None:
            _check_wfdb_sizes(header, base)
    except ECGInputError as error:
        return str(error)
    return None


def read_wfdb(
    path: str | Path,
    *,
    annotation: str | None = None,
    sampfrom: int = 0,
    sampto: int | None = None,
    nan: NanPolicy = "interpolate",
    flat: FlatPolicy = "flag",
) -> Record:
    """Read a WFDB record (any format ``wfdb`` reads); ``annotation`` is an extension like 'atr'."""
    base = _record_base(path)
    if not base.with_suffix(".hea").exists():
        raise ECGInputError(base.with_suffix(".hea"), "WFDB header not found")
    whole = sampfrom == 0 and sampto is None
    try:
        rec = wfdb.rdrecord(str(base), sampfrom=sampfrom, sampto=sampto)
    except Exception as error:  # wfdb raises many types; find the cause and name it
        try:
            header = wfdb.rdheader(str(base))
        except Exception as header_error:
            raise ECGInputError(
                base.with_suffix(".hea"), f"unreadable WFDB header ({header_error})"
            ) from error
        if isinstance(header, wfdb.Record):
            _check_wfdb_sizes(header, base)
        raise ECGInputError(base, f"wfdb could not read the signal ({error})") from error
    if whole and isinstance(rec, wfdb.Record):
        _check_wfdb_sizes(rec, base)  # catches a header that understates the length
    if rec.p_signal is None:
        raise ECGInputError(base, "record has no signal")
    units = list(rec.units or [None] * rec.n_sig)
    scale = np.array([millivolts_per_unit(u, base) for u in units], dtype=np.float64)[:, None]
    signal = (rec.p_signal.T * scale).astype(np.float32)
    metadata: dict[str, Any] = {
        "format": "WFDB",
        "record_name": rec.record_name,
        "original_leads": list(rec.sig_name),
        "units": units,
        "comments": list(rec.comments or []),
    }
    if rec.base_date is not None or rec.base_time is not None:
        metadata["start"] = f"{rec.base_date or ''} {rec.base_time or ''}".strip()
    annotations = None
    if annotation:
        annotations = read_annotations(base, annotation, sampfrom=sampfrom, sampto=sampto)
    record = Record(
        signal=signal,
        fs=float(rec.fs),
        leads=canonical_leads(rec.sig_name),
        source=str(base),
        metadata=metadata,
        annotations=annotations,
    )
    return clean(record, nan=nan, flat=flat)


def read_annotations(
    path: str | Path, extension: str = "atr", *, sampfrom: int = 0, sampto: int | None = None
) -> Annotations:
    """WFDB annotations; sample indices are relative to ``sampfrom``."""
    base = _record_base(path)
    file = base.parent / f"{base.name}.{extension}"
    if not file.exists():
        raise ECGInputError(file, "annotation file not found")
    try:
        ann = wfdb.rdann(str(base), extension, sampfrom=sampfrom, sampto=sampto)
    except Exception as error:
        raise ECGInputError(file, f"unreadable annotations ({error})") from error
    notes = tuple((n or "").rstrip("\x00") for n in (ann.aux_note or [""] * len(ann.sample)))
    return Annotations(
        sample=np.asarray(ann.sample, dtype=np.int64) - sampfrom,
        symbol=tuple(ann.symbol),
        aux_note=notes,
        fs=float(ann.fs),
    )


def challenge_header(path: Path) -> dict[str, Any]:
    """A challenge ``.hea``: signal count, rate, samples, per-signal gains, baselines, units and
    names, and the ``#Key: value`` comments (keys lower-cased)."""
    lines = path.read_text(errors="replace").splitlines()
    if not lines:
        raise ECGInputError(path, "empty header")
    first = lines[0].split()
    try:
        n_sig, fs, n_samples = int(first[1]), float(first[2]), int(first[3])
    except (IndexError, ValueError) as error:
        raise ECGInputError(path, f"malformed record line {lines[0]!r}") from error
    signal_lines = [line.split() for line in lines[1 : 1 + n_sig]]
    if len(signal_lines) != n_sig or any(len(s) < 9 for s in signal_lines):
        raise ECGInputError(path, f"header announces {n_sig} signals but lists fewer")
    gains, baselines, units, names = [], [], [], []
    for fields in signal_lines:
        gain_field = fields[2]  # e.g. "4880/mV" or "1000(0)/mV"
        gain_part, _, unit = gain_field.partition("/")
        gain_text, _, baseline_text = gain_part.partition("(")
        gains.append(float(gain_text))
        adc_zero = int(fields[4])
        baselines.append(int(baseline_text.rstrip(")")) if baseline_text else adc_zero)
        units.append(unit or "mV")
        names.append(" ".join(fields[8:]))
    comments: dict[str, str] = {}
    for line in lines[1 + n_sig :]:
        if line.startswith("#") and ":" in line:
            key, _, value = line[1:].partition(":")
            comments[key.strip().lower()] = value.strip()
    return {
        "n_sig": n_sig,
        "fs": fs,
        "n_samples": n_samples,
        "gains": gains,
        "baselines": baselines,
        "units": units,
        "names": names,
        "comments": comments,
    }


def parse_age(text: str | None) -> float | None:
    """A header's age in years; None for absent, unknown or non-finite values."""
    try:
        age = float(text) if text else None
    except ValueError:
        return None
    return age if age is not None and math.isfinite(age) else None


def read_challenge(
    path: str | Path, *, nan: NanPolicy = "interpolate", flat: FlatPolicy = "flag"
) -> Record:
    """Read a PhysioNet/CinC challenge record (``.mat`` with ``val`` + ``.hea`` with #Dx etc.).

    Their header names ``X.mat`` as the signal file, which ``wfdb.rdrecord`` rejects, so the
    header is parsed here and the gains applied to ``val`` from ``scipy.io.loadmat``.
    """
    from scipy.io import loadmat

    base = _record_base(path)
    hea, mat = base.with_suffix(".hea"), base.with_suffix(".mat")
    for file in (hea, mat):
        if not file.exists():
            raise ECGInputError(file, "file not found (a challenge record needs .hea and .mat)")
    header = challenge_header(hea)
    try:
        val = loadmat(str(mat))["val"]
    except Exception as error:
        raise ECGInputError(mat, f"unreadable .mat file ({error})") from error
    expected = (header["n_sig"], header["n_samples"])
    if val.shape != expected:
        raise ECGInputError(mat, f"'val' has shape {val.shape}, header {hea.name} says {expected}")
    gains = np.array(header["gains"], dtype=np.float64)[:, None]
    baselines = np.array(header["baselines"], dtype=np.float64)[:, None]
    scale = np.array([millivolts_per_unit(u, hea) for u in header["units"]])[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        signal = ((val - baselines) / gains * scale).astype(np.float32)
    comments = header["comments"]
    dx = [code.strip() for code in comments.get("dx", "").split(",") if code.strip()]
    metadata = {
        "format": "CinC .mat",
        "record_name": base.name,
        "original_leads": header["names"],
        "age": parse_age(comments.get("age")),
        "sex": comments.get("sex"),
        "dx": dx,
        "comments": comments,
    }
    record = Record(
        signal=signal,
        fs=header["fs"],
        leads=canonical_leads(header["names"]),
        source=str(base),
        metadata=metadata,
    )
    return clean(record, nan=nan, flat=flat)


def _leads_first(array: np.ndarray, n_leads: int, source: str | Path | None) -> np.ndarray:
    if array.ndim != 2:
        raise ECGInputError(source, f"expected a 2-D array [leads, samples], got {array.shape}")
    if array.shape[0] == n_leads:
        return array
    if array.shape[1] == n_leads:
        return array.T
    raise ECGInputError(source, f"array of shape {array.shape} does not have {n_leads} leads")


def read_array(
    signal: np.ndarray,
    fs: float,
    leads: list[str] | tuple[str, ...],
    *,
    source: str | Path | None = None,
    units: str = "mV",
    allow_unknown_leads: bool = False,
    nan: NanPolicy = "interpolate",
    flat: FlatPolicy = "flag",
    file_format: str = "array",
) -> Record:
    """A Record from an in-memory array [leads, samples] (or [samples, leads]);
    ``file_format`` is what ``metadata["format"]`` says it came from."""
    array = np.asarray(signal)
    if not np.issubdtype(array.dtype, np.number):
        raise ECGInputError(source, f"signal must be numeric, got dtype {array.dtype}")
    if not allow_unknown_leads:
        require_known_leads(tuple(leads), source)
    array = _leads_first(array, len(leads), source) * millivolts_per_unit(units, source)
    record = Record(
        signal=array.astype(np.float32),
        fs=fs,
        leads=canonical_leads(list(leads)),
        source=str(source) if source is not None else None,
        metadata={
            "format": file_format,
            "original_leads": list(leads),
            "units": [units] * len(leads),
        },
    )
    return clean(record, nan=nan, flat=flat)


NPY_MAGIC = b"\x93NUMPY"


def load_npy(path: Path, mmap_mode: Literal["r"] | None = None) -> np.ndarray:
    """An ``.npy`` array of numbers, never unpickled. A file that is not in NumPy's format, or
    that holds Python objects, raises ECGInputError saying which (numpy's own message for
    both speaks of pickled data and of loading it unsafely)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(len(NPY_MAGIC))
    except OSError as error:
        raise ECGInputError(path, f"cannot open ({error.strerror or error})") from None
    if head != NPY_MAGIC:
        raise ECGInputError(path, "not a NumPy .npy file (no .npy header): save arrays with "
                            "numpy.save, or give a table as .csv")  # fmt: skip
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except ValueError as error:
        if any(s in str(error) for s in ("pickled", "Python objects", "Object arrays")):
            raise ECGInputError(path, "holds Python objects, not numbers; object arrays are "
                                "never loaded: save a numeric array") from None  # fmt: skip
        raise ECGInputError(path, f"not a readable .npy array ({error})") from None
    except OSError as error:
        raise ECGInputError(path, f"not a readable .npy array ({error})") from None


def read_numpy(
    path: str | Path, fs: float, leads: list[str] | tuple[str, ...], **options: Any
) -> list[Record]:
    """Records from an ``.npy`` file: [leads, samples] gives one, [N, leads, samples] gives N."""
    path = Path(path)
    array = load_npy(path)
    if array.ndim == 2:
        return [read_array(array, fs, leads, source=path, file_format="NumPy", **options)]
    if array.ndim == 3:
        return [
            read_array(item, fs, leads, source=f"{path}[{i}]", file_format="NumPy", **options)
            for i, item in enumerate(array)
        ]
    raise ECGInputError(
        path, f"expected [leads, samples] or [N, leads, samples], got {array.shape}"
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


CSV_SNIFF_LINES = 20  # non-blank lines read to tell the layout


def _csv_layout(path: Path) -> tuple[str, str, list[str] | None, int]:
    """(separator, decimal mark, header names or None, values per row) of a CSV: comma- or
    semicolon-separated (European spreadsheets, where values may have decimal commas), lines
    perhaps closed by a separator; read from its first non-blank lines."""
    import csv
    import itertools

    try:
        with path.open(newline="") as file:
            lines = list(itertools.islice((t for t in file if t.strip()), CSV_SNIFF_LINES + 1))
    except (OSError, UnicodeDecodeError) as error:
        raise ECGInputError(path, f"cannot open ({error})") from error
    if not lines:
        raise ECGInputError(path, "empty CSV")
    unquoted = [re.sub(r'"[^"]*"', "", line) for line in lines]
    sep = ";" if any(";" in line for line in unquoted) else ","
    decimal = "," if sep == ";" and any("," in line for line in unquoted[1:]) else "."
    first, *rows = (
        [field.strip() for field in fields] for fields in csv.reader(lines, delimiter=sep)
    )
    numeric = all(_is_number(f.replace(decimal, ".")) for f in first if f)
    data = rows if not numeric else [first, *rows]
    closed = bool(data) and all(len(r) > 1 and r[-1] == "" for r in data)  # closing separator
    counts = [len(r) - closed for r in data]
    width = max(set(counts), key=counts.count) if counts else len(first)
    if numeric:
        return sep, decimal, None, width
    names = first[:-1] if first and first[-1] == "" else first
    if data and width != len(names):
        raise ECGInputError(path, f"the header names {len(names)} columns but the rows have "
                            f"{width} values: every column needs a name")  # fmt: skip
    return sep, decimal, names, width


def read_csv(
    path: str | Path,
    fs: float,
    leads: list[str] | tuple[str, ...] | None = None,
    **options: Any,
) -> Record:
    """A Record from a CSV with one column per lead (rows are samples), separated by commas or
    semicolons (decimal commas then allowed).

    With a header row the column names are the leads (a leading ``time``/``sample`` column is
    dropped); without one, ``leads`` names the columns.
    """
    import pandas as pd

    path = Path(path)
    sep, decimal, names, width = _csv_layout(path)
    try:
        frame = pd.read_csv(path, header=0 if names else None, sep=sep, decimal=decimal,
                            index_col=False)  # fmt: skip
    except Exception as error:
        raise ECGInputError(path, f"unreadable CSV ({error})") from error
    frame = frame.iloc[:, :width]  # without the empty column a closing separator adds
    if names and names[0].lower() in ("time", "t", "sample", "index"):
        frame, names = frame.iloc[:, 1:], names[1:]
    if leads is not None:
        if names is not None and len(leads) != len(names):
            raise ECGInputError(path, f"{len(leads)} lead names given for {len(names)} columns")
        names = list(leads)
    if names is None:
        raise ECGInputError(path, "CSV has no header row: pass the lead names (CLI --leads)")
    try:
        values = frame.to_numpy(dtype=np.float64)
    except ValueError as error:
        raise ECGInputError(path, f"non-numeric values in the signal columns ({error})") from error
    return read_array(values.T, fs, names, source=path, file_format="CSV", **options)


def is_challenge_header(path: Path) -> bool:
    """True if a ``.hea`` names a ``.mat`` signal file (the challenge layout)."""
    with path.open(errors="replace") as handle:
        handle.readline()
        return handle.readline().split(" ", 1)[0].endswith(".mat")


def name_leads(record: Record, leads: list[str] | tuple[str, ...] | None) -> Record:
    """``leads`` as the names of a record whose channels the file does not name as leads (a
    Holter's ``ECG1``, ``ECG2``); a record with any lead name of its own is left as it is."""
    if leads is None or any(canonical_lead_name(name) for name in record.leads):
        return record
    if len(leads) != record.n_leads:
        raise ECGInputError(record.source, f"{len(leads)} lead names given for its "
                            f"{record.n_leads} channels ({', '.join(record.leads)})")  # fmt: skip
    require_known_leads(tuple(leads), record.source)
    return record.replace(leads=canonical_leads(list(leads)))


def read_record(
    path: str | Path,
    *,
    fs: float | None = None,
    leads: list[str] | tuple[str, ...] | None = None,
    **options: Any,
) -> Record:
    """Read any supported file, choosing the reader by its suffix.

    ``.hea``/``.dat`` (WFDB), ``.mat`` (challenge), ``.edf``/``.bdf``, ``.xml`` (GE MUSE,
    Philips, HL7 aECG), ``.scp`` (SCP-ECG) and ``.dcm`` (DICOM ECG; also a DICOM file under any
    other name, e.g. a PACS export's ``IM0001``) describe themselves (``leads`` names their
    channels only where the file names none of them as a lead: :func:`name_leads`); ``.npy``
    and ``.csv`` need ``fs`` (and ``leads`` unless the CSV has a header row).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".npy", ".csv"):
        if fs is None:
            raise ECGInputError(path, f"{suffix} files carry no sampling rate: pass fs (--fs)")
        if suffix == ".csv":
            return read_csv(path, fs, leads, **options)
        if leads is None:
            raise ECGInputError(path, ".npy files carry no lead names: pass leads")
        records = read_numpy(path, fs, leads, **options)
        if len(records) != 1:
            raise ECGInputError(path, f"holds {len(records)} ECGs; use read_numpy for batches")
        return records[0]
    if millivolts_per_unit(options.pop("units", "mV"), path) != 1.0:
        raise ECGInputError(path, "units apply to .npy/.csv arrays; this file states its own")
    if suffix == ".mat" or (suffix == ".hea" and path.exists() and is_challenge_header(path)):
        record = read_challenge(path, **options)
    elif suffix in DICOM_SUFFIXES or (suffix not in RECORD_SUFFIXES and is_dicom(path)):
        record = read_dicom_ecg(path, **options)
    elif suffix in (".hea", ".dat", ""):
        record = read_wfdb(path, **options)
    elif suffix in EDF_SUFFIXES:
        record = read_edf(path, **options)
    elif suffix == ".xml":
        record = read_ecg_xml(path, **options)
    elif suffix in SCP_SUFFIXES:
        record = read_scp(path, **options)
    else:
        raise ECGInputError(
            path, f"unsupported file type {suffix!r}; expected one of {RECORD_SUFFIXES}"
        )
    return name_leads(record, leads)


def is_record_table(path: Path) -> bool:
    """A CSV whose header names a ``record`` column: a table of records (labels, splits, as
    ``finetune --data`` reads), not an ECG."""
    if path.suffix.lower() != ".csv":
        return False
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            header = next((line for line in file if line.strip()), "")
    except (OSError, UnicodeDecodeError):
        return False  # reading it as an ECG names the problem
    return "record" in (field.strip() for field in re.split(r"[,;]", header.replace('"', "")))


def find_records(folder: str | Path) -> list[Path]:
    """Record files below a folder: one ``.hea`` per WFDB/challenge record, plus
    .edf/.bdf/.xml/.scp/.dcm/.npy/.csv files, and DICOM files named without a suffix or by UID.

    Hidden entries (dot-names) below ``folder`` are skipped; the folder itself may lie anywhere,
    e.g. under ``~/.cache``. So are tables of records (:func:`is_record_table`), such as the
    labels kept beside the ECGs.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ECGInputError(folder, "not a folder")
    found = [
        p
        for p in sorted(folder.rglob("*"))
        if p.is_file()
        and (p.suffix.lower() in FOLDER_SUFFIXES or (may_be_dicom(p) and is_dicom(p)))
        and not is_record_table(p)
    ]
    return [
        p for p in found if not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
