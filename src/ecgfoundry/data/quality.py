"""Signal checks every reader applies: NaN runs and flat leads.

Policies (documented repairs):
- ``nan="interpolate"`` (default): runs of NaN/inf are filled by linear interpolation between
  their neighbours (edges by the nearest valid sample) and listed in ``metadata["repairs"]``.
  A lead with no finite sample at all cannot be repaired and raises. ``nan="raise"`` refuses
  any NaN.
- ``flat="flag"`` (default): leads whose peak-to-peak amplitude is below ``FLAT_MV`` are listed
  in ``metadata["flat_leads"]``; per-lead z-scoring leaves them at zero. ``flat="raise"`` refuses
  them.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ecgfoundry.data.record import ECGInputError, Record

NanPolicy = Literal["interpolate", "raise"]
FlatPolicy = Literal["flag", "raise"]
FLAT_MV = 1e-3  # 1 microvolt peak to peak: no real ECG lead is this quiet


def repair_nans(record: Record, policy: NanPolicy = "interpolate") -> Record:
    """Interpolate (or refuse) non-finite samples, recording what was done."""
    bad = ~np.isfinite(record.signal)
    if not bad.any():
        return record
    counts = {lead: int(n) for lead, n in zip(record.leads, bad.sum(axis=1), strict=True) if n}
    if policy == "raise":
        raise ECGInputError(record.source, f"non-finite samples in leads {counts}")
    signal = record.signal.copy()
    t = np.arange(record.n_samples)
    for i, lead in enumerate(record.leads):
        if not bad[i].any():
            continue
        good = ~bad[i]
        if not good.any():
            raise ECGInputError(record.source, f"lead {lead} has no finite sample (all NaN/inf)")
        signal[i, bad[i]] = np.interp(t[bad[i]], t[good], signal[i, good])
    return record.replace(signal=signal).with_repair(kind="nan_interpolated", samples=counts)


def flat_leads(record: Record, threshold_mv: float = FLAT_MV) -> list[str]:
    """Names of leads whose peak-to-peak amplitude is below ``threshold_mv``."""
    if record.n_samples == 0:
        return list(record.leads)
    ptp = np.ptp(record.signal, axis=1)
    return [lead for lead, p in zip(record.leads, ptp, strict=True) if p < threshold_mv]


def check_flat(record: Record, policy: FlatPolicy = "flag") -> Record:
    """Flag (or refuse) leads that carry no signal."""
    flat = flat_leads(record)
    if not flat:
        return record
    if policy == "raise":
        raise ECGInputError(record.source, f"flat lead(s) {flat} (peak-to-peak < {FLAT_MV} mV)")
    return record.replace(metadata={**record.metadata, "flat_leads": flat})


def clean(record: Record, nan: NanPolicy = "interpolate", flat: FlatPolicy = "flag") -> Record:
    """Apply the NaN and flat-lead policies (every reader ends with this)."""
    if record.n_samples == 0:
        raise ECGInputError(record.source, "the signal has no samples")
    return check_flat(repair_nans(record, nan), flat)
