"""The preprocessed cache: keyed by sources and config, reused, rebuilt, never half-written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb

from ecgfoundry.data import cache as cache_module
from ecgfoundry.data.cache import ArrayStore, build_cache
from ecgfoundry.data.readers import read_wfdb
from ecgfoundry.data.record import ECGInputError, Record
from ecgfoundry.data.transforms import Compose, CropPad, Normalise


def make_records(folder: Path, n: int = 6, samples: int = 300) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    bases = []
    for i in range(n):
        wfdb.wrsamp(
            f"r{i}", fs=100, units=["mV", "mV"], sig_name=["I", "II"],
            p_signal=np.round(rng.normal(0, 0.5, (samples + 10 * i, 2)), 3), fmt=["16", "16"],
            adc_gain=[1000.0, 1000.0], baseline=[0, 0], write_dir=str(folder),
        )  # fmt: skip
        bases.append(folder / f"r{i}")
    return bases


def read_and_transform(transform: Compose, base: Path) -> Record:
    return transform(read_wfdb(base))


PIPELINE = Compose((CropPad(3.0), Normalise("zscore")))


def build(bases: list[Path], cache_dir: Path, pipeline: Compose = PIPELINE, **kw) -> ArrayStore:
    sources = [p for b in bases for p in (b.with_suffix(".hea"), b.with_suffix(".dat"))]
    return build_cache(
        "toy",
        bases,
        partial(read_and_transform, pipeline),
        sources=sources,
        columns=pd.DataFrame({"path": [str(b) for b in bases], "id": range(len(bases))}),
        config={"transform": pipeline.config(), "root": str(bases[0].parent)},
        cache_dir=cache_dir,
        **kw,
    )


def test_build_matches_direct_reading(tmp_path: Path) -> None:
    bases = make_records(tmp_path / "data")
    store = build(bases, tmp_path / "cache")
    assert store.signals.shape == (6, 2, 300) and isinstance(store.signals, np.memmap)
    for row, base in enumerate(bases):
        np.testing.assert_array_equal(store.signals[row], read_and_transform(PIPELINE, base).signal)
    assert list(store.index.columns) == ["row", "path", "id"]
    meta = json.loads((store.path / "meta.json").read_text())
    assert meta["complete"] and meta["records"] == 6 and meta["unreadable"] == []


def test_reused_without_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bases = make_records(tmp_path / "data")
    first = build(bases, tmp_path / "cache")

    def refuse(*args, **kwargs):
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(cache_module, "_write", refuse)
    assert build(bases, tmp_path / "cache").path == first.path


def test_rebuilt_when_a_source_or_the_config_changes(tmp_path: Path) -> None:
    bases = make_records(tmp_path / "data")
    first = build(bases, tmp_path / "cache")
    before = np.array(first.signals[2])
    wfdb.wrsamp(
        "r2", fs=100, units=["mV", "mV"], sig_name=["I", "II"], p_signal=np.ones((320, 2)) * 0.5,
        fmt=["16", "16"], adc_gain=[1000.0, 1000.0], baseline=[0, 0],
        write_dir=str(tmp_path / "data"),
    )  # fmt: skip
    os.utime(bases[2].with_suffix(".dat"), ns=(1, 1))  # even an mtime change alone counts
    second = build(bases, tmp_path / "cache")
    assert second.path == first.path  # same config: replaced in place
    assert not np.array_equal(second.signals[2], before)
    np.testing.assert_array_equal(second.signals[2], 0)  # flat lead z-scores to zero
    other = build(bases, tmp_path / "cache", pipeline=Compose((CropPad(2.0),)))
    assert other.path != first.path and other.signals.shape == (6, 2, 200)


def test_unreadable_records_are_listed_and_skipped(tmp_path: Path) -> None:
    bases = make_records(tmp_path / "data")
    dat = bases[3].with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:100])
    store = build(bases, tmp_path / "cache")
    assert len(store) == 5 and list(store.index["id"]) == [0, 1, 2, 4, 5]
    (entry,) = store.meta["unreadable"]
    assert entry["id"] == 3 and "truncated" in entry["problem"]
    np.testing.assert_array_equal(store.signals[3], read_and_transform(PIPELINE, bases[4]).signal)


def test_shape_mismatch_is_refused(tmp_path: Path) -> None:
    bases = make_records(tmp_path / "data")
    with pytest.raises(ECGInputError, match="end the transform pipeline with CropPad"):
        build(bases, tmp_path / "cache", pipeline=Compose((Normalise("zscore"),)))
    assert not [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]


def test_two_workers_give_the_same_cache(tmp_path: Path) -> None:
    bases = make_records(tmp_path / "data", n=10)
    one = build(bases, tmp_path / "one")
    two = build(bases, tmp_path / "two", workers=2)
    np.testing.assert_array_equal(one.signals, two.signals)


def test_batches_cover_rows_once(tmp_path: Path) -> None:
    store = build(make_records(tmp_path / "data", n=7), tmp_path / "cache")
    seen = []
    for rows, x in store.batches(batch_size=3, shuffle=True, seed=1):
        np.testing.assert_array_equal(x, store.signals[rows])
        seen.extend(rows)
    assert sorted(seen) == list(range(7))


def test_killed_build_leaves_no_valid_looking_cache(tmp_path: Path) -> None:
    """SIGKILL mid-build: nothing under the final name; the next build cleans up and succeeds."""
    bases = make_records(tmp_path / "data", n=6)
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import test_cache as t
        from ecgfoundry.data.readers import read_wfdb
        def slow(base):
            time.sleep(0.5)
            return t.PIPELINE(read_wfdb(base))
        t.read_and_transform = lambda transform, base: slow(base)
        bases = [t.Path(p) for p in {[str(b) for b in bases]!r}]
        t.build(bases, t.Path({str(tmp_path / "cache")!r}))
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script])
    cache_dir = tmp_path / "cache"
    deadline = time.time() + 60
    while not list(cache_dir.glob(".toy-*.tmp-*")) and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.6)  # mid-way through decoding (each record takes 0.5 s)
    assert process.poll() is None, "the build finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not [p for p in cache_dir.iterdir() if not p.name.startswith(".")]
    store = build(bases, cache_dir)
    assert len(store) == 6 and not list(cache_dir.glob(".toy-*.tmp-*"))


def test_a_replacement_cut_between_its_renames_is_recovered(tmp_path: Path) -> None:
    from ecgfoundry.atomic import atomic_dir, recover_dir

    final = tmp_path / "store"
    with atomic_dir(final) as tmp:
        (tmp / "data.txt").write_text("first")
    os.rename(final, tmp_path / ".store.old-deadbeef")  # killed after setting the old aside
    assert recover_dir(final) == final and (final / "data.txt").read_text() == "first"
    with atomic_dir(final) as tmp:
        (tmp / "data.txt").write_text("second")
    assert (final / "data.txt").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
