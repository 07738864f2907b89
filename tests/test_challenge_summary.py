"""`data summary cinc2020|cinc2021`: a challenge folder described from its headers (the shared
CinC 2020 sample: counts read from the files themselves, so a fuller copy passes too)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from test_rough_edges import cli

from ecgfoundry.data.challenge import record_source, summary
from ecgfoundry.data.readers import read_record
from ecgfoundry.data.record import ECGInputError


def test_the_summary_counts_what_the_headers_say(cinc_root: Path) -> None:
    headers = sorted(cinc_root.rglob("*.hea"))
    records = [read_record(p) for p in headers]
    result = summary(cinc_root)
    assert result["records"] == len(headers) and not result["unreadable_records"]
    assert result["sources"] == dict(Counter(record_source(p.stem) for p in headers))
    assert sum(result["fs"].values()) == len(headers)
    assert result["seconds"]["max"] == max(r.signal.shape[1] / r.fs for r in records)
    dx = Counter(code for r in records for code in set(r.metadata["dx"]))
    ((_, count),) = dx.most_common(1)
    first_label, first_count = next(iter(result["labels"].items()))
    assert first_label.split()[0] in {c for c, n in dx.items() if n == count}
    assert first_count == count
    assert result["codes_with_10_or_more_records"] == sum(n >= 10 for n in dx.values())


def test_record_names_give_their_source_database() -> None:
    assert record_source("HR00599") == "PTB-XL" and record_source("E00009") == "Georgia"
    assert record_source("JS00001") == "Chapman-Shaoxing and Ningbo"
    assert record_source("X12") == "unknown (X)"


def test_a_broken_header_is_listed_and_the_rest_described(cinc_root: Path, tmp_path: Path):
    copy = tmp_path / "cinc"
    shutil.copytree(cinc_root, copy)
    broken = sorted(copy.glob("*.hea"))[0]
    broken.write_text("garbage\n")
    zero = sorted(copy.glob("*.hea"))[1]
    lines = zero.read_text().splitlines()
    first = lines[0].split()
    zero.write_text("\n".join([" ".join([*first[:2], "0", *first[3:]]), *lines[1:]]) + "\n")
    result = summary(copy)
    assert result["unreadable_records"] == {broken.stem: "malformed record line 'garbage'",
                                            zero.stem: "sampling rate 0"}  # fmt: skip
    assert result["records"] == len(list(copy.glob("*.hea"))) - 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(ECGInputError, match=r"no \.hea records below this folder"):
        summary(tmp_path / "empty")


def test_the_cli_summarises_a_challenge_folder(cinc_root: Path) -> None:
    result = cli("data", "summary", "cinc2020", "--root", cinc_root)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == summary(cinc_root)
