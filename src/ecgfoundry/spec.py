"""InputSpec: what a model expects to see. Models declare one; the data layer turns it into
a preprocessing pipeline (:func:`ecgfoundry.data.transforms.pipeline_for`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

STANDARD_LEADS: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)  # fmt: skip
Normalisation = Literal["none", "zscore", "zscore-global", "minmax"]
NORMALISATIONS: tuple[str, ...] = ("none", "zscore", "zscore-global", "minmax")


@dataclass(frozen=True)
class InputSpec:
    """Sampling rate (Hz), window length (s), lead names in order, and normalisation.

    ``normalisation``: ``zscore`` per lead, ``zscore-global`` over all leads together,
    ``minmax`` per lead to [-1, 1], or ``none`` (millivolts as they are).
    Filters, applied in this order at ``fs``: ``notch`` (mains Hz, e.g. 50), ``bandpass``
    (low, high) Hz as a zero-phase Butterworth of ``bandpass_order``, and ``baseline_window``
    (seconds of a median filter whose output is subtracted). None skips a filter.
    """

    fs: float
    seconds: float
    leads: tuple[str, ...]
    normalisation: Normalisation = "zscore"
    bandpass: tuple[float, float] | None = None
    bandpass_order: int = 2
    notch: float | None = None
    baseline_window: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "leads", tuple(self.leads))
        if self.bandpass is not None:
            object.__setattr__(self, "bandpass", tuple(self.bandpass))
        if not (math.isfinite(self.fs) and self.fs > 0):
            raise ValueError(f"fs must be positive, got {self.fs}")
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError(f"seconds must be positive, got {self.seconds}")
        if not self.leads:
            raise ValueError("an input spec needs at least one lead")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {NORMALISATIONS}")

    @property
    def samples(self) -> int:
        """Samples per lead in one model input."""
        return round(self.fs * self.seconds)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["leads"] = list(self.leads)
        out["bandpass"] = list(self.bandpass) if self.bandpass else None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSpec:
        return cls(**data)
