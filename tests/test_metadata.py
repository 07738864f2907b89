"""Who records come from: PTB-XL's table and challenge headers, database and continent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecgfoundry.analysis.metadata import cinc_origin, record_metadata


def test_challenge_records_are_placed_by_their_names() -> None:
    assert cinc_origin("E00009") == ("Georgia", "North America")
    assert cinc_origin("g1/HR00001") == ("PTB-XL", "Europe")
    assert cinc_origin("JS00001") == ("Chapman-Shaoxing/Ningbo", "Asia")
    assert cinc_origin("Q0050") == ("CPSC-Extra", "Asia")
    assert cinc_origin("Emma") == ("unknown", "unknown")


@pytest.mark.shared_data
def test_ages_and_sexes_come_from_the_sources(ptbxl_root: Path, cinc_root: Path) -> None:
    ptb = record_metadata("ptbxl", ptbxl_root, ["10", "8"])
    assert ptb.loc["10", "sex"] == "female" and ptb.loc["8", "sex"] == "male"
    assert ptb.loc["10", "age"] == 22.0 and set(ptb["continent"]) == {"Europe"}
    cinc = record_metadata("cinc", cinc_root, ["Q1804", "E00015"])
    assert cinc.loc["Q1804", "age"] == 69 and cinc.loc["Q1804", "sex"] == "male"
    assert list(cinc["database"]) == ["CPSC-Extra", "Georgia"]
    unknown = record_metadata("table", cinc_root, ["x"])
    assert np.isnan(unknown.loc["x", "age"]) and unknown.loc["x", "sex"] == "unknown"
