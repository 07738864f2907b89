"""Task data from sources other than PTB-XL: PhysioNet/CinC challenge folders and tables.

Both go through the same cache as PTB-XL (:func:`ecgfoundry.data.cache.build_cache`): each
record through ``pipeline_for(spec, crop=False)`` and then cut or zero-padded to a fixed length
(``seconds``, default ``max(spec.seconds, 10)``: a longer record keeps its first ``seconds``).
Records that fail to read are left out and listed in ``description["unreadable_records"]``.

Splits, unless a table names them: seeded and label-stratified
(:func:`ecgfoundry.data.stratify.stratified_order`), 80 % train / 10 % validation / 10 % test,
patient-level when patient ids are known (a patient's records stay in one split), else
record-level (CinC headers carry no patient id). ``fraction`` takes a nested, stratified,
seeded subset of the training split, as for PTB-XL.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from functools import partial
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from ecgfoundry.adapt.data import Split, TaskData, ptbxl_cache, ptbxl_task, source_rate
from ecgfoundry.data import ptbxl
from ecgfoundry.data.cache import ArrayStore, NoReadableRecords, build_cache
from ecgfoundry.data.readers import find_records, read_record
from ecgfoundry.data.record import ECGInputError, Record, canonical_unit
from ecgfoundry.data.snomed import SUPERCLASS_STATEMENTS, describe_code, ptbxl_labels, task_codes
from ecgfoundry.data.stratify import nested_subsets, stratified_order
from ecgfoundry.data.transforms import Compose, CropPad, pipeline_for
from ecgfoundry.engine import RunConfigError
from ecgfoundry.engine import distributed as dist
from ecgfoundry.pretrain.leakage import ptbxl_ecg_id
from ecgfoundry.spec import InputSpec

SHARES = {"val": 0.1, "test": 0.1, "train": 0.8}  # cut in this order from the stratified order
MIN_POSITIVES = 10  # CinC default labels: codes with at least this many positive records
MIN_SECONDS = 10.0  # default cached record length: max(spec.seconds, MIN_SECONDS)
TABLE_COLUMNS = ("record", "patient_id", "split", "fs", "leads", "units")  # the rest: labels
SPLIT_NAMES = ("train", "val", "test")

# (path, fs, leads, units) for read_record; fs, leads and units (not mV) only for .npy/.csv
Item = tuple[str, float | None, tuple[str, ...] | None, str]


def _read_prepared(transform: Compose, item: Item) -> Record:
    """Module level so that cache workers can pickle it."""
    path, fs, leads, units = item
    arrays = {"units": units} if units != "mV" else {}
    return transform(read_record(path, fs=fs, leads=leads, **arrays))


def _companions(path: str) -> list[str]:
    """The existing files a record is read from (they key the cache)."""
    base = Path(path)
    base = base.with_suffix("") if base.suffix.lower() in (".hea", ".dat", ".mat") else base
    found = {f"{base}{suffix}" for suffix in (".hea", ".dat", ".mat")} | {path}
    return sorted(f for f in found if Path(f).is_file())


def record_seconds(spec: InputSpec, seconds: float | None) -> float:
    """The cached record length: ``seconds``, by default ``max(spec.seconds, 10)``."""
    seconds = max(spec.seconds, MIN_SECONDS) if seconds is None else float(seconds)
    if not seconds >= spec.seconds:
        raise ValueError(f"seconds={seconds} is shorter than the model's input ({spec.seconds} s)")
    return seconds


def record_cache(
    name: str,
    source: Path,
    items: list[Item],
    ids: list[str],
    spec: InputSpec,
    seconds: float,
    *,
    cache_dir: str | Path | None = None,
    workers: int = 1,
) -> ArrayStore:
    """The cache of ``items`` at ``spec``, cut or padded to ``seconds`` (built on first use,
    by one process when several run). Index columns: row, record (the id), path."""
    transform = Compose((*pipeline_for(spec, crop=False).transforms, CropPad(seconds)))
    listing = json.dumps([[path, fs, leads, *[units] * (units != "mV")]  # mV: keyed as before
                          for path, fs, leads, units in items])  # fmt: skip
    config = {
        "dataset": name,
        "source": str(source.resolve()),
        "records": hashlib.sha256(listing.encode()).hexdigest(),
        "transform": transform.config(),
    }
    columns = pd.DataFrame({"record": ids, "path": [item[0] for item in items]})

    def build() -> ArrayStore:
        return build_cache(name, items, partial(_read_prepared, transform),
                           sources=[f for item in items for f in _companions(item[0])],
                           columns=columns, config=config, cache_dir=cache_dir,
                           workers=workers)  # fmt: skip

    if dist.is_main():  # one process builds the cache; the others wait, then open it
        try:
            build()
        except NoReadableRecords as error:
            try:
                _read_prepared(transform, items[0])
            except ECGInputError as first:
                raise ECGInputError(source, f"none of its {len(items)} records could be "
                                    f"read; the first: {first}") from error  # fmt: skip
            raise
    dist.barrier()
    return build()


def _unreadable(store: ArrayStore) -> list[dict[str, str]]:
    return [{"record": str(e["record"]), "problem": str(e["problem"])}
            for e in store.meta.get("unreadable", [])]  # fmt: skip


def _nearest_end(ends: np.ndarray, target: float) -> int:
    """The unit end (cumulative record count) nearest to ``target`` records."""
    return int(ends[np.argmin(np.abs(ends - math.floor(target + 0.5)))])


def split_records(
    y: np.ndarray, seed: int, groups: np.ndarray | None = None, *, source: str | Path
) -> dict[str, np.ndarray]:
    """Seeded, label-stratified train/val/test indices (sorted) at :data:`SHARES`: validation
    is the first 10 % of the stratified order, test the next 10 %, training the rest. With
    ``groups`` (patient ids) a group's records stay together."""
    order = stratified_order(y, seed, groups)
    n = len(order)
    units = order if groups is None else np.asarray(groups)[order]
    ends = np.flatnonzero(np.append(units[1:] != units[:-1], True)) + 1
    val_end = _nearest_end(ends, max(1.0, SHARES["val"] * n))
    test_end = max(val_end, _nearest_end(ends, (SHARES["val"] + SHARES["test"]) * n))
    if test_end >= n:
        unit = "patients" if groups is not None else "records"
        raise ECGInputError(source, f"{len(ends)} {unit} are too few to split into training "
                            "and validation records")  # fmt: skip
    parts = {"train": order[test_end:], "val": order[:val_end], "test": order[val_end:test_end]}
    return {name: np.sort(index) for name, index in parts.items()}


def _task_data(
    store: ArrayStore,
    y: np.ndarray,
    labels: list[str],
    splits: dict[str, np.ndarray],
    groups: np.ndarray | None,
    spec: InputSpec,
    *,
    fraction: float,
    seed: int,
    description: dict[str, Any],
) -> TaskData:
    """A TaskData over the cache rows: ``y``, ``groups`` and ``splits`` index the cache rows."""
    train = splits["train"]
    train_groups = None if groups is None else groups[train]
    kept = nested_subsets(y[train], [fraction], seed, groups=train_groups)[float(fraction)]
    splits = {**splits, "train": train[kept]}
    rows = store.index["row"].to_numpy(dtype=np.int64)
    ids = store.index["record"].to_numpy(dtype=str)

    def split(index: np.ndarray) -> Split:
        return Split(store.signals, rows[index], y[index].astype(np.float32), ids[index])

    return TaskData(
        labels=labels,
        window=spec.samples,
        train=split(splits["train"]),
        val=split(splits["val"]),
        test=split(splits["test"]) if len(splits["test"]) else None,
        description={
            **description,
            "labels": labels,
            "fraction": fraction,
            "seed": seed,
            "records": {name: len(index) for name, index in splits.items()},
            "unreadable_records": _unreadable(store),
            "cache": str(store.path),
        },
    )


def header_dx(path: Path) -> list[str]:
    """The SNOMED-CT codes of a challenge header's ``#Dx:`` line (none if unreadable)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []  # the cache build reports the record as unreadable
    for line in text.splitlines():
        key, colon, value = line[1:].partition(":")
        if line.startswith("#") and colon and key.strip().lower() == "dx":
            return [code.strip() for code in value.split(",") if code.strip()]
    return []


def _names(task: str) -> list[str]:
    return list(dict.fromkeys(name.strip() for name in task.split(",") if name.strip()))


def _cinc_records(
    root: Path, spec: InputSpec, seconds: float | None, cache_dir: Any, workers: int,
    keep: Any = None,
) -> tuple[ArrayStore, list[list[str]], int]:  # fmt: skip
    """The challenge folder's cached records (those whose name ``keep`` accepts), their
    SNOMED-CT codes in cache order, and how many records ``keep`` left out."""
    headers = [p for p in find_records(root) if p.suffix.lower() == ".hea"]
    if not headers:
        raise ECGInputError(root, "no .hea records below this folder (a PhysioNet/CinC "
                            "challenge folder holds .hea + .mat pairs)")  # fmt: skip
    kept = [p for p in headers if keep is None or keep(p.stem)]
    if not kept:
        raise ECGInputError(root, f"all {len(headers)} records were left out")
    ids = [p.relative_to(root).with_suffix("").as_posix() for p in kept]
    dx = dict(zip(ids, (header_dx(p) for p in kept), strict=True))
    store = record_cache("cinc", root, [(str(p), None, None, "mV") for p in kept], ids, spec,
                         record_seconds(spec, seconds), cache_dir=cache_dir,
                         workers=workers)  # fmt: skip
    return store, [dx[str(record)] for record in store.index["record"]], len(headers) - len(kept)


def cinc_task_codes(task: str) -> list[str]:
    """A CinC task's comma-separated labels as SNOMED-CT codes (the challenges' abbreviations
    mapped to theirs); PTB-XL's superclass names are refused, since two of them are challenge
    abbreviations of something else ("CD": cardiac dysrhythmia) or of one code only ("MI")."""
    names = _names(task)
    if clash := [n for n in names if n.upper() in {*SUPERCLASS_STATEMENTS, "NORM"}]:
        raise RunConfigError(f"task {', '.join(clash)}: a PTB-XL superclass name; a CinC task "
                             "names SNOMED-CT codes or the challenges' abbreviations (its CD is "
                             "698247007 cardiac dysrhythmia, its MI the one code 164865005): "
                             "give the codes, or score PTB-XL labels on CinC data with the "
                             "benchmark's transfer")  # fmt: skip
    labels = task_codes(names)
    if unknown := [n for n in labels if not n.isdigit()]:
        raise RunConfigError(f"task {', '.join(unknown)}: neither SNOMED-CT codes nor "
                             "abbreviations of the challenges' codes (AF, IAVB, ...: "
                             "ecgfoundry/data/mappings/snomed_names.csv)")  # fmt: skip
    return labels


def cinc_task(
    root: str | Path,
    spec: InputSpec,
    *,
    task: str | None = None,
    min_positives: int = MIN_POSITIVES,
    fraction: float = 1.0,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    workers: int = 1,
    seconds: float | None = None,
) -> TaskData:
    """A PhysioNet/CinC 2020/2021 challenge folder (``*.hea`` + ``.mat``, searched below
    ``root``) as a multi-label task over SNOMED-CT codes (``#Dx``): the comma-separated codes of
    ``task`` (or the challenges' abbreviations of them, e.g. ``AF,IAVB``), else every code with
    at least ``min_positives`` positive readable records (sorted). Record-level 80/10/10 splits
    (the headers carry no patient id)."""
    root = Path(root)
    labels = None if task is None else cinc_task_codes(task)  # checked before reading
    store, codes, _ = _cinc_records(root, spec, seconds, cache_dir, workers)
    counts = pd.Series([c for record_codes in codes for c in set(record_codes)]).value_counts()
    if labels is not None:
        if absent := [describe_code(code) for code in labels if code not in counts.index]:
            frequent = [f"{describe_code(c)}: {n}" for c, n in counts.iloc[:10].items()]
            raise ECGInputError(root, f"no readable record has SNOMED-CT code(s) {absent}; the "
                                f"most frequent (records): {frequent}")  # fmt: skip
    else:
        labels = sorted(str(code) for code in counts.index[counts >= min_positives])
        if not labels:
            raise ECGInputError(root, f"no SNOMED-CT code has {min_positives} or more positive "
                                "records: lower min_positives or name codes with task")  # fmt: skip
    column = {code: j for j, code in enumerate(labels)}
    y = np.zeros((len(codes), len(labels)), dtype=np.uint8)
    for i, record_codes in enumerate(codes):
        y[i, [column[c] for c in record_codes if c in column]] = 1
    return _task_data(
        store, y, labels, split_records(y, seed, source=root), None, spec,
        fraction=fraction, seed=seed,
        description={"dataset": "cinc", "root": str(root.resolve()), "task": task,
                     "min_positives": None if task is not None else min_positives,
                     "seconds": record_seconds(spec, seconds), "split": "record",
                     "shares": SHARES},
    )  # fmt: skip


def cinc_ptbxl_task(
    root: str | Path,
    spec: InputSpec,
    labels: list[str],
    *,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    workers: int = 1,
    seconds: float | None = None,
) -> TaskData:
    """A PhysioNet/CinC challenge folder labelled with PTB-XL ``labels`` (superclasses or SCP
    statements) through the SNOMED-CT mapping (:mod:`ecgfoundry.data.snomed`; an unmapped
    label raises, naming it), for cross-dataset evaluation. The challenge's own copies of
    PTB-XL records (``HR00001``...) are left out: they are PTB-XL's training and test records.
    Record-level 80/10/10 splits."""
    root = Path(root)

    def not_ptbxl(name: str) -> bool:
        return ptbxl_ecg_id(name) is None

    store, codes, left_out = _cinc_records(root, spec, seconds, cache_dir, workers, not_ptbxl)
    y = ptbxl_labels(codes, labels)
    return _task_data(
        store, y, list(labels), split_records(y, seed, source=root), None, spec, fraction=1.0,
        seed=seed,
        description={"dataset": "cinc", "root": str(root.resolve()), "labels": "ptbxl",
                     "ptbxl_records_left_out": left_out, "seconds": record_seconds(spec, seconds),
                     "split": "record", "shares": SHARES},
    )  # fmt: skip


def _lines(mask: pd.Series | np.ndarray) -> str:
    """CSV line numbers (the header is line 1) of the first rows where ``mask`` holds."""
    rows = np.flatnonzero(np.asarray(mask))
    shown = ", ".join(str(r + 2) for r in rows[:5])
    return f"line{'s' if len(rows) > 1 else ''} {shown}" + (" ..." if len(rows) > 5 else "")


def _read_table(csv: Path) -> pd.DataFrame:
    if not csv.is_file():
        raise ECGInputError(csv, "table not found")
    try:
        table = pd.read_csv(csv, dtype={name: str for name in ("record", "patient_id", "split",
                                                                  "leads", "units")})  # fmt: skip
    except Exception as error:
        raise ECGInputError(csv, f"unreadable CSV ({error})") from error
    if "record" not in table.columns:
        raise ECGInputError(csv, f"no 'record' column (columns: {list(table.columns)}); a table "
                            "has record, one 0/1 column per label, and optionally patient_id, "
                            "split (train/val/test), fs, leads and units")  # fmt: skip
    if table.empty:
        raise ECGInputError(csv, "the table has no rows")
    table["record"] = table["record"].str.strip()
    if (empty := table["record"].isna() | (table["record"] == "")).any():
        raise ECGInputError(csv, f"empty 'record' at {_lines(empty)}")
    if (twice := table["record"].duplicated()).any():
        raise ECGInputError(csv, f"records listed twice at {_lines(twice)}")
    return table


def _table_labels(csv: Path, table: pd.DataFrame, task: str | None) -> tuple[list[str], np.ndarray]:
    present = [str(c) for c in table.columns if c not in TABLE_COLUMNS]
    labels = _names(task) if task is not None else present
    if not labels:
        raise ECGInputError(csv, f"no label columns: every column besides {list(TABLE_COLUMNS)} "
                            "is a 0/1 label")  # fmt: skip
    if unknown := [name for name in labels if name not in present]:
        raise ECGInputError(csv, f"label column(s) {unknown} not in the table (labels: {present})")
    y = np.zeros((len(table), len(labels)), dtype=np.uint8)
    for j, name in enumerate(labels):
        values = pd.to_numeric(table[name], errors="coerce")
        if (bad := ~values.isin((0, 1))).any():
            shown = table[name][bad].head(3).tolist()
            raise ECGInputError(csv, f"label column {name!r} has values other than 0/1 "
                                f"({shown} at {_lines(bad)})")  # fmt: skip
        y[:, j] = values.to_numpy(dtype=np.uint8)
    return labels, y


def _table_items(csv: Path, table: pd.DataFrame) -> list[Item]:
    paths = [Path(p) if Path(p).is_absolute() else csv.parent / p for p in table["record"]]
    missing = [not (p.exists() or (not p.suffix and p.with_suffix(".hea").exists())) for p in paths]
    if any(missing):
        shown = [str(p) for p, gone in zip(paths, missing, strict=True) if gone][:3]
        raise ECGInputError(csv, f"record file(s) not found at {_lines(missing)}: {shown}")
    fs = pd.to_numeric(table.get("fs", pd.Series(np.nan, table.index)), errors="coerce")
    if "fs" in table and (bad := table["fs"].notna() & ~(fs > 0)).any():
        raise ECGInputError(csv, f"'fs' must be a positive number (Hz) at {_lines(bad)}")
    suffixes = pd.Series([p.suffix.lower() for p in paths], index=table.index)
    if (unknown := suffixes.isin((".npy", ".csv")) & fs.isna()).any():
        raise ECGInputError(csv, f".npy/.csv records carry no sampling rate: give it in an 'fs' "
                            f"column ({_lines(unknown)})")  # fmt: skip
    leads = table.get("leads", pd.Series(None, table.index, dtype=object))
    if (unnamed := (suffixes == ".npy") & leads.isna()).any():
        raise ECGInputError(csv, f".npy records carry no lead names: give them in a 'leads' "
                            f"column, e.g. \"I,II,V1\" ({_lines(unnamed)})")  # fmt: skip
    units = table.get("units", pd.Series(None, table.index, dtype=object)).fillna("mV")
    units = pd.Series([canonical_unit(u, f"{csv}, line {row + 2}, 'units'")
                       for row, u in enumerate(units)], index=table.index)  # fmt: skip
    if (stated := (units != "mV") & ~suffixes.isin((".npy", ".csv"))).any():
        raise ECGInputError(csv, f"'units' is for .npy/.csv records (other files state their "
                            f"own) at {_lines(stated)}")  # fmt: skip
    return [
        (str(p), None if math.isnan(f) else float(f),
         None if pd.isna(names) else tuple(re.split(r"[,\s]+", names.strip())), unit)
        for p, f, names, unit in zip(paths, fs, leads, units, strict=True)
    ]  # fmt: skip


def _given_splits(csv: Path, table: pd.DataFrame, groups: np.ndarray | None) -> np.ndarray:
    names = table["split"].fillna("").str.strip().to_numpy(dtype=object)
    if (unknown := ~pd.Series(names).isin(SPLIT_NAMES)).any():
        shown = sorted({str(v) for v in names[unknown.to_numpy()]})[:5]
        raise ECGInputError(csv, f"unknown split name(s) {shown} at {_lines(unknown)}; "
                            f"expected {list(SPLIT_NAMES)}")  # fmt: skip
    if absent := [name for name in ("train", "val") if name not in set(names)]:
        raise ECGInputError(csv, f"the 'split' column has no {' or '.join(absent)} records")
    if groups is not None:
        spread = pd.DataFrame({"patient": groups, "split": names}).groupby("patient")["split"]
        if (crossing := spread.nunique() > 1).any():
            raise ECGInputError(csv, f"patient(s) {list(crossing.index[crossing][:5])} have "
                                "records in more than one split")  # fmt: skip
    return names


def _table_store(
    csv: Path,
    table: pd.DataFrame,
    spec: InputSpec,
    seconds: float,
    cache_dir: str | Path | None,
    workers: int,
) -> ArrayStore:
    """The cache of the records ``table`` (read from ``csv``) lists."""
    return record_cache("table", csv, _table_items(csv, table), table["record"].tolist(), spec,
                        seconds, cache_dir=cache_dir, workers=workers)  # fmt: skip


def cinc_cache(
    root: str | Path,
    spec: InputSpec,
    *,
    seconds: float | None = None,
    cache_dir: str | Path | None = None,
    workers: int = 1,
) -> ArrayStore:
    """The cache :func:`cinc_task` trains from: every readable record below ``root``."""
    return _cinc_records(Path(root), spec, seconds, cache_dir, workers)[0]


def table_cache(
    csv: str | Path,
    spec: InputSpec,
    *,
    seconds: float | None = None,
    cache_dir: str | Path | None = None,
    workers: int = 1,
) -> ArrayStore:
    """The cache :func:`table_task` trains from: the records the table lists."""
    csv = Path(csv)
    return _table_store(csv, _read_table(csv), spec, record_seconds(spec, seconds), cache_dir,
                        workers)  # fmt: skip


def table_task(
    csv: str | Path,
    spec: InputSpec,
    *,
    task: str | None = None,
    fraction: float = 1.0,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    workers: int = 1,
    seconds: float | None = None,
) -> TaskData:
    """A user's table as a multi-label task. Columns: ``record`` (a record file, relative to
    the CSV's folder or absolute; any format ``read_record`` reads), one 0/1 column per label
    (``task``: a comma-separated choice of them), and optionally ``patient_id``, ``split``
    (train/val/test; else seeded 80/10/10 splits, patient-level with ``patient_id``), ``fs``
    (Hz; needed for .npy/.csv records) and ``leads`` (e.g. "I,II,V1"; needed for .npy; names
    the channels of a file that names none as a lead)."""
    csv = Path(csv)
    table = _read_table(csv)
    labels, y_all = _table_labels(csv, table, task)
    groups_all = None
    if "patient_id" in table:
        groups_all = table["patient_id"].str.strip().to_numpy(dtype=object)
        if (empty := pd.isna(groups_all) | (groups_all == "")).any():
            raise ECGInputError(csv, f"empty 'patient_id' at {_lines(empty)}")
    given = _given_splits(csv, table, groups_all) if "split" in table else None
    seconds = record_seconds(spec, seconds)
    store = _table_store(csv, table, spec, seconds, cache_dir, workers)
    position = dict(zip(table["record"], range(len(table)), strict=True))
    kept = np.array([position[str(r)] for r in store.index["record"]], dtype=np.int64)
    y = y_all[kept]
    groups = None if groups_all is None else groups_all[kept].astype(str)
    if given is not None:
        splits = {name: np.flatnonzero(given[kept] == name) for name in SPLIT_NAMES}
        if not len(splits["train"]) or not len(splits["val"]):
            raise ECGInputError(csv, "no readable training or validation record is left")
    else:
        splits = split_records(y, seed, groups, source=csv)
    level = "given" if given is not None else "patient" if groups is not None else "record"
    shares = None if given is not None else SHARES
    return _task_data(
        store, y, labels, splits, groups, spec, fraction=fraction, seed=seed,
        description={"dataset": "table", "table": str(csv.resolve()), "task": task,
                     "seconds": seconds, "split": level, "shares": shares},
    )  # fmt: skip


def check_prepared(data: TaskData, spec: InputSpec) -> None:
    """Refuse a prepared TaskData whose windows or leads are not the model's input: it would
    train and be scored on inputs the model was not made for."""
    if data.window != spec.samples:
        raise RunConfigError(
            f"the TaskData's windows are {data.window} samples; this model takes {spec.samples} "
            f"({spec.seconds:g} s at {spec.fs:g} Hz): build it with the model's spec"
        )  # fmt: skip
    for name in ("train", "val", "test"):
        split = getattr(data, name)
        if split is None:
            continue
        shape = split.signals.shape
        if shape[1] != len(spec.leads) or shape[-1] < data.window:
            raise RunConfigError(
                f"the TaskData's {name} signals are {shape[1]} leads x {shape[-1]} samples; this "
                f"model takes {len(spec.leads)} leads x {spec.samples} samples"
            )  # fmt: skip


def task_data(
    data: str | Path | TaskData,
    spec: InputSpec,
    *,
    root: str | Path | None = None,
    task: str | None = None,
    fraction: float = 1.0,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    workers: int = 1,
) -> TaskData:
    """The task data ``finetune`` trains on: ``"ptbxl"`` (``root`` + ``task``), ``"cinc"``
    (``root``; ``task``: optional codes), a ``.csv`` table (``task``: optional label columns),
    or a prepared :class:`TaskData` (returned as it is, once its windows and leads are checked
    against ``spec``)."""
    if isinstance(data, TaskData):
        if root is not None or task is not None or fraction != 1.0:
            raise RunConfigError("root, task and fraction do not apply to a prepared TaskData "
                                 "(subset it before passing it)")  # fmt: skip
        check_prepared(data, spec)
        return data
    name = str(data)
    kind = source_kind(name, root)
    if kind == "ptbxl":
        if task is None:
            raise RunConfigError("PTB-XL needs task (e.g. superdiagnostic)")
        return ptbxl_task(root, task, spec, fraction=fraction, seed=seed, cache_dir=cache_dir,
                          workers=workers)  # fmt: skip
    if kind == "cinc":
        return cinc_task(root, spec, task=task, fraction=fraction, seed=seed,
                         cache_dir=cache_dir, workers=workers)  # fmt: skip
    return table_task(name, spec, task=task, fraction=fraction, seed=seed, cache_dir=cache_dir,
                      workers=workers)  # fmt: skip


SourceKind = Literal["ptbxl", "cinc", "table"]
SOURCE_KINDS: tuple[str, ...] = get_args(SourceKind)  # what finetune and benchmark train on


def source_kind(data: str, root: str | Path | None) -> SourceKind:
    """Which source ``data`` names (``ptbxl``, ``cinc`` or a ``.csv`` table), checking that
    ``root`` is given where the source needs it and not where it does not."""
    if data == "ptbxl" and root is None:
        raise RunConfigError("PTB-XL needs root (--root, the copy's folder)")
    if data == "cinc" and root is None:
        raise RunConfigError("cinc needs --root (root): the challenge folder")
    if data in ("ptbxl", "cinc"):
        return data
    if data.lower().endswith(".csv"):
        if root is not None:
            raise RunConfigError(f"{data} is a table: --root does not apply (root= in Python); "
                                 "its record paths are relative to the table's folder")  # fmt: skip
        return "table"
    raise RunConfigError(f"data {data!r}: expected ptbxl, cinc, a .csv table or (in Python) a "
                         "TaskData")  # fmt: skip


def source_cache(
    data: str,
    spec: InputSpec,
    *,
    root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    workers: int = 1,
) -> tuple[ArrayStore, list[str]]:
    """The cache :func:`task_data` trains from for ``data`` (built on first use), and the
    records the source lists that it left out (absent, damaged or unreadable)."""
    kind = source_kind(data, root)
    if kind == "ptbxl":
        db = ptbxl.load(root, fs=source_rate(root, spec))
        store = ptbxl_cache(root, spec, db=db, cache_dir=cache_dir, workers=workers)
        undecoded = [db.table.index[e["item"]] for e in store.meta.get("unreadable", [])]
        return store, [*map(str, db.missing_records), *map(str, db.unreadable_records),
                       *map(str, undecoded)]  # fmt: skip
    if kind == "cinc":
        store = cinc_cache(root, spec, cache_dir=cache_dir, workers=workers)
    else:
        store = table_cache(data, spec, cache_dir=cache_dir, workers=workers)
    return store, [str(e["record"]) for e in store.meta.get("unreadable", [])]
