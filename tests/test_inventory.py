"""``ecgfoundry data inspect`` / ``inspect_records``: what is read in a folder of mixed files,
and the model input each becomes, through the same path predict and embed take."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_cli import ecgfoundry
from test_edf import write_edf

from ecgfoundry.data import ECGInputError, read_record
from ecgfoundry.data.samples import sample_dir
from ecgfoundry.inference import load_inputs, prepare
from ecgfoundry.inventory import COLUMNS, inspect_records
from ecgfoundry.models import resolve_model


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A PTB-XL record (WFDB), the same as EDF+ with a patient field, a 12-s 2-lead array
    at 250 Hz, and a table that is not an ECG."""
    folder = tmp_path / "mine"
    folder.mkdir()
    for suffix in (".hea", ".dat"):
        shutil.copy(sample_dir() / "ptbxl" / f"00010_lr{suffix}", folder)
    record = read_record(folder / "00010_lr.hea")
    channels = [(f"ECG {lead}", row * 1000, "uV") for lead, row in zip(record.leads, record.signal,
                                                                        strict=True)]  # fmt: skip
    write_edf(folder / "same.edf", channels, patient="X M 01-JAN-1950 X")
    t = np.arange(3000) / 250
    np.save(folder / "holter.npy", np.stack([np.sin(2 * np.pi * t), np.cos(2 * np.pi * t)]))
    (folder / "visits.csv").write_text("patient,date\n1,2024-01-02\n")
    return folder


def _by_name(rows: list[dict]) -> dict[str, dict]:
    return {Path(row["record"]).name: row for row in rows}


def test_rows_say_what_was_read_and_what_a_model_gets(folder: Path) -> None:
    spec = resolve_model("ecgfoundry-cpc").spec
    rows = _by_name(inspect_records(folder, spec=spec))
    assert sorted(rows) == ["00010_lr", "holter.npy", "same.edf", "visits.csv"]
    assert all(list(row) == list(COLUMNS) for row in rows.values())
    wfdb, edf = rows["00010_lr"], rows["same.edf"]
    assert (wfdb["format"], wfdb["fs"], wfdb["seconds"], wfdb["model_input"], wfdb["windows"]) == (
        "WFDB", 100.0, 10.0, [12, 1000], 1)  # fmt: skip
    assert (edf["format"], edf["sex"], edf["age"]) == ("EDF+", "Male", 52.0)
    assert edf["heart_rate_bpm"] == wfdb["heart_rate_bpm"] == 62  # PTB-XL 10: sinus, 62/min
    assert "carry no sampling rate: pass fs (--fs)" in rows["holter.npy"]["problem"]
    assert rows["holter.npy"]["format"] is None and "pass fs" in rows["visits.csv"]["problem"]


def test_an_array_that_lacks_leads_shows_the_refusal_or_the_repair(folder: Path) -> None:
    spec = resolve_model("ecgfoundry-cpc").spec
    options = {"spec": spec, "fs": 250.0, "leads": ["I", "II"]}
    (holter,) = inspect_records(folder / "holter.npy", **options)
    assert (holter["format"], holter["leads"]) == ("NumPy", ["I", "II"])
    assert holter["model_input"] is None and "--missing-leads zero" in holter["problem"]
    assert holter["repairs"] == []
    (filled,) = inspect_records(folder / "holter.npy", missing_leads="zero", **options)
    assert filled["problem"] is None and filled["model_input"] == [12, 1000]
    assert filled["windows"] == 2  # 12 s at 100 Hz: two 10-s windows, the last flush with the end
    assert filled["repairs"] == ["leads_derived: III, aVR, aVL, aVF",
                                 "leads_zero_filled: V1, V2, V3, V4, V5, V6"]  # fmt: skip
    # The windows predict and embed cut, under the ids they write.
    model = resolve_model("ecgfoundry-cpc")
    inputs = prepare(model, load_inputs(folder / "holter.npy", fs=250.0, leads=["I", "II"]),
                     missing_leads="zero")  # fmt: skip
    assert inputs.windows.shape == (filled["windows"], *filled["model_input"])
    assert inputs.ids == [filled["record"]]


def test_missing_paths_and_single_unreadable_files_are_errors(folder: Path) -> None:
    with pytest.raises(ECGInputError, match="nope: no such file or folder"):
        inspect_records(folder / "nope")
    with pytest.raises(ECGInputError, match=r"visits\.csv: \.csv files carry no sampling rate"):
        inspect_records(folder / "visits.csv")
    empty = folder.parent / "empty"
    empty.mkdir()
    with pytest.raises(ECGInputError, match=r"no ECG records in this folder .*\.xml/\.scp/\.dcm"):
        inspect_records(empty)


def test_the_cli_prints_a_table_notes_or_json(folder: Path) -> None:
    """Ids as embed writes them; repairs, flat leads and problems as notes under the table."""
    record = read_record(folder / "00010_lr.hea")
    flat = [(f"ECG {lead}", row * 1000, "uV") for lead, row in zip(record.leads, record.signal,
                                                                    strict=True)]  # fmt: skip
    flat[6] = ("ECG V1", np.zeros(1000), "uV")
    write_edf(folder / "flat.edf", flat)
    (folder / "cut.edf").write_bytes((folder / "same.edf").read_bytes()[:-100])
    result = ecgfoundry("data", "inspect", folder, "--model", "ecgfoundry-cpc")
    assert result.returncode == 0, result.stderr
    assert "same.edf" in result.stdout and "EDF+" in result.stdout and "52 M" in result.stdout
    lines = result.stdout.splitlines()  # notes follow the table: "record: what to know"
    notes = dict(line.split(": ", 1) for line in lines if ": " in line and line[0].isalnum())
    assert notes["flat.edf"] == "flat: V1"
    assert notes["cut.edf"].startswith("data_records_from_file_size: header says 10")
    assert notes["visits.csv"].startswith(".csv files carry no sampling rate")
    assert result.stdout.strip().endswith(
        "4 ECG(s) read, 4 ready for ecgfoundry-cpc, 2 file(s) not read"
    )
    embedded = ecgfoundry("embed", "ecgfoundry-cpc", folder, "--out", folder.parent / "e.npy")
    assert embedded.returncode == 0, embedded.stderr
    ids = (folder.parent / "e.ids.txt").read_text().splitlines()
    result = ecgfoundry("data", "inspect", folder, "--json")
    rows = json.loads(result.stdout)
    assert [row["record"] for row in rows if row["format"]] == ids
    refused = ecgfoundry("data", "inspect", folder, "--missing-leads", "zero")
    assert refused.returncode == 2 and "give --model" in refused.stderr
    missing = ecgfoundry("data", "inspect", folder / "nope")
    assert missing.returncode == 2 and "nope: no such file or folder" in missing.stderr


def test_the_table_fits_80_columns_with_many_leads(tmp_path: Path, monkeypatch) -> None:
    """A 15-lead record (PTB diagnostic's 12 + Frank vx, vy, vz) in piped output (80
    columns): the long leads cell wraps; the record's name and every column stay readable."""
    import wfdb

    limbs = ["i", "ii", "iii", "avr", "avl", "avf"]
    names = [*limbs, *(f"v{n}" for n in range(1, 7)), "vx", "vy", "vz"]
    signal = np.sin(np.linspace(0, 60, 10_000))[:, None] * np.linspace(0.5, 1, 15)
    wfdb.wrsamp("s0010_re", fs=1000, units=["mV"] * 15, sig_name=names, p_signal=signal,
                fmt=["16"] * 15, write_dir=str(tmp_path))  # fmt: skip
    monkeypatch.setenv("COLUMNS", "80")
    result = ecgfoundry("data", "inspect", tmp_path, "--model", "ecgfoundry-cpc")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= 80
    header = next(line for line in lines if "record" in line)
    assert all(name in header for name in ("format", "Hz", "leads", "bpm", "model input"))
    row = next(line for line in lines if "s0010_re" in line)
    assert "WFDB" in row and "1000" in row and "12x1000" in row
    assert "Y, Z)" in result.stdout  # Frank's leads are named (then left out of the input)


def test_challenge_records_show_their_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CinC header's #Dx codes are a row's labels (JSON: the codes; the table: the
    challenge's abbreviations); records whose files state none have no labels column entry."""
    from typer.testing import CliRunner

    from ecgfoundry.cli import app

    rows = {Path(r["record"]).name: r for r in inspect_records(sample_dir())}
    assert rows["E00009"]["labels"] == ["428750005", "39732003", "427084000"]
    assert rows["00010_lr"]["labels"] is None
    monkeypatch.setenv("COLUMNS", "120")
    shown = CliRunner().invoke(app, ["data", "inspect", str(sample_dir() / "cinc2020")]).output
    assert "┃ labels" in shown and "NSSTTA LAD STach" in shown
    plain = CliRunner().invoke(app, ["data", "inspect", str(sample_dir() / "ptbxl")]).output
    assert "┃ labels" not in plain  # no record states any: no such column
