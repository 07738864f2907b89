"""A small QRS detector (band-pass, squared slope, peak picking) for summaries and windows."""

from __future__ import annotations

import numpy as np
from scipy import signal as sps


def detect_r_peaks(x: np.ndarray, fs: float) -> np.ndarray:
    """Sample indices of R peaks in one lead (Pan-Tompkins-style energy envelope)."""
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
    peaks, _ = sps.find_peaks(
        envelope, height=0.3 * np.percentile(envelope, 99), distance=int(0.25 * fs)
    )
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
