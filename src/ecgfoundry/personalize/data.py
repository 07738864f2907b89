"""Per-subject windows for personalisation: one lead, labelled VA (VT, VF, VFL) or not, in time
order, from any WFDB folder with rhythm or episode annotations (mitdb, vfdb, CUDB, yours).

Windows come from :func:`ecgfoundry.data.arrhythmia.load_windows` (its module doc gives the
labelling rules, CUDB's ``[``/``]`` episode markers and their unpaired cases included). A
subject's windows keep their time: ``time`` is seconds from the start of the subject's first
record, its records taken in name order one after the other (mitdb 201 and 202 are one
subject), so "earlier" and "later" mean what they do on a recording.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgfoundry.data.arrhythmia import WindowSet, load_windows, record_names
from ecgfoundry.data.record import ECGInputError

RECORD_SPAN = 1e7  # seconds reserved per record on a subject's time axis (> any recording)


@dataclass
class Subject:
    """One person's windows: ``x`` float32 [n, 1, samples] in mV, ``y`` 1 = VA, ``time`` the
    start of each window in seconds (see the module doc), at ``fs`` Hz, ``seconds`` long."""

    name: str
    dataset: str
    x: np.ndarray
    y: np.ndarray
    time: np.ndarray
    fs: float
    seconds: float

    def __post_init__(self) -> None:
        order = np.argsort(self.time, kind="stable")
        self.x, self.y, self.time = self.x[order], self.y[order], self.time[order]

    def __len__(self) -> int:
        return len(self.y)

    @property
    def counts(self) -> dict[str, int]:
        return {"va": int((self.y == 1).sum()), "other": int((self.y == 0).sum())}


def subjects_from(windows: WindowSet) -> list[Subject]:
    """The subjects of a window set, each with its windows in time order."""
    out = []
    for name in windows.subjects():
        index = np.flatnonzero(windows.subject == name)
        records = sorted(set(windows.record[index].tolist()))
        rank = np.array([records.index(r) for r in windows.record[index]], dtype=np.float64)
        time = rank * RECORD_SPAN + windows.start[index] / windows.record_fs[index]
        out.append(Subject(name=f"{windows.dataset}/{name}", dataset=windows.dataset,
                           x=windows.x[index][:, None].astype(np.float32),
                           y=windows.y[index].astype(np.int64), time=time, fs=windows.fs,
                           seconds=windows.window_seconds))  # fmt: skip
    return out


def load_subjects(
    sources: Sequence[str | Path],
    *,
    seconds: float = 2.0,
    stride: float | None = None,
    va_stride: float | None = 0.1,
    fs: float = 200.0,
    lead: str | int | None = None,
) -> tuple[list[Subject], dict[str, str]]:
    """Every subject of every source folder (its name is the dataset: ``mitdb``, ``vfdb``,
    ``cudb``, ...), and the records left out with the reason (``dataset/record``: unreadable,
    no such lead, shorter than a window). Defaults are MetaVA's: 2-s windows of one lead at
    200 Hz, 2-s stride, VA windows also every 0.1 s.

    A source that is not a folder, or that gives no subject (no WFDB records, or none with
    annotations to window, e.g. PTB-XL's), is an :class:`ECGInputError` naming it and why."""
    subjects: list[Subject] = []
    problems: dict[str, str] = {}
    for source in sources:
        check_folder(source)
        windows = load_windows(source, seconds=seconds, stride=stride, va_stride=va_stride,
                               fs=fs, lead=lead)  # fmt: skip
        left_out = {**windows.unreadable, **windows.skipped}
        found = subjects_from(windows)
        if not found:
            raise ECGInputError(source, _nothing_usable(left_out))
        problems |= {f"{windows.dataset}/{k}": v for k, v in left_out.items()}
        subjects += found
    return subjects, problems


def check_folder(source: str | Path) -> Path:
    """``source`` as a folder of WFDB records, or an :class:`ECGInputError` saying why not."""
    path = Path(source)
    if not path.exists():
        raise ECGInputError(path, "no such folder")
    if not path.is_dir():
        raise ECGInputError(path, "not a folder (--data takes a folder of WFDB records)")
    if not record_names(path):
        raise ECGInputError(path, "no WFDB records (no .hea files, no RECORDS list)")
    return path


def _nothing_usable(left_out: dict[str, str]) -> str:
    why = "".join(f": all {len(left_out)} left out, e.g. {name}: {problem}"
                  for name, problem in list(left_out.items())[:1])  # fmt: skip
    return (
        "no record gives windows (personalisation needs WFDB records with rhythm or episode "
        f"annotations: an .atr file with (VT, (VF, (N ... or [ ] markers){why}"
    )


__all__ = ["Subject", "check_folder", "load_subjects", "subjects_from"]
