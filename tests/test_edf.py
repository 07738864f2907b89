"""EDF / EDF+ / BDF files: real PTB-XL records written as EDF read back as the same ECG."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_cli import ecgfoundry

from ecgfoundry.data import STANDARD_LEADS, ECGInputError, find_records, read_record, read_wfdb
from ecgfoundry.data.record import describe_repair

RECORD = "records100/00000/00001_lr"


def _field(value: object, width: int) -> bytes:
    text = str(value).encode("latin-1")
    assert len(text) <= width, (value, width)
    return text.ljust(width)


def write_edf(
    path: Path,
    channels: list[tuple[str, np.ndarray, str]],
    *,
    records: int = 10,
    seconds_per_record: int = 1,
    bdf: bool = False,
    reserved: str = "EDF+C",
    patient: str = "X F 02-MAY-1951 X",
    start: tuple[str, str] = ("01.03.02", "10.20.30"),
) -> None:
    """Write (label, values, unit) channels as ``records`` data records of EDF or BDF,
    following the specification: per-channel physical range, full digital range."""
    dmin, dmax = (-(2**23), 2**23 - 1) if bdf else (-(2**15), 2**15 - 1)
    fields: dict[str, list[object]] = {k: [] for k in ("label", "unit", "pmin", "pmax", "n")}
    digital = []
    for label, values, unit in channels:
        pmin, pmax = math.floor(values.min()) - 1, math.ceil(values.max()) + 1
        scaled = np.round((values - pmin) / (pmax - pmin) * (dmax - dmin) + dmin).astype(np.int64)
        digital.append(scaled.reshape(records, -1))
        for key, value in zip(
            fields, (label, unit, pmin, pmax, len(values) // records), strict=True
        ):
            fields[key].append(value)
    ns = len(channels)
    header = (b"\xffBIOSEMI" if bdf else _field("0", 8)) + _field(patient, 80)
    header += _field("Startdate 01-MAR-2002 X X X", 80) + _field(start[0], 8)
    header += _field(start[1], 8) + _field(256 * (ns + 1), 8) + _field(reserved, 44)
    header += _field(records, 8) + _field(seconds_per_record, 8) + _field(ns, 4)
    for key, width in (("label", 16), (None, 80), ("unit", 8), ("pmin", 8), ("pmax", 8)):
        header += b"".join(_field(v, width) for v in (fields[key] if key else [""] * ns))
    header += _field(dmin, 8) * ns + _field(dmax, 8) * ns + _field("", 80) * ns
    header += b"".join(_field(n, 8) for n in fields["n"]) + _field("", 32) * ns
    data = np.concatenate(digital, axis=1).reshape(-1)
    if bdf:
        unsigned = (data % (1 << 24)).astype(np.uint32)
        body = np.stack([unsigned & 255, (unsigned >> 8) & 255, unsigned >> 16], axis=1)
        payload = body.astype(np.uint8).tobytes()
    else:
        payload = data.astype("<i2").tobytes()
    path.write_bytes(header + payload)


def _ptbxl_channels(ptbxl_root: Path, prefix: str = "ECG ") -> list[tuple[str, np.ndarray, str]]:
    record = read_wfdb(ptbxl_root / RECORD)
    names = ["I", "II", "III", "aVR", "aVL", "aVF", *[f"V{k}" for k in range(1, 7)]]
    return [(f"{prefix}{lead}", record.signal[i] * 1000.0, "uV") for i, lead in enumerate(names)]


def test_an_edf_plus_holds_the_wfdb_record(ptbxl_root: Path, tmp_path: Path) -> None:
    """12 leads in microvolts with a respiration channel at its own rate and an annotation
    channel: the reader keeps the leads, scales them to mV and says what it left out."""
    wfdb_record = read_wfdb(ptbxl_root / RECORD)
    resp = np.sin(np.linspace(0, 6, 250)) * 100
    annotations = np.zeros(10 * 30)
    channels = [*_ptbxl_channels(ptbxl_root), ("Resp", resp, "a.u."),
                ("EDF Annotations", annotations, "")]  # fmt: skip
    write_edf(tmp_path / "ecg.edf", channels)
    record = read_record(tmp_path / "ecg.edf")
    assert record.leads == STANDARD_LEADS and record.fs == 100.0
    assert record.signal.shape == wfdb_record.signal.shape
    step = max((c[1].max() - c[1].min() + 2) / 65535 / 1000 for c in channels[:12])
    np.testing.assert_allclose(record.signal, wfdb_record.signal, atol=step)
    assert record.metadata["dropped_channels"] == ["Resp", "EDF Annotations"]
    assert record.metadata["original_leads"][0] == "ECG I"
    assert (record.metadata["sex"], record.metadata["age"]) == ("Female", 50.0)
    assert record.metadata["start"] == "2002-03-01 10:20:30"


def test_a_bdf_file_is_read_at_24_bits(ptbxl_root: Path, tmp_path: Path) -> None:
    wfdb_record = read_wfdb(ptbxl_root / RECORD)
    channels = [(label, values / 1000.0, "mV") for label, values, _ in
                _ptbxl_channels(ptbxl_root, prefix="")]  # fmt: skip
    write_edf(tmp_path / "ecg.bdf", channels, bdf=True, reserved="24BIT")
    record = read_record(tmp_path / "ecg.bdf")
    assert record.leads == STANDARD_LEADS
    np.testing.assert_allclose(record.signal, wfdb_record.signal, atol=2e-6)  # 24-bit steps
    assert "sex" not in record.metadata  # a BDF's patient field is free text, not EDF+'s


def test_a_single_ecg_channel_holter(tmp_path: Path) -> None:
    """Channels not named as leads: the ECG-labelled one is kept under its own name."""
    ecg = np.sin(np.linspace(0, 60, 2500)) * 1000
    write_edf(tmp_path / "holter.edf", [("ECG", ecg, "uV"), ("Accel X", ecg[:250], "mg")])
    record = read_record(tmp_path / "holter.edf")
    assert record.leads == ("ECG",) and record.fs == 250.0
    assert record.metadata["dropped_channels"] == ["Accel X"]
    np.testing.assert_allclose(record.signal[0], ecg / 1000, atol=1e-4)


def test_bad_edf_files_are_named_with_the_problem(ptbxl_root: Path, tmp_path: Path) -> None:
    channels = _ptbxl_channels(ptbxl_root)
    good = tmp_path / "good.edf"
    write_edf(good, channels)
    empty = tmp_path / "empty.edf"
    empty.write_bytes(good.read_bytes()[: 256 * 13 + 100])
    with pytest.raises(ECGInputError, match="no whole data record of 2400 bytes"):
        read_record(empty)
    gaps = tmp_path / "gaps.edf"
    write_edf(gaps, channels, reserved="EDF+D")
    with pytest.raises(ECGInputError, match="EDF\\+D: an interrupted recording"):
        read_record(gaps)
    mixed = tmp_path / "mixed.edf"
    write_edf(mixed, [channels[0], ("ECG II", channels[1][1][::2], "uV")])
    with pytest.raises(ECGInputError, match="different sampling rates \\(ECG I 100 Hz, ECG II 50"):
        read_record(mixed)
    not_edf = tmp_path / "notes.edf"
    not_edf.write_bytes(b"%PDF-1.4" + bytes(400))
    with pytest.raises(ECGInputError, match=f"^{not_edf}: not an EDF or BDF file"):
        read_record(not_edf)
    garbled = tmp_path / "garbled.edf"
    data = bytearray(good.read_bytes())
    at = 256 + 12 * (16 + 80 + 8)  # the first signal's physical minimum
    data[at : at + 8] = b"minus 1 "
    garbled.write_bytes(bytes(data))
    with pytest.raises(ECGInputError, match="physical min of signal 'ECG I' is 'minus 1'"):
        read_record(garbled)


def test_embed_reads_edf_beside_wfdb(ptbxl_root: Path, tmp_path: Path) -> None:
    """A folder holding a record as WFDB and as EDF: both are found, and the bundled model
    embeds them alike (EDF's 16-bit steps are far below the signal's)."""
    folder = tmp_path / "records"
    folder.mkdir()
    for suffix in (".hea", ".dat"):
        shutil.copy(ptbxl_root / f"{RECORD}{suffix}", folder)
    write_edf(folder / "00001_lr_copy.edf", _ptbxl_channels(ptbxl_root))
    assert [p.name for p in find_records(folder)] == ["00001_lr.hea", "00001_lr_copy.edf"]
    result = ecgfoundry("embed", "ecgfoundry-cpc", folder, "--out", tmp_path / "e.npy")
    assert result.returncode == 0, result.stderr
    ids = (tmp_path / "e.ids.txt").read_text().splitlines()
    assert [Path(i).name for i in ids] == ["00001_lr", "00001_lr_copy.edf"]
    wfdb_row, edf_row = np.load(tmp_path / "e.npy")
    np.testing.assert_allclose(edf_row, wfdb_row, atol=1e-3 * np.abs(wfdb_row).max())


def test_wfdbs_own_edf_writer_agrees(ptbxl_root: Path, tmp_path: Path) -> None:
    """An independent writer: wfdb's ``wfdb_to_edf`` (it pads the last data record; the
    padding is not the record's)."""
    from wfdb.io.convert.edf import wfdb_to_edf

    wfdb_to_edf(str(ptbxl_root / RECORD), output_filename=str(tmp_path / "x.edf"))
    wfdb_record = read_wfdb(ptbxl_root / RECORD)
    record = read_record(tmp_path / "x.edf")
    assert record.leads == STANDARD_LEADS and record.fs == 100.0
    n = wfdb_record.n_samples
    np.testing.assert_allclose(record.signal[:, :n], wfdb_record.signal, atol=1e-6)


def _set_field(path: Path, at: int, text: bytes) -> None:
    data = bytearray(path.read_bytes())
    data[at : at + len(text)] = text
    path.write_bytes(bytes(data))


def test_a_recording_cut_short_keeps_its_whole_data_records(ptbxl_root: Path, tmp_path: Path):
    """A copy cut short, or a Holter whose writer never filled in the record count (-1): the
    whole records are read, and the repair says what the header and the file disagreed on."""
    wfdb_record = read_wfdb(ptbxl_root / RECORD)
    good = tmp_path / "good.edf"
    write_edf(good, _ptbxl_channels(ptbxl_root))
    cut = tmp_path / "cut.edf"
    cut.write_bytes(good.read_bytes()[:-100])  # the last of 10 one-second records, partly
    record = read_record(cut)
    assert record.n_samples == 900
    np.testing.assert_allclose(record.signal, wfdb_record.signal[:, :900], atol=1e-4)
    (repair,) = record.metadata["repairs"]
    assert describe_repair(repair) == (
        "data_records_from_file_size: header says 10 data records, the file holds 9 and 2300 "
        "bytes of a partial one (left out)"
    )
    unknown = tmp_path / "unknown.edf"
    unknown.write_bytes(good.read_bytes())
    _set_field(unknown, 236, b"-1      ")  # the number of data records
    assert read_record(unknown).n_samples == 1000
    assert "header says an unknown number (-1) data records, the file holds 10" in describe_repair(
        read_record(unknown).metadata["repairs"][0]
    )


def test_headers_padded_with_nuls_and_decimal_commas(ptbxl_root: Path, tmp_path: Path) -> None:
    wfdb_record = read_wfdb(ptbxl_root / RECORD)
    path = tmp_path / "odd.edf"
    channels = _ptbxl_channels(ptbxl_root)
    write_edf(path, channels)
    pmin = 256 + 12 * (16 + 80 + 8)  # the first signal's physical minimum
    text = path.read_bytes()[pmin : pmin + 8].strip()
    _set_field(path, pmin, (text + b",0").ljust(8, b"\0"))  # "-1234,0" then NULs
    _set_field(path, 236, b"10\0\0\0\0\0\0")
    record = read_record(path)
    np.testing.assert_allclose(record.signal, wfdb_record.signal, atol=1e-4)


@pytest.mark.parametrize(
    ("patient", "start", "reserved", "expected"),
    [
        ("X F 01-MAR-1952 X", ("01.03.02", "10.00.00"), "EDF+C", ("Female", 50.0, 2002)),
        ("X F 02-MAR-1952 X", ("01.03.02", "10.00.00"), "EDF+C", ("Female", 49.0, 2002)),
        ("X M 15-JUN-1930 X", ("01.03.85", "10.00.00"), "BDF+C", ("Male", 54.0, 1985)),
        ("X M 15-JUN-2000 X", ("01.03.84", "10.00.00"), "EDF+C", ("Male", 83.0, 2084)),
        ("X M 15-JUN-2000 X", ("01.03.84", "10.00.00"), "", (None, None, 2084)),
    ],
)
def test_sex_age_and_two_digit_years(patient, start, reserved, expected, tmp_path: Path) -> None:
    """EDF+ (and BDF+) patient fields; EDF's clipping date: 85-99 are 19xx, 00-84 20xx;
    a plain EDF's patient field is free text, so it says nothing."""
    bdf = reserved.startswith("BDF")
    path = tmp_path / ("x.bdf" if bdf else "x.edf")
    write_edf(path, [("ECG II", np.sin(np.arange(1000) / 10) * 1000, "uV")], bdf=bdf,
              patient=patient, start=start, reserved=reserved)  # fmt: skip
    metadata = read_record(path).metadata
    assert (metadata.get("sex"), metadata.get("age")) == expected[:2]
    assert metadata["start"].startswith(f"{expected[2]}-03-01")


def test_channels_are_chosen_by_lead_name_on_voltage_channels_only(tmp_path: Path) -> None:
    ecg = np.sin(np.arange(1000) / 10) * 1000
    path = tmp_path / "patch.edf"
    write_edf(path, [("ECG", ecg, "uV"), ("X", ecg / 10, "mg"), ("Y", ecg / 10, "mg"),
                     ("Z", ecg / 10, "mg")])  # fmt: skip
    record = read_record(path)
    assert record.leads == ("ECG",) and record.metadata["dropped_channels"] == ["X", "Y", "Z"]
    path = tmp_path / "leads.edf"
    write_edf(path, [("Lead I", ecg, "uV"), ("ECG Lead aVR", -ecg, "uV"), ("Lead V1", ecg, "uV"),
                     ("Pleth", ecg, "")])  # fmt: skip
    assert read_record(path).leads == ("I", "aVR", "V1")


def test_a_sleep_recording_without_an_ecg_channel(tmp_path: Path) -> None:
    wave = np.sin(np.arange(1000) / 10) * 50
    path = tmp_path / "psg.edf"
    write_edf(path, [("SpO2", np.full(10, 97.0), "%"), ("Resp", wave, "a.u.")])
    with pytest.raises(ECGInputError, match=r"no ECG channel: .* \(channels: SpO2 \(%\), Resp"):
        read_record(path)
    write_edf(path, [("ECG", np.full(1000, 97.0), "%")])
    with pytest.raises(ECGInputError, match="channel 'ECG' is in '%', not a voltage"):
        read_record(path)
    write_edf(path, [("EEG Fz", wave, "uV"), ("SpO2", np.full(10, 97.0), "%")])
    record = read_record(path)  # voltage channels, when none is named ECG
    assert record.leads == ("EEG Fz",) and record.metadata["dropped_channels"] == ["SpO2"]


def test_a_holters_unnamed_channels_are_named_with_leads(ptbxl_root: Path, tmp_path: Path):
    """ECG1/ECG2 say nothing of the leads: the error says how to name them, and --leads
    (leads=) names them; a file naming its own leads keeps them."""
    record = read_wfdb(ptbxl_root / RECORD)
    path = tmp_path / "holter.edf"
    write_edf(path, [("ECG1", record.signal[1] * 1000, "uV"), ("ECG2", record.signal[10] * 1000,
                                                               "uV")])  # fmt: skip
    assert read_record(path).leads == ("ECG1", "ECG2")
    result = ecgfoundry("data", "inspect", path, "--model", "ecgfoundry-cpc", "--json")
    (row,) = json.loads(result.stdout)
    assert "if these channels are leads, name them: --leads" in row["problem"]
    named = read_record(path, leads=["II", "V5"])
    assert named.leads == ("II", "V5") and named.metadata["original_leads"] == ["ECG1", "ECG2"]
    with pytest.raises(ECGInputError, match=r"3 lead names given for its 2 channels \(ECG1, ECG2"):
        read_record(path, leads=["I", "II", "V5"])
    result = ecgfoundry("data", "inspect", path, "--leads", "II,V5", "--model", "ecgfoundry-cpc",
                        "--missing-leads", "zero", "--json")  # fmt: skip
    (row,) = json.loads(result.stdout)
    assert row["leads"] == ["II", "V5"] and row["model_input"] == [12, 1000]
    assert read_record(ptbxl_root / f"{RECORD}.hea", leads=["V5"] * 12).leads == STANDARD_LEADS
