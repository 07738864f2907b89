"""PhysioNet/CinC 2020/2021 challenge folders described from their headers alone (no signal
is read): what `ecgfoundry data summary cinc2020|cinc2021` prints."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ecgfoundry.data.readers import challenge_header, find_records, parse_age
from ecgfoundry.data.record import ECGInputError, canonical_leads
from ecgfoundry.data.snomed import describe_code

# The source database of a record, by its name's prefix (the challenges' naming).
SOURCES = {
    "A": "CPSC 2018", "Q": "CPSC 2018 extra", "I": "St Petersburg INCART", "S": "PTB",
    "HR": "PTB-XL", "E": "Georgia", "JS": "Chapman-Shaoxing and Ningbo",
}  # fmt: skip
TOP_LABELS = 30  # the most frequent codes listed


def record_source(name: str) -> str:
    """The database a challenge record comes from, by its name (``HR00599`` -> PTB-XL)."""
    prefix = re.match(r"[A-Za-z]*", name)[0].upper()
    return SOURCES.get(prefix, f"unknown ({prefix or name})")


def summary(root: str | Path, min_positives: int = 10) -> dict[str, Any]:
    """Records per source database, sampling rates, lengths, lead sets, sex, age and the
    SNOMED-CT codes of ``#Dx`` (the most frequent, and how many reach ``min_positives``
    records, the default labels of ``finetune --data cinc``); headers that cannot be parsed
    are listed with their problem."""
    root = Path(root)
    if not root.is_dir():
        raise ECGInputError(root, "not a folder (a challenge folder holds .hea + .mat pairs)")
    headers = [p for p in find_records(root) if p.suffix.lower() == ".hea"]
    if not headers:
        raise ECGInputError(root, "no .hea records below this folder (a PhysioNet/CinC "
                            "challenge folder holds .hea + .mat pairs)")  # fmt: skip
    sources, rates, leads, sexes, codes = Counter(), Counter(), Counter(), Counter(), Counter()
    seconds, ages, unreadable = [], [], {}
    for path in headers:
        name = path.relative_to(root).with_suffix("").as_posix()
        try:
            header = challenge_header(path)
            names = ",".join(canonical_leads(header["names"]))
            if not header["fs"] > 0:
                raise ValueError(f"sampling rate {header['fs']:g}")
        except (ECGInputError, OSError, ValueError) as error:
            unreadable[name] = getattr(error, "problem", str(error))
            continue
        sources[record_source(path.stem)] += 1
        rates[f"{header['fs']:g}"] += 1
        seconds.append(header["n_samples"] / header["fs"])
        leads[names] += 1
        comments = header["comments"]
        sexes[comments.get("sex") or "unknown"] += 1
        if (age := parse_age(comments.get("age"))) is not None:
            ages.append(age)
        codes.update({c.strip() for c in comments.get("dx", "").split(",") if c.strip()})
    read = len(headers) - len(unreadable)
    return {
        "records": read,
        "sources": dict(sources.most_common()),
        "fs": dict(rates.most_common()),
        "seconds": _spread(seconds),
        "leads": dict(leads.most_common()),
        "sex": dict(sexes.most_common()),
        "age": {**_spread(ages), "missing": read - len(ages)},
        "labels": {describe_code(c): n for c, n in codes.most_common(TOP_LABELS)},
        f"codes_with_{min_positives}_or_more_records": sum(
            n >= min_positives for n in codes.values()
        ),
        "unreadable_records": unreadable,
    }


def _spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"min": None, "median": None, "max": None}
    array = np.asarray(values, dtype=np.float64)
    return {"min": float(array.min()), "median": float(np.median(array)),
            "max": float(array.max())}  # fmt: skip
