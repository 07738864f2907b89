"""PTB-XL loading, the Strodthoff et al. 2021 tasks, folds and training fractions (real data)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgfoundry.data import ptbxl
from ecgfoundry.data.record import STANDARD_LEADS, ECGInputError

LABEL_COUNTS = {
    "all": 71,
    "diagnostic": 44,
    "subdiagnostic": 23,
    "superdiagnostic": 5,
    "form": 19,
    "rhythm": 12,
}


LOAD_SECONDS: list[float] = []


@pytest.fixture(scope="module")
def data(ptbxl_root: Path) -> ptbxl.PTBXL:
    start = time.perf_counter()
    loaded = ptbxl.load(ptbxl_root)
    LOAD_SECONDS.append(time.perf_counter() - start)
    return loaded


def strodthoff_labels(table: pd.DataFrame, statements: pd.DataFrame, task: str) -> dict:
    """ecg_id -> label set, transcribed from ``compute_label_aggregations`` + ``select_data``
    (Strodthoff et al. 2021, min_samples=0): records with no label are dropped."""
    diag = statements[statements.diagnostic == 1.0]
    form = statements[statements.form == 1.0]
    rhythm = statements[statements.rhythm == 1.0]
    subclass = diag.diagnostic_subclass.to_dict()
    superclass = diag.diagnostic_class.to_dict()
    aggregate = {
        "all": lambda codes: set(codes.keys()),
        "diagnostic": lambda codes: {k for k in codes if k in diag.index},
        "subdiagnostic": lambda codes: {
            subclass[k] for k in codes if k in diag.index and str(subclass[k]) != "nan"
        },
        "superdiagnostic": lambda codes: {
            superclass[k] for k in codes if k in diag.index and str(superclass[k]) != "nan"
        },
        "form": lambda codes: {k for k in codes if k in form.index},
        "rhythm": lambda codes: {k for k in codes if k in rhythm.index},
    }[task]
    labels = {i: aggregate(codes) for i, codes in table.scp_codes.items()}
    return {i: s for i, s in labels.items() if s}


def present_records(root: Path) -> pd.DataFrame:
    """The rows of ptbxl_database.csv whose 100 Hz files are both there: what a copy must load
    (the shared copy lacks fold 10; a full one has it)."""
    table = pd.read_csv(root / ptbxl.DATABASE_CSV, index_col="ecg_id")
    there = [all((root / f"{name}{suffix}").is_file() for suffix in (".hea", ".dat"))
             for name in table.filename_lr]  # fmt: skip
    return table[there]


def fold_counts(root: Path) -> dict[str, int]:
    """Records present per fold "1".."10", as the summary reports them."""
    counts = present_records(root).strat_fold.value_counts()
    return {str(f): int(counts.get(f, 0)) for f in range(1, 11)}


def copy_records(root: Path, dest: Path, ecg_ids: list[int], *, all_rows: bool = False) -> None:
    """A PTB-XL layout in ``dest`` holding the files of ``ecg_ids`` (and, unless ``all_rows``,
    only their rows of ptbxl_database.csv: one line per record in the real file)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(root / ptbxl.STATEMENTS_CSV, dest)
    lines = (root / ptbxl.DATABASE_CSV).read_text().splitlines(keepends=True)
    wanted = {str(i) for i in ecg_ids}
    rows = lines[1:] if all_rows else [ln for ln in lines[1:] if ln.split(",", 1)[0] in wanted]
    (dest / ptbxl.DATABASE_CSV).write_text(lines[0] + "".join(rows))
    for i in ecg_ids:
        name = f"records100/{(i // 1000) * 1000:05d}/{i:05d}_lr"
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        for suffix in (".hea", ".dat"):
            shutil.copy(root / f"{name}{suffix}", dest / f"{name}{suffix}")


def pick_per_fold(data: ptbxl.PTBXL, per_fold: dict[int, int]) -> list[int]:
    table = data.table
    return sorted(
        int(i) for fold, k in per_fold.items() for i in table.index[table.strat_fold == fold][:k]
    )


def first_records_copy(root: Path, dest: Path, per_fold: int,
                       folds: tuple[int, ...] = tuple(range(1, 10))) -> Path:  # fmt: skip
    """A PTB-XL copy in ``dest`` of the first ``per_fold`` records of each of ``folds``."""
    copy_records(root, dest, pick_per_fold(ptbxl.load(root), dict.fromkeys(folds, per_fold)))
    return dest


def move_to_fold_10(copy: Path, share: float = 0.5) -> list[int]:
    """Give a copy a fold 10, as the full PTB-XL has (the shared one lacks it): the records
    of the first ``share`` of its fold-9 patients (whole patients, so splits stay
    patient-disjoint) become fold 10 in its ptbxl_database.csv. Returns their ecg_ids."""
    table = pd.read_csv(copy / ptbxl.DATABASE_CSV, index_col="ecg_id")
    patients = sorted(table.loc[table.strat_fold == 9, "patient_id"].unique())
    moved = table.index[(table.strat_fold == 9) & table.patient_id.isin(
        patients[: int(len(patients) * share)])]  # fmt: skip
    table.loc[moved, "strat_fold"] = 10
    table.to_csv(copy / ptbxl.DATABASE_CSV)
    return sorted(int(i) for i in moved)


def test_label_counts_per_task(data):
    for name, count in LABEL_COUNTS.items():
        task = data.task(name)
        assert len(task.labels) == count, name
        assert task.labels == sorted(task.labels)
        assert task.y.shape == (len(task), count) and task.y.dtype == np.uint8
        assert task.y.sum(axis=0).min() > 0  # every label occurs in the loaded folds
    assert data.task("superdiagnostic").labels == ["CD", "HYP", "MI", "NORM", "STTC"]


def test_tasks_match_the_reference_implementation(data):
    for name in ptbxl.TASKS:
        task = data.task(name)
        expected = strodthoff_labels(data.table, data.statements, name)
        assert list(task.ecg_ids) == sorted(expected), name
        got = {int(i): {task.labels[j] for j in np.flatnonzero(row)} for i, row in
               zip(task.ecg_ids, task.y, strict=True)}  # fmt: skip
        assert got == expected, name


def test_a_known_record(data):
    assert data.table.loc[1, "scp_codes"] == {"NORM": 100.0, "LVOLT": 0.0, "SR": 0.0}
    expected = {
        "all": {"LVOLT", "NORM", "SR"},
        "diagnostic": {"NORM"},
        "subdiagnostic": {"NORM"},
        "superdiagnostic": {"NORM"},
        "form": {"LVOLT"},  # likelihood 0.0 still counts
        "rhythm": {"SR"},
    }
    for name, labels in expected.items():
        task = data.task(name)
        row = task.y[np.searchsorted(task.ecg_ids, 1)]
        assert task.ecg_ids[np.searchsorted(task.ecg_ids, 1)] == 1
        assert {task.labels[j] for j in np.flatnonzero(row)} == labels, name


def test_records_without_a_label_are_dropped(data):
    assert data.table.loc[2, "scp_codes"] == {"NORM": 80.0, "SBRAD": 0.0}  # no form code
    form, everything = data.task("form"), data.task("all")
    assert 2 not in form.ecg_ids and 2 in everything.ecg_ids
    assert len(everything) == len(data) and len(form) < len(data) / 2
    for name in ptbxl.TASKS:
        assert data.task(name).y.any(axis=1).all()
    assert len(data.task("diagnostic")) == len(data.task("superdiagnostic"))


def test_folds_and_splits(data, ptbxl_root):
    folds = sorted(set(present_records(ptbxl_root).strat_fold))
    assert data.folds_present == folds
    assert data.folds_absent == [f for f in range(1, 11) if f not in folds]
    task = data.task("superdiagnostic")
    assert set(task.folds[task.split("train")]) == set(range(1, 9)) & set(folds)
    assert set(task.folds[task.split("val")]) == {9}
    if 10 in folds:
        assert set(task.folds[task.split("test")]) == {10}
    else:  # the held-out test fold is absent
        assert task.split_sizes()["test"] == 0
        with pytest.raises(ValueError, match="no 'test' records"):
            task.split("test")
    with pytest.raises(ValueError, match="unknown split"):
        task.split("dev")


def test_patients_do_not_cross_splits(data):
    task = data.task("all")
    train = set(task.patient_ids[task.split("train")])
    val = set(task.patient_ids[task.split("val")])
    assert train and val and not train & val


def test_a_patient_in_two_splits_is_refused(ptbxl_root, tmp_path):
    with pytest.raises(ECGInputError, match=r"patient 7: test\+train"):
        ptbxl.check_patient_splits(np.array([7, 8, 7, 9]), np.array([1, 2, 10, 9]))
    ptbxl.check_patient_splits(np.array([7, 7, 8]), np.array([1, 8, 9]))  # within train: fine
    copy_records(ptbxl_root, tmp_path, [1, 2])
    frame = pd.read_csv(tmp_path / ptbxl.DATABASE_CSV)
    frame.loc[1, "patient_id"] = frame.loc[0, "patient_id"]
    frame.loc[1, "strat_fold"] = 9 if frame.loc[0, "strat_fold"] != 9 else 1
    frame.to_csv(tmp_path / ptbxl.DATABASE_CSV, index=False)
    with pytest.raises(ECGInputError, match="more than one of train/val/test"):
        ptbxl.load(tmp_path)


def test_a_partial_copy_says_what_is_absent(data, ptbxl_root, tmp_path):
    ids = pick_per_fold(data, {1: 4, 2: 4, 3: 4, 4: 3, 5: 3, 6: 3, 7: 3, 8: 3, 9: 3})
    assert len(ids) == 30
    copy_records(ptbxl_root, tmp_path, ids)
    no_dat, no_hea, truncated = ids[3], ids[10], ids[20]
    (tmp_path / f"{data.record_path(no_dat).relative_to(ptbxl_root)}.dat").unlink()
    (tmp_path / f"{data.record_path(no_hea).relative_to(ptbxl_root)}.hea").unlink()
    dat = tmp_path / f"{data.record_path(truncated).relative_to(ptbxl_root)}.dat"
    dat.write_bytes(dat.read_bytes()[:5000])

    part = ptbxl.load(tmp_path)
    assert part.missing_records == sorted([no_dat, no_hea])
    assert list(part.unreadable_records) == [truncated]
    assert "truncated" in part.unreadable_records[truncated]
    assert len(part) == 27 and part.listed_records == 30
    assert part.folds_absent == [10]
    for name in ptbxl.TASKS:
        assert not {no_dat, no_hea, truncated} & set(part.task(name).ecg_ids)
    assert len(part.task("all")) == 27 and len(part.task("all").labels) == 71

    summary = json.loads(json.dumps(part.summary()))
    assert summary["records"] == 27
    assert summary["missing_records"] == sorted([no_dat, no_hea])
    assert summary["unreadable_records"] == [
        {"ecg_id": truncated, "problem": part.unreadable_records[truncated]}
    ]
    assert sum(summary["folds"].values()) == 27 and summary["folds"]["10"] == 0

    good = next(i for i in ids if i not in (no_dat, no_hea, truncated))
    assert part.read(good).metadata["ecg_id"] == good
    with pytest.raises(ECGInputError, match="missing"):
        part.read(no_dat)
    with pytest.raises(ECGInputError, match="truncated"):
        part.read(truncated)


def test_a_partial_download_with_the_full_table(data, ptbxl_root, tmp_path):
    ids = pick_per_fold(data, {3: 10, 9: 5})
    copy_records(ptbxl_root, tmp_path, ids, all_rows=True)
    part = ptbxl.load(tmp_path)
    assert sorted(part.table.index) == ids
    assert part.listed_records == data.listed_records
    assert len(part.missing_records) == data.listed_records - 15
    assert part.folds_present == [3, 9]
    assert part.summary()["tasks"]["superdiagnostic"]["train"] <= 10


def test_sampling_rates(ptbxl_root, data, tmp_path):
    with pytest.raises(ValueError, match="fs=100 or fs=500"):
        ptbxl.load(ptbxl_root, fs=250)
    if not (ptbxl_root / "records500").is_dir():  # the shared copy has records100/ only
        with pytest.raises(ECGInputError, match="no 500 Hz records"):
            ptbxl.load(ptbxl_root, fs=500)
    # A records500/ folder with one record: the others are marked missing.
    import wfdb

    copy_records(ptbxl_root, tmp_path, [1, 2])
    folder = tmp_path / "records500" / "00000"
    folder.mkdir(parents=True)
    signal = np.repeat(data.read(1).signal.T.astype(np.float64), 5, axis=0)
    wfdb.wrsamp("00001_hr", fs=500, units=["mV"] * 12, sig_name=list(STANDARD_LEADS),
                p_signal=signal, fmt=["16"] * 12, write_dir=str(folder))  # fmt: skip
    fast = ptbxl.load(tmp_path, fs=500)
    assert fast.missing_records == [2] and list(fast.table.index) == [1]
    assert fast.record_path(1) == tmp_path / "records500/00000/00001_hr"
    record = fast.read(1)
    assert record.fs == 500 and record.signal.shape == (12, 5000)


def test_cache_of_a_small_copy(data, ptbxl_root, tmp_path):
    ids = pick_per_fold(data, {1: 3, 9: 2})
    copy_records(ptbxl_root, tmp_path / "copy", ids)
    small = ptbxl.load(tmp_path / "copy")
    store = small.cache(cache_dir=tmp_path / "cache")
    assert store.signals.shape == (5, 12, 1000)
    assert list(store.index.ecg_id) == ids
    assert sorted(store.index.strat_fold) == [1, 1, 1, 9, 9]
    np.testing.assert_array_equal(store.signals[3], small.read(ids[3]).signal)
    assert small.cache(cache_dir=tmp_path / "cache").path == store.path  # reused


def test_nested_training_fractions(data):
    task = data.task("all")
    train = task.split("train")
    subsets = task.train_subsets([0.1, 0.3, 1.0], seed=0)
    assert len(subsets[0.1]) == pytest.approx(0.1 * len(train), abs=5)
    assert len(subsets[0.3]) == pytest.approx(0.3 * len(train), abs=5)
    assert np.isin(subsets[0.1], subsets[0.3]).all()
    assert np.isin(subsets[0.3], subsets[1.0]).all()
    np.testing.assert_array_equal(subsets[1.0], train)
    np.testing.assert_array_equal(task.train_subset(0.1, seed=0), subsets[0.1])
    other = task.train_subset(0.1, seed=1)
    assert len(np.intersect1d(other, subsets[0.1])) < 0.5 * len(other)

    full = task.y[train].mean(axis=0)
    counts = task.y[train].sum(axis=0)
    for f in (0.1, 0.3):
        rows = subsets[f]
        left_out = np.setdiff1d(train, rows)
        assert not set(task.patient_ids[rows]) & set(task.patient_ids[left_out])
        assert np.abs(task.y[rows].mean(axis=0) - full).max() < 0.005
        assert (task.y[rows].sum(axis=0)[f * counts >= 1] >= 1).all()


def test_read_gives_a_record_with_the_metadata(data):
    record = data.read(1)
    assert record.signal.shape == (12, 1000) and record.signal.dtype == np.float32
    assert record.fs == 100.0 and record.leads == STANDARD_LEADS
    assert record.source == str(data.record_path(1))
    meta = record.metadata
    assert meta["ecg_id"] == 1 and meta["patient_id"] == 15709 and meta["strat_fold"] == 3
    assert meta["age"] == 56.0 and meta["sex"] == "Female"
    assert meta["scp_codes"] == {"NORM": 100.0, "LVOLT": 0.0, "SR": 0.0}
    assert meta["dataset"] == "ptbxl"
    with pytest.raises(KeyError):
        data.read(10**7)
    with pytest.raises(ValueError, match="unknown PTB-XL task"):
        data.task("diagnostics")


def test_summary(data, ptbxl_root):
    present = present_records(ptbxl_root)
    summary = data.summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["records"] == len(data) == len(present)
    assert summary["listed_records"] == data.listed_records
    assert len(summary["missing_records"]) == data.listed_records - len(present)
    assert summary["patients"] == present.patient_id.nunique()
    assert summary["folds"] == fold_counts(ptbxl_root)
    assert list(summary["tasks"]) == list(LABEL_COUNTS)
    for name, count in LABEL_COUNTS.items():
        entry = summary["tasks"][name]
        assert entry["labels"] == count
        assert entry["train"] + entry["val"] + entry["test"] == len(data.task(name))
        assert (entry["test"] > 0) == (summary["folds"]["10"] > 0)
    assert summary["unreadable_records"] == []
    assert summary["folds_absent"] == [int(f) for f, n in summary["folds"].items() if n == 0]
    assert summary["release_records"] == 21799  # PTB-XL 1.0.3, whatever this copy holds


def test_load_is_quick(data):
    fresh = dataclasses.replace(data, _tasks={}, _has_code=None)  # tasks are built lazily
    start = time.perf_counter()
    fresh.summary()
    # a few seconds (file checks only, no signal decoded); generous for a busy machine
    assert LOAD_SECONDS[0] < 20 and time.perf_counter() - start < 5


def test_missing_tables(tmp_path):
    with pytest.raises(ECGInputError, match=r"ptbxl_database\.csv: not found"):
        ptbxl.load(tmp_path)
