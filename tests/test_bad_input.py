"""Each kind of bad input gets an error naming the file and the problem, or a documented repair."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecgfoundry.data.quality import FLAT_MV
from ecgfoundry.data.readers import check_wfdb_files, read_array, read_record, read_wfdb
from ecgfoundry.data.record import STANDARD_LEADS, ECGInputError, describe_repair
from ecgfoundry.data.transforms import Normalise, Resample, SelectLeads, pipeline_for
from ecgfoundry.spec import InputSpec


@pytest.fixture
def ptbxl_copy(ptbxl_root: Path, tmp_path: Path) -> Path:
    """A private copy of PTB-XL record 1 (100 Hz): base path without suffix."""
    for suffix in (".hea", ".dat"):
        shutil.copy(ptbxl_root / f"records100/00000/00001_lr{suffix}", tmp_path)
    return tmp_path / "00001_lr"


def synthetic(tmp_path: Path, signal: np.ndarray, leads=("I", "II"), fs=100.0) -> Path:
    wfdb.wrsamp(
        "syn", fs=fs, units=["mV"] * len(leads), sig_name=list(leads), p_signal=signal,
        fmt=["16"] * len(leads), adc_gain=[1000.0] * len(leads), baseline=[0] * len(leads),
        write_dir=str(tmp_path),
    )  # fmt: skip
    return tmp_path / "syn"


def test_truncated_dat(ptbxl_copy: Path) -> None:
    dat = ptbxl_copy.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:20000])
    with pytest.raises(
        ECGInputError, match=r"00001_lr\.dat: .*24000 bytes.*20000 bytes.*truncated"
    ):
        read_wfdb(ptbxl_copy)
    assert "truncated" in check_wfdb_files(ptbxl_copy)


def test_header_claims_more_samples_than_stored(ptbxl_copy: Path) -> None:
    hea = ptbxl_copy.with_suffix(".hea")
    hea.write_text(hea.read_text().replace("12 100 1000", "12 100 1500", 1))
    with pytest.raises(ECGInputError, match=r"says 1500 samples.*~1000 samples.*truncated"):
        read_wfdb(ptbxl_copy)


def test_header_claims_fewer_samples_than_stored(ptbxl_copy: Path) -> None:
    hea = ptbxl_copy.with_suffix(".hea")
    hea.write_text(hea.read_text().replace("12 100 1000", "12 100 800", 1))
    with pytest.raises(ECGInputError, match=r"says 800 samples.*~1000 samples.*understates"):
        read_wfdb(ptbxl_copy)  # wfdb alone would silently drop 200 samples


def test_garbled_header(ptbxl_copy: Path) -> None:
    ptbxl_copy.with_suffix(".hea").write_text("00001_lr twelve 100 1000\n")
    with pytest.raises(ECGInputError, match=r"00001_lr\.hea: unreadable WFDB header"):
        read_wfdb(ptbxl_copy)
    assert "unreadable WFDB header" in check_wfdb_files(ptbxl_copy)


def test_nan_runs_are_interpolated_and_flagged(tmp_path: Path) -> None:
    t = np.arange(300) / 100
    signal = np.stack([np.sin(2 * np.pi * t), np.cos(2 * np.pi * t)], axis=1)
    signal[100:110, 0] = np.nan  # WFDB stores these as the invalid-sample value
    base = synthetic(tmp_path, signal)
    record = read_wfdb(base)
    assert np.isfinite(record.signal).all()
    assert record.metadata["repairs"] == [{"kind": "nan_interpolated", "samples": {"I": 10}}]
    assert describe_repair(record.metadata["repairs"][0]) == "nan_interpolated: 10 samples of I"
    expected = np.interp(np.arange(100, 110), [99, 110], signal[[99, 110], 0])
    np.testing.assert_allclose(record.signal[0, 100:110], expected, atol=2e-3)
    with pytest.raises(ECGInputError, match=r"syn: non-finite samples in leads \{'I': 10\}"):
        read_wfdb(base, nan="raise")


def test_all_nan_lead_cannot_be_repaired(tmp_path: Path) -> None:
    signal = np.zeros((50, 2)) + 0.1
    signal[:, 1] = np.nan
    with pytest.raises(ECGInputError, match=r"syn: lead II has no finite sample"):
        read_wfdb(synthetic(tmp_path, signal))


def test_flat_lead_flagged_or_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    signal = np.stack([rng.normal(0, 0.3, 400), np.full(400, 0.25)], axis=1)
    base = synthetic(tmp_path, signal)
    record = read_wfdb(base)
    assert record.metadata["flat_leads"] == ["II"]
    normalised = Normalise("zscore")(record)
    assert np.all(normalised.signal[1] == 0) and np.isfinite(normalised.signal).all()
    with pytest.raises(ECGInputError, match=rf"syn: flat lead\(s\) \['II'\] .*{FLAT_MV}"):
        read_wfdb(base, flat="raise")


def test_unknown_lead_name(tmp_path: Path) -> None:
    with pytest.raises(ECGInputError, match=r"my\.npy: unknown lead name\(s\) \['V13'\]"):
        read_array(np.ones((2, 100)), 100, ["I", "V13"], source=tmp_path / "my.npy")
    kept = read_array(np.ones((2, 100)), 100, ["I", "V13"], allow_unknown_leads=True)
    assert kept.leads == ("I", "V13")
    # A model that needs leads the file lacks: error names the file and what is there.
    with pytest.raises(
        ECGInputError,
        match=r"leads \['II', 'III', 'aVR', .*'V6'\] are needed but the record has \['I', 'V13'\]",
    ):
        SelectLeads(STANDARD_LEADS)(kept)


def test_foreign_sampling_rate_is_resampled(cinc_root: Path) -> None:
    record = read_record(cinc_root / "E00009.hea")  # 500 Hz; the model wants 100 Hz
    spec = InputSpec(fs=100, seconds=10, leads=STANDARD_LEADS, normalisation="none")
    prepared = pipeline_for(spec)(record)
    assert prepared.fs == 100 and prepared.signal.shape == (12, 1000)
    # Resampling keeps the waveform: compare with plain decimation of a low-passed copy.
    np.testing.assert_allclose(prepared.signal.mean(axis=1), record.signal.mean(axis=1), atol=5e-3)
    rate = 257.0  # a rate with no small integer ratio to 100 Hz
    t = np.arange(int(rate * 4)) / rate
    odd = read_array(np.sin(2 * np.pi * 3 * t)[None], rate, ["II"])
    out = Resample(100)(odd)
    expected = np.sin(2 * np.pi * 3 * np.arange(400) / 100)
    assert out.n_samples == 400
    np.testing.assert_allclose(out.signal[0, 20:-20], expected[20:-20], atol=0.02)


@pytest.mark.parametrize("fs", [0, -100, float("nan"), float("inf")])
def test_impossible_sampling_rate(fs: float) -> None:
    with pytest.raises(ECGInputError, match="sampling rate must be a positive number"):
        read_array(np.ones((1, 100)), fs, ["I"], source="x.npy")
