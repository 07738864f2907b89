"""PTB-XL labels on PhysioNet/CinC challenge data, whose headers carry SNOMED-CT codes (``#Dx``).

``mappings/snomed_scp.csv`` pairs PTB-XL's SCP statements with the challenge's SNOMED-CT codes
(the challenge's own PTB-XL conversion, plus the codes other challenge databases use for the
same findings); ``mappings/snomed_scp.md`` gives the sources and caveats. From it:

- a **statement** (``AFIB``, ``CLBBB``, ...) is present when the record has a code that is
  ``equivalent`` to it or ``narrower`` than it (paroxysmal AF implies AFIB; a code that is
  broader, such as "bundle branch block" for CLBBB, does not);
- a **superclass** (``MI``, ``STTC``, ``CD``, ``HYP``) is present when the record has any code
  of its statements in the challenge's conversion (on PTB-XL itself this recovers MI and CD
  exactly, STTC and HYP with recall 1 and precision 0.95 and 0.92: "T wave abnormal" and
  "LVH" also stand for form statements), or, with ``extended``, a code other databases use for
  those findings (:data:`EXTRA_SUPERCLASS_CODES`);
- ``NORM`` (a normal ECG) has no SNOMED-CT code: the challenge wrote "sinus rhythm" for it.
  It is taken as sinus rhythm with no MI, STTC, CD or HYP code (on PTB-XL: precision 0.999,
  recall 0.93, as PTB-XL allows NORM beside e.g. IRBBB).

A PTB-XL label with no code (a subdiagnostic class, or a statement such as ``NDT`` whose code
stands for several statements) raises :class:`UnmappedLabelError` naming it.

``mappings/snomed_names.csv`` names the challenges' 133 codes (their abbreviation and name, as
the challenge tables give them): :func:`describe_code` for people, :func:`task_codes` to let a
task name codes by abbreviation (``AF,IAVB``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path

import numpy as np

MAPPING = Path(__file__).parent / "mappings" / "snomed_scp.csv"
NAMES = Path(__file__).parent / "mappings" / "snomed_names.csv"
IMPLYING = ("equivalent", "narrower")
SINUS_RHYTHM = "426783006"
HINT = ("mappable: the superclasses NORM, MI, STTC, CD, HYP and statements such as AFIB, SR, "
        "CLBBB (ecgfoundry/data/mappings/snomed_scp.md)")  # fmt: skip
# PTB-XL's diagnostic_class of each diagnostic statement (scp_statements.csv; NORM: itself).
SUPERCLASS_STATEMENTS: dict[str, tuple[str, ...]] = {
    "MI": ("IMI", "ILMI", "IPLMI", "IPMI", "ASMI", "ALMI", "AMI", "LMI", "PMI", "INJAS", "INJAL",
           "INJIN", "INJLA", "INJIL"),
    "STTC": ("NDT", "NST_", "DIG", "LNGQT", "ISC_", "ISCAL", "ISCIN", "ISCIL", "ISCAS", "ISCLA",
             "ISCAN", "ANEUR", "EL"),
    "CD": ("LAFB", "LPFB", "IRBBB", "CRBBB", "CLBBB", "ILBBB", "IVCD", "1AVB", "2AVB", "3AVB",
           "WPW"),
    "HYP": ("LVH", "RVH", "LAO/LAE", "RAO/RAE", "SEHYP"),
}  # fmt: skip
# Codes of the same findings that other challenge databases use and PTB-XL's conversion never
# emits (snomed_scp.md, section 4); LV high voltage (55827005) is left out: in PTB-XL terms it
# is VCLVH, a form statement outside HYP.
EXTRA_SUPERCLASS_CODES: dict[str, tuple[str, ...]] = {
    "MI": ("164867002", "57054005"),
    "STTC": ("413444003", "413844008", "704997005"),
    "CD": ("59118001", "733534002", "6374002", "233917008", "54016002", "426183003",
           "204384007", "82226007", "195060002"),
    "HYP": ("446813000", "253352002", "253339007", "195126007"),
}  # fmt: skip


class UnmappedLabelError(ValueError):
    """A PTB-XL label that no SNOMED-CT code stands for."""


@cache
def _rows() -> tuple[dict[str, str], ...]:
    with MAPPING.open(newline="") as handle:
        return tuple(csv.DictReader(handle))


@cache
def code_names() -> dict[str, tuple[str, str]]:
    """SNOMED-CT code -> (abbreviation, name) for the codes of the PhysioNet/CinC 2020/2021
    challenges' tables (scored and unscored)."""
    with NAMES.open(newline="") as handle:
        return {r["snomed"]: (r["abbreviation"], r["name"]) for r in csv.DictReader(handle)}


def describe_code(code: str) -> str:
    """``"164889003 AF (atrial fibrillation)"``; the bare code (or any other label) when the
    challenges do not name it."""
    named = code_names().get(code)
    return f"{code} {named[0]} ({named[1]})" if named else code


def abbreviate(codes: Iterable[str]) -> list[str]:
    """The challenges' abbreviations of ``codes`` (``AF``, ``IAVB``); unnamed codes as they are."""
    names = code_names()
    return [names[c][0] if c in names else c for c in codes]


def task_codes(names: Iterable[str]) -> list[str]:
    """A task's labels as SNOMED-CT codes: codes as they are, the challenges' abbreviations
    (any case: ``AF``, ``iavb``) as their codes; other names are kept for the caller to refuse."""
    codes = {abbreviation.lower(): code for code, (abbreviation, _) in code_names().items()}
    return list(dict.fromkeys(codes.get(name.lower(), name) for name in names))


def challenge_conversion() -> dict[str, str]:
    """The challenge's PTB-XL conversion: each SCP statement (and ``heart_axis=...`` value) to
    the one SNOMED-CT code it wrote into the PTB-XL records' headers."""
    return {r["scp"]: r["snomed"] for r in _rows() if r["challenge_ptbxl_map"] == "yes"}


def statement_codes(statement: str, *, challenge_only: bool = False) -> frozenset[str]:
    """The SNOMED-CT codes that imply an SCP statement (equivalent or narrower);
    ``challenge_only``: those of the challenge's PTB-XL conversion only."""
    return frozenset(r["snomed"] for r in _rows() if r["scp"] == statement
                     and r["relation"] in IMPLYING
                     and (r["challenge_ptbxl_map"] == "yes" or not challenge_only))  # fmt: skip


def superclass_codes(superclass: str, *, extended: bool = True) -> frozenset[str]:
    """The SNOMED-CT codes of a PTB-XL superclass (MI, STTC, CD, HYP): every code the
    challenge wrote for its statements, plus, with ``extended``, other databases' codes."""
    if superclass not in SUPERCLASS_STATEMENTS:
        raise UnmappedLabelError(f"{superclass!r} is not a superclass with SNOMED-CT codes; "
                                 f"those are {sorted(SUPERCLASS_STATEMENTS)} and NORM")  # fmt: skip
    statements = SUPERCLASS_STATEMENTS[superclass]
    codes = {r["snomed"] for r in _rows()
             if r["scp"] in statements and r["challenge_ptbxl_map"] == "yes"}  # fmt: skip
    return frozenset(codes | set(EXTRA_SUPERCLASS_CODES[superclass] if extended else ()))


def label_codes(label: str, *, extended: bool = True) -> frozenset[str]:
    """The codes whose presence makes a CinC record positive for a PTB-XL label (not NORM,
    which is a rule: see :func:`ptbxl_labels`)."""
    if label in SUPERCLASS_STATEMENTS:
        return superclass_codes(label, extended=extended)
    codes = statement_codes(label, challenge_only=not extended)
    if not codes:
        raise UnmappedLabelError(f"PTB-XL label {label!r} has no SNOMED-CT code that implies "
                                 f"it; {HINT}")  # fmt: skip
    return codes


def ptbxl_labels(codes: Sequence[Iterable[str]], labels: Sequence[str], *,
                 extended: bool = True) -> np.ndarray:  # fmt: skip
    """uint8 [records, labels]: each record's (its SNOMED-CT codes) PTB-XL ``labels``.
    Raises :class:`UnmappedLabelError` naming every label without a mapping."""
    unmapped, sets = [], {}
    for label in labels:
        if label == "NORM":
            continue
        try:
            sets[label] = label_codes(label, extended=extended)
        except UnmappedLabelError:
            unmapped.append(label)
    if unmapped:
        raise UnmappedLabelError(f"PTB-XL label(s) {unmapped} have no SNOMED-CT mapping; {HINT}")
    abnormal = frozenset().union(*(superclass_codes(s, extended=extended)
                                   for s in SUPERCLASS_STATEMENTS))  # fmt: skip
    y = np.zeros((len(codes), len(labels)), dtype=np.uint8)
    for row, record in enumerate(codes):
        present = set(record)
        for column, label in enumerate(labels):
            if label == "NORM":
                y[row, column] = SINUS_RHYTHM in present and not present & abnormal
            else:
                y[row, column] = bool(present & sets[label])
    return y


__all__ = [
    "EXTRA_SUPERCLASS_CODES",
    "SUPERCLASS_STATEMENTS",
    "UnmappedLabelError",
    "abbreviate",
    "challenge_conversion",
    "code_names",
    "describe_code",
    "label_codes",
    "ptbxl_labels",
    "statement_codes",
    "superclass_codes",
    "task_codes",
]
