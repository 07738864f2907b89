"""The sample ECGs bundled with the package (PTB-XL and CinC 2020 records; see their README),
and the demo's PTB-XL subset (:func:`demo_ptbxl`)."""

from __future__ import annotations

import tarfile
from importlib import resources
from pathlib import Path

import pandas as pd

DEMO_ARCHIVE = "ptbxl_demo.tar.xz"


def sample_dir() -> Path:
    """The folder holding the bundled samples."""
    return Path(str(resources.files("ecgfoundry") / "samples"))


def sample_records() -> list[Path]:
    """Header paths of every bundled record, PTB-XL first."""
    root = sample_dir()
    return sorted((root / "ptbxl").glob("*.hea")) + sorted((root / "cinc2020").glob("*.hea"))


def sample_labels() -> pd.DataFrame:
    """PTB-XL metadata of the bundled PTB-XL records (``record`` relative to sample_dir())."""
    return pd.read_csv(sample_dir() / "ptbxl" / "labels.csv")


def demo_ptbxl(dest: str | Path) -> Path:
    """Unpack the demo's PTB-XL subset (unmodified PTB-XL 1.0.3 files of 240 records of folds
    1-8 and 120 of fold 9, at 100 Hz) into ``dest``; returns its PTB-XL root. Idempotent."""
    root = Path(dest) / "ptbxl"
    done = root / ".complete"
    if not done.exists():
        with tarfile.open(sample_dir() / DEMO_ARCHIVE, "r:xz") as archive:
            archive.extractall(dest, filter="data")
        done.touch()
    return root
