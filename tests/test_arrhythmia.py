"""Per-subject arrhythmia windows on real mitdb / vfdb records (a few records, not all)."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ecgfoundry.data import arrhythmia as A
from ecgfoundry.data.readers import read_wfdb
from ecgfoundry.data.record import Annotations, ECGInputError, Record
from ecgfoundry.data.transforms import resample_signal

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def vf430(vfdb_root: Path) -> Record:
    """vfdb 430: VT, VFL, VF, NOISE, asystole and an HGEA rhythm in one record."""
    return read_wfdb(vfdb_root / "430", annotation="atr")


@pytest.fixture(scope="module")
def mit207(mitdb_root: Path) -> Record:
    """mitdb 207: VT, plus ventricular flutter marked by '(VFL' and by '[' ... ']'."""
    return read_wfdb(mitdb_root / "207", annotation="atr")


def _plus(record: Record) -> list[tuple[int, str]]:
    ann = record.annotations
    assert ann is not None
    return [
        (int(s), n)
        for s, y, n in zip(ann.sample, ann.symbol, ann.aux_note, strict=True)
        if y == "+"
    ]


def _check_cover(episodes: list[A.Episode], n: int) -> None:
    assert episodes[0].start == 0 and episodes[-1].end == n
    for a, b in itertools.pairwise(episodes):
        assert a.end == b.start and a.rhythm != b.rhythm


def _ann(rows: list[tuple[int, str, str]], fs: float = 100.0) -> Annotations:
    return Annotations(
        sample=np.array([r[0] for r in rows], dtype=np.int64),
        symbol=tuple(r[1] for r in rows),
        aux_note=tuple(r[2] for r in rows),
        fs=fs,
    )


# --- episodes ---------------------------------------------------------------------------


def test_vfdb_episodes_follow_rhythm_annotations(vf430: Record) -> None:
    n = vf430.n_samples
    episodes = A.rhythm_episodes(vf430.annotations, n)
    _check_cover(episodes, n)
    assert episodes[0] == A.Episode(0, 28, A.UNANNOTATED)  # first '(BI' is at sample 28
    # Every rhythm change starts an episode of that rhythm (repeats such as two '(BI' merge).
    starts = {e.start: e.rhythm for e in episodes}
    for sample, note in _plus(vf430):
        name = note[1:]
        assert any(e.start <= sample < e.end and e.rhythm == name for e in episodes)
        if sample in starts:
            assert starts[sample] == name
    names = {e.rhythm for e in episodes}
    assert {"VT", "VFL", "VF", "NOISE", "ASYS", "HGEA"} <= names
    va_seconds = sum(e.samples for e in episodes if e.is_va) / vf430.fs
    assert 1400 < va_seconds < 1500  # VT 341 s + VFL 74 s + VF 1041 s, as annotated
    # The first VT episode: '(VT' at 51903 until '(BI' at 53211.
    assert A.Episode(51903, 53211, "VT") in episodes
    assert not any(e.is_va for e in episodes if e.rhythm in ("VER", "HGEA", "ASYS"))


def test_mitdb_207_brackets_extend_flutter(mit207: Record) -> None:
    n = mit207.n_samples
    episodes = A.rhythm_episodes(mit207.annotations, n)
    _check_cover(episodes, n)
    # '[' at 14665 precedes '+(VFL' at 14689; the flutter lasts until '+(N' at 18396.
    assert A.Episode(14665, 18396, "VFL") in episodes
    assert A.Episode(13868, 14414, "VT") in episodes
    sym = np.array(mit207.annotations.symbol)
    for s in np.asarray(mit207.annotations.sample)[sym == "["]:
        assert any(e.is_va and e.start <= s < e.end for e in episodes)


def test_mitdb_205_has_vt_episodes(mitdb_root: Path) -> None:
    rec = read_wfdb(mitdb_root / "205", annotation="atr", sampto=120_000)
    episodes = A.rhythm_episodes(rec.annotations, rec.n_samples)
    assert [e for e in episodes if e.is_va] == [
        A.Episode(107561, 108650, "VT"),
        A.Episode(109089, 110272, "VT"),
    ]


def test_episode_rules_on_synthetic_annotations() -> None:
    ann = _ann(
        [
            (10, "+", "(N"),
            (20, "N", ""),
            (30, "[", ""),
            (50, "]", ""),
            (60, "+", "(NOISE"),
            (70, "+", "(VFIB"),
            (70, "+", "(VT"),  # two changes at one sample: the last wins
            (80, "+", "(N"),
            (90, "[", ""),  # never closed
            (95, '"', "MISSB"),  # a comment, not a rhythm
        ]
    )
    assert A.rhythm_episodes(ann, 100) == [
        A.Episode(0, 10, A.UNANNOTATED),
        A.Episode(10, 30, "N"),
        A.Episode(30, 50, "VF"),  # '[' ... ']' over no VA rhythm is called VF
        A.Episode(50, 60, "N"),
        A.Episode(60, 70, "NOISE"),
        A.Episode(70, 80, "VT"),
        A.Episode(80, 90, "N"),
        A.Episode(90, 100, "VF"),
    ]
    assert A.rhythm_episodes(_ann([]), 5) == [A.Episode(0, 5, A.UNANNOTATED)]
    assert A.Episode(0, 1, "VFIB").is_va and A.Episode(0, 1, "NOISE").is_unknown


def test_aami_mapping() -> None:
    expected = {
        "N": "NLRej",
        "S": "AaJS",
        "V": "VE",
        "F": "F",
        "Q": "/fQ",
    }
    for cls, symbols in expected.items():
        for s in symbols:
            assert A.aami_class(s) == cls
    assert len(A.AAMI_MAP) == sum(len(s) for s in expected.values())
    for s in ("+", "~", "!", "|", "x", '"', "[", "]", "?"):
        assert A.aami_class(s) is None


# --- window labels ----------------------------------------------------------------------


def test_window_labels_agree_with_episodes(vf430: Record) -> None:
    ws = A.windows_from_record(vf430, unknown="keep")
    episodes = A.rhythm_episodes(vf430.annotations, vf430.n_samples)
    span = round(ws.window_seconds * vf430.fs)
    inside = {"va": 0, "other": 0, "unknown": 0}
    for start, label, frac in zip(ws.start, ws.labels, ws.extra["va_fraction"], strict=True):
        # rescaling moves boundaries by < 1 sample at 200 Hz (2 at 250 Hz): keep a margin
        holder = [e for e in episodes if e.start <= start - 2 and start + span + 2 <= e.end]
        if not holder:
            continue
        rhythm = holder[0]
        kind = "va" if rhythm.is_va else "unknown" if rhythm.is_unknown else "other"
        assert label == kind, (start, rhythm)
        assert frac == (1.0 if rhythm.is_va else 0.0)
        inside[kind] += 1
    assert min(inside.values()) > 10
    # Dropping unknown windows removes exactly those.
    dropped = A.windows_from_record(vf430)
    assert dropped.classes == ("other", "va")
    assert len(dropped) == len(ws) - ws.class_counts()["unknown"]


def test_min_overlap_rule() -> None:
    fs = 100.0
    ann = _ann([(0, "+", "(N"), (150, "+", "(VT"), (400, "+", "(NOISE"), (500, "+", "(N")], fs)
    rec = Record(np.zeros((1, 600), np.float32), fs, ("II",), annotations=ann)
    ws = A.windows_from_record(rec, seconds=1.0, fs=None, unknown="keep")
    # windows [0,100) N, [100,200) 50 % VT, [200,300) VT, [300,400) VT, [400,500) NOISE, [500,600)
    assert list(ws.labels) == ["other", "va", "va", "va", "unknown", "other"]
    assert list(ws.extra["rhythm"]) == ["N", "N", "VT", "VT", "NOISE", "N"]
    strict = A.windows_from_record(rec, seconds=1.0, fs=None, min_overlap=0.6, unknown="keep")
    assert list(strict.labels) == ["other", "unknown", "va", "va", "unknown", "other"]
    np.testing.assert_allclose(strict.extra["va_fraction"], [0, 0.5, 1, 1, 0, 0])


# --- subjects, shapes, content ----------------------------------------------------------


def test_subjects_starts_and_content_never_mix(vfdb_root: Path) -> None:
    ws = A.load_windows("vfdb", vfdb_root, records=["418", "419"], fs=None, unknown="keep")
    assert ws.subjects() == ["418", "419"] and ws.dataset == "vfdb"
    assert set(ws.subject) == {"418", "419"} and (ws.subject == ws.record).all()
    assert set(ws.lead) == {"ECG1"} and ws.fs == 250.0 and ws.x.dtype == np.float32
    size = ws.samples
    assert size == 500
    for subject in ws.subjects():
        sub = ws.by_subject(subject)
        signal = read_wfdb(vfdb_root / subject).lead("ECG1")
        assert (np.diff(sub.start) == 500).all()
        assert len(sub) == len(signal) // 500
        picks = np.linspace(0, len(sub) - 1, 25).astype(int)
        for i in picks:  # each window is its own record's samples, in mV
            np.testing.assert_array_equal(sub.x[i], signal[sub.start[i] : sub.start[i] + size])
    with pytest.raises(KeyError):
        ws.by_subject("999")
    table = ws.table()
    assert len(table) == len(ws) and {"subject", "start", "label", "va_fraction"} <= set(table)
    assert table.groupby("subject").size().to_dict() == {
        s: sum(c.values()) for s, c in ws.subject_counts().items()
    }


def test_length_stride_and_rate_change_shapes(vfdb_root: Path) -> None:
    rec = read_wfdb(vfdb_root / "418", annotation="atr")  # 525000 samples at 250 Hz = 2100 s
    assert rec.n_samples == 525_000
    cases = [
        # seconds, stride, fs, samples per window, windows
        (2.0, None, 200.0, 400, (420_000 - 400) // 400 + 1),
        (2.0, 1.0, 200.0, 400, (420_000 - 400) // 200 + 1),
        (5.0, 2.5, 125.0, 625, (262_500 - 625) // 312 + 1),
        (2.0, None, None, 500, 1050),
        (4.0, 4.0, 500.0, 2000, 525),
    ]
    for seconds, stride, fs, samples, count in cases:
        ws = A.windows_from_record(rec, seconds=seconds, stride=stride, fs=fs, unknown="keep")
        assert ws.x.shape == (count, samples), (seconds, stride, fs)
        assert ws.fs == (fs or 250.0)
        assert ws.start[-1] <= rec.n_samples - seconds * 250  # starts stay in record samples
    # Resampled content: window i of the 200 Hz set is the resampled record at its offset.
    ws = A.windows_from_record(rec, fs=200.0, unknown="keep")
    resampled = resample_signal(rec.signal[0], 250.0, 200.0)
    np.testing.assert_array_equal(ws.x[7], resampled[7 * 400 : 8 * 400])
    assert ws.start[7] == 7 * 500


def test_mitdb_subject_of_202_is_201(mitdb_root: Path) -> None:
    ws = A.load_windows("mitdb", mitdb_root, records=["201", "202"], seconds=10.0)
    assert ws.subjects() == ["201"]
    assert set(ws.record) == {"201", "202"}
    assert set(ws.lead) == {"MLII"}


def test_beat_windows(mitdb_root: Path) -> None:
    ws = A.load_windows("mitdb", mitdb_root, records=["205"], label="beat", seconds=1.0, fs=250)
    rec_ann = read_wfdb(mitdb_root / "205", annotation="atr").annotations
    symbols = np.array(rec_ann.symbol)
    beats = np.isin(symbols, list(A.AAMI_MAP))
    assert ws.classes == A.AAMI_CLASSES and ws.x.shape[1] == 250 and ws.stride_seconds is None
    assert beats.sum() - 2 <= len(ws) <= beats.sum()  # only beats at the very edges drop
    counts = ws.class_counts()
    for cls in A.AAMI_CLASSES:
        raw = sum(1 for s in symbols[beats] if A.AAMI_MAP[s] == cls)
        assert raw - 2 <= counts[cls] <= raw
    assert counts["V"] > 50 and counts["N"] > 2000
    # Each window is centred on its beat (to within a sample at the new rate).
    centre = ws.start + 125 * 360 / 250
    assert np.abs(centre - ws.extra["beat"]).max() <= 360 / 250 + 1
    assert [A.AAMI_MAP[s] for s in ws.extra["symbol"]] == list(ws.labels)


# --- problems ---------------------------------------------------------------------------


def _copy(src: Path, dst: Path, names: list[str], records_file: bool) -> Path:
    dst.mkdir()
    for name in names:
        for ext in (".hea", ".dat", ".atr"):
            shutil.copy(src / f"{name}{ext}", dst / f"{name}{ext}")
    if records_file:
        (dst / "RECORDS").write_text("\n".join(names) + "\n")
    return dst


def test_unreadable_record_is_listed_and_the_rest_load(vfdb_root: Path, tmp_path: Path) -> None:
    root = _copy(vfdb_root, tmp_path / "vfdb", ["418", "428"], records_file=False)
    dat = root / "428.dat"
    dat.write_bytes(dat.read_bytes()[:100_000])
    ws = A.load_windows(root)  # no RECORDS file: every *.hea
    assert ws.dataset == "vfdb" and ws.subjects() == ["418"]
    assert list(ws.unreadable) == ["428"] and "truncated" in ws.unreadable["428"]
    info = A.summary(root)
    assert info["unreadable"].keys() == {"428"} and info["subject_ids"] == ["418"]


def test_missing_lead_skips_or_raises(mitdb_root: Path) -> None:
    ws = A.load_windows("mitdb", mitdb_root, records=["102", "205"], seconds=10.0)
    assert ws.subjects() == ["205"]
    assert "no lead 'MLII'" in ws.skipped["102"]
    with pytest.raises(ECGInputError, match=r"102.*no lead 'MLII'"):
        A.load_windows("mitdb", mitdb_root, records=["102"], missing_lead="raise")
    first = A.load_windows("mitdb", mitdb_root, records=["102"], lead=0, seconds=10.0)
    assert set(first.lead) == {"V5"} and len(first) > 0
    with pytest.raises(ECGInputError, match="no lead 'V9'"):
        A.windows_from_record(read_wfdb(mitdb_root / "102", annotation="atr"), lead="V9")


def test_window_longer_than_record(vfdb_root: Path) -> None:
    ws = A.load_windows("vfdb", vfdb_root, records=["418"], seconds=3000.0)
    assert len(ws) == 0 and ws.x.shape == (0, 600_000)
    assert "shorter than one 3000 s window" in ws.skipped["418"]
    assert ws.class_counts() == {"other": 0, "va": 0} and ws.subjects() == []
    with pytest.raises(ValueError):
        A.load_windows("vfdb", vfdb_root, records=["418"], seconds=0)
    with pytest.raises(ValueError):
        A.load_windows("vfdb", vfdb_root, records=["418"], min_overlap=1.5)
    with pytest.raises(ECGInputError):
        A.load_windows("vfdb")  # a name without a root


def test_summary_matches_windows(mitdb_root: Path, tmp_path: Path) -> None:
    root = _copy(mitdb_root, tmp_path / "mitdb", ["104", "207", "223"], records_file=True)
    info = A.summary("mitdb", root)
    json.dumps(info)
    assert info["subject_ids"] == ["207", "223"] and info["records"] == 2
    assert info["skipped"].keys() == {"104"} and info["leads_used"] == {"MLII": 2}
    assert info["fs"] == 200.0 and info["window_seconds"] == 2.0
    va = A.load_windows("mitdb", root)
    assert info["va"]["classes"] == va.class_counts()
    assert info["va"]["per_subject"] == va.subject_counts()
    assert info["va"]["classes"]["va"] > 100 and info["va"]["subjects_with_va"] == 2
    with pytest.raises(
        ECGInputError, match=r"all 2 readable records were skipped \(207: no lead 'V9'"
    ):
        A.summary("mitdb", root, lead="V9", records=["207", "223"])  # a lead no record has
    beats = A.load_windows("mitdb", root, label="beat")
    assert info["beat"]["classes"] == beats.class_counts()
    assert info["beat"]["windows"] == len(beats)
