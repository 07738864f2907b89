"""Adaptation on data other than PTB-XL: CinC challenge folders, users' tables, model and
TaskData objects; and PTB-XL calls as before (real data, net1d-tiny, one epoch)."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_ptbxl import copy_records
from test_rough_edges import cli

from ecgfoundry.adapt import RunConfigError, finetune
from ecgfoundry.adapt.run import build_model, describe_splits
from ecgfoundry.adapt.sources import cinc_task, table_task
from ecgfoundry.data import ptbxl
from ecgfoundry.data.readers import read_record, read_wfdb
from ecgfoundry.data.record import ECGInputError
from ecgfoundry.data.transforms import model_input
from ecgfoundry.models import create_model, save_model
from ecgfoundry.models.io import model_fingerprint

QUICK = {"batch_size": 8, "stages.0.epochs": 1}
CODES = "428750005,164867002"  # 10 and 8 of the 28 sample records


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("net1d-tiny")


@pytest.fixture(scope="module")
def backbone(tiny, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_model(tiny, tmp_path_factory.mktemp("m") / "tiny")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def listing(ptbxl_root: Path) -> pd.DataFrame:
    """ptbxl_database.csv in ecg_id order."""
    table = pd.read_csv(ptbxl_root / ptbxl.DATABASE_CSV, index_col="ecg_id")
    return table.sort_index()


def _table(ptbxl_root: Path, listing: pd.DataFrame, folder: Path, n: int = 40) -> pd.DataFrame:
    """A user's table of ``n`` PTB-XL records: half the paths relative to ``folder``, labels
    NORM and SR, ten patients of four records each."""
    rows = listing.head(n)
    paths = [ptbxl_root / f"{name}.hea" for name in rows["filename_lr"]]
    codes = [ast.literal_eval(text) for text in rows["scp_codes"]]
    return pd.DataFrame({
        "record": [str(p) if i % 2 else os.path.relpath(p, folder) for i, p in enumerate(paths)],
        "NORM": [int("NORM" in c) for c in codes],
        "SR": [int("SR" in c) for c in codes],
        "patient_id": [f"p{i // 4}" for i in range(n)],
    })  # fmt: skip


def _write(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def test_cinc_folder_trains_with_seeded_disjoint_record_splits(
    backbone, cinc_root, cache_dir, tmp_path
):
    metrics = finetune(backbone, data="cinc", root=cinc_root, task=CODES, strategy="linear-probe",
                       out=tmp_path / "run", config=QUICK, cache_dir=cache_dir,
                       progress_bar=False)  # fmt: skip
    written = json.loads((tmp_path / "run/metrics.json").read_text())
    assert {"val", "test"} <= set(written) and written["val"] == metrics["val"]
    assert [row["label"] for row in written["val"]["per_label"]] == CODES.split(",")
    assert written["run"]["data"]["dataset"] == "cinc"
    saved = np.load(tmp_path / "run/predictions/predictions.npz")
    assert list(saved["labels"]) == CODES.split(",")
    assert not set(saved["val_ids"]) & set(saved["test_ids"])
    config = json.loads((tmp_path / "run/config.json").read_text())
    assert config["labels"] == CODES.split(",") and "cache" not in config["data"]

    spec = create_model("net1d-tiny").spec
    splits = [
        cinc_task(cinc_root, spec, task=CODES, seed=s, cache_dir=cache_dir) for s in (0, 0, 1)
    ]
    ids = [[set(d.train.ids), set(d.val.ids), set(d.test.ids)] for d in splits]
    assert ids[0] == ids[1] and ids[0] != ids[2]
    train, val, test = ids[0]
    assert not (train & val or train & test or val & test) and len(train | val | test) == 28
    assert (len(train), len(val), len(test)) == (22, 3, 3)  # 80 / 10 / 10
    assert list(saved["val_ids"]) == list(splits[0].val.ids)
    assert written["run"]["splits"] == describe_splits(splits[0]) == {
        "train": "80 %, record-level, seeded: 22 records",
        "val": "10 %, record-level, seeded: 3 records",
        "test": "10 %, record-level, seeded: 3 records"}  # fmt: skip
    half = cinc_task(cinc_root, spec, task=CODES, fraction=0.5, cache_dir=cache_dir)
    described = describe_splits(half, evaluate_test=False)
    assert described["train"] == (f"80 %, record-level, seeded (50 % of them, nested): "
                                  f"{len(half.train)} records")  # fmt: skip
    assert 0 < len(half.train) < 22
    assert (
        described["test"] == "10 %, record-level, seeded: 3 records, not scored "
        "(evaluate_test=False)"
    )


def test_cinc_default_labels_are_codes_with_enough_positives(cinc_root, cache_dir):
    spec = create_model("net1d-tiny").spec
    data = cinc_task(cinc_root, spec, cache_dir=cache_dir, min_positives=7)
    assert data.labels == ["164865005", "164867002", "428750005"]  # 7, 8 and 10 positives
    assert data.description["unreadable_records"] == []
    with pytest.raises(ECGInputError, match="no SNOMED-CT code has 11 or more"):
        cinc_task(cinc_root, spec, cache_dir=cache_dir, min_positives=11)
    with pytest.raises(ECGInputError, match=r"no readable record has SNOMED-CT code\(s\) \['1'\]"):
        cinc_task(cinc_root, spec, task="1", cache_dir=cache_dir)
    with pytest.raises(ECGInputError, match=r"most frequent \(records\): \['428750005 NSSTTA "
                       r"\(nonspecific st t abnormality\): 10'"):  # fmt: skip
        cinc_task(cinc_root, spec, task="1", cache_dir=cache_dir)
    named = cinc_task(cinc_root, spec, task="nsstta,OldMI,164867002", cache_dir=cache_dir)
    assert named.labels == CODES.split(",")  # abbreviations become their codes, once each
    with pytest.raises(ECGInputError, match=r"\['74390002 WPW \(wolff parkinson white"):
        cinc_task(cinc_root, spec, task="WPW", cache_dir=cache_dir)  # named, in no record
    for task, problem in (("AF,cd", "task cd: a PTB-XL superclass name"),
                          ("NORM", "task NORM: a PTB-XL superclass name"),
                          ("AF,atrial", "task atrial: neither SNOMED-CT codes nor")):  # fmt: skip
        with pytest.raises(RunConfigError, match=problem):
            cinc_task(Path("/nonexistent"), spec, task=task)  # refused before any reading


def test_a_table_trains_with_patient_level_or_given_splits(
    backbone, ptbxl_root, listing, cache_dir, tmp_path
):
    frame = _table(ptbxl_root, listing, tmp_path / "tables")
    csv = _write(frame, tmp_path / "tables/own.csv")
    spec = create_model("net1d-tiny").spec
    data = table_task(csv, spec, cache_dir=cache_dir)
    group = dict(zip(frame["record"], frame["patient_id"], strict=True))
    patients = [{group[r] for r in split.ids} for split in (data.train, data.val, data.test)]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
    assert data.labels == ["NORM", "SR"] and data.description["split"] == "patient"
    assert len(data.train) + len(data.val) + len(data.test) == 40

    metrics = finetune(backbone, data=csv, strategy="finetune", out=tmp_path / "run",
                       config=QUICK, cache_dir=cache_dir, progress_bar=False)  # fmt: skip
    assert metrics["run"]["data"]["table"] == str(csv.resolve())
    assert metrics["run"]["val_records"] == len(data.val)
    assert metrics["run"]["splits"] == {
        "train": f"80 %, patient-level, seeded: {len(data.train)} records",
        "val": f"10 %, patient-level, seeded: {len(data.val)} records",
        "test": f"10 %, patient-level, seeded: {len(data.test)} records",
    }

    given = frame.assign(split=["train"] * 32 + ["val"] * 8)
    csv = _write(given, tmp_path / "tables/given.csv")
    metrics = finetune(backbone, data=str(csv), task="NORM", strategy="linear-probe",
                       out=tmp_path / "given", config=QUICK, cache_dir=cache_dir,
                       progress_bar=False)  # fmt: skip
    saved = np.load(tmp_path / "given/predictions/predictions.npz")
    assert list(saved["val_ids"]) == list(given["record"][32:]) and "test" not in metrics
    assert metrics["run"]["splits"] == {"train": "as the table's split column: 32 records",
                                        "val": "as the table's split column: 8 records",
                                        "test": "absent: no test records"}  # fmt: skip
    assert list(saved["labels"]) == ["NORM"]


def test_unreadable_table_records_are_skipped_and_listed(ptbxl_root, listing, cache_dir, tmp_path):
    frame = _table(ptbxl_root, listing, tmp_path, n=12)
    source = ptbxl_root / listing["filename_lr"].iloc[0]
    (tmp_path / "broken").mkdir()
    for suffix in (".hea", ".dat"):
        shutil.copy(source.with_suffix(suffix), tmp_path / "broken" / f"{source.name}{suffix}")
    with (tmp_path / "broken" / f"{source.name}.dat").open("r+b") as handle:
        handle.truncate(100)
    frame.loc[0, "record"] = f"broken/{source.name}.hea"
    data = table_task(_write(frame, tmp_path / "t.csv"), create_model("net1d-tiny").spec,
                      cache_dir=cache_dir)  # fmt: skip
    unreadable = data.description["unreadable_records"]
    assert [entry["record"] for entry in unreadable] == [frame.loc[0, "record"]]
    assert "truncated" in unreadable[0]["problem"]
    assert sum(data.description["records"].values()) == 11  # three patients: no test split
    result = cli("finetune", "net1d-tiny", "--data", tmp_path / "t.csv", "--strategy", "scratch",
                 "--epochs", "1", "--out", tmp_path / "run", "--cache-dir", cache_dir)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "note: 1 record(s) could not be read and were left out" in result.stderr
    assert f"{frame.loc[0, 'record']}: " in result.stderr  # named, with its problem
    assert "labels: 2: NORM, SR\n" in result.stderr  # named before training


def test_the_cache_command_builds_what_cinc_and_table_training_read(
    cinc_root, ptbxl_root, listing, tmp_path
):
    spec = create_model("net1d-tiny").spec
    frame = _table(ptbxl_root, listing, tmp_path, n=12)
    frame.loc[0, "record"] = "absent.hea"
    (tmp_path / "absent.hea").write_text("not a header\n")  # unreadable: named on stderr
    csv = _write(frame, tmp_path / "T.CSV")
    cache = ("--model", "net1d-tiny", "--cache-dir", tmp_path / "cache")
    runs = {
        "cinc": cli("data", "cache", "cinc", "--root", cinc_root, *cache),
        "cinc=DIR": cli("data", "cache", f"cinc={cinc_root}", *cache),
        "table": cli("data", "cache", csv, *cache),
    }
    for result in runs.values():
        assert result.exit_code == 0, result.output
    trained = {"cinc": cinc_task(cinc_root, spec, task=CODES, cache_dir=tmp_path / "cache"),
               "table": table_task(csv, spec, cache_dir=tmp_path / "cache")}  # fmt: skip
    trained["cinc=DIR"] = trained["cinc"]
    for name, data in trained.items():
        assert runs[name].stdout.strip() == data.description["cache"], name
    assert f"11 records cached; 1 listed in {csv} were left out" in runs["table"].stderr
    assert "absent.hea" in runs["table"].stderr and "left out" not in runs["cinc"].stderr
    for args, message in (
        ((csv, "--root", tmp_path), "--root does not apply"),
        (("cinc",), "cinc needs --root"),
        (("mitdb",), "expected ptbxl"),
    ):
        refused = cli("data", "cache", *args, *cache)
        assert refused.exit_code != 0 and message in str(refused.exception), args


BAD_TABLES = {
    "no record column": (lambda f: f.drop(columns="record"), "no 'record' column"),
    "no labels": (lambda f: f.drop(columns=["NORM", "SR"]), "no label columns"),
    "word label": (
        lambda f: f.assign(SR=["yes"] + [1] * 11),
        r"label column 'SR' has values other than 0/1 \(\['yes'\] at line 2\)",
    ),
    "label 2": (lambda f: f.assign(NORM=[2] + [0] * 11), "'NORM' has values other than 0/1"),
    "missing file": (
        lambda f: f.assign(record=["gone.hea", *f.record[1:]]),
        "record file.* not found at line 2",
    ),
    "unknown split": (
        lambda f: f.assign(split=["train"] * 10 + ["valid", "test"]),
        r"unknown split name\(s\) \['valid'\] at line 12",
    ),
    "no val": (lambda f: f.assign(split=["train"] * 12), "has no val records"),
    "leaking patient": (
        lambda f: f.assign(split=["train"] * 6 + ["val"] * 6),
        r"patient\(s\) \['p1'\] have records in more than one split",
    ),
}


@pytest.mark.parametrize("case", list(BAD_TABLES))
def test_bad_tables_are_refused_naming_the_csv(case, ptbxl_root, listing, tmp_path):
    change, message = BAD_TABLES[case]
    csv = _write(change(_table(ptbxl_root, listing, tmp_path, n=12)), tmp_path / "bad.csv")
    with pytest.raises(ECGInputError, match=message) as caught:
        table_task(csv, create_model("net1d-tiny").spec, cache_dir=tmp_path / "cache")
    assert caught.value.source == str(csv)


def test_npy_records_need_fs_and_leads(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((12, 1000), dtype=np.float32))
    spec = create_model("net1d-tiny").spec
    for frame, message in (
        ({"record": ["a.npy"], "AF": [1]}, "no sampling rate: give it in an 'fs' column"),
        ({"record": ["a.npy"], "AF": [1], "fs": [100]}, "no lead names: give them in a 'leads'"),
    ):
        with pytest.raises(ECGInputError, match=message):
            table_task(_write(pd.DataFrame(frame), tmp_path / "t.csv"), spec)


def test_model_and_task_data_objects(tiny, cinc_root, cache_dir, tmp_path):
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    data = cinc_task(cinc_root, tiny.spec, task=CODES, cache_dir=cache_dir)
    run = {"data": data, "strategy": "linear-probe", "out": tmp_path / "run", "config": QUICK,
           "progress_bar": False}  # fmt: skip
    metrics = finetune(tiny, **run)
    config = json.loads((tmp_path / "run/config.json").read_text())
    assert config["model"]["family"] == "net1d"
    weights = config["model_weights"]
    assert weights == model_fingerprint(tiny) and weights.startswith("sha256:")
    assert config["data"]["dataset"] == "cinc" and metrics["run"]["val_records"] == 3
    assert all(torch.equal(before[k], v) for k, v in tiny.state_dict().items())  # not trained
    assert finetune(tiny, **run)["val"] == metrics["val"]  # the same objects resume the run
    with pytest.raises(RunConfigError, match="do not apply to a prepared TaskData"):
        finetune(tiny, **run | {"task": CODES, "out": tmp_path / "other"})
    halved = dataclasses.replace(data, window=data.window // 2)
    with pytest.raises(RunConfigError, match=f"windows are {data.window // 2} samples; this "
                                             f"model takes {tiny.spec.samples}"):  # fmt: skip
        finetune(tiny, **run | {"data": halved, "out": tmp_path / "other"})
    mine = dataclasses.replace(data, description={})  # made by the user, no split rule stated
    assert describe_splits(mine)["train"] == f"as prepared: {len(data.train)} records"

    torch.manual_seed(1)  # tiny was made after seed 0
    fresh = build_model(tiny, "random")
    assert type(fresh) is type(tiny) and fresh.config == tiny.config
    assert not torch.equal(next(fresh.parameters()), next(tiny.parameters()))


def test_folder_fingerprint_is_the_weights_file_hash(backbone):
    digest = hashlib.sha256((backbone / "model.safetensors").read_bytes()).hexdigest()
    assert model_fingerprint(backbone) == f"sha256:{digest[:16]}"
    assert model_fingerprint("net1d-tiny") == "net1d-tiny"


def test_ptbxl_calls_as_before(backbone, ptbxl_root, listing, cache_dir, tmp_path):
    ids = [int(i) for f in range(1, 9) for i in listing.index[listing.strat_fold == f][:8]]
    ids += [int(i) for i in listing.index[listing.strat_fold == 9][:10]]
    copy_records(ptbxl_root, tmp_path / "ptbxl", sorted(ids))
    metrics = finetune(backbone, root=tmp_path / "ptbxl", task="superdiagnostic",
                       strategy="linear-probe", out=tmp_path / "run", config=QUICK,
                       cache_dir=cache_dir, progress_bar=False)  # fmt: skip
    config = json.loads((tmp_path / "run/config.json").read_text())
    assert list(config) == ["format", "model", "model_weights", "data", "root", "source_fs",
                            "task", "fraction", "seed", "precision", "world_size",
                            "evaluate_test", "recipe"]  # fmt: skip
    assert config["data"] == "ptbxl" and config["model"] == str(backbone)
    assert metrics["run"]["folds_present"] == list(range(1, 10))
    assert 0 < metrics["run"]["train_records"] <= 64 and "data" not in metrics["run"]
    with pytest.raises(RunConfigError, match="PTB-XL needs root"):
        finetune(backbone, task="superdiagnostic", strategy="finetune", out=tmp_path / "x")
    with pytest.raises(RunConfigError, match=r"expected ptbxl, cinc, a \.csv table"):
        finetune(backbone, data="mitdb", strategy="finetune", out=tmp_path / "x")


def test_a_table_of_edf_records_names_their_channels_with_leads(ptbxl_root, listing, cache_dir,
                                                                  tmp_path):  # fmt: skip
    """EDF files whose channels are ECG1..ECG12: the table's ``leads`` column names them; a
    row without it cannot give the model its leads and is listed as unreadable."""
    from test_edf import write_edf

    rows = []
    for i, name in enumerate(listing.head(8)["filename_lr"]):
        record = read_wfdb(ptbxl_root / name)
        channels = [(f"ECG{k + 1}", row * 1000, "uV") for k, row in enumerate(record.signal)]
        write_edf(tmp_path / f"r{i}.edf", channels)
        rows.append({"record": f"r{i}.edf", "A": i % 2, "split": ["train", "val"][i // 6],
                     "leads": ",".join(record.leads)})  # fmt: skip
    frame = pd.DataFrame(rows)
    frame.loc[0, "leads"] = ""
    data = table_task(_write(frame, tmp_path / "t.csv"), create_model("net1d-tiny").spec,
                      cache_dir=cache_dir)  # fmt: skip
    (unreadable,) = data.description["unreadable_records"]
    assert unreadable["record"] == "r0.edf" and "name them: --leads" in unreadable["problem"]
    assert len(data.train) == 5 and len(data.val) == 2
    spec = create_model("net1d-tiny").spec
    original = model_input(read_wfdb(ptbxl_root / listing["filename_lr"].iloc[1]), spec)
    assert data.train.ids[0] == "r1.edf"  # the same ECG as its WFDB original, once prepared
    np.testing.assert_allclose(data.train.signals[data.train.rows[0]], original.signal, atol=1e-3)


def test_a_table_of_microvolt_arrays_says_so_in_units(ptbxl_root, listing, cache_dir, tmp_path):
    """``units`` reads a row's .npy/.csv values as uV or V: the same ECG saved in uV trains on
    the same input as in mV (ecgfoundry-cpc takes millivolts unnormalised). A unit on a file
    that states its own, or an unknown unit, is refused naming the CSV line."""
    spec = create_model("ecgfoundry-cpc").spec
    rows = []
    for i, name in enumerate(listing.head(6)["filename_lr"]):
        record = read_wfdb(ptbxl_root / name)
        np.save(tmp_path / f"mv{i}.npy", record.signal)
        np.save(tmp_path / f"uv{i}.npy", record.signal * 1000)
        rows.append({"A": i % 2, "split": ["train", "val"][i // 4], "fs": 100,
                     "leads": ",".join(record.leads)})  # fmt: skip
    mv = pd.DataFrame(rows).assign(record=[f"mv{i}.npy" for i in range(6)])
    uv = pd.DataFrame(rows).assign(record=[f"uv{i}.npy" for i in range(6)], units="uV")
    read = {name: table_task(_write(frame, tmp_path / f"{name}.csv"), spec, cache_dir=cache_dir)
            for name, frame in (("mv", mv), ("uv", uv))}  # fmt: skip
    np.testing.assert_allclose(read["uv"].train.signals[:], read["mv"].train.signals[:], atol=1e-4)
    assert np.abs(read["mv"].train.signals[:]).max() < 10  # millivolts, not microvolts
    wfdb_row = mv.assign(units=["uV"] + [None] * 5,
                         record=[f"{ptbxl_root / listing['filename_lr'].iloc[0]}.hea",
                                 *mv.record[1:]])  # fmt: skip
    for frame, message in (
        (wfdb_row, r"'units' is for \.npy/\.csv records .* at line 2"),
        (uv.assign(units=["uV"] * 5 + ["mv2"]), r"line 7, 'units': unknown signal unit 'mv2'"),
        (uv.assign(units=[1] * 6), r"line 2, 'units': unknown signal unit '1'"),
    ):
        with pytest.raises(ECGInputError, match=message):
            table_task(_write(frame, tmp_path / "bad.csv"), spec, cache_dir=cache_dir)
    spelled = wfdb_row.assign(units=[" mv"] + [None] * 5)  # millivolts, however written, on WFDB
    assert len(table_task(_write(spelled, tmp_path / "mv.csv"), spec, cache_dir=cache_dir).train)
    with pytest.raises(ECGInputError, match=r"\.hea: units apply to \.npy/\.csv arrays"):
        read_record(wfdb_row.record[0], units="uV")
