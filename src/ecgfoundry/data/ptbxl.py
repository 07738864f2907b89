"""PTB-XL (Wagner et al. 2020) from the standard PhysioNet layout, with the benchmark tasks.

Layout under ``root``: ``ptbxl_database.csv``, ``scp_statements.csv`` and
``records100/NNNNN/NNNNN_lr.{hea,dat}`` (100 Hz) and/or ``records500/NNNNN/NNNNN_hr.*``
(500 Hz). :func:`load` reads the two tables and checks every listed record's files without
decoding a signal (a few seconds for the whole release); :meth:`PTBXL.read` decodes one and
:meth:`PTBXL.cache` decodes all of them once into a memory-mapped cache.

A partial copy loads: records listed in the CSV whose ``.hea`` or ``.dat`` is absent go to
``missing_records``; records whose files are there but fail the structural check
(:func:`ecgfoundry.data.readers.check_wfdb_files`, e.g. a truncated ``.dat``) go to
``unreadable_records`` with the problem; both are left out of the tasks. ``folds_absent``
names the folds (of 1..10) with no loadable record. Asking for ``fs=500`` when there is no
``records500/`` folder raises :class:`ECGInputError` (a copy without 500 Hz files is normal;
a partly filled ``records500/`` instead marks the absent records missing).

Tasks follow Strodthoff et al. 2021 (IEEE JBHI, "Deep learning for ECG analysis: benchmarks
and insights from PTB-XL"; ``compute_label_aggregations`` and ``select_data`` in their code):

- ``all``: every scp_code of the record (71 labels);
- ``diagnostic``: codes whose statement has ``diagnostic == 1`` (44);
- ``subdiagnostic``: the ``diagnostic_subclass`` of those (23);
- ``superdiagnostic``: their ``diagnostic_class`` (5);
- ``form``: codes with ``form == 1`` (19); ``rhythm``: codes with ``rhythm == 1`` (12).

A code counts whatever its likelihood (0.0 included), as in their code. The label vocabulary
comes from ``scp_statements.csv`` (sorted), so a task has the same labels in any subset of
the records; records with no label in a task are dropped from it. Folds: train = strat_fold
1-8, val = 9, test = 10; a patient in two of those splits is an error.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ecgfoundry.data.cache import ArrayStore, build_cache
from ecgfoundry.data.readers import check_wfdb_files, read_wfdb
from ecgfoundry.data.record import ECGInputError, Record
from ecgfoundry.data.stratify import nested_subsets
from ecgfoundry.data.transforms import Compose
from ecgfoundry.errors import UsageError

DATABASE_CSV = "ptbxl_database.csv"
STATEMENTS_CSV = "scp_statements.csv"
RELEASE_RECORDS = 21799  # records in PTB-XL 1.0.3 (and 1.0.1)
FOLDS: tuple[int, ...] = tuple(range(1, 11))
SPLITS: dict[str, tuple[int, ...]] = {"train": (1, 2, 3, 4, 5, 6, 7, 8), "val": (9,), "test": (10,)}
TASKS: tuple[str, ...] = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")
_FILENAME_COLUMN = {100: "filename_lr", 500: "filename_hr"}
_SEX = {0: "Male", 1: "Female"}  # PTB-XL codes male 0, female 1

SplitName = Literal["train", "val", "test"]


@dataclass(frozen=True, eq=False)
class Task:
    """One benchmark task: multi-hot labels for the records that have at least one.

    Rows are in ``ecg_id`` order; index arrays returned by the methods are row indices.
    """

    name: str
    labels: list[str]
    ecg_ids: np.ndarray  # int64 [N]
    y: np.ndarray  # uint8 [N, L]
    folds: np.ndarray  # int64 [N], strat_fold 1..10
    patient_ids: np.ndarray  # int64 [N]

    def __len__(self) -> int:
        return len(self.ecg_ids)

    def split(self, name: SplitName) -> np.ndarray:
        """Sorted row indices of ``"train"`` (folds 1-8), ``"val"`` (9) or ``"test"`` (10).

        Raises ValueError when this copy holds none of the split's records (e.g. ``"test"``
        when fold 10 is held out); :meth:`split_sizes` counts without raising.
        """
        rows = np.flatnonzero(np.isin(self.folds, _split_folds(name)))
        if not rows.size:
            raise ValueError(
                f"task {self.name!r} has no {name!r} records in this copy (strat_fold "
                f"{', '.join(map(str, SPLITS[name]))} absent or without labels for this task)"
            )
        return rows

    def split_sizes(self) -> dict[str, int]:
        """Number of records per split (0 where a split's folds are absent)."""
        return {name: int(np.isin(self.folds, folds).sum()) for name, folds in SPLITS.items()}

    def train_subsets(self, fractions: Sequence[float], seed: int) -> dict[float, np.ndarray]:
        """Nested, label-stratified, patient-grouped fractions of the train split.

        Sorted row indices per fraction in (0, 1]; deterministic per seed; see
        :func:`ecgfoundry.data.stratify.nested_subsets`.
        """
        rows = self.split("train")
        picked = nested_subsets(self.y[rows], fractions, seed, groups=self.patient_ids[rows])
        return {f: rows[index] for f, index in picked.items()}

    def train_subset(self, fraction: float, seed: int) -> np.ndarray:
        """Sorted row indices of one training fraction (nested across fractions per seed)."""
        return self.train_subsets([fraction], seed)[float(fraction)]


def _split_folds(name: str) -> tuple[int, ...]:
    if name not in SPLITS:
        raise ValueError(f"unknown split {name!r}; expected one of {list(SPLITS)}")
    return SPLITS[name]


def check_patient_splits(
    patient_ids: np.ndarray, folds: np.ndarray, source: str | Path | None = None
) -> None:
    """Raise ECGInputError if any patient has records in two of train / val / test."""
    split_of = np.full(len(folds), "", dtype=object)
    for name, split_folds in SPLITS.items():
        split_of[np.isin(folds, split_folds)] = name
    frame = pd.DataFrame({"patient": np.asarray(patient_ids), "split": split_of})
    frame = frame[frame.split != ""].drop_duplicates()
    spread = frame.groupby("patient")["split"].nunique()
    bad = frame[frame.patient.isin(spread.index[spread > 1])].groupby("patient")["split"]
    bad = bad.agg(sorted)
    if len(bad):
        shown = "; ".join(f"patient {p}: {'+'.join(s)}" for p, s in bad.head(5).items())
        raise ECGInputError(
            source,
            f"{len(bad)} patient(s) have records in more than one of train/val/test "
            f"(strat_fold 1-8 / 9 / 10), which would leak between splits: {shown}",
        )


@dataclass(eq=False)
class PTBXL:
    """A loaded PTB-XL copy. ``table``: the loadable records (index ``ecg_id``; ``scp_codes``
    as dicts); ``statements``: ``scp_statements.csv`` (index: the code)."""

    root: Path
    fs: int
    table: pd.DataFrame
    statements: pd.DataFrame
    listed_records: int  # rows of ptbxl_database.csv
    missing_records: list[int]  # listed, but the .hea or .dat is absent
    unreadable_records: dict[int, str]  # files present but structurally broken: the problem
    folds_present: list[int]
    folds_absent: list[int]
    _listing: pd.DataFrame = field(repr=False)
    _tasks: dict[str, Task] = field(default_factory=dict, repr=False)
    _has_code: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.table)

    def record_path(self, ecg_id: int) -> Path:
        """The WFDB record path (no suffix) of a listed record at this copy's ``fs``."""
        if ecg_id not in self._listing.index:
            raise KeyError(f"ecg_id {ecg_id} is not listed in {DATABASE_CSV}")
        return self.root / str(self._listing.at[ecg_id, _FILENAME_COLUMN[self.fs]])

    def read(self, ecg_id: int) -> Record:
        """Decode one record; ``metadata`` adds ecg_id, patient_id, strat_fold, age, sex
        (``"Male"``/``"Female"``), scp_codes (code -> likelihood) and dataset ``"ptbxl"``."""
        path = self.record_path(ecg_id)
        if ecg_id in self.unreadable_records:
            raise ECGInputError(path, f"unreadable: {self.unreadable_records[ecg_id]}")
        if ecg_id not in self.table.index:
            raise ECGInputError(path, f"ecg_id {ecg_id}: files missing from this copy")
        record = read_wfdb(path)
        row = self.table.loc[ecg_id]
        age = float(row["age"]) if pd.notna(row["age"]) else None
        sex = _SEX.get(int(row["sex"])) if pd.notna(row["sex"]) else None
        metadata: dict[str, Any] = {
            **record.metadata,
            "dataset": "ptbxl",
            "ecg_id": int(ecg_id),
            "patient_id": int(row["patient_id"]),
            "strat_fold": int(row["strat_fold"]),
            "age": age,
            "sex": sex,
            "scp_codes": dict(row["scp_codes"]),
        }
        return record.replace(metadata=metadata)

    def task(self, name: str) -> Task:
        """One of :data:`TASKS` over the loadable records (records without a label dropped)."""
        if name not in TASKS:
            raise UsageError(f"unknown PTB-XL task {name!r}; expected one of {list(TASKS)}")
        if name not in self._tasks:
            if self._has_code is None:
                self._has_code = _code_matrix(self.table, list(self.statements.index))
            self._tasks[name] = _build_task(name, self.table, self.statements, self._has_code)
        return self._tasks[name]

    def cache(
        self,
        cache_dir: str | Path | None = None,
        workers: int = 1,
        transform: Compose | None = None,
        rebuild: bool = False,
    ) -> ArrayStore:
        """Decode the loadable records once into a memory-mapped cache (reused while the files
        and ``transform`` are unchanged). Index columns: row, ecg_id, patient_id, strat_fold,
        path; index row order is ``table`` order, so a task's rows map through ``ecg_id``."""
        paths = [str(self.root / name) for name in self.table[_FILENAME_COLUMN[self.fs]]]
        columns = pd.DataFrame(
            {
                "ecg_id": self.table.index.to_numpy(dtype=np.int64),
                "patient_id": self.table["patient_id"].to_numpy(dtype=np.int64),
                "strat_fold": self.table["strat_fold"].to_numpy(dtype=np.int64),
                "path": paths,
            }
        )
        return build_cache(
            f"ptbxl{self.fs}",
            paths,
            partial(_read_signal, transform),
            sources=[f"{p}{suffix}" for p in paths for suffix in (".hea", ".dat")],
            columns=columns,
            config={
                "dataset": "ptbxl",
                "fs": self.fs,
                "root": str(self.root.resolve()),
                "transform": transform.config() if transform is not None else None,
            },
            cache_dir=cache_dir,
            workers=workers,
            rebuild=rebuild,
        )

    def summary(self) -> dict[str, Any]:
        """A JSON-able overview: counts per fold and per task split, and what is absent."""
        folds = self.table["strat_fold"].value_counts()
        tasks = {}
        for name in TASKS:
            task = self.task(name)
            tasks[name] = {"labels": len(task.labels), **task.split_sizes()}
        return {
            "records": len(self.table),
            "patients": int(self.table["patient_id"].nunique()),
            "folds": {str(f): int(folds.get(f, 0)) for f in FOLDS},
            "tasks": tasks,
            "missing_records": [int(i) for i in self.missing_records],
            "unreadable_records": [
                {"ecg_id": int(i), "problem": p} for i, p in self.unreadable_records.items()
            ],
            "folds_absent": list(self.folds_absent),
            "fs": self.fs,
            "listed_records": self.listed_records,
            "release_records": RELEASE_RECORDS,
        }


def _read_signal(transform: Compose | None, path: str) -> Record:
    """Module level so that cache workers can pickle it."""
    record = read_wfdb(path)
    return transform(record) if transform is not None else record


def _read_csv(path: Path, **options: Any) -> pd.DataFrame:
    if not path.is_file():
        raise ECGInputError(path, "not found (is this the root of a PTB-XL copy?)")
    try:
        return pd.read_csv(path, **options)
    except Exception as error:
        raise ECGInputError(path, f"unreadable CSV ({error})") from error


def _parse_codes(text: Any, ecg_id: int, source: Path) -> dict[str, float]:
    try:
        codes = ast.literal_eval(text)
    except (ValueError, SyntaxError) as error:
        raise ECGInputError(source, f"ecg_id {ecg_id}: unparsable scp_codes {text!r}") from error
    if not isinstance(codes, dict):
        raise ECGInputError(source, f"ecg_id {ecg_id}: scp_codes is not a dict: {text!r}")
    return codes


def _read_database(root: Path) -> pd.DataFrame:
    path = root / DATABASE_CSV
    table = _read_csv(path, index_col="ecg_id")
    needed = {"patient_id", "age", "sex", "scp_codes", "strat_fold", *_FILENAME_COLUMN.values()}
    if absent := sorted(needed - set(table.columns)):
        raise ECGInputError(path, f"missing column(s) {absent}")
    if table.index.has_duplicates:
        raise ECGInputError(path, "duplicate ecg_id values")
    for column in ("patient_id", "strat_fold"):
        if table[column].isna().any():
            raise ECGInputError(path, f"empty {column} for ecg_id(s) {_ids(table[column].isna())}")
    table.index = table.index.astype(np.int64)
    table["patient_id"] = table["patient_id"].astype(np.int64)
    table["strat_fold"] = table["strat_fold"].astype(np.int64)
    if bad := sorted(set(table["strat_fold"]) - set(FOLDS)):
        raise ECGInputError(path, f"strat_fold values {bad} outside 1..10")
    table["scp_codes"] = [_parse_codes(t, i, path) for i, t in table["scp_codes"].items()]
    return table


def _ids(mask: pd.Series) -> list[int]:
    return [int(i) for i in mask[mask].index[:5]]


def _read_statements(root: Path) -> pd.DataFrame:
    path = root / STATEMENTS_CSV
    statements = _read_csv(path, index_col=0)
    needed = {"diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass"}
    if absent := sorted(needed - set(statements.columns)):
        raise ECGInputError(path, f"missing column(s) {absent}")
    return statements


def _present_files(root: Path, names: pd.Series) -> set[str]:
    """The relative paths (``records100/00000/00001_lr.hea`` ...) that exist: one directory
    listing per folder instead of a stat per file."""
    found: set[str] = set()
    for folder in sorted({os.path.dirname(n) for n in names}):
        try:
            with os.scandir(root / folder) as entries:
                found.update(f"{folder}/{e.name}" for e in entries)
        except (FileNotFoundError, NotADirectoryError):
            continue
    return found


def _label_map(name: str, statements: pd.DataFrame) -> dict[str, list[str]]:
    """scp code -> the task's labels it contributes."""
    diagnostic = statements[statements["diagnostic"] == 1]
    if name == "all":
        return {code: [code] for code in statements.index}
    if name == "diagnostic":
        return {code: [code] for code in diagnostic.index}
    if name in ("subdiagnostic", "superdiagnostic"):
        column = "diagnostic_subclass" if name == "subdiagnostic" else "diagnostic_class"
        return {code: [str(v)] for code, v in diagnostic[column].items() if pd.notna(v)}
    return {code: [code] for code in statements.index[statements[name] == 1]}


def task_labels(root: str | Path, name: str) -> list[str]:
    """A task's labels (sorted) from ``scp_statements.csv`` alone, without loading records."""
    if name not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {name!r}")
    mapping = _label_map(name, _read_statements(Path(root)))
    return sorted({label for targets in mapping.values() for label in targets})


def _code_matrix(table: pd.DataFrame, codes: list[str]) -> np.ndarray:
    """uint8 [records, codes]: 1 where the record's scp_codes has the code (any likelihood)."""
    column = {code: j for j, code in enumerate(codes)}
    rows = [r for r, record_codes in enumerate(table["scp_codes"]) for _ in record_codes]
    cols = [column[c] for record_codes in table["scp_codes"] for c in record_codes]
    matrix = np.zeros((len(table), len(codes)), dtype=np.uint8)
    matrix[rows, cols] = 1
    return matrix


def _build_task(
    name: str, table: pd.DataFrame, statements: pd.DataFrame, has_code: np.ndarray
) -> Task:
    mapping = _label_map(name, statements)
    labels = sorted({label for targets in mapping.values() for label in targets})
    column = {label: j for j, label in enumerate(labels)}
    code_to_label = np.zeros((len(statements), len(labels)), dtype=np.int64)
    for i, code in enumerate(statements.index):
        for target in mapping.get(code, []):
            code_to_label[i, column[target]] = 1
    y = ((has_code @ code_to_label) > 0).astype(np.uint8)
    keep = y.any(axis=1)
    return Task(
        name=name,
        labels=labels,
        ecg_ids=table.index.to_numpy(dtype=np.int64)[keep],
        y=y[keep],
        folds=table["strat_fold"].to_numpy(dtype=np.int64)[keep],
        patient_ids=table["patient_id"].to_numpy(dtype=np.int64)[keep],
    )


def load(root: str | Path, fs: int = 100) -> PTBXL:
    """Load a PTB-XL copy at 100 Hz (``records100``) or 500 Hz (``records500``).

    Checks every listed record's files (structure only, no decoding) and the patient split;
    raises ECGInputError naming the file for an absent/broken CSV, a scp code missing from
    ``scp_statements.csv``, a patient in two splits, or ``fs=500`` without ``records500/``.
    """
    root = Path(root)
    if fs not in _FILENAME_COLUMN:
        raise ECGInputError(root, f"PTB-XL comes at fs=100 or fs=500, not {fs!r}")
    fs = int(fs)
    listing = _read_database(root)
    statements = _read_statements(root)
    used = {code for codes in listing["scp_codes"] for code in codes}
    if unknown := sorted(used - set(statements.index)):
        raise ECGInputError(
            root / DATABASE_CSV, f"scp code(s) {unknown[:10]} not in {STATEMENTS_CSV}"
        )
    check_patient_splits(
        listing["patient_id"].to_numpy(), listing["strat_fold"].to_numpy(), root / DATABASE_CSV
    )
    names = listing[_FILENAME_COLUMN[fs]].astype(str)
    folder = root / f"records{fs}"
    if not folder.is_dir():
        raise ECGInputError(
            folder,
            f"not found: this copy has no {fs} Hz records"
            + (" (records100/ is there: use fs=100)" if (root / "records100").is_dir() else ""),
        )
    present = _present_files(root, names)
    missing: list[int] = []
    unreadable: dict[int, str] = {}
    for ecg_id, name in names.items():
        if f"{name}.hea" not in present or f"{name}.dat" not in present:
            missing.append(int(ecg_id))
        elif (problem := check_wfdb_files(root / name)) is not None:
            unreadable[int(ecg_id)] = problem
    table = listing.drop(index=missing + list(unreadable))
    counts = table["strat_fold"].value_counts()
    return PTBXL(
        root=root,
        fs=fs,
        table=table,
        statements=statements,
        listed_records=len(listing),
        missing_records=missing,
        unreadable_records=unreadable,
        folds_present=[f for f in FOLDS if counts.get(f, 0) > 0],
        folds_absent=[f for f in FOLDS if counts.get(f, 0) == 0],
        _listing=listing,
    )
