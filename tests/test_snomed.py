"""PTB-XL labels from SNOMED-CT codes: checked on PTB-XL itself, converted to codes the way the
challenge did, against PTB-XL's own labels."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgfoundry.adapt.sources import header_dx
from ecgfoundry.data import ptbxl
from ecgfoundry.data.samples import sample_dir
from ecgfoundry.data.snomed import (
    MAPPING,
    SUPERCLASS_STATEMENTS,
    UnmappedLabelError,
    abbreviate,
    challenge_conversion,
    code_names,
    describe_code,
    label_codes,
    ptbxl_labels,
    task_codes,
)


@pytest.fixture(scope="module")
def challenge_codes(ptbxl_root: Path) -> tuple[ptbxl.PTBXL, dict[int, set[str]]]:
    """Every PTB-XL record's codes as the challenge wrote them (each statement's one code)."""
    data = ptbxl.load(ptbxl_root)
    conversion = challenge_conversion()
    assert set(data.statements.index) <= set(conversion)  # every statement has its code
    codes = {int(i): {conversion[c] for c in scp} for i, scp in data.table["scp_codes"].items()}
    return data, codes


def agreement(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    hits = (predicted & truth).sum()
    return hits / max(predicted.sum(), 1), hits / max(truth.sum(), 1)


@pytest.mark.shared_data
def test_superclasses_come_back_from_the_challenges_codes(challenge_codes) -> None:
    data, codes = challenge_codes
    task = data.task("superdiagnostic")
    y = ptbxl_labels([codes[int(i)] for i in task.ecg_ids], task.labels, extended=False)
    scores = {label: agreement(y[:, j].astype(bool), task.y[:, j].astype(bool))
              for j, label in enumerate(task.labels)}  # fmt: skip
    assert scores["MI"] == (1.0, 1.0) and scores["CD"] == (1.0, 1.0)
    assert scores["STTC"][1] == 1.0 and scores["STTC"][0] > 0.93  # T wave abnormal: form too
    assert scores["HYP"][1] == 1.0 and scores["HYP"][0] > 0.9  # LVH code: VCLVH too
    assert scores["NORM"][0] > 0.99 and scores["NORM"][1] > 0.9  # NORM is a rule, not a code


@pytest.mark.shared_data
def test_rhythm_statements_come_back(challenge_codes) -> None:
    data, codes = challenge_codes
    task = data.task("rhythm")
    y = ptbxl_labels([codes[int(i)] for i in task.ecg_ids], task.labels)
    for label in ("AFIB", "AFLT", "STACH", "SBRAD", "PACE", "SVTAC", "PSVT"):
        j = task.labels.index(label)
        assert agreement(y[:, j].astype(bool), task.y[:, j].astype(bool)) == (1.0, 1.0), label


def test_the_statement_codes_follow_the_relation() -> None:
    assert {"164889003", "282825002"} <= label_codes("AFIB")  # AF; paroxysmal AF (narrower)
    assert "6374002" not in label_codes("CLBBB")  # bundle branch block is broader
    assert "733534002" in label_codes("CLBBB") and "733534002" not in label_codes(
        "CLBBB", extended=False
    )
    assert set(SUPERCLASS_STATEMENTS) == {"MI", "STTC", "CD", "HYP"}


def test_cinc_headers_get_ptbxl_labels_and_unmapped_labels_are_named() -> None:
    headers = sorted((sample_dir() / "cinc2020").glob("*.hea"))
    codes = [header_dx(h) for h in headers]
    y = ptbxl_labels(codes, ["NORM", "MI", "STTC", "CD", "HYP", "AFIB"])
    assert y.shape == (len(headers), 6) and set(np.unique(y)) <= {0, 1}
    frame = pd.DataFrame(y, columns=["NORM", "MI", "STTC", "CD", "HYP", "AFIB"])
    normal = frame["NORM"] == 1
    assert not frame.loc[normal, ["MI", "STTC", "CD", "HYP"]].to_numpy().any()
    with pytest.raises(UnmappedLabelError, match=r"\['NDT', 'IMI'\]"):
        ptbxl_labels(codes, ["AFIB", "NDT", "IMI"])


def test_the_code_names_agree_with_the_mapping_and_name_tasks() -> None:
    names = code_names()
    assert len(names) == 133  # the challenges' 30 scored and 103 unscored codes
    with MAPPING.open(newline="") as handle:
        mapped = {(row["snomed"], row["abbreviation"], " ".join(row["description"].split()))
                  for row in csv.DictReader(handle)}  # fmt: skip
    assert {(code, *names[code]) for code, _, _ in mapped} == mapped  # same names, both files
    abbreviations = [a.lower() for a, _ in names.values()]
    assert len(set(abbreviations)) == len(abbreviations)  # an abbreviation names one code
    assert describe_code("164889003") == "164889003 AF (atrial fibrillation)"
    assert describe_code("1") == "1" and describe_code("NORM") == "NORM"
    assert task_codes(["af", "164889003", "AFL", "x1"]) == ["164889003", "164890007", "x1"]
    assert abbreviate(["426783006", "1"]) == ["NSR", "1"]
