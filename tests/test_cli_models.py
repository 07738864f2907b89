"""Model-zoo command-line contracts: models list, convert, embed, predict (run as a user would)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import require_reference
from test_cli import ecgfoundry

from ecgfoundry.data.record import ECGInputError
from ecgfoundry.data.samples import sample_dir
from ecgfoundry.inference import load_inputs, prepare
from ecgfoundry.models import load_model


@pytest.fixture(scope="module")
def reference() -> Path:
    return require_reference("ecgfounder_A.pth", "hubert_ecg_tiny", "hubert_ecg_tiny_native.pt")


@pytest.fixture(scope="module")
def converted(reference: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "ecgfounder-a"
    result = ecgfoundry(
        "convert", "ecgfounder", reference / "ecgfounder_A.pth", "--out", out,
        "--config", reference / "config_ecgfounder_A.json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == out
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors"}
    return out


def test_models_list_json() -> None:
    result = ecgfoundry("models", "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["ecgfounder-12lead"]["parameters"] == 30_819_014
    assert rows["hubert-ecg-base"]["parameters"] == 93_021_312
    assert rows["ecgfounder-12lead"]["spec"]["fs"] == 500
    assert {"net1d", "hubert-ecg"} <= {row["family"] for row in rows.values()}


def test_converted_model_reproduces_the_reference(converted: Path, reference: Path) -> None:
    from safetensors.torch import load_file

    golden = load_file(str(reference / "ecgfounder_A_golden.safetensors"))
    model = load_model(converted)
    with torch.no_grad():
        assert (model(golden["x"]) - golden["logits"]).abs().max() < 1e-4
        assert (model.forward_features(golden["x"]) - golden["features"]).abs().max() < 1e-4


def test_predict_and_embed_on_a_folder_of_records(converted: Path, tmp_path: Path) -> None:
    folder = sample_dir()  # 6 PTB-XL records at 100 Hz + one CinC record at 500 Hz
    result = ecgfoundry("predict", converted, folder, "--out", tmp_path / "p.csv")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / "p.csv")
    assert len(table) == 7 and list(table.columns) == ["record", *[f"class_{i}" for i in range(5)]]
    assert table.iloc[:, 1:].to_numpy().min() >= 0 and table.iloc[:, 1:].to_numpy().max() <= 1
    result = ecgfoundry("embed", converted, folder, "--out", tmp_path / "e.npy")
    assert result.returncode == 0, result.stderr
    embeddings = np.load(tmp_path / "e.npy")
    assert embeddings.shape == (7, 64)
    ids = (tmp_path / "e.ids.txt").read_text().splitlines()
    assert ids == list(table.record) and "E00009" in ids[0]
    # The CLI equals the Python API: records resampled to the model's 500 Hz, 10 s input.
    model = load_model(converted)
    inputs = prepare(model, load_inputs(folder))
    assert inputs.windows.shape == (7, 12, 5000)
    with torch.no_grad():
        direct = model.forward_features(torch.from_numpy(inputs.windows)).numpy()
    np.testing.assert_allclose(embeddings, direct, atol=1e-5)


def test_predict_npy_json_and_no_preprocess(converted: Path, tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(3, 12, 5000)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "p.json"
    result = ecgfoundry("predict", converted, tmp_path / "x.npy", "--fs", "500", "--out", out,
                        "--no-preprocess")  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())
    model = load_model(converted)
    with torch.no_grad():
        expected = torch.sigmoid(model(torch.from_numpy(x))).numpy()
    got = np.array([list(r["probabilities"].values()) for r in rows])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    missing_fs = ecgfoundry("predict", converted, tmp_path / "x.npy", "--out", out)
    assert missing_fs.returncode == 2 and "pass fs (--fs)" in missing_fs.stderr


def test_hubert_folder_and_unsafe_refusal(reference: Path, tmp_path: Path) -> None:
    result = ecgfoundry("embed", reference / "hubert_ecg_tiny", sample_dir() / "ptbxl",
                        "--out", tmp_path / "h.npy")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert np.load(tmp_path / "h.npy").shape == (6, 32)
    refused = ecgfoundry("convert", "hubert-ecg", reference / "hubert_ecg_tiny_native.pt",
                         "--out", tmp_path / "h")  # fmt: skip
    assert refused.returncode == 2 and "--allow-unsafe" in refused.stderr
    assert not (tmp_path / "h").exists()
    allowed = ecgfoundry("convert", "hubert-ecg", reference / "hubert_ecg_tiny_native.pt",
                         "--out", tmp_path / "h", "--allow-unsafe")  # fmt: skip
    assert allowed.returncode == 0, allowed.stderr
    unknown = ecgfoundry(
        "convert", "hubert", reference / "hubert_ecg_tiny", "--out", tmp_path / "u"
    )
    assert unknown.returncode == 2
    assert "error: FAMILY 'hubert': not one of " in unknown.stderr
    assert "ecgfm, ecgfounder, hubert-ecg" in unknown.stderr


def test_arrays_in_microvolts_with_units(tmp_path: Path) -> None:
    """``--units uV`` reads .csv/.npy values as microvolts: the same ECG in uV and in mV gives
    the same embedding. Read as mV, microvolt values get a note naming the file and the flag;
    an unknown unit is refused naming --units."""
    from ecgfoundry.data import read_record
    from ecgfoundry.inventory import inspect_records

    record = read_record(sample_dir() / "ptbxl" / "00010_lr.hea")
    header = ",".join(record.leads)
    for name, scale in (("mv.csv", 1), ("uv.csv", 1000)):
        np.savetxt(tmp_path / name, record.signal.T * scale, delimiter=",", header=header,
                   comments="")  # fmt: skip
    np.save(tmp_path / "uv.npy", record.signal * 1000)
    embedded = {}
    for name, units in (("mv.csv", "mV"), ("uv.csv", "uV"), ("uv.npy", "uV"), ("uv.csv", "mV")):
        out = tmp_path / f"{name}-{units}.npy"
        result = ecgfoundry("embed", "ecgfoundry-cpc", tmp_path / name, "--fs", "100",
                            "--units", units, "--out", out)  # fmt: skip
        assert result.returncode == 0, result.stderr
        embedded[name, units] = np.load(out)
        noted = f"{name}: read as millivolts, its leads span 1" in result.stderr
        assert noted == (name.startswith("uv") and units == "mV"), result.stderr
        assert noted == ("if the values are microvolts, pass --units uV" in result.stderr)
    np.testing.assert_allclose(embedded["uv.csv", "uV"], embedded["mv.csv", "mV"], atol=1e-5)
    np.testing.assert_allclose(embedded["uv.npy", "uV"], embedded["mv.csv", "mV"], atol=1e-5)
    assert np.abs(embedded["uv.csv", "mV"] - embedded["mv.csv", "mV"]).max() > 0.1
    (row,) = inspect_records(tmp_path / "uv.csv", fs=100, units="uV")
    assert row["leads"] == list(record.leads)
    refused = ecgfoundry("data", "inspect", tmp_path / "uv.csv", "--fs", "100", "--units", "mv2")
    assert refused.returncode == 2 and "--units: unknown signal unit 'mv2'" in refused.stderr


def test_a_folder_of_microvolt_arrays_gets_five_notes_and_a_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Notes about a folder's files (here: microvolts read as mV) name the first five files and
    count the rest, rather than one line per file; in predict/embed and in data inspect."""
    from ecgfoundry.data import read_record
    from ecgfoundry.inference import load_inputs
    from ecgfoundry.inventory import inspect_records

    record = read_record(sample_dir() / "ptbxl" / "00010_lr.hea")
    header = ",".join(record.leads)
    for i, scale in enumerate([1000] * 7 + [1]):
        np.savetxt(tmp_path / f"e{i}.csv", record.signal.T * scale, delimiter=",",
                   header=header, comments="")  # fmt: skip
    assert len(load_inputs(tmp_path, fs=100)) == 8
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[1].strip() for line in lines[:5]] == [
        str(tmp_path / f"e{i}.csv") for i in range(5)]  # fmt: skip
    assert all("pass --units uV" in line for line in lines[:5])
    assert lines[5:] == ["note: and 2 more notes about other files"]
    assert len(inspect_records(tmp_path, fs=100)) == 8  # data inspect: the same notes
    assert capsys.readouterr().err.splitlines() == lines
    assert len(inspect_records([tmp_path, tmp_path / "e0.csv"], fs=100)) == 9  # folders too


def test_a_record_the_model_cannot_take_is_left_out_of_a_folder(tmp_path: Path) -> None:
    """In a folder, a record lacking leads the model needs is left out with a note naming it
    (as an unreadable file is), and the rest are embedded; alone, it is refused."""
    import shutil

    import wfdb

    for name in ("00010_lr", "00017_lr"):
        for suffix in (".hea", ".dat"):
            shutil.copy(sample_dir() / "ptbxl" / f"{name}{suffix}", tmp_path)
    holter = np.sin(np.linspace(0, 200, 2500))[:, None] * [1.0, 0.5]
    wfdb.wrsamp("holter", fs=250, units=["mV"] * 2, sig_name=["MLII", "V5"], p_signal=holter,
                fmt=["16"] * 2, write_dir=str(tmp_path))  # fmt: skip
    out = tmp_path / "e.npy"
    result = ecgfoundry("embed", "ecgfoundry-cpc", tmp_path, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "note: left out" in result.stderr and "holter: leads" in result.stderr
    assert "--missing-leads zero" in result.stderr  # how to include it anyway
    ids = (tmp_path / "e.ids.txt").read_text().split()
    assert [Path(i).name for i in ids] == ["00010_lr", "00017_lr"]
    assert np.load(out).shape[0] == 2
    alone = ecgfoundry("embed", "ecgfoundry-cpc", tmp_path / "holter.hea", "--out", out)
    assert alone.returncode == 2 and "holter: leads" in alone.stderr
    named = ecgfoundry("embed", "ecgfoundry-cpc", tmp_path / "holter.hea", "--leads", "II,V5",
                       "--missing-leads", "zero", "--out", out)  # fmt: skip
    assert named.returncode == 0, named.stderr  # its own names kept: MLII is not taken for II
    assert "holter.hea names its own leads (MLII, V5): --leads" in named.stderr


def test_prepare_refuses_an_unusable_record_unless_told_to_skip_it(capsys) -> None:
    """In Python, a record the model cannot take among several is refused (results stay
    aligned with the inputs); ``skip_unusable=True`` leaves it out with a note naming it."""
    from ecgfoundry.data import read_array
    from ecgfoundry.models import resolve_model

    model = resolve_model("ecgfoundry-cpc")
    twelve = load_inputs(sample_dir() / "ptbxl" / "00010_lr.hea")[0]
    lead_i = read_array(twelve.signal[:1], 100, ["I"])
    with pytest.raises(ECGInputError, match="leads"):
        prepare(model, [twelve, lead_i, twelve])
    kept = prepare(model, [twelve, lead_i, twelve], skip_unusable=True)
    assert kept.ids == [twelve.source] * 2 and len(kept.windows) == 2
    assert "note: left out record-1: leads" in capsys.readouterr().err


def test_long_lists_in_messages_show_the_first_and_count_the_rest() -> None:
    """Every message that lists files, records or labels shortens them the same way."""
    from ecgfoundry.adapt.run import _labels_text
    from ecgfoundry.errors import shortened

    assert shortened(["a", "b"], 2) == ["a", "b"]
    assert shortened(list("abcde"), 2, "and {} others") == ["a", "b", "and 3 others"]
    codes = ["164889003", *(f"L{i}" for i in range(13))]
    assert _labels_text(codes) == (
        "14: 164889003 AF (atrial fibrillation), L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, "
        "and 2 more")  # fmt: skip
