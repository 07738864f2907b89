"""DICOM ECG waveforms: pydicom's real 12-lead test file, and variants of it written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian
from test_cli import ecgfoundry

from ecgfoundry.data import ECGInputError, find_records, read_record
from ecgfoundry.data.dicom_ecg import read_dicom_ecg

TWELVE = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
REAL = Path(get_testdata_file("waveform_ecg.dcm"))  # 12-lead ECG Waveform Storage, 1000 Hz
UV_PER_UNIT = 1.25  # its channel sensitivity


def variant(tmp_path: Path, name: str = "variant.dcm", **group: object) -> tuple[Path, object]:
    """The real file with its rhythm group's attributes changed; returns (path, dataset)."""
    dataset = pydicom.dcmread(REAL)
    for key, value in group.items():
        setattr(dataset.WaveformSequence[0], key, value)
    return tmp_path / name, dataset


def test_reads_the_rhythm_group_of_a_real_file() -> None:
    record = read_record(REAL)
    assert record.leads == TWELVE and record.fs == 1000.0 and record.signal.shape == (12, 10000)
    assert record.metadata["multiplex_group"] == "RHYTHM"  # not the 1.2-s median beats
    assert (record.metadata["age"], record.metadata["sex"]) == (42.0, "Female")
    assert record.metadata["start"] == "2013-01-25 10:59:19"
    assert record.metadata["statements"] == ["RITMO SINUSALE", "ECG NORMALE"]
    # pydicom's own scaling (sample x sensitivity x correction + baseline, in uV) agrees
    expected = pydicom.dcmread(REAL).waveform_array(0).T / 1000
    np.testing.assert_allclose(record.signal, expected, atol=1e-6)
    # and the leads are the right ones: Einthoven's law holds to the stored step
    signal = record.signal * 1000 / UV_PER_UNIT
    np.testing.assert_allclose(signal[2], signal[1] - signal[0], atol=1e-3)
    np.testing.assert_allclose(signal[3], -(signal[0] + signal[1]) / 2, atol=0.51)


def test_data_inspect_reads_dicom_files() -> None:
    inspected = ecgfoundry("data", "inspect", REAL, "--json", "--model", "ecgfoundry-cpc")
    assert inspected.returncode == 0, inspected.stderr
    (row,) = json.loads(inspected.stdout)
    assert (row["format"], row["fs"], row["seconds"]) == ("DICOM ECG", 1000.0, 10.0)
    assert row["problem"] is None
    assert abs(row["heart_rate_bpm"] - 60_000 / 982) < 3  # the file's annotated RR: 982 ms


def test_a_dicom_file_without_a_suffix_is_recognised(tmp_path: Path) -> None:
    path, dataset = variant(tmp_path, "IM0001")
    dataset.save_as(path)
    assert read_record(path).metadata["format"] == "DICOM ECG"


def test_finds_dicom_files_in_folders(tmp_path: Path) -> None:
    for name in ("a.dcm", "b.DICOM"):
        path, dataset = variant(tmp_path, name)
        dataset.save_as(path)
    assert [p.name for p in find_records(tmp_path)] == ["a.dcm", "b.DICOM"]


def test_units_codes_and_padding(tmp_path: Path) -> None:
    path, dataset = variant(tmp_path)
    channels = dataset.WaveformSequence[0].ChannelDefinitionSequence
    channels[0].ChannelSensitivityUnitsSequence[0].CodeValue = "mV"  # 1000x
    channels[1].ChannelSensitivityCorrectionFactor = 2
    channels[1].ChannelBaseline = 10  # uV, added after scaling
    channels[3].ChannelSourceSequence[0].CodeValue = "2:65"  # MDC -aVR
    channels[4].ChannelSourceSequence[0].CodeValue = "unknown"
    channels[4].ChannelSourceSequence[0].CodeMeaning = "Lead V4R (right)"
    stored = np.frombuffer(dataset.WaveformSequence[0].WaveformData, "<i2").reshape(10000, 12)
    stored = stored.copy()
    stored[500, 5] = -32768
    dataset.WaveformSequence[0].WaveformData = stored.tobytes()
    dataset.WaveformSequence[0].add_new(0x5400100A, "OW", np.int16(-32768).tobytes())  # padding
    dataset.save_as(path)
    record, real = read_dicom_ecg(path), read_dicom_ecg(REAL)
    np.testing.assert_allclose(record.signal[0], real.signal[0] * 1000, rtol=1e-6)
    np.testing.assert_allclose(record.signal[1], real.signal[1] * 2 + 0.010, atol=1e-6)
    np.testing.assert_allclose(record.signal[3], -real.signal[3], atol=1e-6)
    assert record.leads[3:5] == ("aVR", "V4R")
    assert record.metadata["original_leads"][3] == "-aVR"
    assert record.signal[5, 500] == pytest.approx((real.signal[5, 499] + real.signal[5, 501]) / 2)
    assert [r["kind"] for r in record.metadata["repairs"]] == ["nan_interpolated"]


def test_without_a_rhythm_label_the_longest_group_is_read(tmp_path: Path) -> None:
    path, dataset = variant(tmp_path, MultiplexGroupLabel="FULL DISCLOSURE")
    dataset.save_as(path)
    record = read_dicom_ecg(path)
    assert record.signal.shape == (12, 10000) and record.metadata["multiplex_group"] == (
        "FULL DISCLOSURE"
    )


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"WaveformSampleInterpretation": "MB", "WaveformBitsAllocated": 8},
         "waveform samples coded as MB in 8 bits"),
        ({"NumberOfWaveformSamples": 20000}, r"hold 240000 bytes, 12 channels x 20000 samples"),
        ({"NumberOfWaveformChannels": 13}, "12 channel definitions for 13 channels"),
    ],
)  # fmt: skip
def test_refuses_waveforms_it_cannot_read(tmp_path: Path, change: dict, problem: str) -> None:
    path, dataset = variant(tmp_path, **change)
    dataset.save_as(path)
    with pytest.raises(ECGInputError, match=problem) as error:
        read_record(path)
    assert str(path) in str(error.value)


def test_refuses_files_that_are_not_dicom_ecgs(tmp_path: Path) -> None:
    image = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    image.save_as(tmp_path / "ct.dcm")
    with pytest.raises(ECGInputError, match=r"ct\.dcm: a DICOM file without waveforms \(CT"):
        read_record(tmp_path / "ct.dcm")
    (tmp_path / "text.dcm").write_text("not DICOM")
    with pytest.raises(ECGInputError, match=r"text\.dcm: not a readable DICOM file"):
        read_record(tmp_path / "text.dcm")
    path, dataset = variant(tmp_path)
    del dataset.WaveformSequence[0].ChannelDefinitionSequence[2].ChannelSensitivity
    dataset.save_as(path)
    with pytest.raises(ECGInputError, match="lead III gives no channel sensitivity"):
        read_record(path)


def test_the_rhythm_group_is_chosen_wherever_it_stands(tmp_path: Path) -> None:
    path, dataset = variant(tmp_path)
    dataset.WaveformSequence = Sequence(list(dataset.WaveformSequence)[::-1])  # median first
    dataset.save_as(path)
    assert read_dicom_ecg(path).signal.shape == (12, 10000)
    del dataset.WaveformSequence[1]  # median beats only
    dataset.save_as(path)
    with pytest.raises(ECGInputError, match="median beats only, no rhythm waveform"):
        read_dicom_ecg(path)


def test_lead_codes_outrank_their_meanings(tmp_path: Path) -> None:
    path, dataset = variant(tmp_path)
    source = dataset.WaveformSequence[0].ChannelDefinitionSequence[0].ChannelSourceSequence[0]
    source.CodeValue, source.CodeMeaning = "2:1", "Lead V6"  # MDC's code for lead I
    dataset.save_as(path)
    assert read_dicom_ecg(path).leads[0] == "I"


def test_unsigned_samples_with_a_baseline_and_age_in_months(tmp_path: Path) -> None:
    path, dataset = variant(tmp_path, WaveformSampleInterpretation="US")
    group = dataset.WaveformSequence[0]
    stored = np.frombuffer(group.WaveformData, "<i2").astype(np.int32) + 32768
    group.WaveformData = stored.astype("<u2").tobytes()
    for channel in group.ChannelDefinitionSequence:
        channel.ChannelBaseline = -32768 * UV_PER_UNIT
    dataset.PatientAge = "030M"
    dataset.save_as(path)
    record = read_dicom_ecg(path)
    np.testing.assert_allclose(record.signal, read_dicom_ecg(REAL).signal, atol=1e-6)
    assert record.metadata["age"] == 2.0


def test_big_endian_files_read_the_same(tmp_path: Path) -> None:
    dataset = pydicom.dcmread(REAL)
    for group in dataset.WaveformSequence:  # a big-endian writer stores OW words big-endian
        group.WaveformData = np.frombuffer(group.WaveformData, "<i2").astype(">i2").tobytes()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    path = tmp_path / "big.dcm"
    pydicom.dcmwrite(path, dataset, implicit_vr=False, little_endian=False, force_encoding=True)
    np.testing.assert_array_equal(read_dicom_ecg(path).signal, read_dicom_ecg(REAL).signal)


def test_pacs_names_without_a_dicom_suffix(tmp_path: Path) -> None:
    path, dataset = variant(tmp_path, "1.2.826.0.1.3680043.8.498.10")  # named by its UID
    dataset.save_as(path)
    assert read_record(path).metadata["format"] == "DICOM ECG"
    (tmp_path / "notes").write_text("not an ECG")
    assert [p.name for p in find_records(tmp_path)] == [path.name]
    with pytest.raises(ECGInputError, match="WFDB header not found"):
        read_record(tmp_path / "notes")  # no suffix and not DICOM: taken as a WFDB record


def _spoiled(tmp_path: Path, old: bytes, new: bytes) -> Path:
    path = tmp_path / "spoiled.dcm"
    data = REAL.read_bytes()
    assert len(old) == len(new) and old in data
    path.write_bytes(data.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ("NumberOfWaveformSamples", "the waveform has no NumberOfWaveformSamples"),
        ("SamplingFrequency", "the waveform has no SamplingFrequency"),
        ("NumberOfWaveformChannels", "the waveform has no NumberOfWaveformChannels"),
        ("ChannelSensitivityUnitsSequence", "lead I gives a sensitivity without its unit"),
    ],
)
def test_names_missing_attributes(tmp_path: Path, change: str, problem: str) -> None:
    path, dataset = variant(tmp_path)
    group = dataset.WaveformSequence[0]
    delattr(group.ChannelDefinitionSequence[0] if change.startswith("Channel") else group, change)
    dataset.save_as(path)
    with pytest.raises(ECGInputError, match=problem):
        read_dicom_ecg(path)


def test_malformed_values_are_named_not_raised_raw(tmp_path: Path) -> None:
    path = _spoiled(tmp_path, b"1.25", b"abcd")  # the first channel's sensitivity
    with pytest.raises(ECGInputError, match=r"spoiled\.dcm: malformed waveform \(ValueError"):
        read_dicom_ecg(path)
    path, dataset = variant(tmp_path, NumberOfWaveformChannels=0, ChannelDefinitionSequence=[])
    dataset.save_as(path)
    with pytest.raises(ECGInputError, match="the waveform has 0 channels"):
        read_dicom_ecg(path)
