"""SCP-ECG: real device files checked against BioSig, and files written here for each case.

The files in ``fixtures/scp`` are anonymised Welch Allyn CardioControl exports from
SCP-Tools (MIT licence; see the README there): default Huffman table, first differences,
8 leads at 600 Hz. ``biosig_reference.json`` holds what BioSig's ``save2gdf`` (3.0.1) decodes
from them. The other cases (second differences, uncompressed data, each refusal) use files
that :func:`scp_file` writes by the standard's layout.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from test_cli import ecgfoundry

from ecgfoundry.data import ECGInputError, find_records, read_record
from ecgfoundry.data.scp import crc_ccitt, read_scp

FIXTURES = Path(__file__).parent / "fixtures" / "scp"
REFERENCE = json.loads((FIXTURES / "biosig_reference.json").read_text())


def _section(number: int, body: bytes, crc_error: int = 0) -> bytes:
    rest = struct.pack("<HI", number, 16 + len(body)) + bytes([20, 20]) + b"SCPECG" + body
    return struct.pack("<H", crc_ccitt(rest) ^ crc_error) + rest


# The standard's default table as code structures, as BioSig and PixelMed list it: prefix bits,
# bits of the whole code, base value, base code (stored with the first-sent bit lowest).
STANDARD_TABLE = [(1, 1, 0, 0), (3, 3, 1, 1), (3, 3, -1, 5), (4, 4, 2, 3), (4, 4, -2, 11),
                  (5, 5, 3, 7), (5, 5, -3, 23), (6, 6, 4, 15), (6, 6, -4, 47), (7, 7, 5, 31),
                  (7, 7, -5, 95), (8, 8, 6, 63), (8, 8, -6, 191), (9, 9, 7, 127),
                  (9, 9, -7, 383), (10, 10, 8, 255), (10, 10, -8, 767), (10, 18, 0, 511),
                  (10, 26, 0, 1023)]  # fmt: skip
# A table of a file's own: (code as sent, bits of the value after it, base value).
SHORT_TABLE = [("00", 0, 0), ("01", 0, 1), ("10", 0, -1), ("110", 8, 0), ("111", 16, 0)]


def _structures(table: list[tuple[str, int, int]]) -> list[tuple[int, int, int, int]]:
    return [(len(code), len(code) + extra, value, int(code[::-1], 2))
            for code, extra, value in table]  # fmt: skip


def _table_section(structures: list[tuple[int, int, int, int]], mode: int = 1) -> bytes:
    """Section 2 holding one table of ``structures`` (prefix bits, code bits, value, code)."""
    return struct.pack("<HH", 1, len(structures)) + b"".join(
        struct.pack("<BBBhI", bits, total, mode, value, code)
        for bits, total, value, code in structures
    )


def _pack(bits: list[str]) -> bytes:
    text = "".join(bits)
    text += "0" * (-len(text) % 8)
    return bytes(int(text[i : i + 8], 2) for i in range(0, len(text), 8))


def _encode(values: np.ndarray, table: list[tuple[str, int, int]]) -> bytes:
    """Each value by ``table``: its own code, else a code followed by the value's bits."""
    bits = []
    for v in map(int, values):
        exact = [code for code, extra, value in table if not extra and value == v]
        code, extra = (exact[0], 0) if exact else next(
            (c, e) for c, e, _ in table if e and -(1 << (e - 1)) <= v < 1 << (e - 1))  # fmt: skip
        bits.append(code + (format(v & ((1 << extra) - 1), f"0{extra}b") if extra else ""))
    return _pack(bits)


def _huffman(values: np.ndarray) -> bytes:
    """The standard's default Huffman code of each value, bits MSB first, padded to bytes."""
    bits = []
    for v in map(int, values):
        if v == 0:
            bits.append("0")
        elif abs(v) <= 8:
            bits.append("1" * abs(v) + "0" + ("1" if v < 0 else "0"))
        elif -128 <= v <= 127:
            bits.append("1111111110" + format(v & 0xFF, "08b"))
        else:
            bits.append("1111111111" + format(v & 0xFFFF, "016b"))
    return _pack(bits)


def _differences(samples: np.ndarray, order: int) -> np.ndarray:
    out = samples.copy()
    if order == 1:
        out[1:] = np.diff(samples)
    elif order == 2:
        out[2:] = samples[2:] - 2 * samples[1:-1] + samples[:-2]
    return out


def scp_file(
    path: Path,
    samples: dict[int, np.ndarray],
    *,
    nv_per_unit: int = 5000,
    interval_us: int = 2000,
    differences: int = 0,
    huffman: bool = False,
    tables: int = 19999,
    table: list[tuple[str, int, int]] | None = None,
    flags: int = 0b100,
    bimodal: int = 0,
    tags: dict[int, bytes] | None = None,
    spans: list[tuple[int, int]] | None = None,
    bodies: dict[int, bytes | None] | None = None,
    bad_crc: tuple[int, ...] = (),
    pointed: dict[int, int] | None = None,
) -> Path:
    """An SCP-ECG file of the given leads (lead code -> integer samples), uncompressed, coded
    by the default Huffman table (``huffman``) or by ``table`` (in section 2). ``bodies`` replaces
    (or, with None, leaves out) sections, ``bad_crc`` spoils their CRCs and ``pointed`` makes
    the pointer to one section lead to another."""
    count = len(next(iter(samples.values())))
    spans = spans or [(1, count)] * len(samples)
    leads = bytes([len(samples), flags]) + b"".join(
        struct.pack("<IIB", first, last, code)
        for (first, last), code in zip(spans, samples, strict=True)
    )
    streams = []
    for values in samples.values():
        coded = _differences(np.asarray(values, dtype=np.int64), differences)
        if table is not None:
            streams.append(_encode(coded, table))
        else:
            streams.append(_huffman(coded) if huffman else coded.astype("<i2").tobytes())
    rhythm = struct.pack("<HHBB", nv_per_unit, interval_us, differences, bimodal)
    rhythm += struct.pack(f"<{len(streams)}H", *map(len, streams)) + b"".join(streams)
    tags = tags or {}
    patient = b"".join(struct.pack("<BH", t, len(v)) + v for t, v in tags.items())
    written = {1: patient + struct.pack("<BH", 255, 0), 3: leads, 6: rhythm}
    if huffman:
        written[2] = struct.pack("<H", tables)
    if table is not None:
        written[2] = _table_section(_structures(table))
    written = {n: body for n, body in (written | (bodies or {})).items() if body is not None}
    sections, offset, places = [], 6 + 16 + 12 * 10, {}
    for number, body in sorted(written.items()):
        sections.append(_section(number, body, 0xFF if number in bad_crc else 0))
        places[number] = (len(sections[-1]), offset + 1)
        offset += len(sections[-1])
    places |= {n: places[other] for n, other in (pointed or {}).items()}
    pointers = [struct.pack("<HII", n, *places.get(n, (0, 0))) for n in range(12)]
    content = _section(0, b"".join(pointers)) + b"".join(sections)
    rest = struct.pack("<I", 6 + len(content)) + content
    path.write_bytes(struct.pack("<H", crc_ccitt(rest)) + rest)
    return path


def units(signal: np.ndarray, nv_per_unit: int) -> np.ndarray:
    return np.round(signal * 1e6 / nv_per_unit).astype("<i4")


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_device_files_decode_to_biosigs_integers(name: str) -> None:
    expected = REFERENCE[name]
    record = read_record(FIXTURES / name)
    assert record.leads == tuple(expected["leads"])
    assert record.fs == 600.0 and record.metadata["sampling_interval_us"] == 1667
    assert record.signal.shape == (len(expected["leads"]), expected["samples"])
    stored = units(record.signal, expected["nv_per_unit"])
    for lead, row in zip(record.leads, stored, strict=True):
        assert int(row[3000]) == expected["sample_3000"][lead]
        assert hashlib.sha256(row.tobytes()).hexdigest() == expected["sha256_int32"][lead], lead
    assert record.metadata["format"] == "SCP-ECG" and not record.metadata.get("file_crc_mismatch")


def test_device_file_metadata() -> None:
    record = read_scp(FIXTURES / "ECG_20060620_112352_ANON000002.SCP")
    assert record.metadata["age"] == 36.0
    # the anonymiser wrote sex as "R" and the date big-endian (year 53255): neither is kept
    assert "sex" not in record.metadata and "start" not in record.metadata
    assert record.metadata["original_leads"] == ["I", "II", "V3R", "V1", "V2", "V4", "V6", "V7"]


def test_data_inspect_reads_scp_files() -> None:
    path = FIXTURES / "ECG_20070321_110542_ANON000004.SCP"
    inspected = ecgfoundry("data", "inspect", path, "--json", "--model", "ecgfoundry-cpc")
    assert inspected.returncode == 0, inspected.stderr
    (row,) = json.loads(inspected.stdout)
    assert (row["format"], row["fs"], row["seconds"]) == ("SCP-ECG", 600.0, 10.0)
    assert row["problem"] is None and 40 <= row["heart_rate_bpm"] <= 120


def _test_values(count: int, seed: int = 0) -> np.ndarray:
    """Samples whose differences need every code length: 0, +-1..8, 8-bit and 16-bit."""
    steps = np.random.default_rng(seed).choice(
        [0, 1, -1, 3, -8, 8, 9, -100, 127, -128, 128, 3000, -3000], size=count
    )
    return np.clip(np.cumsum(steps), -12000, 12000)


@pytest.mark.parametrize("differences", [0, 1, 2])
@pytest.mark.parametrize("huffman", [True, False])
def test_written_files_read_back_exactly(tmp_path: Path, differences: int, huffman: bool) -> None:
    samples = {1: _test_values(700, 1), 2: _test_values(700, 2), 61: _test_values(700, 3)}
    path = scp_file(tmp_path / "a.scp", samples, differences=differences, huffman=huffman,
                    nv_per_unit=2500)  # fmt: skip
    record = read_record(path)
    assert record.leads == ("I", "II", "III") and record.fs == 500.0
    np.testing.assert_array_equal(units(record.signal, 2500), np.stack(list(samples.values())))


def test_the_default_table_written_out_decodes_as_the_default(tmp_path: Path) -> None:
    samples = {1: _test_values(700, 1), 2: _test_values(700, 2)}
    default = read_scp(scp_file(tmp_path / "a.scp", samples, differences=1, huffman=True))
    written_out = read_scp(scp_file(tmp_path / "b.scp", samples, differences=1, huffman=True,
                                    bodies={2: _table_section(STANDARD_TABLE)}))  # fmt: skip
    np.testing.assert_array_equal(units(default.signal, 5000), np.stack(list(samples.values())))
    np.testing.assert_array_equal(written_out.signal, default.signal)


@pytest.mark.parametrize("differences", [0, 2])
def test_a_files_own_huffman_table(tmp_path: Path, differences: int) -> None:
    samples = {1: _test_values(700, 1), 2: _test_values(700, 2)}
    record = read_scp(scp_file(tmp_path / "a.scp", samples, differences=differences,
                               table=SHORT_TABLE))  # fmt: skip
    np.testing.assert_array_equal(units(record.signal, 5000), np.stack(list(samples.values())))


def test_minus_avr_is_turned_back_into_avr(tmp_path: Path) -> None:
    avr = _test_values(300)
    record = read_scp(scp_file(tmp_path / "a.scp", {1: avr, 65: -avr}))
    assert record.leads == ("I", "aVR") and record.metadata["original_leads"] == ["I", "-aVR"]
    np.testing.assert_array_equal(record.signal[1], record.signal[0])


@pytest.mark.parametrize(("interval_us", "fs"),
                         [(1667, 600.0), (1666, 600.0), (2000, 500.0), (3891, 257.0),
                          (977, 1024.0), (100, 10000.0)])  # fmt: skip
def test_sampling_rate_from_the_interval(tmp_path: Path, interval_us: int, fs: float) -> None:
    record = read_scp(scp_file(tmp_path / "a.scp", {2: _test_values(300)}, interval_us=interval_us))
    assert record.fs == fs


def test_patient_tags(tmp_path: Path) -> None:
    tags = {4: struct.pack("<HB", 30, 2), 8: bytes([2]), 25: struct.pack("<HBB", 2019, 3, 7),
            26: bytes([14, 5, 9])}  # fmt: skip  # age 30 months, female, 2019-03-07 14:05:09
    record = read_scp(scp_file(tmp_path / "a.scp", {1: _test_values(300)}, tags=tags))
    assert record.metadata["age"] == 2.0 and record.metadata["sex"] == "Female"
    assert record.metadata["start"] == "2019-03-07 14:05:09"


def test_age_from_the_birth_date(tmp_path: Path) -> None:
    tags = {5: struct.pack("<HBB", 1950, 6, 30), 25: struct.pack("<HBB", 2020, 6, 29),
            26: bytes([8, 0, 0])}  # fmt: skip  # the day before the 70th birthday
    record = read_scp(scp_file(tmp_path / "a.scp", {1: _test_values(300)}, tags=tags))
    assert record.metadata["age"] == 69.0


def test_a_damaged_patient_section_is_skipped(tmp_path: Path) -> None:
    tags = {8: bytes([1])}
    path = scp_file(tmp_path / "a.scp", {1: _test_values(300)}, tags=tags, bad_crc=(1,))
    record = read_scp(path)
    assert record.metadata["patient_section_skipped"] == (
        "section 1 fails its CRC: the file is damaged"
    )
    assert "sex" not in record.metadata and record.signal.shape == (1, 300)


@pytest.mark.parametrize(("span", "samples"), [((0, 299), 300), ((0, 300), 300), ((1, 300), 300)])
def test_sample_numbers_from_zero(tmp_path: Path, span: tuple[int, int], samples: int) -> None:
    values = _test_values(300)
    record = read_scp(scp_file(tmp_path / "a.scp", {1: values}, spans=[span]))
    np.testing.assert_array_equal(units(record.signal, 5000)[0], values[:samples])


def test_trailing_bytes_are_reported(tmp_path: Path) -> None:
    path = scp_file(tmp_path / "a.scp", {1: _test_values(300)})
    path.write_bytes(path.read_bytes() + b"\0\0")
    record = read_scp(path)
    assert record.metadata["trailing_bytes"] == 2 and "file_crc_mismatch" not in record.metadata


def test_a_file_crc_mismatch_alone_is_reported_not_refused(tmp_path: Path) -> None:
    path = scp_file(tmp_path / "a.scp", {1: _test_values(300)})
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))
    assert read_scp(path).metadata["file_crc_mismatch"] is True


def test_finds_scp_files_in_folders(tmp_path: Path) -> None:
    scp_file(tmp_path / "a.scp", {1: _test_values(300)})
    scp_file(tmp_path / "b.SCP", {1: _test_values(300)})
    assert [p.name for p in find_records(tmp_path)] == ["a.scp", "b.SCP"]


def _damaged_rhythm(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # inside section 6, the last one written
    path.write_bytes(bytes(data))


def _section_2(structures: list[tuple[int, int, int, int]], mode: int = 1) -> dict:
    """Default-coded data behind a section 2 of ``structures``."""
    return {"huffman": True, "bodies": {2: _table_section(structures, mode)}}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"flags": 0b101}, "reference-beat subtraction"),
        ({"bimodal": 1}, "bimodal compression"),
        (
            {"huffman": True, "tables": 1},
            "section 2 lists 1 Huffman tables, the first with 0 code structures, in 2 bytes",
        ),
        (
            _section_2(_structures(SHORT_TABLE), mode=0),
            "code structure 1 switches to Huffman table 0; this reader decodes a single table",
        ),
        (
            _section_2(_structures([("0", 0, 0), ("01", 0, 1)])),
            "not a prefix code .code 0 begins 01.",
        ),
        (_section_2(_structures([("0", 0, 0), ("0", 0, 1)])), "gives two structures one code"),
        (_section_2([(0, 0, 0, 0)]), "code structure 1 has a 0-bit prefix in a 0-bit code"),
        (
            _section_2(_structures([("0", 0, 0), ("10", 0, 1)])),  # the data holds other codes
            "lead I: bits .* match no code of its Huffman table",
        ),
        ({"spans": [(1, 300), (301, 600)]}, "leads recorded in turn, not simultaneously"),
        ({"nv_per_unit": 0}, "0 nV per unit"),
        ({"interval_us": 0}, "an interval of 0 µs"),
        ({"differences": 3}, "difference order 3"),
        ({"huffman": True, "bodies": {2: b""}}, "section 2 .Huffman tables. is empty"),
        ({"bodies": {6: None}}, "no section 6 .rhythm data."),
        ({"bodies": {3: bytes([5, 4]) + bytes(18)}}, "section 3 lists 5 leads in 20 bytes"),
        ({"bodies": {6: bytes(8)}}, "section 6 .rhythm data. is too short for its header"),
        (
            {"bodies": {6: struct.pack("<HHBBHH", 5000, 2000, 0, 0, 600, 600) + bytes(900)}},
            "lead II: section 6 ends inside its data",
        ),
        ({"pointed": {3: 6}}, "the pointer to section 3 leads to section 6"),
        ({"bad_crc": (3,)}, "section 3 fails its CRC"),
        ({"spans": [(5, 4), (5, 4)]}, "section 3 gives samples 5-4: none"),
    ],
)
def test_refuses_what_it_cannot_decode(tmp_path: Path, change: dict, problem: str) -> None:
    path = scp_file(tmp_path / "a.scp", {1: _test_values(300), 2: _test_values(300, 1)}, **change)
    with pytest.raises(ECGInputError, match=problem) as error:
        read_scp(path)
    assert str(path) in str(error.value)


def test_names_damaged_files(tmp_path: Path) -> None:
    path = scp_file(tmp_path / "a.scp", {1: _test_values(300)})
    whole = path.read_bytes()
    path.write_bytes(whole[:-10])
    with pytest.raises(ECGInputError, match=r"header gives a length of .* truncated or altered"):
        read_scp(path)
    path.write_bytes(whole)
    _damaged_rhythm(path)
    with pytest.raises(ECGInputError, match="section 6 fails its CRC"):
        read_scp(path)
    path.write_bytes(b"not an ecg")
    with pytest.raises(ECGInputError, match="too short for an SCP-ECG file"):
        read_scp(path)


def test_names_a_lead_whose_data_runs_short(tmp_path: Path) -> None:
    path = scp_file(tmp_path / "a.scp", {1: _test_values(300), 2: _test_values(300)},
                    spans=[(1, 400), (1, 400)])  # fmt: skip  # 300 stored, 400 declared
    with pytest.raises(ECGInputError, match="lead I: 300 samples stored, section 3 says 400"):
        read_scp(path)
    path = scp_file(tmp_path / "b.scp", {1: _test_values(300)}, huffman=True,
                    spans=[(1, 5000)])  # fmt: skip
    with pytest.raises(ECGInputError, match="lead I: the Huffman data ends after"):
        read_scp(path)
