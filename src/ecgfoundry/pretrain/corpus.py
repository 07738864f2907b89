"""The pretraining corpus: records of several sources prepared for one model, in one cache.

Sources (:class:`CorpusSource`): ``ptbxl`` (by folds; 1-8 by default), ``cinc`` (a
PhysioNet/CinC challenge folder), ``mitdb`` and ``vfdb`` (the record is the subject; mitdb 202
is subject 201), ``wfdb`` (any WFDB folder: its ``RECORDS`` file, else every ``.hea``) and
``folder`` (a user's folder of any files :func:`ecgfoundry.data.readers.read_record` reads).
Record ids and patient ids follow :mod:`ecgfoundry.pretrain.leakage`.

**PTB-XL folds 9 and 10 never enter a corpus by default**: they are the benchmark's validation
and test folds, and a backbone that saw them leaks into every PTB-XL evaluation. Asking for
them raises unless the source says ``allow_evaluation_folds=True``. For the same reason the
other sources (``cinc``, ``wfdb``, ``folder``) leave out PTB-XL records met outside PTB-XL: the
challenges' copies (``HR00001`` ...) and PTB-XL's own files (``00001_lr``, ``00001_hr``), of
all folds, since such a folder does not say which fold a record comes from, unless the source
says ``allow_evaluation_folds=True``; include PTB-XL through a ``ptbxl`` source instead.

Preparation is the one path of :func:`ecgfoundry.data.transforms.pipeline_for`: each record
is read once, its leads selected, resampled, filtered and normalised **over the whole record**
(``crop=False``), then cut into consecutive, non-overlapping **segments** of ``seconds``
(default ``max(spec.seconds, 10)``). A record shorter than one segment becomes one zero-padded
segment; a remainder shorter than a segment is dropped; ``max_segments`` keeps only the first
segments of each record (1: the first ``seconds``, as fine-tuning caches do). Segmenting keeps
all of a 30-minute Holter record (mitdb, vfdb) instead of its first 10 s, and gives contrastive
objectives such as CMSC several segments of one patient to pair. Each segment is one row of
the cache; a pretraining objective takes random crops of the model's input length from it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ecgfoundry.adapt.data import Split
from ecgfoundry.data import ptbxl
from ecgfoundry.data.arrhythmia import SAME_SUBJECT, record_names
from ecgfoundry.data.cache import ArrayStore, NoReadableRecords, build_cache
from ecgfoundry.data.readers import find_records, read_record
from ecgfoundry.data.record import ECGInputError, Record, canonical_lead_name
from ecgfoundry.data.transforms import Compose, MissingLeads, SelectLeads, pipeline_for
from ecgfoundry.engine import distributed as dist
from ecgfoundry.errors import UsageError
from ecgfoundry.pretrain.leakage import file_record_id, ptbxl_ecg_id, record_files, record_id
from ecgfoundry.spec import InputSpec

SourceKind = Literal["ptbxl", "cinc", "mitdb", "vfdb", "wfdb", "folder"]
KINDS: tuple[str, ...] = ("ptbxl", "cinc", "mitdb", "vfdb", "wfdb", "folder")
TRAINING_FOLDS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
EVALUATION_FOLDS: tuple[int, ...] = (9, 10)
PTBXL_SECONDS = 10.0  # every PTB-XL record
MIN_SECONDS = 10.0  # default segment length: max(spec.seconds, MIN_SECONDS)


@dataclass(frozen=True)
class CorpusSource:
    """One source of a corpus.

    ``name``: the dataset name in record ids (default: the kind; for ``wfdb`` the folder's
    name). ``folds``: PTB-XL only. ``allow_evaluation_folds``: PTB-XL's folds 9-10, or a
    non-PTB-XL source's PTB-XL records (``HR00001``, ``00001_lr``). ``rename_leads`` maps a source's
    lead names to the model's (e.g. ``{"MLII": "II"}``); ``missing_leads="zero"`` fills leads
    the model needs and the record lacks with zeros (two-lead Holter records for a 12-lead
    model) instead of leaving the record out. ``fs``/``leads``: for ``.npy``/``.csv`` files of
    a ``folder`` (as :func:`read_record` takes them).
    """

    kind: SourceKind
    root: str | Path
    name: str | None = None
    folds: tuple[int, ...] = TRAINING_FOLDS
    allow_evaluation_folds: bool = False
    rename_leads: Mapping[str, str] = field(default_factory=dict)
    missing_leads: MissingLeads = "raise"
    fs: float | None = None
    leads: tuple[str, ...] | None = None

    @property
    def dataset(self) -> str:
        if self.name:
            return self.name
        return Path(self.root).name if self.kind == "wfdb" else self.kind

    def describe(self) -> dict[str, Any]:
        out = {"kind": self.kind, "root": str(Path(self.root).resolve()), "name": self.dataset,
               "rename_leads": dict(self.rename_leads),
               "missing_leads": self.missing_leads}  # fmt: skip
        if self.kind == "ptbxl":
            out["folds"] = sorted(self.folds)
        if self.kind in ("cinc", "wfdb", "folder"):
            out["ptbxl_copies"] = "kept" if self.allow_evaluation_folds else "left out"
        if self.kind == "folder":
            out |= {"fs": self.fs, "leads": list(self.leads) if self.leads else None}
        return out


@dataclass(frozen=True)
class RenameLeads:
    """Rename leads (any spelling) before the model's lead selection."""

    pairs: tuple[tuple[str, str], ...]

    def __call__(self, record: Record) -> Record:
        names = {canonical_lead_name(a) or a: canonical_lead_name(b) or b for a, b in self.pairs}
        return record.replace(leads=tuple(names.get(lead, lead) for lead in record.leads))


@dataclass(frozen=True)
class _Planned:
    """A record to read: where, its stable id and patient, and its length in seconds."""

    path: str
    record: str
    patient: str | None
    seconds: float | None


@dataclass(frozen=True)
class Corpus:
    """Cache rows (one per segment) with their record, patient and dataset.

    ``patient_ids`` pair segments of one person: the patient where the source names one, else
    the record (``patient_known`` tells which). :meth:`split` gives the
    :class:`~ecgfoundry.adapt.data.Split` that loaders and objectives read;
    :meth:`records` the entries of the run's manifest."""

    signals: np.ndarray  # [rows of the cache, leads, samples] (memmap)
    rows: np.ndarray  # int [R]: the cache rows of this corpus
    ids: np.ndarray  # [R] record ids (ptbxl:21, mitdb:100, ...)
    segments: np.ndarray  # int [R]: which segment of its record
    patient_ids: np.ndarray  # [R] the patient, else the record id
    patient_known: np.ndarray  # bool [R]
    dataset: np.ndarray  # [R] dataset name
    description: dict[str, Any]

    def __len__(self) -> int:
        return len(self.rows)

    def select(self, index: np.ndarray) -> Corpus:
        """The rows at ``index`` (integer indices or a boolean mask)."""
        return dataclasses.replace(
            self, rows=self.rows[index], ids=self.ids[index], segments=self.segments[index],
            patient_ids=self.patient_ids[index], patient_known=self.patient_known[index],
            dataset=self.dataset[index],
        )  # fmt: skip

    def holdout(self, share: float, seed: int = 0) -> tuple[Corpus, Corpus]:
        """(rest, held out): about ``share`` of the rows, whole patients, drawn with ``seed``."""
        if not 0 < share < 1:
            raise ValueError(f"share must be in (0, 1), got {share}")
        patients, counts = np.unique(self.patient_ids, return_counts=True)
        order = np.random.default_rng(seed).permutation(len(patients))
        taken = np.cumsum(counts[order]) <= max(1, round(share * len(self)))
        taken[0] = True
        held = np.isin(self.patient_ids, patients[order[taken]])
        if held.all():
            raise ValueError(f"one patient holds all {len(self)} rows: nothing is left")
        return self.select(~held), self.select(held)

    def split(self) -> Split:
        """The rows as a label-free :class:`Split` (``y`` has no columns)."""
        y = np.zeros((len(self), 0), dtype=np.float32)
        return Split(self.signals, self.rows, y, self.ids)

    def records(self) -> list[dict[str, str | None]]:
        """One manifest entry per record: ``{"id", "patient"}`` (None when not known)."""
        first = np.unique(self.ids, return_index=True)[1]
        return [{"id": str(self.ids[i]),
                 "patient": str(self.patient_ids[i]) if self.patient_known[i] else None}
                for i in first]  # fmt: skip


def _header_seconds(path: Path) -> float | None:
    """A WFDB header's length in seconds (its record line), or None if it does not say."""
    try:
        with path.open(errors="replace") as handle:
            line = next(t for t in handle if t.strip() and not t.startswith("#"))
        fields = line.split()
        fs = float(fields[2].split("/")[0].split("(")[0])
        return int(fields[3]) / fs if fs > 0 else None
    except (OSError, StopIteration, IndexError, ValueError):
        return None  # the cache build reports an unreadable record


def _file_seconds(path: Path, source: CorpusSource) -> float | None:
    if path.suffix.lower() == ".hea":
        return _header_seconds(path)
    try:
        return read_record(path, fs=source.fs, leads=source.leads).seconds
    except ECGInputError:
        return None


def _plan_ptbxl(source: CorpusSource, spec: InputSpec) -> list[_Planned]:
    root = Path(source.root)
    if bad := sorted(set(source.folds) - set(ptbxl.FOLDS)):
        raise UsageError(f"{root}: PTB-XL folds {bad} do not exist (folds are 1-10)")
    if (asked := sorted(set(source.folds) & set(EVALUATION_FOLDS))) and not (
        source.allow_evaluation_folds
    ):
        raise UsageError(
            f"{root}: PTB-XL fold(s) {asked} are the benchmark's validation/test folds; a "
            "backbone pretrained on them leaks into every PTB-XL evaluation. Leave them out, "
            "or pass allow_evaluation_folds=True to include them on purpose"
        )
    fs = 500 if spec.fs > 100 and (root / "records500").is_dir() else 100
    db = ptbxl.load(root, fs=fs)
    table = db.table[db.table["strat_fold"].isin(source.folds)]
    if table.empty:
        raise ECGInputError(root, f"no records in folds {sorted(source.folds)}; this copy has "
                            f"folds {db.folds_present}")  # fmt: skip
    return [
        _Planned(str(db.record_path(int(i))), record_id(source.dataset, int(i)),
                 record_id(source.dataset, int(p)), PTBXL_SECONDS)
        for i, p in zip(table.index, table["patient_id"], strict=True)
    ]  # fmt: skip


def _plan(source: CorpusSource, spec: InputSpec) -> list[_Planned]:
    """The records of one source, in a stable order."""
    if source.kind not in KINDS:
        raise UsageError(f"unknown corpus source kind {source.kind!r}; expected one of {KINDS}")
    if source.kind == "ptbxl":
        return _plan_ptbxl(source, spec)
    root, name = Path(source.root), source.dataset
    if not root.is_dir():
        raise ECGInputError(root, f"not a folder (a {source.kind} source is a folder)")

    def wanted(record: str) -> bool:  # PTB-XL records enter through a ptbxl source only
        return source.allow_evaluation_folds or ptbxl_ecg_id(record.rsplit("/", 1)[-1]) is None

    if source.kind == "folder":
        files = [p for p in find_records(root) if wanted(p.name.split(".", 1)[0])]
        return [_Planned(str(p), file_record_id(name, root, p), None, _file_seconds(p, source))
                for p in files]  # fmt: skip
    if source.kind == "cinc":
        headers = [p for p in find_records(root) if p.suffix.lower() == ".hea" and wanted(p.stem)]
        return [_Planned(str(p), record_id(name, p.relative_to(root).with_suffix("").as_posix()),
                         None, _header_seconds(p)) for p in headers]  # fmt: skip
    same = SAME_SUBJECT.get(source.kind, {}) if source.kind in ("mitdb", "vfdb") else None
    planned = []
    for record in filter(wanted, record_names(root)):
        hea = root / f"{record}.hea"
        subject = None if same is None else record_id(name, same.get(record, record))
        planned.append(_Planned(str(hea), record_id(name, record), subject, _header_seconds(hea)))
    return planned


def _transform(source: CorpusSource, spec: InputSpec) -> Compose:
    """The source's lead renaming, then the model's pipeline without its crop."""
    steps = [
        SelectLeads(spec.leads, missing=source.missing_leads) if isinstance(t, SelectLeads) else t
        for t in pipeline_for(spec, crop=False).transforms
    ]
    if source.rename_leads:
        steps.insert(0, RenameLeads(tuple(sorted(source.rename_leads.items()))))
    return Compose(tuple(steps))


Item = tuple[int, str, int]  # (source index, path, segment)
_last: dict[str, Any] = {}  # the record read last, per process: its segments follow it


def _prepared(transform: Compose, source: CorpusSource, path: str) -> Record:
    """The prepared whole record, read once for all of its consecutive segments."""
    key = (transform, source, path)
    if _last.get("key") != key:
        try:
            result: Record | ECGInputError = transform(
                read_record(path, fs=source.fs, leads=source.leads)
            )
        except ECGInputError as error:
            result = error
        _last.update(key=key, result=result)
    result = _last["result"]
    if isinstance(result, ECGInputError):
        raise ECGInputError(result.source, result.problem)
    return result


def _read_segment(
    transforms: tuple[Compose, ...], sources: tuple[CorpusSource, ...], samples: int, item: Item
) -> Record:
    """Module level so that cache workers can pickle it: one segment, zero-padded if short."""
    index, path, segment = item
    record = _prepared(transforms[index], sources[index], path)
    part = record.signal[:, segment * samples : (segment + 1) * samples]
    if part.shape[1] < samples:
        part = np.pad(part, ((0, 0), (0, samples - part.shape[1])))
    return record.replace(signal=np.ascontiguousarray(part))


def _segments(duration: float | None, length: float, max_segments: int | None) -> int:
    """Segments of a record of ``duration`` seconds (one when unknown or shorter)."""
    count = 1 if duration is None else max(1, math.floor(duration / length + 1e-6))
    return count if max_segments is None else min(count, max_segments)


def corpus_seconds(spec: InputSpec, seconds: float | None) -> float:
    """The segment length: ``seconds``, by default ``max(spec.seconds, 10)``."""
    seconds = max(spec.seconds, MIN_SECONDS) if seconds is None else float(seconds)
    if not seconds >= spec.seconds:
        raise ValueError(f"seconds={seconds} is shorter than the model's input ({spec.seconds} s)")
    return seconds


def _check_unique(plans: list[list[_Planned]], sources: Sequence[CorpusSource]) -> None:
    seen: dict[str, int] = {}
    for index, planned in enumerate(plans):
        for p in planned:
            if seen.setdefault(p.record, index) != index:
                raise UsageError(f"record {p.record} comes from two sources "
                                 f"({sources[seen[p.record]].root} and {sources[index].root}): "
                                 "name one of them differently or drop it")  # fmt: skip


def build_corpus(
    sources: Sequence[CorpusSource],
    spec: InputSpec,
    *,
    seconds: float | None = None,
    max_segments: int | None = None,
    cache_dir: str | Path | None = None,
    workers: int = 1,
) -> Corpus:
    """The corpus of ``sources`` prepared for ``spec``, cut into segments of ``seconds``
    (default ``max(spec.seconds, 10)``; ``max_segments`` per record at most), as one
    memory-mapped cache (built on first use, by one process when several run). Unreadable
    records are left out and listed in ``description["unreadable_records"]``; a source none of
    whose records can be read raises :class:`ECGInputError` naming it."""
    if not sources:
        raise UsageError("a corpus needs at least one source")
    if max_segments is not None and max_segments < 1:
        raise ValueError(f"max_segments must be at least 1, got {max_segments}")
    seconds = corpus_seconds(spec, seconds)
    samples = round(seconds * spec.fs)
    sources = tuple(sources)
    plans = [_plan(source, spec) for source in sources]
    _check_unique(plans, sources)
    for source, planned in zip(sources, plans, strict=True):
        if not planned:
            every = dataclasses.replace(source, allow_evaluation_folds=True)
            left_out = source.kind != "ptbxl" and bool(_plan(every, spec))
            raise ECGInputError(source.root, f"no {source.kind} records found here" + (
                " but PTB-XL records, which enter a corpus through a ptbxl source (by fold) or "
                "with allow_evaluation_folds=True" if left_out else ""))  # fmt: skip
    transforms = tuple(_transform(source, spec) for source in sources)
    rows = [(i, p, k) for i, planned in enumerate(plans) for p in planned
            for k in range(_segments(p.seconds, seconds, max_segments))]  # fmt: skip
    items: list[Item] = [(i, p.path, k) for i, p, k in rows]
    columns = pd.DataFrame({
        "record": [p.record for _, p, _ in rows],
        "segment": np.array([k for _, _, k in rows], dtype=np.int64),
        "patient": [p.patient or "" for _, p, _ in rows],
        "dataset": [sources[i].dataset for i, _, _ in rows],
        "source": np.array([i for i, _, _ in rows], dtype=np.int64),
        "path": [p.path for _, p, _ in rows],
    })  # fmt: skip
    listing = json.dumps([[i, p.path, p.record, p.patient, k] for i, p, k in rows])
    config = {
        "sources": [source.describe() for source in sources],
        "transforms": [transform.config() for transform in transforms],
        "seconds": seconds,
        "segments": hashlib.sha256(listing.encode()).hexdigest(),
    }
    files = dict.fromkeys(str(f) for planned in plans for p in planned
                          for f in record_files(p.path))  # fmt: skip

    read = partial(_read_segment, transforms, sources, samples)

    def build(workers: int) -> ArrayStore:
        return build_cache("corpus", items, read, sources=list(files), columns=columns,
                           config=config, cache_dir=cache_dir, workers=workers)  # fmt: skip

    try:
        if dist.is_main():  # one process builds the cache; the others wait, then open it
            build(workers)
        dist.barrier()
        store = build(1)
    except NoReadableRecords as error:
        try:
            read(items[0])
        except ECGInputError as first:
            raise ECGInputError(sources[0].root, "no record of the corpus is readable; the "
                                f"first: {first}") from error  # fmt: skip
        raise
    finally:
        _last.clear()
    return _corpus(store, sources, spec, seconds, max_segments)


def _corpus(
    store: ArrayStore,
    sources: tuple[CorpusSource, ...],
    spec: InputSpec,
    seconds: float,
    max_segments: int | None,
) -> Corpus:
    index = store.index
    unreadable: dict[str, str] = {}
    for entry in store.meta.get("unreadable", []):
        unreadable.setdefault(str(entry["record"]), str(entry["problem"]))
    for i, source in enumerate(sources):
        if not (index["source"] == i).any():
            first = next((p for r, p in unreadable.items()
                          if r.startswith(f"{source.dataset}:")), "?")  # fmt: skip
            raise ECGInputError(source.root, f"none of its records could be read; the first "
                                f"problem: {first}")  # fmt: skip
    ids = index["record"].to_numpy(dtype=str)
    patients = index["patient"].to_numpy(dtype=str)
    known = patients != ""
    datasets = index["dataset"].to_numpy(dtype=str)
    records = pd.Series(ids).groupby(datasets).nunique()
    return Corpus(
        signals=store.signals,
        rows=index["row"].to_numpy(dtype=np.int64),
        ids=ids,
        segments=index["segment"].to_numpy(dtype=np.int64),
        patient_ids=np.where(known, patients, ids),
        patient_known=known,
        dataset=datasets,
        description={
            "sources": [source.describe() for source in sources],
            "spec": spec.to_dict(),
            "seconds": seconds,
            "max_segments": max_segments,
            "records": {str(k): int(v) for k, v in records.items()},
            "segments": len(index),
            "unreadable_records": [{"record": r, "problem": p} for r, p in unreadable.items()],
            "cache": str(store.path),
        },
    )
