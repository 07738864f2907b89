"""The sample ECGs bundled with the package (PTB-XL and CinC 2020 records; see their README)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd


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
