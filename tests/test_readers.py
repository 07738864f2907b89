"""Readers on real PhysioNet files and on synthetic files written with wfdb / numpy / csv."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecgfoundry.data.readers import (
    check_wfdb_files,
    find_records,
    read_array,
    read_challenge,
    read_csv,
    read_numpy,
    read_record,
    read_wfdb,
)
from ecgfoundry.data.record import STANDARD_LEADS, ECGInputError, Record, canonical_leads


def write_wfdb(
    folder: Path, name: str, signal_mv: np.ndarray, fs: float, leads, fmt="16", gain=1000.0, **kw
):
    """Write [samples, leads] millivolts as a WFDB record; returns the record base path."""
    wfdb.wrsamp(
        name,
        fs=fs,
        units=["mV"] * len(leads),
        sig_name=list(leads),
        p_signal=signal_mv,
        fmt=[fmt] * len(leads),
        adc_gain=[gain] * len(leads),
        baseline=[0] * len(leads),
        write_dir=str(folder),
        **kw,
    )
    return folder / name


def test_ptbxl_record_matches_raw_int16(ptbxl_root: Path) -> None:
    record = read_wfdb(ptbxl_root / "records100/00000/00001_lr.hea")
    assert record.signal.shape == (12, 1000) and record.signal.dtype == np.float32
    assert record.fs == 100 and record.leads == STANDARD_LEADS  # AVR -> aVR etc.
    raw = np.fromfile(ptbxl_root / "records100/00000/00001_lr.dat", dtype="<i2").reshape(1000, 12)
    np.testing.assert_allclose(record.signal, raw.T / 1000.0, atol=1e-6)  # gain 1000/mV
    assert record.source.endswith("00001_lr")


def test_mitdb_with_annotations(mitdb_root: Path) -> None:
    record = read_record(mitdb_root / "100.hea", annotation="atr")
    assert record.leads == ("MLII", "V5") and record.fs == 360
    assert record.n_samples == 650000
    ann = record.annotations
    assert ann is not None and len(ann) > 2000
    assert {"N", "A", "V"} <= set(ann.symbol)
    assert ann.aux_note[0] == "(N"  # NUL terminators stripped


def test_wfdb_segment_keeps_annotation_offsets(mitdb_root: Path) -> None:
    whole = read_wfdb(mitdb_root / "100", annotation="atr")
    part = read_wfdb(mitdb_root / "100", annotation="atr", sampfrom=36000, sampto=72000)
    np.testing.assert_array_equal(part.signal, whole.signal[:, 36000:72000])
    inside = (whole.annotations.sample >= 36000) & (whole.annotations.sample < 72000)
    np.testing.assert_array_equal(part.annotations.sample, whole.annotations.sample[inside] - 36000)


def test_vfdb_duplicate_lead_names_are_numbered(vfdb_root: Path) -> None:
    record = read_wfdb(vfdb_root / "418")
    assert record.leads == ("ECG1", "ECG2")
    assert record.metadata["original_leads"] == ["ECG", "ECG"]


def test_challenge_record(cinc_root: Path) -> None:
    record = read_record(cinc_root / "E00009.hea")  # wfdb.rdrecord rejects this header
    assert record.fs == 500 and record.signal.shape == (12, 5000)
    assert record.metadata["dx"] == ["428750005", "39732003", "427084000"]
    assert record.metadata["age"] == 76 and record.metadata["sex"] == "Male"
    from scipy.io import loadmat

    val = loadmat(str(cinc_root / "E00009.mat"))["val"]
    np.testing.assert_allclose(record.signal, val / 4880.0, rtol=1e-6)  # gain 4880/mV
    assert read_challenge(cinc_root / "E00009.mat").signal.shape == (12, 5000)


@pytest.mark.parametrize("fmt", ["16", "212", "80", "24", "32"])
def test_wfdb_formats_round_trip(tmp_path: Path, fmt: str) -> None:
    rng = np.random.default_rng(0)
    signal = np.clip(np.round(rng.normal(0, 0.4, (500, 3)), 2), -1.2, 1.2)
    gain = 100.0 if fmt == "80" else 1000.0  # format 80 holds 8 bits: +-1.27 mV at 100/mV
    base = write_wfdb(tmp_path, "rt", signal, 250, ["I", "II", "V1"], fmt=fmt, gain=gain)
    record = read_wfdb(base)
    assert check_wfdb_files(base) is None
    np.testing.assert_allclose(record.signal.T, signal, atol=1e-5)


def test_microvolt_units_become_millivolts(tmp_path: Path) -> None:
    signal = np.array([[1000.0], [-500.0], [0.0], [250.0]])
    wfdb.wrsamp(
        "uv", fs=100, units=["uV"], sig_name=["II"], p_signal=signal, fmt=["16"],
        adc_gain=[1.0], baseline=[0], write_dir=str(tmp_path),
    )  # fmt: skip
    record = read_wfdb(tmp_path / "uv")
    np.testing.assert_allclose(record.signal[0], [1.0, -0.5, 0.0, 0.25])


def test_numpy_and_csv_readers(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 400)).astype(np.float32)
    np.save(tmp_path / "one.npy", x)
    record = read_record(tmp_path / "one.npy", fs=200, leads=["i", "II", "avf"])
    assert record.leads == ("I", "II", "aVF") and record.fs == 200
    np.testing.assert_array_equal(record.signal, x)
    batch = np.stack([x, x * 2])
    np.save(tmp_path / "batch.npy", batch)
    records = read_numpy(tmp_path / "batch.npy", 200, ["I", "II", "aVF"])
    assert len(records) == 2 and records[1].source.endswith("batch.npy[1]")
    np.testing.assert_allclose(records[1].signal, 2 * x)
    # [samples, leads] is transposed; uV converted
    transposed = read_array(x.T * 1000, 200, ["I", "II", "aVF"], units="uV")
    np.testing.assert_allclose(transposed.signal, x, rtol=1e-5)
    # CSV with a header (time column dropped) and without one
    rows = "time,I,II,aVF\n" + "\n".join(
        f"{t / 200},{a},{b},{c}" for t, (a, b, c) in enumerate(x.T)
    )
    (tmp_path / "h.csv").write_text(rows)
    np.testing.assert_allclose(read_csv(tmp_path / "h.csv", 200).signal, x, rtol=1e-5)
    np.savetxt(tmp_path / "n.csv", x.T, delimiter=",")
    headerless = read_record(tmp_path / "n.csv", fs=200, leads=["I", "II", "aVF"])
    np.testing.assert_allclose(headerless.signal, x, rtol=1e-5)


def test_csv_layouts_spreadsheets_write(tmp_path: Path) -> None:
    """Lines closed by a separator, semicolons with decimal commas (European spreadsheets) read
    the same values; a header naming fewer columns than the rows hold is refused, not read
    with every lead shifted one column (pandas would make the first column the index)."""
    x = np.round(np.random.default_rng(2).normal(size=(3, 50)), 4)
    names = ["I", "II", "V1"]

    def write(name: str, header: str | None, sep: str = ",", end: str = "", comma: bool = False):
        cells = [[f"{v:.4f}".replace(".", "," if comma else ".") for v in row] for row in x.T]
        lines = ([header] if header is not None else []) + [sep.join(c) + end for c in cells]
        (tmp_path / name).write_text("\n".join(lines) + "\n")
        return tmp_path / name

    layouts = {
        "closed": write("closed.csv", "I,II,V1,", end=","),
        "closed rows": write("rows.csv", "I,II,V1", end=","),
        "semicolons": write("semi.csv", "I;II;V1", sep=";", comma=True),
        "semicolons, dots": write("dots.csv", "I;II;V1", sep=";"),
    }
    for layout, path in layouts.items():
        record = read_record(path, fs=100)
        assert record.leads == ("I", "II", "V1"), layout
        np.testing.assert_allclose(record.signal, x, atol=1e-6, err_msg=layout)
    headerless = read_record(write("bare.csv", None, sep=";", comma=True), fs=100, leads=names)
    np.testing.assert_allclose(headerless.signal, x, atol=1e-6)
    with pytest.raises(ECGInputError, match=r"short\.csv: the header names 2 columns but the "
                       r"rows have 3 values"):  # fmt: skip
        read_record(write("short.csv", "I,II"), fs=100)
    text = (tmp_path / "semi.csv").read_text().splitlines()
    (tmp_path / "odd.csv").write_text("\n".join([text[0], "", "0;0;0", "0,1;0,2;", *text[1:]]))
    odd = read_record(tmp_path / "odd.csv", fs=100)  # a blank line, zeros, one empty value
    np.testing.assert_allclose(odd.signal[:, 2:], x, atol=1e-6)
    np.testing.assert_allclose(odd.signal[:2, :2], [[0, 0.1], [0, 0.2]], atol=1e-6)
    assert odd.signal[2, 1] == pytest.approx(x[2, 0] / 2, abs=1e-6)  # interpolated gap


def test_file_type_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "x.ecg").write_bytes(b"\x00" * 10)
    with pytest.raises(ECGInputError, match=r"x\.ecg: unsupported file type '\.ecg'; expected"):
        read_record(tmp_path / "x.ecg")
    (tmp_path / "x.scp").write_bytes(b"\x00" * 10)
    with pytest.raises(ECGInputError, match=r"x\.scp: 10 bytes: too short for an SCP-ECG file"):
        read_record(tmp_path / "x.scp")
    (tmp_path / "x.edf").write_bytes(b"0")
    with pytest.raises(ECGInputError, match=r"x\.edf: 1 bytes: too short for an EDF header"):
        read_record(tmp_path / "x.edf")
    np.save(tmp_path / "a.npy", np.zeros((2, 10)))
    with pytest.raises(ECGInputError, match="pass fs"):
        read_record(tmp_path / "a.npy")
    (tmp_path / "n.csv").write_text("1,2\n3,4\n")
    with pytest.raises(ECGInputError, match=r"n\.csv: CSV has no header row"):
        read_csv(tmp_path / "n.csv", 100)
    (tmp_path / "bad.csv").write_text("I,II\n1,2\nx,y\n")
    with pytest.raises(ECGInputError, match="non-numeric"):
        read_csv(tmp_path / "bad.csv", 100)
    with pytest.raises(ECGInputError, match=r"nothere\.hea: WFDB header not found"):
        read_wfdb(tmp_path / "nothere")


def test_find_records(tmp_path: Path) -> None:
    write_wfdb(tmp_path, "a", np.zeros((10, 1)) + 0.1, 100, ["I"])
    (tmp_path / "sub").mkdir()
    np.save(tmp_path / "sub" / "b.npy", np.zeros((1, 10)))
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "labels.csv").write_text('\ufeff"record",AF\nsub/b.npy,1\n')  # a table of them
    (tmp_path / "ecg.csv").write_text("I,II\n0.1,0.2\n0.1,0.3\n")
    assert [p.name for p in find_records(tmp_path)] == ["a.hea", "ecg.csv", "b.npy"]


def test_find_records_below_a_dot_directory(tmp_path: Path) -> None:
    """Only hidden entries below the folder given are skipped, not the folder's own path."""
    folder = tmp_path / ".hidden" / "records"
    (folder / ".trash").mkdir(parents=True)
    write_wfdb(folder, "a", np.zeros((10, 1)) + 0.1, 100, ["I"])
    np.save(folder / ".b.npy", np.zeros((1, 10)))
    write_wfdb(folder / ".trash", "c", np.zeros((10, 1)) + 0.1, 100, ["I"])
    assert find_records(folder) == [folder / "a.hea"]
    assert find_records(tmp_path) == []  # .hidden lies below tmp_path


def test_record_validation() -> None:
    with pytest.raises(ECGInputError, match="2-D"):
        Record(np.zeros(10), 100, ("I",))
    with pytest.raises(ECGInputError, match="2 lead names for a signal with 1"):
        Record(np.zeros((1, 10)), 100, ("I", "II"))
    with pytest.raises(ECGInputError, match="positive"):
        Record(np.zeros((1, 10)), 0, ("I",))
    assert canonical_leads(["AVR", "lead ii", "DI", "ECG", "ECG"]) == (
        "aVR", "II", "I", "ECG1", "ECG2",
    )  # fmt: skip
    european_and_frank = canonical_leads(["D1", "D2", "D3", "vx", "vy", "vz"])
    assert european_and_frank == ("I", "II", "III", "X", "Y", "Z")
