"""SCP-ECG (EN 1064 / ISO 11073-91064) -> :class:`Record`.

European cardiographs and ECG management systems (Schiller, Mortara, Cardioline, many
portable recorders) export SCP-ECG: a binary file of numbered sections behind a pointer
section. The reader takes what a rhythm recording needs:

* the file header (CRC-CCITT of the file, then its length) and section 0 (one pointer per
  section: id, length, 1-based byte offset); each used section's header (its own CRC, id and
  length) is checked;
* section 1 (patient and acquisition tags): age (tag 4, else from the birth date, tag 5), sex
  (tag 8), acquisition date and time (tags 25, 26); names and ids are not read. A section 1
  that fails its checks is skipped (``metadata["patient_section_skipped"]`` says why): it
  holds nothing the signal needs, and anonymisers rewrite it;
* section 2 (Huffman tables): the standard's default table (``19999``), which codes 0 in one bit,
  +-1..+-8 as runs of ones, and larger values as 8- or 16-bit integers, or the file's own
  table: code structures of (prefix bits, bits of the whole code, mode, base value, base
  code), the base code stored first-sent bit lowest; a code longer than its prefix carries
  its value in the bits after it (two's complement);
* section 3 (leads): count, flags, and per lead its first and last sample and its lead code
  (1 I, 2 II, 3-8 V1-V6, 61-64 III, aVR, aVL, aVF, ...). Samples are numbered from 1; a first
  sample of 0 is read as 1, unless uncompressed data hold one sample more (then numbering
  started at 0);
* section 6 (rhythm data): the amplitude unit in nV, the sampling interval in µs, whether the
  values are first or second differences, and per lead its byte count and data, Huffman-coded
  (section 2 present) or plain little-endian int16.

Refused with an error naming the file and the reason: reference-beat subtraction (section 3's
flag; sections 4-5) and bimodal compression, which need beat-by-beat decoding this reader does
not do, Huffman tables that switch to other tables (mode 0), tables that are not prefix codes,
and leads recorded in turn rather than simultaneously.
The sampling rate is the whole number of Hz whose interval lies within 1 µs of the stored one
(1667 or 1666 µs -> 600 Hz), where one does. A file whose CRC does not match while each used
section's does (an anonymiser rewrote section 1) is read, and ``metadata["file_crc_mismatch"]``
says so; so is one with bytes after the length its header states (``"trailing_bytes"``).
"""

from __future__ import annotations

import binascii
import contextlib
import datetime as dt
import itertools
import struct
from pathlib import Path

import numpy as np

from ecgfoundry.data.quality import FlatPolicy, NanPolicy, clean
from ecgfoundry.data.record import ECGInputError, Record, age_in_years, canonical_leads

SCP_SUFFIXES = (".scp",)
_SECTION_HEADER = 16  # CRC (2), id (2), length (4), version (1), protocol (1), reserved (6)
_DEFAULT_HUFFMAN = 19999
# The default table's code structures: (prefix bits, bits of the whole code, base value, base
# code as stored, first-sent bit lowest): 0 -> "0"; +-k -> k ones, a zero, a sign bit (k <= 8);
# nine ones and a zero, then 8 bits; ten ones, then 16 bits.
_DEFAULT_CODES = [(1, 1, 0, 0)] + [
    (k + 2, k + 2, sign * k, (1 << k) - 1 + (1 << (k + 1) if sign < 0 else 0))
    for k in range(1, 9) for sign in (1, -1)
] + [(10, 18, 0, 511), (10, 26, 0, 1023)]  # fmt: skip
_CODE_STRUCTURE = struct.Struct("<BBBhI")  # prefix bits, code bits, mode, base value, base code
HuffmanTable = dict[tuple[int, int], tuple[int, int]]  # (bits, prefix) -> (value bits, value)
SIGN_FLIPPED_AVR = 65  # -aVR: stored negated
# SCP-ECG's lead codes (DICOM's SCPECG 5.6.3-9-N and MDC 2:N use the same numbers).
SCP_LEAD_CODES: dict[int, str] = {
    1: "I", 2: "II", 3: "V1", 4: "V2", 5: "V3", 6: "V4", 7: "V5", 8: "V6", 9: "V7",
    10: "V2R", 11: "V3R", 12: "V4R", 13: "V5R", 14: "V6R", 15: "V7R", 16: "X", 17: "Y", 18: "Z",
    61: "III", 62: "aVR", 63: "aVL", 64: "aVF", SIGN_FLIPPED_AVR: "aVR", 66: "V8", 67: "V9",
    68: "V8R", 69: "V9R",
}  # fmt: skip
_SEX = {1: "Male", 2: "Female"}
_AGE_UNIT_YEARS = {1: 1.0, 2: 1 / 12, 3: 7 / 365.25, 4: 1 / 365.25, 5: 1 / 8766}


def crc_ccitt(data: bytes) -> int:
    """CRC-CCITT (polynomial 0x1021, start 0xFFFF), as SCP-ECG computes its checksums."""
    return binascii.crc_hqx(data, 0xFFFF)


class _File:
    """The bytes of one SCP-ECG file and its sections, checked as they are asked for."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.data = path.read_bytes()
        except OSError as error:
            raise ECGInputError(path, f"cannot open ({error})") from None
        if len(self.data) < 6 + _SECTION_HEADER:
            raise ECGInputError(path, f"{len(self.data)} bytes: too short for an SCP-ECG file")
        crc, length = struct.unpack_from("<HI", self.data, 0)
        if length > len(self.data) or length < 6 + _SECTION_HEADER:
            raise ECGInputError(path, f"the header gives a length of {length} bytes, the file "
                                f"has {len(self.data)}: truncated or altered")  # fmt: skip
        self.trailing_bytes = len(self.data) - length
        self.data = self.data[:length]
        self.crc_ok = crc == crc_ccitt(self.data[2:])
        self.pointers = self._pointers()

    def _pointers(self) -> dict[int, tuple[int, int]]:
        """Section id -> (offset of its header, length), for the sections the file holds."""
        body = self._checked(0, 6, None)
        pointers = {}
        for at in range(0, len(body) - 9, 10):
            section, length, index = struct.unpack_from("<HII", body, at)
            if length:
                pointers[section] = (index - 1, length)
        return pointers

    def _checked(self, section: int, offset: int, length: int | None) -> bytes:
        """A section's body after checking its header (id, length, CRC)."""
        header = self.data[offset : offset + _SECTION_HEADER]
        if len(header) < _SECTION_HEADER:
            raise ECGInputError(self.path, f"section {section} starts past the end of the file")
        crc, found, stated = struct.unpack_from("<HHI", header)
        if found != section or (length is not None and stated != length):
            raise ECGInputError(self.path, f"the pointer to section {section} leads to section "
                                f"{found} of {stated} bytes: the file is damaged")  # fmt: skip
        if stated < _SECTION_HEADER or offset + stated > len(self.data):
            raise ECGInputError(self.path, f"section {section} ({stated} bytes) runs past the "
                                "end of the file")  # fmt: skip
        if crc != crc_ccitt(self.data[offset + 2 : offset + stated]):
            raise ECGInputError(self.path, f"section {section} fails its CRC: the file is damaged")
        return self.data[offset + _SECTION_HEADER : offset + stated]

    def section(self, section: int) -> bytes | None:
        """A section's body (checked), or None if the file has no such section."""
        if section not in self.pointers:
            return None
        return self._checked(section, *self.pointers[section])

    def required(self, section: int, what: str) -> bytes:
        """A section's body (checked), or ECGInputError naming it as missing."""
        body = self.section(section)
        if body is None:
            raise ECGInputError(self.path, f"no section {section} ({what})")
        return body


def _tags(body: bytes) -> dict[int, bytes]:
    """Section 1's tags (tag, uint16 length, value) up to the terminator, tag 255."""
    tags, at = {}, 0
    while at + 3 <= len(body):
        tag, length = struct.unpack_from("<BH", body, at)
        if tag == 255:
            break
        tags.setdefault(tag, body[at + 3 : at + 3 + length])
        at += 3 + length
    return tags


def _date(value: bytes, time: bytes = b"\0\0\0") -> dt.datetime | None:
    """A date tag (uint16 year, month, day) and a time tag (hour, minute, second), if valid."""
    if len(value) < 4 or len(time) < 3:
        return None
    year, month, day = struct.unpack_from("<HBB", value)
    with contextlib.suppress(ValueError):  # an unset date (zeros) says nothing
        return dt.datetime(year, month, day, *time[:3])
    return None


def _patient(tags: dict[int, bytes]) -> dict[str, object]:
    """Age, sex and acquisition time from section 1's tags, where stated."""
    out: dict[str, object] = {}
    start = _date(tags.get(25, b""), tags.get(26, b""))
    if start is not None:
        out["start"] = start.isoformat(sep=" ")
    if len(tags.get(4, b"")) >= 3:
        value, unit = struct.unpack_from("<HB", tags[4])
        if value and unit in _AGE_UNIT_YEARS:
            out["age"] = float(int(value * _AGE_UNIT_YEARS[unit]))
    born = _date(tags.get(5, b""))
    if "age" not in out and born is not None and start is not None:
        age = age_in_years(born, start)
        if age is not None:
            out["age"] = age
    if tags.get(8) and tags[8][0] in _SEX:
        out["sex"] = _SEX[tags[8][0]]
    return out


def _code_table(codes: list[tuple[int, int, int, int]], path: Path) -> HuffmanTable:
    """The decoding table of code structures (prefix bits, code bits, base value, stored base
    code): each prefix, read first-sent bit first, -> (bits of the value after it, base value).
    Refuses codes one of which begins another."""
    table: HuffmanTable = {}
    for bits, total, value, stored in codes:
        prefix = int(format(stored & ((1 << bits) - 1), f"0{bits}b")[::-1], 2)
        table[(bits, prefix)] = (total - bits, value)
    if len(table) < len(codes):
        raise ECGInputError(path, "section 2's Huffman table gives two structures one code")
    words = sorted(format(prefix, f"0{bits}b") for bits, prefix in table)
    for shorter, longer in itertools.pairwise(words):
        if longer.startswith(shorter):
            raise ECGInputError(path, "section 2's Huffman table is not a prefix code (code "
                                f"{shorter} begins {longer})")  # fmt: skip
    return table


def _huffman_table(body: bytes, path: Path) -> HuffmanTable:
    """Section 2: the default table (19999), or the first of the file's own tables."""
    if len(body) < 2:
        raise ECGInputError(path, "section 2 (Huffman tables) is empty")
    (tables,) = struct.unpack_from("<H", body)
    if tables == _DEFAULT_HUFFMAN:
        return _code_table(_DEFAULT_CODES, path)
    count = struct.unpack_from("<H", body, 2)[0] if tables and len(body) >= 4 else 0
    if count == 0 or len(body) < 4 + _CODE_STRUCTURE.size * count:
        raise ECGInputError(path, f"section 2 lists {tables} Huffman tables, the first with "
                            f"{count} code structures, in {len(body)} bytes")  # fmt: skip
    codes = []
    for i in range(count):
        at = 4 + _CODE_STRUCTURE.size * i
        bits, total, mode, value, stored = _CODE_STRUCTURE.unpack_from(body, at)
        if mode == 0:
            raise ECGInputError(path, f"section 2's code structure {i + 1} switches to Huffman "
                                f"table {value}; this reader decodes a single table")  # fmt: skip
        if not 1 <= bits <= 32 or not bits <= total <= bits + 32:
            raise ECGInputError(path, f"section 2's code structure {i + 1} has a {bits}-bit "
                                f"prefix in a {total}-bit code")  # fmt: skip
        codes.append((bits, total, value, stored))
    return _code_table(codes, path)


def _huffman(stream: bytes, count: int, table: HuffmanTable, path: Path, lead: str) -> np.ndarray:
    """``count`` values Huffman-coded by ``table`` in ``stream`` (bits sent MSB first)."""
    bits = np.unpackbits(np.frombuffer(stream, dtype=np.uint8)).tolist()
    longest = max(length for length, _ in table)
    values, at, end = [], 0, len(bits)

    def cut_short() -> ECGInputError:
        return ECGInputError(path, f"lead {lead}: the Huffman data ends after {len(values)} of "
                             f"{count} samples")  # fmt: skip

    while len(values) < count:
        prefix = length = 0
        while (code := table.get((length, prefix))) is None:
            if at + length >= end:
                raise cut_short()
            if length == longest:
                raise ECGInputError(path, f"lead {lead}: bits {at}-{at + length} match no code "
                                    "of its Huffman table")  # fmt: skip
            prefix, length = prefix << 1 | bits[at + length], length + 1
        extra, value = code
        at += length
        if extra:
            if at + extra > end:
                raise cut_short()
            raw = int("".join(map(str, bits[at : at + extra])), 2)
            value = raw - (1 << extra) if raw >> (extra - 1) else raw
            at += extra
        values.append(value)
    return np.asarray(values, dtype=np.int64)


def _undifference(values: np.ndarray, order: int) -> np.ndarray:
    """Samples from first (``x[n] = d[n] + x[n-1]``) or second differences
    (``x[n] = d[n] + 2 x[n-1] - x[n-2]``; the first two values are samples)."""
    if order == 1:
        return np.cumsum(values)
    if order == 2 and len(values) > 2:
        slopes = np.cumsum(np.concatenate([[values[1] - values[0]], values[2:]]))
        return np.concatenate([values[:1], values[0] + np.cumsum(slopes)])
    return values


def _sampling_rate(interval_us: int) -> float:
    """The whole number of Hz whose interval is within 1 µs of ``interval_us`` (which a writer
    rounded or truncated), else 1e6 / interval."""
    whole = round(1e6 / interval_us)
    return float(whole) if whole and abs(1e6 / whole - interval_us) < 1 else 1e6 / interval_us


def _leads(body: bytes, path: Path) -> tuple[list[int], int, int]:
    """Section 3: lead codes and the one sample span they share (first, last, as stored)."""
    if len(body) < 2:
        raise ECGInputError(path, "section 3 (leads) is empty")
    count, flags = body[0], body[1]
    if flags & 1:
        raise ECGInputError(path, "uses reference-beat subtraction (SCP-ECG sections 4-5), "
                            "which this reader does not decode")  # fmt: skip
    if count == 0 or len(body) < 2 + 9 * count:
        raise ECGInputError(path, f"section 3 lists {count} leads in {len(body)} bytes")
    spans = [struct.unpack_from("<IIB", body, 2 + 9 * i) for i in range(count)]
    if len({(s[0], s[1]) for s in spans}) > 1:
        shown = ", ".join(f"{SCP_LEAD_CODES.get(c, c)} {a}-{b}" for a, b, c in spans)
        raise ECGInputError(path, f"leads recorded in turn, not simultaneously ({shown}); "
                            "ecgfoundry needs simultaneous leads")  # fmt: skip
    first, last = spans[0][:2]
    if last < max(first, 1):
        raise ECGInputError(path, f"section 3 gives samples {first}-{last}: none")
    return [s[2] for s in spans], first, last


def _rhythm(scp: _File, names: list[str], first: int, last: int) -> tuple[np.ndarray, int]:
    """Section 6: the leads' samples in mV [leads, samples], and the sampling interval in µs."""
    path, rhythm = scp.path, scp.required(6, "rhythm data")
    if len(rhythm) < 6 + 2 * len(names):
        raise ECGInputError(path, "section 6 (rhythm data) is too short for its header")
    nv_per_unit, interval_us, differences, bimodal = struct.unpack_from("<HHBB", rhythm)
    if bimodal:
        raise ECGInputError(path, "uses bimodal compression, which this reader does not decode")
    if not nv_per_unit or not interval_us or differences > 2:
        raise ECGInputError(path, f"section 6 states {nv_per_unit} nV per unit, an interval "
                            f"of {interval_us} µs and difference order {differences}")  # fmt: skip
    section_2 = scp.section(2)
    huffman = None if section_2 is None else _huffman_table(section_2, path)
    sizes = struct.unpack_from(f"<{len(names)}H", rhythm, 6)
    count = last - max(first, 1) + 1
    if first == 0 and huffman is None and all(size // 2 == last + 1 for size in sizes):
        count = last + 1  # numbered from 0
    at, leads = 6 + 2 * len(names), []
    for name, size in zip(names, sizes, strict=True):
        stream = rhythm[at : at + size]
        if len(stream) < size:
            raise ECGInputError(path, f"lead {name}: section 6 ends inside its data")
        if huffman is None:
            if size < 2 * count:
                raise ECGInputError(path, f"lead {name}: {size // 2} samples stored, section 3 "
                                    f"says {count}")  # fmt: skip
            values = np.frombuffer(stream, dtype="<i2", count=count).astype(np.int64)
        else:
            values = _huffman(stream, count, huffman, path, name)
        leads.append(_undifference(values, differences) * (nv_per_unit * 1e-6))
        at += size
    return np.stack(leads), interval_us


def read_scp(
    path: str | Path, *, nan: NanPolicy = "interpolate", flat: FlatPolicy = "flag"
) -> Record:
    """Read an SCP-ECG file's rhythm data (section 6) as millivolts."""
    path = Path(path)
    scp = _File(path)
    codes, first, last = _leads(scp.required(3, "lead definitions"), path)
    names = [SCP_LEAD_CODES.get(code, f"SCP lead {code}") for code in codes]
    signal, interval_us = _rhythm(scp, names, first, last)
    flipped = [i for i, code in enumerate(codes) if code == SIGN_FLIPPED_AVR]
    signal[flipped] *= -1
    original = [("-aVR" if i in flipped else name) for i, name in enumerate(names)]
    metadata: dict[str, object] = {
        "format": "SCP-ECG",
        "record_name": path.stem,
        "original_leads": original,
        "sampling_interval_us": interval_us,
    }
    try:
        metadata |= _patient(_tags(scp.section(1) or b""))
    except ECGInputError as error:
        metadata["patient_section_skipped"] = error.problem
    if not scp.crc_ok:
        metadata["file_crc_mismatch"] = True
    if scp.trailing_bytes:
        metadata["trailing_bytes"] = scp.trailing_bytes
    record = Record(signal=signal.astype(np.float32), fs=_sampling_rate(interval_us),
                    leads=canonical_leads(names), source=str(path), metadata=metadata)  # fmt: skip
    return clean(record, nan=nan, flat=flat)


__all__ = ["SCP_LEAD_CODES", "SCP_SUFFIXES", "SIGN_FLIPPED_AVR", "crc_ccitt", "read_scp"]
