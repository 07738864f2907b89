"""How a person's windows split into the support set (labelled by a clinician) and the windows
the personalised model is scored on, under two protocols:

``leak-free`` (the default): the support set is the first ``shots`` windows of each class in
time (the earliest episodes a clinician would label); the test windows are those that start at
least ``gap`` window lengths after the last support window ends (so no test window overlaps or
touches the support, oversampled VA windows included); the normalisation statistics come from
the support windows only.

``metava`` (MetaVA's, for comparison): ``shots`` windows of each class drawn at random
positions, the rest scored; the normalisation statistics come from all of the subject's
windows, test windows included.

Subjects never cross meta-train / meta-validation / test (:func:`split_names`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ecgfoundry.errors import UsageError
from ecgfoundry.personalize.data import Subject

Protocol = Literal["leak-free", "metava"]
PROTOCOLS: tuple[str, ...] = ("leak-free", "metava")
CLASS_NAMES = ("other", "va")


class SubjectSkipped(UsageError):
    """A subject the protocol cannot use; the message names it and the problem."""

    def __init__(self, subject: str, problem: str):
        super().__init__(f"{subject}: {problem}")
        self.subject, self.problem = subject, problem


@dataclass(frozen=True)
class Split:
    """Indices into a subject's windows, and the normalisation (mean, sd) to apply."""

    support: np.ndarray
    test: np.ndarray
    mean: float
    sd: float


def _stats(x: np.ndarray) -> tuple[float, float]:
    return float(x.mean()), float(x.std()) or 1.0


def check_shots(shots: Sequence[int], name: str = "shots") -> list[int]:
    """``shots`` (support windows per class), or a :class:`UsageError` naming ``name``: at
    least one count, each at least 1."""
    shots = list(shots)
    if not shots or any(not isinstance(k, int | np.integer) or k < 1 for k in shots):
        text = ",".join(str(k) for k in shots)
        raise UsageError(f"{_named(name, text)}: at least one support window per class is needed "
                         "(whole numbers >= 1)")  # fmt: skip
    return [int(k) for k in shots]


def parse_shots(text: str, name: str = "--shots") -> list[int]:
    """Comma-separated shot counts (``"1,5,10"``), checked by :func:`check_shots`."""
    try:
        shots = [int(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"{_named(name, text)}: expected whole numbers separated by commas, "
                         "e.g. 1,5,10") from None  # fmt: skip
    return check_shots(shots, name)


def _named(name: str, value: str) -> str:
    """``--shots 0`` for an option, ``shots=0`` for an argument."""
    return f"{name} {value}" if name.startswith("--") else f"{name}={value}"


def split_subject(
    subject: Subject,
    shots: int,
    protocol: Protocol = "leak-free",
    rng: np.random.Generator | None = None,
    gap: float = 1.0,
) -> Split:
    """The support and test windows of one subject (raises :class:`SubjectSkipped`)."""
    if protocol not in PROTOCOLS:
        raise UsageError(f"protocol {protocol!r}: not one of {', '.join(PROTOCOLS)}")
    check_shots([shots])
    for label, name in enumerate(CLASS_NAMES):
        count = int((subject.y == label).sum())
        if count < shots + 1:
            what = "no VA windows" if (label == 1 and count == 0) else f"{count} {name} windows"
            raise SubjectSkipped(subject.name, f"{what}: fewer than {shots} support windows "
                                 "per class plus one to score")  # fmt: skip
    if protocol == "metava":
        rng = rng or np.random.default_rng(0)
        support = np.sort(np.concatenate([
            rng.choice(np.flatnonzero(subject.y == label), shots, replace=False)
            for label in (0, 1)]))  # fmt: skip
        test = np.setdiff1d(np.arange(len(subject)), support)
        return Split(support, test, *_stats(subject.x))
    support = np.sort(np.concatenate([np.flatnonzero(subject.y == label)[:shots]
                                      for label in (0, 1)]))  # fmt: skip
    end = subject.time[support].max() + subject.seconds * (1 + gap)
    test = np.flatnonzero(subject.time >= end)
    missing = [n for label, n in enumerate(CLASS_NAMES) if not (subject.y[test] == label).any()]
    if missing:
        raise SubjectSkipped(subject.name, f"no {' or '.join(missing)} windows after its first "
                             f"{shots} per class (+ a {gap:g}-window gap) to score")  # fmt: skip
    return Split(support, test, *_stats(subject.x[support]))


def normalised(subject: Subject, split: Split, index: np.ndarray) -> np.ndarray:
    """The windows ``index`` of ``subject`` z-scored with the split's statistics."""
    return (subject.x[index] - split.mean) / split.sd


def split_names(
    names: Sequence[str], seed: int = 0, validation: float = 0.2, test: float = 0.3
) -> dict[str, list[str]]:
    """Subjects shuffled by ``seed`` into ``meta-train``, ``meta-val`` and ``test``."""
    if not (0 <= validation < 1 and 0 < test < 1 and validation + test < 1):
        raise UsageError(f"validation={validation}, test={test}: shares in [0, 1) summing < 1")
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    n_test, n_val = round(len(order) * test), round(len(order) * validation)
    return {"test": sorted(order[:n_test]), "meta-val": sorted(order[n_test:n_test + n_val]),
            "meta-train": sorted(order[n_test + n_val:])}  # fmt: skip


__all__ = ["PROTOCOLS", "Protocol", "Split", "SubjectSkipped", "check_shots", "normalised",
           "parse_shots", "split_names", "split_subject"]  # fmt: skip
