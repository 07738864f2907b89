"""Per-subject windowed datasets from MIT-BIH Arrhythmia (mitdb) and Malignant Ventricular
Ectopy (vfdb): rhythm windows labelled ventricular arrhythmia (VA) or not, and beat-centred
windows labelled by AAMI class.

Defaults follow MetaVA (Sun et al., PLOS Digit Health 2025; github.com/shiqissszj/MetaVA,
``prepocessing.py``): one lead (MLII in mitdb, the first ``ECG`` lead in vfdb), 2 s windows
with a 2 s stride, resampled to 200 Hz, VA = VT, VF or VFL. Samples stay in millivolts (the
model's input spec normalises later).

Rhythm episodes (:func:`rhythm_episodes`)
    Half-open intervals ``[start, end)`` covering the whole record, one rhythm name each. A
    ``'+'`` annotation whose aux note starts with ``'('`` starts a rhythm (``'(VT'`` -> ``VT``)
    that lasts until the next one or the end of the record; before the first one the rhythm
    is ``UNANNOTATED``. A ``'['`` ... ``']'`` span (start/end of ventricular flutter or
    fibrillation; in these files only mitdb 207 has them, vfdb has none) is laid over the
    '+' episodes as a VA episode named after the VA rhythm it overlaps most (``VFL`` in 207),
    else ``VF``. Unpaired markers (CUDB has some, as published): a ``'['`` never closed runs
    to the end of the record; a ``']'`` before any ``'['`` closes an episode that began before
    the recording (it spans from the record's start); any other unpaired ``'['`` or ``']'``
    (a second opening, a closing with nothing open) is ignored.
    VA rhythms: ``VT``, ``VF``, ``VFL`` and ``VFIB`` (vfdb's other spelling of VF). Not VA:
    ``IVR``/``VER`` (ventricular escape rhythms), ``HGEA``, bigeminy/trigeminy (``B``/``T``).
    Unknown rhythm: ``NOISE`` (vfdb marks stretches too noisy to read, which may hide VF) and
    ``UNANNOTATED``. mitdb's ``'~'`` signal-quality annotations are not used.

Window labels (``label="va"``), classes ``("other", "va")``
    ``va`` if at least ``min_overlap`` (default 0.5) of the window lies in VA episodes;
    otherwise ``other`` if at least ``min_overlap`` lies in known non-VA rhythm; otherwise the
    window is *unknown* (mostly noise/unannotated, or too mixed): dropped by default
    (``unknown="drop"``, counted in ``WindowSet.dropped``), or kept as a third class
    ``unknown`` with ``unknown="keep"``. Each window also keeps ``va_fraction``,
    ``unknown_fraction`` and ``rhythm`` (the rhythm covering most of it) in ``extra``, so
    stricter rules (e.g. MetaVA's "pure" windows) are a filter away.

Beat windows (``label="beat"``), classes ``("N", "S", "V", "F", "Q")``
    One window of ``seconds`` centred on each beat annotation whose symbol has an AAMI EC57
    class (:data:`AAMI_CLASSES`); other annotations (rhythm, noise, ``'!'`` flutter waves,
    ``'x'``, ``'|'``, ...) are ignored, as are beats whose window would leave the record.
    ``extra`` keeps the beat ``symbol`` and its sample (``beat``) in the original record.

Subjects and records
    Every window has its ``record`` name, its ``subject`` (the record name, except mitdb 202,
    "taken from the same analog tape as record 201" per its header, so subject ``201``), its
    ``start`` sample in the original record at the record's own rate (``record_fs``) and the
    ``lead`` it came from. Records are those in the root's ``RECORDS`` file, else every
    ``*.hea`` below the root.

Problems
    A record that cannot be read (missing or truncated files, missing annotations) is listed
    in ``WindowSet.unreadable`` with the reason and the rest load. A record without the
    requested lead is listed in ``WindowSet.skipped`` (``missing_lead="skip"``, the default:
    mitdb 102 and 104 have no MLII) or raises :class:`ECGInputError` naming the file
    (``missing_lead="raise"``). A record shorter than one window, or whose annotations reach past
    its end (an annotation file from another record), is listed in ``skipped``. A record at
    another sampling rate is resampled (``fs``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ecgfoundry.data.readers import read_wfdb
from ecgfoundry.data.record import Annotations, ECGInputError, Record, canonical_lead_name
from ecgfoundry.data.transforms import resample_signal

LabelKind = Literal["va", "beat"]
UnknownPolicy = Literal["drop", "keep"]
MissingLeadPolicy = Literal["skip", "raise"]

DEFAULT_FS = 200.0  # MetaVA resamples every record to 200 Hz
DEFAULT_SECONDS = 2.0  # MetaVA: 2 s windows ...
DEFAULT_MIN_OVERLAP = 0.5  # majority of the window
DEFAULT_LEADS: dict[str, str] = {"mitdb": "MLII"}  # ... of MLII; elsewhere the first lead

VA_RHYTHMS = frozenset({"VT", "VF", "VFL", "VFIB"})
UNANNOTATED = "UNANNOTATED"
UNKNOWN_RHYTHMS = frozenset({"NOISE", UNANNOTATED})
VA_CLASSES: tuple[str, ...] = ("other", "va")
AAMI_CLASSES: tuple[str, ...] = ("N", "S", "V", "F", "Q")
# AAMI EC57 classes of the MIT-BIH beat symbols.
AAMI_MAP: dict[str, str] = {
    "N": "N", "L": "N", "R": "N", "e": "N", "j": "N",
    "A": "S", "a": "S", "J": "S", "S": "S",
    "V": "V", "E": "V",
    "F": "F",
    "/": "Q", "f": "Q", "Q": "Q",
}  # fmt: skip
# Records of one dataset that come from the same person: record -> subject.
SAME_SUBJECT: dict[str, dict[str, str]] = {"mitdb": {"202": "201"}}


@dataclass(frozen=True)
class Episode:
    """A rhythm over samples ``[start, end)``."""

    start: int
    end: int
    rhythm: str

    @property
    def is_va(self) -> bool:
        return self.rhythm in VA_RHYTHMS

    @property
    def is_unknown(self) -> bool:
        return self.rhythm in UNKNOWN_RHYTHMS

    @property
    def samples(self) -> int:
        return self.end - self.start


def _merge(episodes: list[Episode]) -> list[Episode]:
    out: list[Episode] = []
    for ep in sorted((e for e in episodes if e.end > e.start), key=lambda e: e.start):
        if out and out[-1].rhythm == ep.rhythm and out[-1].end == ep.start:
            out[-1] = Episode(out[-1].start, ep.end, ep.rhythm)
        else:
            out.append(ep)
    return out


def _overlay(episodes: list[Episode], start: int, end: int, rhythm: str) -> list[Episode]:
    out = [Episode(start, end, rhythm)]
    for ep in episodes:
        out.append(Episode(ep.start, min(ep.end, start), ep.rhythm))
        out.append(Episode(max(ep.start, end), ep.end, ep.rhythm))
    return _merge(out)


def rhythm_episodes(annotations: Annotations, n_samples: int) -> list[Episode]:
    """Contiguous rhythm episodes covering ``[0, n_samples)`` (rules in the module doc)."""
    samples = np.clip(np.asarray(annotations.sample, dtype=np.int64), 0, n_samples)
    changes = [
        (int(s), note.strip()[1:].strip())
        for s, sym, note in zip(samples, annotations.symbol, annotations.aux_note, strict=True)
        if sym == "+" and note.strip().startswith("(")
    ]
    changes.sort(key=lambda c: c[0])  # stable: of two changes at one sample the last wins
    starts = [0] + [s for s, _ in changes]
    names = [UNANNOTATED] + [name for _, name in changes]
    ends = [*starts[1:], n_samples]
    episodes = _merge([Episode(s, e, n) for s, e, n in zip(starts, ends, names, strict=True)])
    opened: int | None = None
    spans: list[tuple[int, int]] = []
    seen_bracket = False
    for s, sym in zip(samples, annotations.symbol, strict=True):
        if sym == "[" and opened is None:
            opened = int(s)
        elif sym == "]" and opened is not None:
            spans.append((opened, int(s)))
            opened = None
        elif sym == "]" and not seen_bracket:  # the record starts inside an episode
            spans.append((0, int(s)))
        seen_bracket = seen_bracket or sym in "[]"
    if opened is not None:
        spans.append((opened, n_samples))
    for start, end in spans:
        overlap: dict[str, int] = {}
        for ep in episodes:
            if ep.is_va:
                n = min(ep.end, end) - max(ep.start, start)
                if n > 0:
                    overlap[ep.rhythm] = overlap.get(ep.rhythm, 0) + n
        name = max(overlap, key=lambda k: overlap[k]) if overlap else "VF"
        episodes = _overlay(episodes, start, end, name)
    return episodes


def aami_class(symbol: str) -> str | None:
    """The AAMI EC57 class (N, S, V, F, Q) of a MIT-BIH beat symbol, or None (not a beat)."""
    return AAMI_MAP.get(symbol)


def _str_array(values: Sequence[str] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=str)
    return array if array.size else np.zeros(0, dtype="<U1")


@dataclass(frozen=True, eq=False)
class WindowSet:
    """Windows of one lead: ``x`` float32 [N, samples] in mV (``x[:, None]`` for a channel axis).

    ``y`` indexes ``classes``; ``subject``, ``record``, ``lead`` (str), ``start`` (sample in the
    original record) and ``record_fs`` are per window, as is each array in ``extra``.
    """

    x: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    subject: np.ndarray
    record: np.ndarray
    lead: np.ndarray
    start: np.ndarray
    record_fs: np.ndarray
    fs: float
    label: LabelKind
    window_seconds: float
    stride_seconds: float | None
    dataset: str = ""
    root: str = ""
    min_overlap: float | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)  # record -> unknown windows dropped

    def __post_init__(self) -> None:
        n = len(self.x)
        per_window = {
            "y": self.y, "subject": self.subject, "record": self.record, "lead": self.lead,
            "start": self.start, "record_fs": self.record_fs, **self.extra,
        }  # fmt: skip
        wrong = {k: len(v) for k, v in per_window.items() if len(v) != n}
        if wrong:
            raise ValueError(f"{n} windows but per-window arrays of lengths {wrong}")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def samples(self) -> int:
        """Samples per window."""
        return self.x.shape[-1]

    @property
    def labels(self) -> np.ndarray:
        """Class names per window."""
        return np.asarray(self.classes, dtype=str)[self.y] if len(self) else _str_array([])

    def subjects(self) -> list[str]:
        """Subject ids in the order they first appear."""
        _, first = np.unique(self.subject, return_index=True)
        return [str(self.subject[i]) for i in sorted(first)]

    def select(self, index: np.ndarray | Sequence[int] | slice) -> WindowSet:
        """The windows at ``index`` (boolean mask, integer indices or slice); same metadata."""
        if not isinstance(index, slice):
            index = np.asarray(index)
            if index.dtype != bool:
                index = index.astype(np.int64)
        return dataclasses.replace(
            self,
            x=self.x[index],
            y=self.y[index],
            subject=self.subject[index],
            record=self.record[index],
            lead=self.lead[index],
            start=self.start[index],
            record_fs=self.record_fs[index],
            extra={k: v[index] for k, v in self.extra.items()},
        )

    def by_subject(self, subject: str) -> WindowSet:
        """The windows of one subject; KeyError if it has none."""
        mask = self.subject == str(subject)
        if not mask.any():
            raise KeyError(f"no windows of subject {subject!r}; subjects are {self.subjects()}")
        return self.select(mask)

    def class_counts(self) -> dict[str, int]:
        """Windows per class (every class, zeros included)."""
        counts = np.bincount(self.y, minlength=len(self.classes))
        return {name: int(c) for name, c in zip(self.classes, counts, strict=True)}

    def subject_counts(self) -> dict[str, dict[str, int]]:
        """Windows per class for each subject."""
        return {s: self.by_subject(s).class_counts() for s in self.subjects()}

    def table(self) -> Any:
        """A pandas DataFrame with one row per window (everything but ``x``)."""
        import pandas as pd

        return pd.DataFrame(
            {
                "subject": self.subject,
                "record": self.record,
                "lead": self.lead,
                "start": self.start,
                "record_fs": self.record_fs,
                "label": self.labels,
                "y": self.y,
                **self.extra,
            }
        )


def _resolve_lead(record: Record, lead: str | int) -> int | None:
    if isinstance(lead, int | np.integer):
        return int(lead) if -record.n_leads <= lead < record.n_leads else None
    wanted = canonical_lead_name(lead) or str(lead).strip()
    return record.leads.index(wanted) if wanted in record.leads else None


@dataclass
class _Part:
    """What one record contributes (``x`` absent when only counting)."""

    y: np.ndarray
    start: np.ndarray
    x: np.ndarray | None
    extra: dict[str, np.ndarray]
    dropped: int = 0


def _grid(starts_t: np.ndarray, size: int) -> np.ndarray:
    return starts_t[:, None] + np.arange(size)


def _va_part(
    signal: np.ndarray,
    ann: Annotations,
    size: int,
    stride: int,
    min_overlap: float,
    unknown: UnknownPolicy,
    materialise: bool,
    va_stride: int | None = None,
) -> tuple[_Part, np.ndarray]:
    n = len(signal)
    episodes = rhythm_episodes(ann, n)
    ep_start = np.array([e.start for e in episodes], dtype=np.int64)
    ep_end = np.array([e.end for e in episodes], dtype=np.int64)
    lengths = ep_end - ep_start
    cum = {}
    for key, flags in (
        ("va", [e.is_va for e in episodes]),
        ("unk", [e.is_unknown for e in episodes]),
    ):
        per_sample = np.repeat(np.asarray(flags, dtype=np.int64), lengths)
        cum[key] = np.concatenate([[0], np.cumsum(per_sample)])
    ws = np.arange(0, n - size + 1, stride, dtype=np.int64)
    if va_stride is not None:  # more windows inside VA: the fine grid's windows labelled VA
        fine = np.arange(0, n - size + 1, va_stride, dtype=np.int64)
        fine = fine[(cum["va"][fine + size] - cum["va"][fine]) / size >= min_overlap]
        ws = np.union1d(ws, fine)
    va = (cum["va"][ws + size] - cum["va"][ws]) / size
    unk = (cum["unk"][ws + size] - cum["unk"][ws]) / size
    other = 1.0 - va - unk
    # The rhythm covering most of each window: windows span a few consecutive episodes.
    ep_index = np.repeat(np.arange(len(episodes)), lengths)
    first, last = ep_index[ws], ep_index[ws + size - 1]
    best = first.copy()
    best_overlap = np.minimum(ep_end[first], ws + size) - ws
    for j in range(1, int((last - first).max(initial=0)) + 1):
        k = np.minimum(first + j, last)
        ov = np.minimum(ep_end[k], ws + size) - np.maximum(ep_start[k], ws)
        better = (first + j <= last) & (ov > best_overlap)
        best = np.where(better, k, best)
        best_overlap = np.where(better, ov, best_overlap)
    names = np.asarray([e.rhythm for e in episodes], dtype=str)
    y = np.where(va >= min_overlap, 1, np.where(other >= min_overlap, 0, 2)).astype(np.int64)
    keep = np.ones(len(ws), dtype=bool) if unknown == "keep" else y < 2
    ws = ws[keep]
    part = _Part(
        y=y[keep],
        start=ws,
        x=signal[_grid(ws, size)] if materialise else None,
        extra={
            "va_fraction": va[keep].astype(np.float32),
            "unknown_fraction": unk[keep].astype(np.float32),
            "rhythm": names[best[keep]] if len(names) else _str_array([]),
        },
        dropped=int((~keep).sum()),
    )
    return part, ws


def _beat_part(
    signal: np.ndarray, ann: Annotations, original: Annotations, size: int, materialise: bool
) -> _Part:
    n = len(signal)
    rows = [i for i, sym in enumerate(ann.symbol) if sym in AAMI_MAP]
    index = np.asarray(rows, dtype=np.int64)
    ws = np.asarray(ann.sample, dtype=np.int64)[index] - size // 2
    inside = (ws >= 0) & (ws + size <= n)
    index, ws = index[inside], ws[inside]
    symbols = _str_array([original.symbol[i] for i in index])
    y = np.array([AAMI_CLASSES.index(AAMI_MAP[s]) for s in symbols], dtype=np.int64)
    return _Part(
        y=y,
        start=ws,
        x=signal[_grid(ws, size)] if materialise else None,
        extra={"symbol": symbols, "beat": np.asarray(original.sample, dtype=np.int64)[index]},
    )


def _check_options(seconds: float, stride: float | None, fs: float | None, min_overlap: float):
    if not seconds > 0:
        raise ValueError(f"window seconds must be positive, got {seconds}")
    if stride is not None and not stride > 0:
        raise ValueError(f"stride seconds must be positive, got {stride}")
    if fs is not None and not fs > 0:
        raise ValueError(f"fs must be positive, got {fs}")
    if not 0 < min_overlap <= 1:
        raise ValueError(f"min_overlap must be in (0, 1], got {min_overlap}")


@dataclass
class _Prepared:
    """One record's chosen lead at the target rate, with its annotations at both rates."""

    name: str
    signal: np.ndarray
    fs: float
    record_fs: float
    lead: str
    ann: Annotations
    original: Annotations


def _prepare(
    record: Record, name: str, lead: str | int, fs: float | None, missing_lead: MissingLeadPolicy
) -> _Prepared | str:
    """The prepared record, or the reason to skip it."""
    if record.annotations is None:
        raise ECGInputError(record.source, "record has no annotations to label windows with")
    if len(record.annotations) and int(np.max(record.annotations.sample)) >= record.n_samples:
        return (f"annotations do not match the record: one at sample "
                f"{int(np.max(record.annotations.sample))}, but the record has "
                f"{record.n_samples} samples (another record's annotation file?)")  # fmt: skip
    index = _resolve_lead(record, lead)
    if index is None:
        problem = f"no lead {lead!r}; leads are {list(record.leads)}"
        if missing_lead == "raise":
            raise ECGInputError(record.source, problem)
        return problem
    target = float(fs) if fs is not None else record.fs
    signal = resample_signal(record.signal[index], record.fs, target)
    return _Prepared(
        name=name,
        signal=signal,
        fs=target,
        record_fs=record.fs,
        lead=record.leads[index],
        ann=record.annotations.rescaled(target),
        original=record.annotations,
    )


def _parts(
    prep: _Prepared,
    label: LabelKind,
    seconds: float,
    stride: float | None,
    min_overlap: float,
    unknown: UnknownPolicy,
    materialise: bool,
    va_stride: float | None = None,
) -> _Part | str:
    """Windows of a prepared record, or the reason it has none."""
    size = round(seconds * prep.fs)
    if size < 1:
        raise ValueError(f"{seconds} s is less than one sample at {prep.fs:g} Hz")
    if len(prep.signal) < size:
        return (
            f"record has {len(prep.signal) / prep.fs:.3g} s, shorter than one {seconds:g} s window"
        )
    if label == "va":
        step = max(1, round((stride if stride is not None else seconds) * prep.fs))
        fine = None if va_stride is None else max(1, round(va_stride * prep.fs))
        part, _ = _va_part(prep.signal, prep.ann, size, step, min_overlap, unknown, materialise,
                           fine)  # fmt: skip
    elif label == "beat":
        part = _beat_part(prep.signal, prep.ann, prep.original, size, materialise)
    else:
        raise ValueError(f"label must be 'va' or 'beat', got {label!r}")
    # Window starts back in samples of the original record.
    part.start = np.rint(part.start * (prep.record_fs / prep.fs)).astype(np.int64)
    return part


def _classes(label: LabelKind, unknown: UnknownPolicy) -> tuple[str, ...]:
    if label == "beat":
        return AAMI_CLASSES
    return (*VA_CLASSES, "unknown") if unknown == "keep" else VA_CLASSES


def _assemble(
    parts: list[tuple[_Prepared, str, _Part]],
    *,
    label: LabelKind,
    unknown: UnknownPolicy,
    seconds: float,
    stride: float | None,
    fs: float | None,
    min_overlap: float,
    dataset: str,
    root: str,
    unreadable: dict[str, str],
    skipped: dict[str, str],
) -> WindowSet:
    rates = {prep.fs for prep, _, _ in parts}
    if len(rates) > 1:
        raise ECGInputError(root, f"records at different rates {sorted(rates)}: pass fs=...")
    rate = rates.pop() if rates else float(fs or 0.0)
    size = round(seconds * rate) if rate else 0
    counts = [len(p.y) for _, _, p in parts]

    def per_window(values: list[Any], dtype: Any) -> np.ndarray:
        return np.repeat(np.asarray(values, dtype=dtype), counts) if parts else np.zeros(0, dtype)

    def joined(arrays: list[np.ndarray], empty: np.ndarray) -> np.ndarray:
        return np.concatenate(arrays) if arrays else empty

    keys = list(parts[0][2].extra) if parts else []
    return WindowSet(
        x=joined([p.x for _, _, p in parts], np.zeros((0, size), np.float32)).astype(
            np.float32, copy=False
        ),
        y=joined([p.y for _, _, p in parts], np.zeros(0, np.int64)),
        classes=_classes(label, unknown),
        subject=_str_array(per_window([s for _, s, _ in parts], str)),
        record=_str_array(per_window([p.name for p, _, _ in parts], str)),
        lead=_str_array(per_window([p.lead for p, _, _ in parts], str)),
        start=joined([p.start for _, _, p in parts], np.zeros(0, np.int64)),
        record_fs=per_window([p.record_fs for p, _, _ in parts], np.float64),
        fs=rate,
        label=label,
        window_seconds=float(seconds),
        stride_seconds=float(stride if stride is not None else seconds) if label == "va" else None,
        dataset=dataset,
        root=root,
        min_overlap=min_overlap if label == "va" else None,
        extra={k: joined([p.extra[k] for _, _, p in parts], np.zeros(0)) for k in keys},
        unreadable=dict(unreadable),
        skipped=dict(skipped),
        dropped={prep.name: p.dropped for prep, _, p in parts if p.dropped},
    )


def windows_from_record(
    record: Record,
    *,
    label: LabelKind = "va",
    lead: str | int | None = None,
    seconds: float = DEFAULT_SECONDS,
    stride: float | None = None,
    fs: float | None = DEFAULT_FS,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    unknown: UnknownPolicy = "drop",
    subject: str | None = None,
) -> WindowSet:
    """Windows of one annotated :class:`Record` (e.g. from ``read_wfdb(..., annotation="atr")``).

    ``lead`` None means the first lead; a missing lead raises :class:`ECGInputError`, a record
    shorter than one window gives an empty set with the reason in ``skipped``.
    """
    _check_options(seconds, stride, fs, min_overlap)
    name = str(record.metadata.get("record_name") or Path(record.source or "record").name)
    prep = _prepare(record, name, 0 if lead is None else lead, fs, "raise")
    assert not isinstance(prep, str)
    part = _parts(prep, label, seconds, stride, min_overlap, unknown, materialise=True)
    skipped = {name: part} if isinstance(part, str) else {}
    parts = [] if isinstance(part, str) else [(prep, subject or name, part)]
    return _assemble(
        parts,
        label=label,
        unknown=unknown,
        seconds=seconds,
        stride=stride,
        fs=prep.fs,
        min_overlap=min_overlap,
        dataset="",
        root=str(record.source or ""),
        unreadable={},
        skipped=skipped,
    )


def _dataset_and_root(name_or_root: str | Path, root: str | Path | None) -> tuple[str, Path]:
    if root is None:
        path = Path(name_or_root)
        if not path.is_dir():
            raise ECGInputError(path, "not a folder; pass the dataset name and root=DIR")
        return path.name, path
    path = Path(root)
    if not path.is_dir():
        raise ECGInputError(path, f"dataset root for {name_or_root} is not a folder")
    return str(name_or_root), path


def record_names(root: str | Path) -> list[str]:
    """The records of a WFDB dataset: its ``RECORDS`` file, else every ``*.hea`` below it."""
    root = Path(root)
    listing = root / "RECORDS"
    if listing.is_file():
        return [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.hea"))


def _iter_prepared(
    dataset: str,
    root: Path,
    *,
    lead: str | int | None,
    fs: float | None,
    records: Sequence[str] | None,
    missing_lead: MissingLeadPolicy,
    unreadable: dict[str, str],
    skipped: dict[str, str],
) -> Iterator[tuple[_Prepared, str]]:
    """Prepared records with their subject id; problems go into the two dicts."""
    wanted_lead = lead if lead is not None else DEFAULT_LEADS.get(dataset.lower(), 0)
    same = SAME_SUBJECT.get(dataset.lower(), {})
    for name in records if records is not None else record_names(root):
        name = str(name)
        try:
            record = read_wfdb(root / name, annotation="atr")
        except ECGInputError as error:
            unreadable[name] = str(error)
            continue
        prep = _prepare(record, name, wanted_lead, fs, missing_lead)
        if isinstance(prep, str):
            skipped[name] = prep
            continue
        yield prep, same.get(Path(name).name, Path(name).name)


def load_windows(
    name_or_root: str | Path,
    root: str | Path | None = None,
    *,
    label: LabelKind = "va",
    lead: str | int | None = None,
    seconds: float = DEFAULT_SECONDS,
    stride: float | None = None,
    fs: float | None = DEFAULT_FS,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    unknown: UnknownPolicy = "drop",
    records: Sequence[str] | None = None,
    missing_lead: MissingLeadPolicy = "skip",
    va_stride: float | None = None,
) -> WindowSet:
    """Windows of every record of a dataset: ``load_windows("vfdb", root)`` or
    ``load_windows(root)`` (the folder name is the dataset name).

    ``lead``: name (any spelling) or index; None is MLII for mitdb, else the first lead.
    ``seconds``/``stride``: window length and step (stride defaults to ``seconds``; beat
    windows have no stride). ``va_stride``: also the VA windows on a finer grid of this step
    (MetaVA oversamples the rare VA windows this way: 0.1 s). ``fs``: resample each record
    once (polyphase) to this rate; None keeps the record's own. ``records``: names to load
    instead of all. Labels, problems and their policies are in the module doc.
    """
    _check_options(seconds, stride, fs, min_overlap)
    if va_stride is not None and not va_stride > 0:
        raise ValueError(f"va_stride seconds must be positive, got {va_stride}")
    dataset, path = _dataset_and_root(name_or_root, root)
    unreadable: dict[str, str] = {}
    skipped: dict[str, str] = {}
    parts = []
    for prep, subject in _iter_prepared(
        dataset, path, lead=lead, fs=fs, records=records, missing_lead=missing_lead,
        unreadable=unreadable, skipped=skipped,
    ):  # fmt: skip
        part = _parts(prep, label, seconds, stride, min_overlap, unknown, materialise=True,
                      va_stride=va_stride)  # fmt: skip
        if isinstance(part, str):
            skipped[prep.name] = part
        else:
            parts.append((prep, subject, part))
    return _assemble(
        parts,
        label=label,
        unknown=unknown,
        seconds=seconds,
        stride=stride,
        fs=fs,
        min_overlap=min_overlap,
        dataset=dataset,
        root=str(path),
        unreadable=unreadable,
        skipped=skipped,
    )


def _count(parts: list[tuple[str, _Part]], classes: tuple[str, ...]) -> dict[str, Any]:
    per_subject: dict[str, np.ndarray] = {}
    for subject, part in parts:
        counts = np.bincount(part.y, minlength=len(classes))
        per_subject[subject] = per_subject.get(subject, 0) + counts
    total = sum(per_subject.values(), np.zeros(len(classes), dtype=np.int64))
    named = {s: dict(zip(classes, map(int, c), strict=True)) for s, c in per_subject.items()}
    return {
        "windows": int(total.sum()),
        "classes": dict(zip(classes, map(int, total), strict=True)),
        "per_subject": named,
    }


def summary(
    name_or_root: str | Path,
    root: str | Path | None = None,
    *,
    lead: str | int | None = None,
    seconds: float = DEFAULT_SECONDS,
    stride: float | None = None,
    fs: float | None = DEFAULT_FS,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    records: Sequence[str] | None = None,
    missing_lead: MissingLeadPolicy = "skip",
) -> dict[str, Any]:
    """A JSON-able description of the windows :func:`load_windows` would give, both labellings.

    Reads every record once (windows are counted, not built). ``va`` holds the rhythm windows
    (``unknown="drop"``); ``beat`` the AAMI beat windows, present when the dataset has beat
    annotations (mitdb, not vfdb).
    """
    started = time.perf_counter()
    _check_options(seconds, stride, fs, min_overlap)
    dataset, path = _dataset_and_root(name_or_root, root)
    unreadable: dict[str, str] = {}
    skipped: dict[str, str] = {}
    va_parts: list[tuple[str, _Part]] = []
    beat_parts: list[tuple[str, _Part]] = []
    leads: dict[str, int] = {}
    rates: set[float] = set()
    dropped: dict[str, int] = {}
    subjects: list[str] = []
    for prep, subject in _iter_prepared(
        dataset, path, lead=lead, fs=fs, records=records, missing_lead=missing_lead,
        unreadable=unreadable, skipped=skipped,
    ):  # fmt: skip
        va = _parts(prep, "va", seconds, stride, min_overlap, "drop", materialise=False)
        if isinstance(va, str):
            skipped[prep.name] = va
            continue
        beat = _parts(prep, "beat", seconds, None, min_overlap, "drop", materialise=False)
        assert not isinstance(beat, str)
        va_parts.append((subject, va))
        beat_parts.append((subject, beat))
        leads[prep.lead] = leads.get(prep.lead, 0) + 1
        rates.add(prep.fs)
        if va.dropped:
            dropped[prep.name] = va.dropped
        if subject not in subjects:
            subjects.append(subject)
    if not va_parts and skipped:  # e.g. a lead no record has
        name, reason = next(iter(skipped.items()))
        raise ECGInputError(path, f"all {len(skipped)} readable records were skipped ({name}: "
                            f"{reason})")  # fmt: skip
    out: dict[str, Any] = {
        "dataset": dataset,
        "root": str(path),
        "records": len(va_parts),
        "subjects": len(subjects),
        "subject_ids": subjects,
        "fs": sorted(rates)[0] if len(rates) == 1 else sorted(rates),
        "lead": lead if lead is not None else DEFAULT_LEADS.get(dataset.lower(), 0),
        "leads_used": leads,
        "window_seconds": float(seconds),
        "stride_seconds": float(stride if stride is not None else seconds),
        "min_overlap": min_overlap,
        "va": {**_count(va_parts, VA_CLASSES), "dropped_unknown": dropped},
    }
    out["va"]["subjects_with_va"] = sum(1 for c in out["va"]["per_subject"].values() if c["va"])
    beats = _count(beat_parts, AAMI_CLASSES)
    if beats["windows"]:
        out["beat"] = beats
    out["unreadable"] = unreadable
    out["skipped"] = skipped
    out["elapsed_s"] = round(time.perf_counter() - started, 2)
    return out
