"""The QRS detector behind the summaries' heart rates: checked against mitdb's beat annotations
(through benchmarks/heart_rate.py, which reports the same on every minute), and not thrown by
one large artefact."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ecgfoundry.data import read_record
from ecgfoundry.data.rpeaks import heart_rate
from ecgfoundry.data.samples import sample_dir


def test_one_large_artefact_does_not_hide_the_beats() -> None:
    record = read_record(sample_dir() / "ptbxl" / "00010_lr.hea")  # sinus, 62/min
    lead = record.lead("II").astype(np.float64)
    assert round(heart_rate(lead, record.fs)) == 62
    noisy = lead.copy()
    noisy[-70:] += 5 * np.sin(np.linspace(0, 14 * np.pi, 70))  # the last 0.7 s: 10 mV at 10 Hz
    assert abs(heart_rate(noisy, record.fs) - 62) < 3  # (a top-percentile threshold: 150/min)


def test_a_lead_that_drops_out_is_not_read_as_fast_noise() -> None:
    record = read_record(sample_dir() / "ptbxl" / "00010_lr.hea")  # sinus, 62/min
    lead = record.lead("II").astype(np.float64)
    for dropped in (np.zeros(600), np.random.default_rng(0).normal(0, 0.005, 600)):  # 5 uV
        partly = np.concatenate([lead[:400], dropped])  # the last 6 of 10 s silent
        assert abs(heart_rate(partly, record.fs) - 62) < 8  # 4 s of beats (noise: 200/min)
    assert heart_rate(lead[:99], record.fs) is None  # under a second: no rate, no error
    assert heart_rate(lead[:10], record.fs) is None


def test_heart_rates_match_the_annotated_beats_of_mitdb(mitdb_root: Path) -> None:
    """10-s windows every 5 minutes of all 48 records (MLII): the detector's median rate is
    within 5/min of the annotated beats' in at least 95 % of them, and every window gets one."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "heart_rate.py"
    spec = importlib.util.spec_from_file_location("heart_rate", script)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    errors = np.array(benchmark.errors(mitdb_root, every=300, channel=0))
    assert len(errors) == 288 and np.isfinite(errors).all()
    assert np.mean(errors <= 5) >= 0.95
