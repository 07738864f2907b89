"""Preprocessing transforms: shapes, signal properties and the spec-driven pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal as sps

from ecgfoundry.data import read_record, transforms
from ecgfoundry.data.readers import read_array
from ecgfoundry.data.record import (
    STANDARD_LEADS,
    Annotations,
    ECGInputError,
    Record,
    describe_repair,
)
from ecgfoundry.data.transforms import (
    BandPass,
    Compose,
    CropPad,
    Normalise,
    Notch,
    RemoveBaseline,
    Resample,
    SelectLeads,
    pipeline_for,
    sliding_windows,
)
from ecgfoundry.spec import InputSpec


def tone(freqs: dict[float, float], fs: float, seconds: float, leads=("II",)) -> Record:
    t = np.arange(int(fs * seconds)) / fs
    x = sum(a * np.sin(2 * np.pi * f * t) for f, a in freqs.items())
    return Record(np.tile(x, (len(leads), 1)), fs, leads)


def amplitude(x: np.ndarray, fs: float, freq: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) * 2 / len(x)
    return float(spectrum[round(freq * len(x) / fs)])


@settings(max_examples=40, deadline=None)
@given(
    fs_in=st.sampled_from([100, 125, 128, 250, 257, 360, 500, 1000]),
    fs_out=st.sampled_from([50, 100, 250, 500]),
    seconds=st.floats(1, 12),
)
def test_resample_length_and_dtype(fs_in: int, fs_out: int, seconds: float) -> None:
    record = Record(np.ones((2, int(fs_in * seconds))), fs_in, ("I", "II"))
    out = Resample(fs_out)(record)
    assert out.fs == fs_out and out.signal.dtype == np.float32
    assert abs(out.n_samples - record.n_samples * fs_out / fs_in) <= 1


def test_resample_moves_annotations() -> None:
    ann = Annotations(np.array([0, 360, 720]), ("N", "V", "N"), ("", "", ""), fs=360)
    record = Record(np.zeros((1, 1080)), 360, ("MLII",), annotations=ann)
    out = Resample(250)(record)
    np.testing.assert_array_equal(out.annotations.sample, [0, 250, 500])


def test_bandpass_and_notch_attenuate_the_right_frequencies() -> None:
    record = tone({0.1: 1.0, 10.0: 1.0, 50.0: 1.0, 100.0: 1.0}, fs=500, seconds=20)
    band = BandPass(0.5, 40)(record).signal[0]
    assert amplitude(band, 500, 10) > 0.9
    assert amplitude(band, 500, 0.1) < 0.1 and amplitude(band, 500, 100) < 0.05
    notched = Notch(50)(record).signal[0]
    assert amplitude(notched, 500, 50) < 0.05 and amplitude(notched, 500, 10) > 0.95


def test_bandpass_high_edge_above_nyquist_becomes_highpass() -> None:
    record = tone({0.1: 1.0, 10.0: 1.0, 45.0: 1.0}, fs=100, seconds=20)
    out = BandPass(0.5, 150)(record).signal[0]  # 150 Hz > Nyquist: documented high-pass only
    assert amplitude(out, 100, 45) > 0.9 and amplitude(out, 100, 0.1) < 0.1


def test_filters_refuse_impossible_frequencies() -> None:
    record = tone({1.0: 1.0}, fs=100, seconds=5).replace(source="rec.hea")
    with pytest.raises(
        ECGInputError, match=r"rec\.hea: notch at \[50\] Hz is impossible at 100 Hz"
    ):
        Notch(50)(record)


@pytest.mark.parametrize("method", ["highpass", "median"])
def test_baseline_removal(method: str) -> None:
    fs = 250
    t = np.arange(fs * 10) / fs
    qrs = sps.square(2 * np.pi * 1.2 * t, duty=0.05) + 1  # spiky beats
    drift = 2 * np.sin(2 * np.pi * 0.15 * t)
    record = Record(np.stack([qrs + drift]), fs, ("II",))
    out = RemoveBaseline(method)(record).signal[0]
    assert np.abs(np.polyfit(t, out, 1)[0]) < 0.05  # no residual slope
    assert amplitude(out, fs, 0.15) < 0.25 * amplitude(record.signal[0], fs, 0.15)


@settings(max_examples=30, deadline=None)
@given(
    arrays=st.integers(2, 500).flatmap(
        lambda n: st.lists(st.floats(-10, 10), min_size=n, max_size=n)
    ),
    method=st.sampled_from(["zscore", "zscore-global", "minmax"]),
)
def test_normalise_statistics(arrays: list[float], method: str) -> None:
    x = np.array([arrays, np.array(arrays) * 3 + 1])
    out = Normalise(method)(Record(x, 100, ("I", "II"))).signal
    assert np.isfinite(out).all()
    if np.ptp(x[0]) > 1e-3:
        if method == "zscore":
            np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-4)
            np.testing.assert_allclose(out.std(axis=1), 1, atol=1e-3)
        elif method == "minmax":
            np.testing.assert_allclose(out.min(axis=1), -1, atol=1e-5)
            np.testing.assert_allclose(out.max(axis=1), 1, atol=1e-5)
        else:
            assert abs(out.mean()) < 1e-4 and abs(out.std() - 1) < 1e-3


def test_select_leads_reorders_and_derives_limb_leads() -> None:
    rng = np.random.default_rng(0)
    lead_i, lead_ii = rng.normal(size=(2, 300))
    record = read_array(np.stack([lead_ii, lead_i]), 100, ["II", "I"])
    out = SelectLeads(("I", "II", "III", "aVR", "aVL", "aVF"))(record)
    assert out.leads == ("I", "II", "III", "aVR", "aVL", "aVF")
    expected = [lead_i, lead_ii, lead_ii - lead_i, -(lead_i + lead_ii) / 2,
                lead_i - lead_ii / 2, lead_ii - lead_i / 2]  # fmt: skip
    np.testing.assert_allclose(out.signal, np.stack(expected), atol=1e-5)
    assert out.metadata["repairs"][-1] == {
        "kind": "leads_derived",
        "leads": ["III", "aVR", "aVL", "aVF"],
    }
    zeroed = SelectLeads(("II", "V1"), missing="zero")(record)
    assert np.all(zeroed.signal[1] == 0)
    assert zeroed.metadata["repairs"][-1] == {"kind": "leads_zero_filled", "leads": ["V1"]}
    assert describe_repair(zeroed.metadata["repairs"][-1]) == "leads_zero_filled: V1"


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3000), seconds=st.sampled_from([2.5, 5.0, 10.0]),
       align=st.sampled_from(["start", "center", "end"]))  # fmt: skip
def test_crop_pad_exact_length(n: int, seconds: float, align: str) -> None:
    x = np.arange(n, dtype=np.float32)[None] + 1
    out = CropPad(seconds, align)(Record(x, 100, ("I",))).signal
    target = int(seconds * 100)
    assert out.shape == (1, target)
    kept = out[out != 0]
    assert len(kept) == min(n, target) and np.all(np.diff(kept) == 1)  # a contiguous stretch
    if align == "start":
        assert kept[0] == 1


@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 200), size=st.integers(1, 50), stride=st.integers(1, 50), pad=st.booleans())
def test_sliding_windows(n: int, size: int, stride: int, pad: bool) -> None:
    x = np.arange(2 * n, dtype=np.float32).reshape(2, n)
    windows = sliding_windows(x, size, stride, pad=pad)
    full = 0 if n < size else (n - size) // stride + 1
    assert windows.shape[1:] == (2, size)
    if pad:
        assert len(windows) >= full and len(windows) * stride >= n - size
    else:
        assert len(windows) == full
    for i in range(full):
        np.testing.assert_array_equal(windows[i], x[:, i * stride : i * stride + size])


def test_pipeline_follows_the_spec() -> None:
    spec = InputSpec(fs=250, seconds=5, leads=STANDARD_LEADS, normalisation="zscore",
                     bandpass=(0.5, 40))  # fmt: skip
    pipeline = pipeline_for(spec)  # normalised over the whole record, then cut
    assert [c["name"] for c in pipeline.config()] == [
        "SelectLeads", "Resample", "BandPass", "Normalise", "CropPad",
    ]  # fmt: skip
    record = read_array(np.random.default_rng(0).normal(size=(12, 5000)), 500, STANDARD_LEADS[::-1])
    out = pipeline(record)
    assert out.leads == STANDARD_LEADS and out.fs == 250 and out.signal.shape == (12, spec.samples)
    whole = pipeline_for(spec, crop=False)(record).signal
    np.testing.assert_allclose(whole.std(axis=1), 1, atol=1e-3)
    np.testing.assert_array_equal(out.signal, whole[:, : spec.samples])
    assert isinstance(pipeline, Compose) and pipeline_for(spec) == pipeline  # hashable config


def test_input_spec_validation_and_round_trip() -> None:
    spec = InputSpec(fs=500, seconds=10, leads=["I", "II"], bandpass=[0.5, 100])
    assert InputSpec.from_dict(spec.to_dict()) == spec and spec.samples == 5000
    with pytest.raises(ValueError, match="normalisation"):
        InputSpec(fs=100, seconds=10, leads=("I",), normalisation="l2")
    with pytest.raises(ValueError, match="fs must be positive"):
        InputSpec(fs=0, seconds=10, leads=("I",))


@pytest.mark.parametrize(
    ("length", "window", "expected"),
    [
        (1000, 1000, [0]),
        (800, 1000, [0]),
        (1000, 500, [0, 250, 500]),
        (1000, 400, [0, 200, 400, 600]),
    ],
)
def test_window_starts_cover_the_signal(length: int, window: int, expected: list[int]) -> None:
    from ecgfoundry.data.transforms import window_starts

    starts = window_starts(length, window)
    assert list(starts) == expected
    assert starts[-1] + window >= min(length, window) and starts[-1] + window <= max(length, window)


PIPELINE_SPECS = {
    "notch + band-pass + median baseline + zscore-global, 500 Hz":
        InputSpec(fs=500.0, seconds=10.0, leads=STANDARD_LEADS, normalisation="zscore-global",
                  bandpass=(0.67, 40.0), bandpass_order=4, notch=50.0, baseline_window=0.4),
    "band-pass + zscore, 100 Hz":
        InputSpec(fs=100.0, seconds=10.0, leads=STANDARD_LEADS, bandpass=(0.5, 40.0)),
    "minmax, 250 Hz":
        InputSpec(fs=250.0, seconds=5.0, leads=STANDARD_LEADS, normalisation="minmax"),
    "millivolts, 240 Hz":
        InputSpec(fs=240.0, seconds=10.0, leads=STANDARD_LEADS, normalisation="none"),
}  # fmt: skip


@pytest.mark.shared_data
@pytest.mark.parametrize("spec", PIPELINE_SPECS.values(), ids=list(PIPELINE_SPECS))
def test_leads_prepared_one_at_a_time_equal_all_at_once(spec, ptbxl_root, vfdb_root, monkeypatch):
    """The pipeline's steps go a few leads at a time (one for a long recording) and skip
    zero-filled leads: the numbers must be those of one pass over all leads together."""
    records = [read_record(ptbxl_root / "records100/00000/00001_lr.hea"),
               read_record(ptbxl_root / "records100/01000/01001_lr.hea")]  # fmt: skip
    first = records[0]
    records.append(first.replace(signal=first.signal[[0, 1, 6]], leads=("I", "II", "V1")))
    holter = read_record(vfdb_root / "418")
    records.append(holter.replace(signal=holter.signal[:, : 250 * 120], leads=("I", "II")))
    pipeline = pipeline_for(spec, crop=False, missing_leads="zero")
    prepared = {}
    for chunk in (1, 1 << 30):  # one lead at a time; every lead together
        monkeypatch.setattr(transforms, "CHUNK_SAMPLES", chunk)
        prepared[chunk] = [pipeline(r) for r in records]
    for one, together in zip(prepared[1], prepared[1 << 30], strict=True):
        assert one.signal.dtype == np.float32 and one.signal.tobytes() == together.signal.tobytes()
    filled = prepared[1][-1]  # vfdb's two leads, named I and II: V1-V6 zero-filled
    zeros = filled.signal[[filled.leads.index(f"V{i}") for i in range(1, 7)]]
    assert not zeros.any() and not np.signbit(zeros).any()  # +0.0, never computed
    assert filled.signal[:6].std(axis=1).min() > 0  # I, II and the limb leads derived


def test_a_two_lead_holter_through_a_12_lead_pipeline_holds_little_memory():
    """A 2-lead recording needs 12 leads for a 12-lead model: ten are zero-filled and cost
    nothing, and the steps hold about one lead's intermediates: the peak is 1.8x the 12
    selected leads at the recording's rate (it was 3.2x when every step took all twelve)."""
    import tracemalloc

    fs, seconds = 250.0, 3600
    rng = np.random.default_rng(0)
    holter = Record(rng.standard_normal((2, int(fs * seconds))).astype(np.float32), fs,
                    ("I", "II"))  # fmt: skip
    spec = InputSpec(fs=100.0, seconds=10.0, leads=STANDARD_LEADS,
                     normalisation="zscore-global", bandpass=(0.67, 40.0), bandpass_order=4,
                     baseline_window=0.4)  # fmt: skip
    selected = 12 * holter.n_samples * 4  # bytes of the 12 leads at the recording's rate
    tracemalloc.start()
    try:
        prepared = pipeline_for(spec, crop=False, missing_leads="zero")(holter)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert prepared.signal.shape == (12, int(100 * seconds))
    assert peak < 2.2 * selected, f"peak {peak / 1e6:.0f} MB against {selected / 1e6:.0f} MB"
