"""The one record type every reader returns, and the canonical lead names."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecgfoundry.errors import ReportedError
from ecgfoundry.spec import STANDARD_LEADS

# Leads that are real but outside the standard 12: right-sided, posterior, Frank XYZ, Holter.
OTHER_LEADS: tuple[str, ...] = (
    "V3R", "V4R", "V5R", "V7", "V8", "V9", "X", "Y", "Z", "MLI", "MLII", "MLIII",
)  # fmt: skip
KNOWN_LEADS: tuple[str, ...] = STANDARD_LEADS + OTHER_LEADS

_ALIASES: dict[str, str] = {name.upper(): name for name in KNOWN_LEADS} | {
    "DI": "I",  # European notation: DI, DII, DIII or D1, D2, D3 are the limb leads
    "DII": "II",
    "DIII": "III",
    "D1": "I",
    "D2": "II",
    "D3": "III",
    "VX": "X",  # Frank's orthogonal leads as PTB (diagnostic) names them
    "VY": "Y",
    "VZ": "Z",
    "LEAD I": "I",
    "LEAD II": "II",
    "LEAD III": "III",
    "-AVR": "aVR",  # some exports sign-flip the label only; the signal is still aVR
}


class ECGInputError(ValueError, ReportedError):
    """Bad ECG input: the message names the source (file) and the problem."""

    def __init__(self, source: str | Path | None, problem: str):
        self.source = str(source) if source is not None else "<array>"
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


# EDF's standard texts and many exports put the signal type first: "ECG V1", "EKG-II",
# "Lead V1", "ECG Lead aVR".
_SIGNAL_TYPE = re.compile(r"^(?:(?:ECG|EKG)[ _-]+)?(?:LEAD[ _-]*)?")


def canonical_lead_name(name: str) -> str | None:
    """The canonical spelling of a lead name (``'AVR'`` -> ``'aVR'``, ``'ECG V1'`` -> ``'V1'``),
    or None if unknown."""
    key = " ".join(str(name).split()).upper()
    return _ALIASES.get(key) or _ALIASES.get(_SIGNAL_TYPE.sub("", key))


def canonical_leads(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Canonical names where known; unknown names are kept as given.

    Repeated names (vfdb calls both its leads ``ECG``) are numbered: ``ECG1``, ``ECG2``.
    """
    out = [canonical_lead_name(n) or str(n).strip() for n in names]
    for name in set(out):
        if out.count(name) > 1:
            numbers = iter(range(1, len(out) + 1))
            out = [f"{n}{next(numbers)}" if n == name else n for n in out]
    return tuple(out)


_TO_MV = {"mv": 1.0, "uv": 1e-3, "μv": 1e-3, "µv": 1e-3, "microvolt": 1e-3, "v": 1e3, "nv": 1e-6,
          "âµv": 1e-3, "\x83êv": 1e-3}  # fmt: skip  # UTF-8's µ read as latin-1; Shift-JIS μV


def age_in_years(born: dt.datetime, at: dt.datetime) -> float | None:
    """Whole years from a birth date to ``at`` (None if ``at`` comes first)."""
    if at < born:
        return None
    return float(at.year - born.year - ((at.month, at.day) < (born.month, born.day)))


def millivolts_per_unit(unit: str | None, source: str | Path | None) -> float:
    """The factor that turns a signal in ``unit`` (empty: mV) into millivolts."""
    key = (unit or "mV").strip().lower()
    if key not in _TO_MV:
        raise ECGInputError(source, f"unknown signal unit {unit!r}; expected mV, uV or V")
    return _TO_MV[key]


_UNIT_NAMES = {1.0: "mV", 1e-3: "uV", 1e3: "V", 1e-6: "nV"}  # by millivolts per unit


def canonical_unit(unit: str | None, source: str | Path | None) -> str:
    """``unit``'s one spelling (``' mv'`` -> ``'mV'``, ``'µV'`` -> ``'uV'``)."""
    return _UNIT_NAMES[millivolts_per_unit(unit, source)]


def require_known_leads(names: tuple[str, ...], source: str | Path | None) -> None:
    """Raise ECGInputError naming the source if any lead name is not a known lead."""
    unknown = [n for n in names if canonical_lead_name(n) is None]
    if unknown:
        raise ECGInputError(
            source,
            f"unknown lead name(s) {unknown}; known leads are {', '.join(KNOWN_LEADS)}",
        )


@dataclass(frozen=True)
class Annotations:
    """WFDB-style annotations: a symbol and an auxiliary note at each sample index."""

    sample: np.ndarray  # int64 [n]
    symbol: tuple[str, ...]
    aux_note: tuple[str, ...]
    fs: float

    def __post_init__(self) -> None:
        if not (len(self.sample) == len(self.symbol) == len(self.aux_note)):
            raise ValueError("annotation sample, symbol and aux_note must have equal length")

    def __len__(self) -> int:
        return len(self.sample)

    def rescaled(self, fs: float) -> Annotations:
        """The same annotations with sample indices at another sampling rate."""
        sample = np.round(self.sample * (fs / self.fs)).astype(np.int64)
        return dataclasses.replace(self, sample=sample, fs=fs)


@dataclass(frozen=True)
class Record:
    """One ECG: float32 ``signal`` [leads, samples] in millivolts at ``fs`` Hz.

    ``metadata`` holds what the source says about the recording (age, sex, diagnoses, ...)
    and what was repaired on the way in (``metadata["repairs"]``).
    """

    signal: np.ndarray
    fs: float
    leads: tuple[str, ...]
    source: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    annotations: Annotations | None = None

    def __post_init__(self) -> None:
        signal = np.asarray(self.signal)
        if signal.ndim != 2:
            raise ECGInputError(
                self.source, f"signal must be 2-D [leads, samples], got shape {signal.shape}"
            )
        if signal.dtype != np.float32:
            signal = signal.astype(np.float32)
        object.__setattr__(self, "signal", signal)
        object.__setattr__(self, "leads", tuple(self.leads))
        if len(self.leads) != signal.shape[0]:
            raise ECGInputError(
                self.source,
                f"{len(self.leads)} lead names for a signal with {signal.shape[0]} leads",
            )
        if len(set(self.leads)) != len(self.leads):
            raise ECGInputError(self.source, f"duplicate lead names {list(self.leads)}")
        if not (isinstance(self.fs, int | float) and math.isfinite(self.fs) and self.fs > 0):
            raise ECGInputError(
                self.source, f"sampling rate must be a positive number, got {self.fs!r}"
            )

    @property
    def n_leads(self) -> int:
        return self.signal.shape[0]

    @property
    def n_samples(self) -> int:
        return self.signal.shape[1]

    @property
    def seconds(self) -> float:
        return self.n_samples / self.fs

    def lead(self, name: str) -> np.ndarray:
        """The samples of one lead, by (any spelling of) its name."""
        wanted = canonical_lead_name(name) or name
        if wanted not in self.leads:
            raise ECGInputError(self.source, f"no lead {name!r}; leads are {list(self.leads)}")
        return self.signal[self.leads.index(wanted)]

    def replace(self, **changes: Any) -> Record:
        """A copy with some fields changed (the signal is not copied unless given)."""
        return dataclasses.replace(self, **changes)

    def with_repair(self, **repair: Any) -> Record:
        """A copy whose ``metadata["repairs"]`` also lists this repair."""
        repairs = [*self.metadata.get("repairs", []), repair]
        return self.replace(metadata={**self.metadata, "repairs": repairs})


def describe_repair(repair: dict[str, Any]) -> str:
    """One repair in words, e.g. ``leads_zero_filled: V1, V2`` or ``zero_padded: 400 samples``."""
    leads, samples = repair.get("leads"), repair.get("samples")
    if "detail" in repair:
        return f"{repair['kind']}: {repair['detail']}"
    if leads:
        return f"{repair['kind']}: {', '.join(leads)}"
    if isinstance(samples, dict):
        return f"{repair['kind']}: " + ", ".join(
            f"{n} samples of {lead}" for lead, n in samples.items()
        )
    if samples is not None:
        return f"{repair['kind']}: {samples} samples"
    return repair["kind"]
