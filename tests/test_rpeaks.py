"""The QRS detector behind the summaries' heart rates: checked against mitdb's beat annotations,
and not thrown by one large artefact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import wfdb

from ecgfoundry.data import read_record
from ecgfoundry.data.rpeaks import heart_rate
from ecgfoundry.data.samples import sample_dir

BEATS = set("NLRBAaJSVrFejnE/fQ?")  # mitdb's beat annotation symbols


def test_one_large_artefact_does_not_hide_the_beats() -> None:
    record = read_record(sample_dir() / "ptbxl" / "00010_lr.hea")  # sinus, 62/min
    lead = record.lead("II").astype(np.float64)
    assert round(heart_rate(lead, record.fs)) == 62
    noisy = lead.copy()
    noisy[-70:] += 5 * np.sin(np.linspace(0, 14 * np.pi, 70))  # the last 0.7 s: 10 mV at 10 Hz
    assert abs(heart_rate(noisy, record.fs) - 62) < 3  # (a top-percentile threshold: 150/min)


def test_heart_rates_match_the_annotated_beats_of_mitdb(mitdb_root: Path) -> None:
    """10-s windows every 5 minutes of all 48 records (MLII): the detector's median rate is
    within 5/min of the annotated beats' in at least 95 % of them, and every window gets one."""
    errors = []
    for header in sorted(mitdb_root.glob("*.hea")):
        base = str(header.with_suffix(""))
        signal, fields = wfdb.rdsamp(base, channels=[0])
        annotation = wfdb.rdann(base, "atr")
        fs, length = fields["fs"], int(10 * fields["fs"])
        beats = np.array([s for s, y in zip(annotation.sample, annotation.symbol, strict=True)
                          if y in BEATS])  # fmt: skip
        for start in range(0, len(signal) - length, int(300 * fs)):
            inside = beats[(beats >= start) & (beats < start + length)]
            if len(inside) < 2:
                continue
            truth = 60 * fs / np.median(np.diff(inside))
            rate = heart_rate(signal[start : start + length, 0], fs)
            errors.append(np.inf if rate is None else abs(rate - truth))
    assert len(errors) == 288 and np.isfinite(errors).all()
    assert np.mean(np.array(errors) <= 5) >= 0.95
