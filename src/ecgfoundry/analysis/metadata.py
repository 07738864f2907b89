"""Who the records come from, for colouring maps: age, sex, source database and continent.

PTB-XL's come from ``ptbxl_database.csv`` (sex 0 male, 1 female); a PhysioNet/CinC challenge
record's from its header (``#Age``, ``#Sex``) and its name, whose prefix names the challenge
database (``E`` Georgia, ``A``/``Q`` CPSC 2018 and its extra set, ``I`` INCART, ``S`` PTB,
``HR`` PTB-XL, ``JS`` Chapman-Shaoxing and Ningbo).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

# Longest prefix first: (prefix, database, country, continent).
CINC_DATABASES = (
    ("HR", "PTB-XL", "Germany", "Europe"),
    ("JS", "Chapman-Shaoxing/Ningbo", "China", "Asia"),
    ("A", "CPSC 2018", "China", "Asia"),
    ("Q", "CPSC-Extra", "China", "Asia"),
    ("I", "INCART", "Russia", "Europe"),
    ("S", "PTB", "Germany", "Europe"),
    ("E", "Georgia", "USA", "North America"),
)
COLUMNS = ("age", "sex", "database", "continent")


def cinc_origin(record: str) -> tuple[str, str]:
    """(database, continent) of a challenge record from its name, or ("unknown", "unknown")."""
    name = Path(record).name
    for prefix, database, _, continent in CINC_DATABASES:
        if name.startswith(prefix) and name[len(prefix) :][:1].isdigit():
            return database, continent
    return "unknown", "unknown"


def _header_fields(path: Path) -> dict[str, str]:
    fields = {}
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return fields
    for line in lines:
        key, colon, value = line.lstrip("#").partition(":")
        if line.startswith("#") and colon:
            fields[key.strip().lower()] = value.strip()
    return fields


def _age(text: object) -> float:
    try:
        age = float(str(text))
    except ValueError:
        return np.nan
    return age if 0 <= age < 120 else np.nan  # PTB-XL codes ages over 89 as 300


def record_metadata(kind: str, root: str | Path, ids: Sequence[str]) -> pd.DataFrame:
    """Age, sex, database and continent per record id (NaN / "unknown" where not known):
    ``kind`` ptbxl (ids are ecg_ids) or cinc (ids are record paths below ``root``)."""
    root = Path(root)
    rows = []
    if kind == "ptbxl":
        table = pd.read_csv(root / "ptbxl_database.csv", index_col="ecg_id",
                            usecols=["ecg_id", "age", "sex"])  # fmt: skip
        for record in ids:
            row = table.loc[int(record)] if int(record) in table.index else None
            known = row is not None and pd.notna(row["sex"])
            sex = {0: "male", 1: "female"}.get(int(row["sex"])) if known else None
            rows.append((_age(row["age"]) if row is not None else np.nan, sex or "unknown",
                         "PTB-XL", "Europe"))  # fmt: skip
    elif kind == "cinc":
        for record in ids:
            fields = _header_fields(root / f"{record}.hea")
            sex = fields.get("sex", "").lower()
            rows.append((_age(fields.get("age")),
                         sex if sex in ("male", "female") else "unknown",
                         *cinc_origin(str(record))))  # fmt: skip
    else:
        rows = [(np.nan, "unknown", "unknown", "unknown") for _ in ids]
    return pd.DataFrame(rows, columns=list(COLUMNS), index=list(ids))


__all__ = ["CINC_DATABASES", "cinc_origin", "record_metadata"]
