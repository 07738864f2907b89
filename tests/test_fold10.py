"""PTB-XL fold 10 (the benchmark's test fold, absent from the shared copy but present in the
full dataset) is scored and reported by the documented commands wherever a copy holds it:
`finetune`, `benchmark run` and its HTML report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_ptbxl import copy_records, move_to_fold_10, pick_per_fold
from test_published_predictions import load_script
from typer.testing import CliRunner

from ecgfoundry.cli import app
from ecgfoundry.data import ptbxl

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def with_fold_10(ptbxl_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("ptbxl-fold10")
    per_fold = {**dict.fromkeys(range(1, 9), 12), 9: 40}  # fold 9 gives half to fold 10
    copy_records(ptbxl_root, copy, pick_per_fold(ptbxl.load(ptbxl_root), per_fold))
    move_to_fold_10(copy)
    return copy


def fold_10_records(root: Path, task: str) -> list[int]:
    labelled = ptbxl.load(root).task(task)
    return sorted(int(i) for i in labelled.ecg_ids[labelled.split("test")])


def test_finetune_scores_fold_10_apart_from_fold_9(with_fold_10: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "finetune", "s4-tiny", "--strategy", "scratch", "--root", str(with_fold_10),
        "--task", "superdiagnostic", "--epochs", "1", "--out", str(out),
        "--cache-dir", str(tmp_path / "cache")])  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    expected = fold_10_records(with_fold_10, "superdiagnostic")
    run = metrics["run"]
    assert json.loads(result.stdout)["splits"] == {
        "train": f"folds 1-8: {run['train_records']} records",
        "val": f"fold 9: {run['val_records']} records",
        "test": f"fold 10: {len(expected)} records",
    }
    assert expected and metrics["run"]["test_records"] == len(expected)
    assert 0 <= metrics["test"]["macro_auroc"] <= 1
    with np.load(out / "predictions" / "predictions.npz") as saved:
        test_ids = saved["test_ids"].tolist()
        assert not set(test_ids) & set(saved["val_ids"].tolist())
    assert sorted(int(i) for i in test_ids) == expected


def test_the_benchmark_and_its_report_show_fold_10(with_fold_10: Path, tmp_path: Path) -> None:
    settings = {
        "data": {"ptbxl": {"kind": "ptbxl", "root": str(with_fold_10)}},
        "models": {"s4-tiny": ["scratch"]},
        "tasks": ["ptbxl:superdiagnostic"],
        "fractions": [1.0],
        "seeds": [0],
        "recipes": {"scratch": {"batch_size": 16}},
        "epochs": 1,
    }
    (tmp_path / "bench.yaml").write_text(json.dumps(settings))
    out = tmp_path / "bench"
    runner = CliRunner()
    result = runner.invoke(app, ["benchmark", "run", str(tmp_path / "bench.yaml"), "--out",
                                 str(out), "--cache-dir", str(tmp_path / "cache")])  # fmt: skip
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out / "results.parquet")
    assert sorted(table["split"]) == ["test", "val"]
    test = table[table["split"] == "test"].iloc[0]
    assert test["records"] == len(fold_10_records(with_fold_10, "superdiagnostic"))
    assert f", test {test['macro_auroc']:.3f}" in result.output
    listed = json.loads(runner.invoke(app, ["benchmark", "run", str(tmp_path / "bench.yaml"),
                                            "--out", str(out), "--json"]).stdout)  # fmt: skip
    (row,) = listed
    assert row["split"] == "val" and row["test"]["macro_auroc"] == test["macro_auroc"]

    result = runner.invoke(app, ["benchmark", "report", str(out)])
    assert result.exit_code == 0, result.output
    page = Path(result.stdout.strip()).read_text()
    assert "<th>test macro AUROC</th>" in page
    low, high = test["macro_auroc_low"], test["macro_auroc_high"]
    assert f'{test["macro_auroc"]:.3f}</td><td class="">[{low:.3f}, {high:.3f}]</td>' in page


def test_the_table_grid_knows_whether_a_copy_holds_fold_10(
    ptbxl_root: Path, with_fold_10: Path, tmp_path: Path
) -> None:
    table = load_script("ptbxl_table")
    without = tmp_path / "folds-1-9"
    copy_records(ptbxl_root, without, pick_per_fold(ptbxl.load(ptbxl_root), {1: 3, 9: 3}))
    assert table.fold10_present(with_fold_10)
    assert not table.fold10_present(without) and not table.fold10_present(None)
