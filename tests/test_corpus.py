"""The pretraining corpus on the shared data (PTB-XL, mitdb, vfdb, CinC, a user's folder), its
manifest, and the leakage guard in ``finetune``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_ptbxl import copy_records

from ecgfoundry.adapt import finetune
from ecgfoundry.data import ptbxl
from ecgfoundry.data.readers import read_record
from ecgfoundry.data.record import ECGInputError
from ecgfoundry.errors import UsageError
from ecgfoundry.models import create_model, load_model, save_model
from ecgfoundry.pretrain.corpus import CorpusSource, _transform, build_corpus
from ecgfoundry.pretrain.leakage import (
    LeakageError,
    check_leakage,
    file_record_id,
    read_manifest,
    write_manifest,
)
from ecgfoundry.spec import STANDARD_LEADS, InputSpec

SPEC = InputSpec(fs=100, seconds=5, leads=STANDARD_LEADS)  # segments: max(5 s, 10 s) = 10 s
QUICK = {"batch_size": 32, "stages.0.epochs": 1}


@pytest.fixture(scope="module")
def copy(ptbxl_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 records of each training fold (every superclass has a positive) and 8 of fold 9."""
    table = ptbxl.load(ptbxl_root).table
    ids = [int(i) for f in range(1, 9) for i in table.index[table.strat_fold == f][:5]]
    ids += [int(i) for i in table.index[table.strat_fold == 9][:8]]
    dest = tmp_path_factory.mktemp("ptbxl-copy")
    copy_records(ptbxl_root, dest, sorted(ids))
    return dest


@pytest.fixture(scope="module")
def holter(mitdb_root: Path, vfdb_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mitdb 201 and 202 (one subject) and vfdb 418."""
    dest = tmp_path_factory.mktemp("holter")
    for root, records in ((mitdb_root, ("201", "202")), (vfdb_root, ("418",))):
        (dest / root.name).mkdir()
        for record in records:
            for suffix in (".hea", ".dat"):
                shutil.copy(root / f"{record}{suffix}", dest / root.name / f"{record}{suffix}")
    return dest


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def holter_sources(holter: Path) -> list[CorpusSource]:
    return [
        CorpusSource("mitdb", holter / "mitdb", rename_leads={"MLII": "II"}, missing_leads="zero"),
        CorpusSource("vfdb", holter / "vfdb", rename_leads={"ECG1": "II"}, missing_leads="zero"),
    ]


@pytest.fixture(scope="module")
def corpus(copy, holter, cinc_root, cache_dir):
    ptbxl_source, cinc_source = CorpusSource("ptbxl", copy), CorpusSource("cinc", cinc_root)
    sources = [ptbxl_source, *holter_sources(holter), cinc_source]
    return build_corpus(sources, SPEC, cache_dir=cache_dir)


def test_a_mixed_corpus_names_records_and_patients(corpus, copy):
    table = ptbxl.load(copy).table
    training = table[table.strat_fold <= 8]
    # the sample's 28 records less its two copies of PTB-XL records (HR00599, HR20715)
    assert corpus.description["records"] == {"ptbxl": 40, "mitdb": 2, "vfdb": 1, "cinc": 26}
    assert corpus.signals.shape[1:] == (12, 1000) and not corpus.description["unreadable_records"]
    rows = corpus.dataset == "ptbxl"
    assert set(corpus.ids[rows]) == {f"ptbxl:{i}" for i in training.index}  # no fold 9
    patient = {f"ptbxl:{i}": f"ptbxl:{p}" for i, p in training.patient_id.items()}
    assert [patient[i] for i in corpus.ids[rows]] == list(corpus.patient_ids[rows])
    holter_rows = np.isin(corpus.dataset, ["mitdb", "vfdb"])
    segments = dict(zip(*np.unique(corpus.ids[holter_rows], return_counts=True), strict=True))
    assert segments == {"mitdb:201": 180, "mitdb:202": 180, "vfdb:418": 210}  # 30 and 35 min
    assert set(corpus.patient_ids[corpus.dataset == "mitdb"]) == {"mitdb:201"}  # one tape
    cinc = corpus.dataset == "cinc"
    assert "cinc:E00009" in corpus.ids[cinc] and not corpus.patient_known[cinc].any()
    assert (corpus.patient_ids[cinc] == corpus.ids[cinc]).all()  # the record stands in
    assert corpus.patient_known[~cinc].all()


def test_segments_are_consecutive_cuts_of_the_prepared_record(corpus, holter):
    source = holter_sources(holter)[0]
    prepared = _transform(source, SPEC)(read_record(holter / "mitdb/202.hea")).signal
    where = np.flatnonzero((corpus.ids == "mitdb:202") & (corpus.segments == 3))
    np.testing.assert_array_equal(corpus.signals[corpus.rows[where[0]]], prepared[:, 3000:4000])
    assert not prepared[2:6].any()  # leads I..aVL are absent from the two-lead record: zeros


def test_split_and_holdout_keep_patients_whole(corpus):
    split = corpus.split()
    assert len(split) == len(corpus) and split.y.shape == (len(corpus), 0)
    rest, held = corpus.holdout(0.1, seed=0)
    assert len(rest) + len(held) == len(corpus)
    assert not set(rest.patient_ids) & set(held.patient_ids)


def test_evaluation_folds_enter_only_on_request(copy, cache_dir):
    with pytest.raises(UsageError, match=r"fold\(s\) \[9\].*allow_evaluation_folds=True"):
        build_corpus([CorpusSource("ptbxl", copy, folds=(1, 9))], SPEC, cache_dir=cache_dir)
    source = CorpusSource("ptbxl", copy, folds=(1, 9), allow_evaluation_folds=True)
    corpus = build_corpus([source], SPEC, cache_dir=cache_dir)
    table = ptbxl.load(copy).table
    assert set(corpus.ids) == {f"ptbxl:{i}" for i in table.index[table.strat_fold.isin([1, 9])]}


def test_challenge_copies_of_ptbxl_records_enter_only_on_request(cinc_root, cache_dir):
    copies = {"cinc:HR00599", "cinc:HR20715"}
    default = build_corpus([CorpusSource("cinc", cinc_root)], SPEC, cache_dir=cache_dir)
    assert not copies & set(default.ids) and "cinc:E00009" in set(default.ids)
    kept = CorpusSource("cinc", cinc_root, allow_evaluation_folds=True)
    assert copies <= set(build_corpus([kept], SPEC, cache_dir=cache_dir).ids)


def test_ptbxl_files_in_a_wfdb_or_user_folder_enter_only_on_request(copy, cache_dir, tmp_path):
    """PTB-XL's own files met outside a ptbxl source (a folder of records100 files) are PTB-XL
    records of unknown fold: left out of a wfdb or folder source unless asked for."""
    folder = tmp_path / "mine"
    folder.mkdir()
    for header in sorted((copy / "records100").rglob("*_lr.hea"))[:2]:
        for file in (header, header.with_suffix(".dat")):
            (folder / file.name).write_bytes(file.read_bytes())
    for kind in ("wfdb", "folder"):
        with pytest.raises(ECGInputError, match="found here but PTB-XL records"):
            build_corpus([CorpusSource(kind, folder)], SPEC, cache_dir=cache_dir)
        kept = CorpusSource(kind, folder, allow_evaluation_folds=True)
        assert len(set(build_corpus([kept], SPEC, cache_dir=cache_dir).ids)) == 2


def test_a_challenge_copy_of_a_ptbxl_record_is_that_record(tmp_path):
    write_manifest(tmp_path / "saw-ptbxl", [{"id": "ptbxl:599", "patient": "ptbxl:7"}])
    write_manifest(tmp_path / "saw-cinc", [{"id": "cinc:WFDB_PTBXL/HR20715", "patient": None}])
    copy_of_599 = [
        "cinc:HR00599",
        "mine:sub/HR00599.mat#0123456789abcdef",
        "table:records100/00000/00599_lr.hea#0123456789abcdef",
        "wfdb:00599_hr",
    ]
    check = check_leakage(tmp_path / "saw-ptbxl", [*copy_of_599, "cinc:E00009"], allow=True)
    assert check["overlap"] == 4 and check["overlap_examples"] == sorted(copy_of_599)
    with pytest.raises(LeakageError, match=r"saw-cinc: 1 of the 3 .*: ptbxl:20715"):
        check_leakage(tmp_path / "saw-cinc", ["ptbxl:20715", "ptbxl:599", "cinc:HR00715"])


def test_the_manifest_round_trips_and_its_hash_follows_the_records(corpus, tmp_path):
    records = corpus.records()
    assert len(records) == 40 + 3 + 26
    assert {"id": "cinc:E00009", "patient": None} in records
    assert {"id": "mitdb:202", "patient": "mitdb:201"} in records
    written = write_manifest(tmp_path / "a", records)
    assert read_manifest(tmp_path / "a") == written == read_manifest(tmp_path / "a/manifest.json")
    assert [r["id"] for r in written["records"]] == sorted(r["id"] for r in records)
    assert write_manifest(tmp_path / "b", records[::-1])["hash"] == written["hash"]
    assert write_manifest(tmp_path / "c", records[1:])["hash"] != written["hash"]
    assert read_manifest(tmp_path / "none") is None
    text = (tmp_path / "a/manifest.json").read_text().replace("cinc:E00009", "cinc:E00010")
    (tmp_path / "a/manifest.json").write_text(text)
    with pytest.raises(ValueError, match=r"manifest.json: its hash does not match"):
        read_manifest(tmp_path / "a")


def test_a_users_folder_is_named_by_path_and_content(cinc_root, cache_dir, tmp_path):
    (tmp_path / "mine/sub").mkdir(parents=True)
    for suffix in (".hea", ".mat"):
        shutil.copy(cinc_root / f"E00009{suffix}", tmp_path / f"mine/sub/E00009{suffix}")
    corpus = build_corpus([CorpusSource("folder", tmp_path / "mine")], SPEC, cache_dir=cache_dir)
    (record,) = corpus.records()
    assert record["id"].startswith("folder:sub/E00009.hea#") and record["patient"] is None
    write_manifest(tmp_path / "model", corpus.records())
    elsewhere = file_record_id("table", cinc_root, cinc_root / "E00009.hea")  # same content
    check = check_leakage(tmp_path / "model", [elsewhere, "table:E00015.hea#0"], allow=True)
    assert check["overlap"] == 1 and check["overlap_examples"] == [elsewhere]


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_model(create_model("net1d-tiny"), tmp_path_factory.mktemp("m") / "tiny")


def test_finetune_refuses_a_backbone_that_saw_the_validation_fold(
    backbone, copy, cache_dir, tmp_path
):
    model = tmp_path / "seen-fold-9"
    shutil.copytree(backbone, model)
    source = CorpusSource("ptbxl", copy, folds=(1, 9), allow_evaluation_folds=True)
    manifest = write_manifest(model, build_corpus([source], SPEC, cache_dir=cache_dir).records())
    task = ptbxl.load(copy).task("superdiagnostic")
    val = sorted(f"ptbxl:{i}" for i in task.ecg_ids[task.split("val")])  # labelled fold 9
    out = tmp_path / "run"
    kw = {"root": copy, "task": "superdiagnostic", "strategy": "finetune", "out": out,
          "config": QUICK, "cache_dir": cache_dir, "progress_bar": False}  # fmt: skip
    n = len(val)
    loaded = load_model(model)  # an object keeps its folder's manifest
    with pytest.raises(LeakageError, match=rf"seen-fold-9: {n} of the {n} .*: {val[0]}, "):
        finetune(loaded, **{**kw, "out": tmp_path / "object"})
    with pytest.raises(LeakageError, match=rf"seen-fold-9: {n} of the {n} .*: {val[0]}, "):
        finetune(model, **kw)
    refused = json.loads((out / "metrics.json").read_text())["run"]["leakage_check"]
    assert refused == {"status": "overlap", "manifest": manifest["hash"], "checked": n,
                       "overlap": n, "overlap_examples": val, "allowed": False}  # fmt: skip
    metrics = finetune(model, allow_overlap=True, **kw)  # the same run folder: it goes on
    check = json.loads((out / "metrics.json").read_text())["run"]["leakage_check"]
    assert check == metrics["run"]["leakage_check"] == {**refused, "allowed": True}
    assert json.loads((out / "config.json").read_text())["backbone_manifest"] == manifest["hash"]
    adapted = {r["id"] for r in read_manifest(out / "model")["records"]}
    trained = {f"ptbxl:{i}" for i in task.ecg_ids[task.split("train")]}
    assert adapted == trained | {r["id"] for r in manifest["records"]}  # inherited: fold 9 too


def test_a_backbone_without_manifest_is_recorded_as_unchecked(backbone, copy, cache_dir, tmp_path):
    metrics = finetune(backbone, root=copy, task="superdiagnostic", strategy="finetune",
                       out=tmp_path / "run", config=QUICK, cache_dir=cache_dir,
                       progress_bar=False)  # fmt: skip
    check = metrics["run"]["leakage_check"]
    assert check["status"] == "no manifest" and check["manifest"] is None
    task = ptbxl.load(copy).task("superdiagnostic")
    assert check["overlap"] is None and check["checked"] == metrics["run"]["val_records"]
    assert "backbone_manifest" not in json.loads((tmp_path / "run/config.json").read_text())
    manifest = read_manifest(tmp_path / "run/model")
    trained = task.ecg_ids[task.split("train")]
    assert [r["id"] for r in manifest["records"]] == sorted(f"ptbxl:{i}" for i in trained)
    assert all(r["patient"].startswith("ptbxl:") for r in manifest["records"])


def test_a_cinc_task_is_checked_in_the_same_id_scheme(backbone, cinc_root, cache_dir, tmp_path):
    model = tmp_path / "seen-cinc"
    shutil.copytree(backbone, model)
    corpus = build_corpus([CorpusSource("cinc", cinc_root)], SPEC, cache_dir=cache_dir)
    write_manifest(model, corpus.records())
    with pytest.raises(LeakageError, match=r"seen-cinc: \d+ of the \d+ .*cinc:"):
        finetune(model, data="cinc", root=cinc_root, task="428750005", strategy="finetune",
                 out=tmp_path / "run", config=QUICK, cache_dir=cache_dir,
                 progress_bar=False)  # fmt: skip
