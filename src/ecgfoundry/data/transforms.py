"""Composable preprocessing: each transform maps a :class:`Record` to a Record.

Transforms are frozen dataclasses, so ``config()`` describes a pipeline exactly (the cache
keys on it). :func:`pipeline_for` builds the pipeline a model's :class:`InputSpec` asks for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal, Protocol

import numpy as np
from scipy import signal as sps

from ecgfoundry.data.record import ECGInputError, Record, canonical_lead_name
from ecgfoundry.spec import InputSpec

MissingLeads = Literal["raise", "zero"]  # a lead a model needs and a record lacks
CHUNK_SAMPLES = 1 << 22  # rows filtered together hold at most this many samples (a Holter: 1)


class Transform(Protocol):
    def __call__(self, record: Record) -> Record: ...


def config_of(transform: Any) -> dict[str, Any]:
    """A JSON-able description of a transform dataclass: its class name and fields."""
    return {"name": type(transform).__name__, **dataclasses.asdict(transform)}


def resample_signal(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Polyphase resampling along the last axis (anti-aliased, zero-phase FIR)."""
    if fs_in == fs_out:
        return x
    ratio = Fraction(fs_out).limit_denominator(1000) / Fraction(fs_in).limit_denominator(1000)
    y = sps.resample_poly(x, ratio.numerator, ratio.denominator, axis=-1)
    return y.astype(x.dtype, copy=False)


def sliding_windows(x: np.ndarray, size: int, stride: int, *, pad: bool = False) -> np.ndarray:
    """Windows [n, ..., size] along the last axis, ``stride`` samples apart.

    With ``pad`` a final partial window is zero-padded; otherwise it is dropped (and a signal
    shorter than ``size`` gives zero windows).
    """
    if size <= 0 or stride <= 0:
        raise ValueError(f"size and stride must be positive, got {size}, {stride}")
    n = x.shape[-1]
    if pad and (n < size or (n - size) % stride):
        extra = size - n if n < size else stride - (n - size) % stride
        x = np.concatenate([x, np.zeros((*x.shape[:-1], extra), dtype=x.dtype)], axis=-1)
        n = x.shape[-1]
    if n < size:
        return np.zeros((0, *x.shape[:-1], size), dtype=x.dtype)
    view = np.lib.stride_tricks.sliding_window_view(x, size, axis=-1)[..., ::stride, :]
    return np.ascontiguousarray(np.moveaxis(view, -2, 0))


def window_starts(length: int, window: int) -> np.ndarray:
    """Start samples of windows covering a signal for scoring: half-window stride, the last
    window flush with the end (one window at 0 when the signal is not longer than a window)."""
    starts = np.arange(0, max(length - window, 0) + 1, max(window // 2, 1))
    if length > window and starts[-1] != length - window:
        starts = np.r_[starts, length - window]
    return starts


def by_rows(record: Record, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``fn`` (a per-row operation along the last axis) on the record's leads, float32.

    Leads :class:`SelectLeads` filled with zeros stay zeros without being computed, and the
    others go a few rows at a time (one at a time for a long recording), so a 2-lead Holter
    run through a 12-lead pipeline costs 2 leads and holds one lead's intermediates, not
    twelve. The numbers are those of ``fn`` on the whole array: every step is row by row."""
    rows = _holding_data(record)
    step = max(1, CHUNK_SAMPLES // max(record.n_samples, 1))
    out: np.ndarray | None = None
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        done = fn(record.signal[chunk])
        if out is None:
            out = np.zeros((record.n_leads, done.shape[-1]), dtype=np.float32)
        out[chunk] = done
    if out is None:  # every lead zero-filled: ``fn`` of zeros, without computing it
        out = np.zeros((record.n_leads, fn(record.signal[:1]).shape[-1]), dtype=np.float32)
    return out


@dataclass(frozen=True)
class Resample:
    """Resample to ``fs`` Hz (polyphase); annotations follow."""

    fs: float

    def __call__(self, record: Record) -> Record:
        if record.fs == self.fs:
            return record
        signal = by_rows(record, lambda x: resample_signal(x, record.fs, self.fs))
        annotations = record.annotations.rescaled(self.fs) if record.annotations else None
        return record.replace(signal=signal, fs=float(self.fs), annotations=annotations)


def _nyquist_check(record: Record, freqs: Sequence[float], what: str) -> None:
    nyquist = record.fs / 2
    if any(f <= 0 or f >= nyquist for f in freqs):
        raise ECGInputError(
            record.source,
            f"{what} at {list(freqs)} Hz is impossible at {record.fs:g} Hz (Nyquist {nyquist:g})",
        )


def _zero_phase(record: Record, sos: np.ndarray) -> Record:
    n = record.n_samples
    padlen = min(3 * (2 * len(sos) + 1), n - 1)
    if padlen < 1:
        raise ECGInputError(record.source, f"{n} samples are too few to filter")
    filtered = by_rows(record, lambda x: sps.sosfiltfilt(sos, x, axis=-1, padlen=padlen))
    return record.replace(signal=filtered)


@dataclass(frozen=True)
class BandPass:
    """Zero-phase Butterworth band-pass. An upper edge at or above 95 % of Nyquist is dropped
    (the filter becomes a high-pass), so one pipeline serves any sampling rate."""

    low: float = 0.5
    high: float | None = 40.0
    order: int = 2

    def __call__(self, record: Record) -> Record:
        high = self.high if self.high and self.high < 0.95 * record.fs / 2 else None
        if high is None:
            _nyquist_check(record, [self.low], "high-pass edge")
            sos = sps.butter(self.order, self.low, "highpass", fs=record.fs, output="sos")
        else:
            _nyquist_check(record, [self.low, high], "band-pass edges")
            sos = sps.butter(self.order, [self.low, high], "bandpass", fs=record.fs, output="sos")
        return _zero_phase(record, sos)


@dataclass(frozen=True)
class Notch:
    """Zero-phase notch at the mains frequency (50 or 60 Hz)."""

    freq: float = 50.0
    quality: float = 30.0

    def __call__(self, record: Record) -> Record:
        _nyquist_check(record, [self.freq], "notch")
        b, a = sps.iirnotch(self.freq, self.quality, fs=record.fs)
        return _zero_phase(record, sps.tf2sos(b, a))


@dataclass(frozen=True)
class RemoveBaseline:
    """Remove baseline wander: ``highpass`` (Butterworth at ``cutoff`` Hz) or ``median``
    (subtract a baseline made by median filters of ``windows`` seconds, applied in turn)."""

    method: Literal["highpass", "median"] = "highpass"
    cutoff: float = 0.5
    windows: tuple[float, ...] = (0.2, 0.6)

    def __call__(self, record: Record) -> Record:
        if self.method == "highpass":
            _nyquist_check(record, [self.cutoff], "baseline cut-off")
            sos = sps.butter(2, self.cutoff, "highpass", fs=record.fs, output="sos")
            return _zero_phase(record, sos)
        widths = [int(seconds * record.fs) // 2 * 2 + 1 for seconds in self.windows]

        def wander_removed(x: np.ndarray) -> np.ndarray:
            baseline = x
            for width in widths:
                baseline = sps.medfilt(baseline, kernel_size=(1, width))
            return x - baseline

        return record.replace(signal=by_rows(record, wander_removed))


@dataclass(frozen=True)
class Normalise:
    """``zscore`` per lead, ``zscore-global``, ``minmax`` per lead to [-1, 1], or ``none``.
    Flat leads become zeros (no division by ~0); zero-filled leads (the ``leads_zero_filled``
    repair) stay zeros and are left out of ``zscore-global``'s statistics."""

    method: Literal["none", "zscore", "zscore-global", "minmax"] = "zscore"
    eps: float = 1e-6

    def __call__(self, record: Record) -> Record:
        if self.method == "none":
            return record
        if self.method == "zscore-global":
            present = record.signal[_holding_data(record)].astype(np.float64)
            centre, spread = present.mean(), present.std()
            del present
        elif self.method not in ("zscore", "minmax"):
            raise ValueError(f"unknown normalisation {self.method!r}")

        def scaled(rows: np.ndarray) -> np.ndarray:
            x = rows.astype(np.float64)
            if self.method == "zscore":
                x = x - x.mean(axis=1, keepdims=True)
                scale = x.std(axis=1, keepdims=True)
            elif self.method == "zscore-global":
                x = x - centre
                scale = np.full((x.shape[0], 1), spread)
            else:  # minmax
                low, high = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
                x = x - (low + high) / 2
                scale = (high - low) / 2
            return np.where(scale > self.eps, x / np.maximum(scale, self.eps), 0.0)

        return record.replace(signal=by_rows(record, scaled))  # zero-filled leads stay zeros


def _zero_filled(record: Record) -> list[int]:
    """Rows of the leads :class:`SelectLeads` filled with zeros."""
    filled = {name for repair in record.metadata.get("repairs", [])
              if repair["kind"] == "leads_zero_filled" for name in repair["leads"]}  # fmt: skip
    return [i for i, name in enumerate(record.leads) if name in filled]


def _holding_data(record: Record) -> list[int]:
    """Rows of the leads not zero-filled (what the steps compute)."""
    filled = set(_zero_filled(record))
    return [i for i in range(record.n_leads) if i not in filled]


class MissingLeadsError(ECGInputError):
    """A record lacks leads a model needs (and they cannot be derived); ``fillable``: whether
    ``missing="zero"`` would run it (not when it shares no lead with the model)."""

    def __init__(self, source: str | None, problem: str, *, fillable: bool = True):
        super().__init__(source, problem)
        self.fillable = fillable


_DERIVED: dict[str, tuple[tuple[str, float], ...]] = {
    # Einthoven and Goldberger: every limb lead from leads I and II.
    "III": (("II", 1.0), ("I", -1.0)),
    "aVR": (("I", -0.5), ("II", -0.5)),
    "aVL": (("I", 1.0), ("II", -0.5)),
    "aVF": (("II", 1.0), ("I", -0.5)),
}


@dataclass(frozen=True)
class SelectLeads:
    """Select and reorder leads by name (any spelling).

    A missing limb lead is derived from I and II when ``derive`` (a documented repair, listed
    in ``metadata["repairs"]``); otherwise ``missing="raise"`` refuses and ``"zero"`` fills
    zeros (also listed).
    """

    leads: tuple[str, ...]
    missing: MissingLeads = "raise"
    derive: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "leads", tuple(self.leads))

    def __call__(self, record: Record) -> Record:
        wanted = [canonical_lead_name(n) or n for n in self.leads]
        if list(record.leads) == wanted:
            return record
        index = {name: i for i, name in enumerate(record.leads)}
        derivable = self.derive and {"I", "II"} <= index.keys()
        derived = [n for n in wanted if n not in index and derivable and n in _DERIVED]
        zeroed = [n for n in wanted if n not in index and n not in derived]
        if len(zeroed) == len(wanted):
            unnamed = not any(canonical_lead_name(n) for n in record.leads)
            hint = " (if these channels are leads, name them: --leads, leads=)" if unnamed else ""
            has = f"it has {list(record.leads)}{hint}"
            raise MissingLeadsError(record.source, f"shares no lead with the {wanted} needed: "
                                    f"{has}", fillable=False)  # fmt: skip
        if zeroed and self.missing == "raise":
            raise MissingLeadsError(
                record.source, f"leads {zeroed} are needed but the record has {list(record.leads)}"
            )
        signal = np.zeros((len(wanted), record.n_samples), dtype=np.float32)  # filled: zeros
        for row, name in enumerate(wanted):
            if name in index:
                signal[row] = record.signal[index[name]]
            elif name in derived:
                signal[row] = sum(w * record.signal[index[src]] for src, w in _DERIVED[name])
        out = record.replace(signal=signal, leads=tuple(wanted))
        if derived:
            out = out.with_repair(kind="leads_derived", leads=derived)
        if zeroed:
            out = out.with_repair(kind="leads_zero_filled", leads=zeroed)
        return out


@dataclass(frozen=True)
class CropPad:
    """Crop or zero-pad to exactly ``seconds`` (``align``: keep the start, centre or end)."""

    seconds: float
    align: Literal["start", "center", "end"] = "start"

    def __call__(self, record: Record) -> Record:
        target = round(self.seconds * record.fs)
        n = record.n_samples
        if n == target:
            return record
        offset = {"start": 0, "center": abs(n - target) // 2, "end": abs(n - target)}[self.align]
        if n > target:
            return record.replace(signal=record.signal[:, offset : offset + target].copy())
        out = np.zeros((record.n_leads, target), dtype=np.float32)
        out[:, offset : offset + n] = record.signal
        return record.replace(signal=out).with_repair(kind="zero_padded", samples=target - n)


@dataclass(frozen=True)
class Compose:
    """Apply transforms in order."""

    transforms: tuple[Any, ...] = ()

    def __call__(self, record: Record) -> Record:
        for transform in self.transforms:
            record = transform(record)
        return record

    def config(self) -> list[dict[str, Any]]:
        return [config_of(t) for t in self.transforms]


def pipeline_for(
    spec: InputSpec, *, crop: bool = True, missing_leads: MissingLeads = "raise"
) -> Compose:
    """The preprocessing a model with this input spec needs: the one order used everywhere.

    Leads are selected first (cheapest), then resampled, filtered (notch, band-pass, median
    baseline, as the spec asks) and normalised over the whole record; only then cut to the
    spec's length (unless ``crop=False``: long records are cut into windows later by
    :func:`model_windows`, short ones zero-padded after normalisation). Normalising before
    cutting means every window of a record is scaled alike, in training, evaluation and
    ``predict``/``embed``. A lead the spec needs and the record lacks (and that cannot be
    derived from I and II) is refused, or zero-filled with ``missing_leads="zero"`` (a repair
    listed in ``metadata["repairs"]``; the model then sees inputs unlike its training).
    """
    steps: list[Any] = [SelectLeads(spec.leads, missing=missing_leads), Resample(spec.fs)]
    if spec.notch is not None:
        steps.append(Notch(spec.notch))
    if spec.bandpass is not None:
        steps.append(BandPass(*spec.bandpass, order=spec.bandpass_order))
    if spec.baseline_window is not None:
        steps.append(RemoveBaseline("median", windows=(spec.baseline_window,)))
    steps.append(Normalise(spec.normalisation))
    if crop:
        steps.append(CropPad(spec.seconds))
    return Compose(tuple(steps))


def model_input(
    record: Record, spec: InputSpec, *, missing_leads: MissingLeads = "raise"
) -> Record:
    """A record prepared for a model, uncut: ``pipeline_for(spec, crop=False,
    missing_leads=...)``, zero-padded to one input if shorter."""
    prepared = pipeline_for(spec, crop=False, missing_leads=missing_leads)(record)
    if prepared.n_samples < spec.samples:
        prepared = CropPad(spec.seconds)(prepared)
    return prepared


def input_windows(prepared: Record, spec: InputSpec) -> np.ndarray:
    """Every window of :func:`window_starts` of a :func:`model_input` record [W, leads,
    spec.samples]."""
    starts = window_starts(prepared.n_samples, spec.samples)
    return np.stack([prepared.signal[:, s : s + spec.samples] for s in starts])


def model_windows(
    record: Record, spec: InputSpec, *, missing_leads: MissingLeads = "raise"
) -> tuple[np.ndarray, Record]:
    """A record as model inputs: :func:`model_input`, then every window of
    :func:`window_starts` (half-window stride, the last flush with the end). Returns
    (windows [W, leads, spec.samples], the prepared record).

    Training (random crops of the same prepared record), evaluation, ``predict``/``embed`` and
    ``pipeline_for(spec)`` (the first window) all see these same numbers.
    """
    prepared = model_input(record, spec, missing_leads=missing_leads)
    return input_windows(prepared, spec), prepared
