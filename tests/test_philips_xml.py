"""Philips XML (SierraECG 1.03, PhilipsECG 1.04) with XLI compression, on real exports.

The files in ``fixtures/philips`` are sierra-ecg-tools' demo ECGs (MIT licence; see the README
there). The decoded integers are checked against that project's Python reader (``sierraecg``
0.4.0, hashes in ``sierraecg_reference.json``) and, independently, against the HL7 aECG that
Philips' own converter wrote from one of them.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from test_cli import ecgfoundry

from ecgfoundry.data import ECGInputError, read_record
from ecgfoundry.data.xli import XLIError, decode_xli

FIXTURES = Path(__file__).parent / "fixtures" / "philips"
TWELVE = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
UV_PER_UNIT = 5.0


def unpacked(tmp_path: Path, name: str) -> Path:
    """A gzipped fixture written out as the file a device exports."""
    path = tmp_path / name.removesuffix(".gz")
    path.write_bytes(gzip.decompress((FIXTURES / name).read_bytes()))
    return path


def stored_units(signal: np.ndarray) -> np.ndarray:
    return np.round(signal * 1000 / UV_PER_UNIT).astype("<i2")


@pytest.fixture
def sierra_103() -> Path:
    return FIXTURES / "129DYPRG.XML"


@pytest.fixture
def philips_104(tmp_path: Path) -> Path:
    return unpacked(tmp_path, "ad4d3d80-d165_1-04_orig.xml.gz")


def test_xli_decodes_as_the_reference_reader(sierra_103: Path, philips_104: Path) -> None:
    reference = json.loads((FIXTURES / "sierraecg_reference.json").read_text())
    for path in (sierra_103, philips_104):
        expected = reference[path.name]
        text = path.read_text(encoding="utf-16" if path == philips_104 else "utf-8")
        payload = re.search(r"<parsedwaveforms[^>]*>(.*?)</parsedwaveforms>", text, re.S)
        assert payload is not None
        chunks = decode_xli(base64.b64decode("".join(payload.group(1).split())), leads=12)
        raw = np.stack(chunks).astype("<i2").tobytes()
        assert hashlib.sha256(raw).hexdigest() == expected["xli_sha256"]
        record = read_record(path)
        assert record.leads == TWELVE == tuple(expected["leads"])
        assert record.fs == 500.0 and record.n_samples == expected["kept"]
        cut = {"kind": "calibration_pulse_cut", "samples": expected["samples"] - expected["kept"]}
        assert record.metadata["repairs"] == [cut]
        units = stored_units(record.signal)
        unhalved = [TWELVE.index(lead) for lead in ("I", "II", "III", *TWELVE[6:])]
        digest = hashlib.sha256(np.ascontiguousarray(units[unhalved]).tobytes()).hexdigest()
        assert digest == expected["sha256_int16"]
        # sierra-ecg-tools' own tests assert these mid-record values (aVR/aVL/aVF halved with
        # floor division there, with truncation here: at most 1 apart)
        assert np.abs(units[:, 2750] - expected["sample_2750"]).max() <= 1
        assert record.metadata["format"] == "Philips XML"


def test_the_calibration_pulse_is_cut(sierra_103: Path, tmp_path: Path) -> None:
    """Every Philips recording ends in 0.4 s of the same 1 mV pulse in all 12 leads; a model
    would see it as a beat. Stored uncompressed, the whole 11 s read back with it cut."""
    record = read_record(sierra_103)
    assert record.n_samples == 5264 and np.abs(record.signal[:, -50:]).max() < 0.5
    units = stored_units(record.signal)
    pulse = np.tile(np.r_[np.zeros(86), np.full(100, 200), np.zeros(50)], (12, 1))
    path = stored_uncompressed(sierra_103, tmp_path, "pulse.xml", np.hstack([units, pulse]))
    again = read_record(path)
    np.testing.assert_array_equal(again.signal, record.signal)
    assert again.metadata["repairs"] == [{"kind": "calibration_pulse_cut", "samples": 236}]
    no_pulse = np.hstack([units, np.zeros((12, 236))])  # a flat end is kept
    assert (
        read_record(stored_uncompressed(sierra_103, tmp_path, "flat.xml", no_pulse)).n_samples
        == 5500
    )


def test_philips_matches_its_own_aecg_conversion(philips_104: Path, tmp_path: Path) -> None:
    """Philips' converter wrote the same ECG as HL7 aECG: every lead, the rebuilt limb leads
    included, agrees to about one 5 uV step (RMS; at most 5 steps): its samples were made
    apart from these."""
    ours = read_record(philips_104)
    theirs = read_record(unpacked(tmp_path, "ad4d3d80-d165_1-04_converted.xml.gz"))
    assert theirs.metadata["format"] == "HL7 aECG XML" and theirs.leads == ours.leads
    assert theirs.n_samples == 5500  # it keeps the calibration pulse (in its own form)
    for lead in TWELVE:
        a, b = ours.lead(lead), theirs.lead(lead)[: ours.n_samples]
        assert np.abs(a - b).max() <= 0.025, lead  # mV
        assert np.sqrt(np.mean((a - b) ** 2)) < 0.006, lead  # about one 5 uV step
        if lead in ("aVR", "aVL", "aVF"):  # halved in the rebuild: with floor division, not
            assert abs(np.mean(a - b)) < 0.0006, lead  # truncation, 0.7-1 uV off on average
    stored_iii = ours.lead("II") - ours.lead("I") - ours.lead("III")  # as the file holds it
    assert np.abs(stored_iii - theirs.lead("III")[: ours.n_samples]).max() > 0.5  # far off


def test_philips_metadata(sierra_103: Path, philips_104: Path) -> None:
    old, new = read_record(sierra_103).metadata, read_record(philips_104).metadata
    assert (old["age"], old["sex"], old["start"]) == (50.0, "Male", "2011-12-01 07:27:34")
    assert old["statements"][0] == "Sinus bradycardia (rate< 50)"
    # 1.04 states a date of birth (1976-01-01) and the acquisition (2008-12-23): 32 years
    assert (new["age"], new["sex"]) == (32.0, "Female")
    assert new["statements"][0] == "SINUS BRADYCARDIA (V-rate<60)"


def stored_uncompressed(
    source: Path, tmp_path: Path, name: str, units: np.ndarray, *, encoding: str = "Base64"
) -> Path:
    """``source`` with ``units`` (12 leads of 5 uV units, 500 Hz) stored uncompressed, as
    Base64 or as plain numbers."""
    if encoding == "Base64":
        payload = base64.b64encode(units.astype("<i2").tobytes()).decode()
    else:
        payload = " ".join(map(str, units.astype(int).ravel()))
    milliseconds = units.shape[1] * 2
    tag = (f'<parsedwaveforms dataencoding="{encoding}" numberofleads="12" leadlabels="'
           f'{" ".join(TWELVE)}" durationperchannel="{milliseconds}">{payload}'
           "</parsedwaveforms>")  # fmt: skip
    waveform = re.compile(r"<parsedwaveforms[^>]*>.*?</parsedwaveforms>", re.S)
    path = tmp_path / name
    path.write_text(waveform.sub(tag, source.read_text()))
    return path


def test_uncompressed_exports(sierra_103: Path, tmp_path: Path) -> None:
    record = read_record(sierra_103)
    for encoding in ("Base64", "Plain"):
        path = stored_uncompressed(sierra_103, tmp_path, f"{encoding}.xml",
                                   stored_units(record.signal), encoding=encoding)  # fmt: skip
        again = read_record(path)
        np.testing.assert_array_equal(again.signal, record.signal)
        assert "repairs" not in again.metadata


def test_bad_philips_files_are_named_with_the_problem(sierra_103: Path, tmp_path: Path) -> None:
    text = sierra_103.read_text()
    waveform = re.search(r"(<parsedwaveforms[^>]*>)(.*?)</parsedwaveforms>", text, re.S)
    assert waveform is not None
    data = base64.b64decode("".join(waveform.group(2).split()))
    cut = base64.b64encode(data[: len(data) // 3]).decode()  # a chunk runs past the end
    cases = {
        "huffman.xml": (text.replace('compressmethod="XLI"', 'compressmethod="Huffman"'),
                        "'Huffman'-compressed Base64 data; this reader knows XLI"),
        "cut.xml": (text.replace(waveform.group(2), cut), r"XLI data: lead \d+'s chunk claims"),
        "short.xml": (text.replace('durationperchannel="11000"', 'durationperchannel="12000"'),
                      "lead I: 5500 samples where durationperchannel says 6000"),
        "order.xml": (text.replace(waveform.group(1), waveform.group(1).replace(
                          "<parsedwaveforms ", '<parsedwaveforms numberofleads="12" leadlabels="I '
                          'II V1 V2 V3 V4 V5 V6 III aVR aVL aVF" ')),
                      "XLI data with leads I II V1 .*: this reader rebuilds the limb leads of "
                      "files that store I II III aVR aVL aVF first"),
        "missing.xml": (text.replace('durationperchannel="11000"', ""),
                        "durationperchannel is missing"),
        "offset.xml": (text.replace("<signaloffset>0<", "<signaloffset>3<"),
                       "signaloffset 3 is not 0"),
        "leads.xml": (text.replace("<acquisitiontype>STD-12<", "<acquisitiontype>STD-15<"),
                      "12 channels of acquisition type 'STD-15' and no leadlabels"),
        "odd.xml": (text.replace(waveform.group(1), '<parsedwaveforms dataencoding="Base64" '
                                 'durationperchannel="11000">').replace(waveform.group(2), "AAAA"),
                    "3 bytes are not whole 16-bit samples"),
        "resolution.xml": (text.replace("<signalresolution>5<", "<signalresolution>?<"),
                           "the resolution .uV per unit. is '\\?', not a number"),
    }  # fmt: skip
    for name, (changed, problem) in cases.items():
        assert changed != text, name
        (tmp_path / name).write_text(changed)
        with pytest.raises(ECGInputError, match=f"^{re.escape(str(tmp_path / name))}: {problem}"):
            read_record(tmp_path / name)


def test_xli_refuses_a_code_the_dictionary_does_not_hold() -> None:
    header = (2).to_bytes(4, "little") + bytes(4)
    with pytest.raises(XLIError, match="LZW code 512 before the dictionary holds it"):
        decode_xli(header + bytes([0b10000000, 0b00000000]))  # code 512 first
    assert decode_xli(b"") == []


def test_data_inspect_reads_philips_files(sierra_103: Path) -> None:
    inspected = ecgfoundry("data", "inspect", sierra_103, "--json", "--model", "ecgfoundry-cpc")
    assert inspected.returncode == 0, inspected.stderr
    (row,) = json.loads(inspected.stdout)
    assert (row["format"], row["fs"], row["seconds"]) == ("Philips XML", 500.0, 10.53)
    assert row["repairs"] == ["calibration_pulse_cut: 236 samples"]
    assert row["model_input"] == [12, 1000] and row["problem"] is None
    assert 40 <= row["heart_rate_bpm"] <= 55  # the device read "Sinus bradycardia, rate < 50"
