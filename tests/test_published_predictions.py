"""benchmarks/ptbxl_published_predictions.py reads the PTB-XL benchmark's pickled arrays
without running anything from them, and matches its fold-9 records with ours;
benchmarks/ptbxl_reference_parity.py copies weights layer by layer and refuses a mismatch."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ecgfoundry

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


@pytest.fixture(scope="module")
def script():
    return load_script("ptbxl_published_predictions")


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def numpy1_pickle(array: np.ndarray) -> bytes:
    """``array`` pickled as numpy 1 names its pieces (the benchmark's files)."""
    data = pickle.dumps(array, protocol=2)
    return data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def test_reads_a_pickled_array(script, tmp_path: Path) -> None:
    for array in (np.arange(12, dtype=np.int64).reshape(3, 4),
                  np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3)):  # fmt: skip
        path = tmp_path / "y.npy"
        path.write_bytes(numpy1_pickle(array))
        read = script.read_array(path)
        assert read.dtype == array.dtype
        np.testing.assert_array_equal(read, array)


def test_refuses_anything_but_arrays(script, tmp_path: Path) -> None:
    path = tmp_path / "evil.npy"
    path.write_bytes(pickle.dumps(_Payload(), protocol=2))
    with pytest.raises(pickle.UnpicklingError, match=r"refused (posix|nt)\.system"):
        script.read_array(path)
    path.write_bytes(pickle.dumps([1, 2], protocol=2))
    with pytest.raises(ValueError, match="expected a 2-d numpy array"):
        script.read_array(path)


def test_records_are_matched_by_label_rows_in_order(script) -> None:
    rng = np.random.default_rng(0)
    ours = rng.integers(0, 2, size=(50, 6), dtype=np.uint8)
    theirs = np.insert(ours, [10, 30], np.full((2, 6), 1, np.uint8), axis=0)  # two extra records
    theirs[40] = 1 - theirs[40]  # one relabelled record
    ours_idx, theirs_idx = script.match_records(ours, theirs)
    np.testing.assert_array_equal(ours[ours_idx], theirs[theirs_idx])
    assert len(ours_idx) >= 49 and 38 not in ours_idx


def test_weights_are_copied_layer_by_layer_or_refused() -> None:
    parity = load_script("ptbxl_reference_parity")
    ours = ecgfoundry.create_model("xresnet1d50", num_classes=5).eval()
    other = ecgfoundry.create_model("xresnet1d50", num_classes=5).eval()
    x = torch.randn(2, 12, 250)
    assert not torch.equal(ours(x), other(x))
    parity.copy_weights(ours, other)
    assert torch.equal(ours(x), other(x))
    with pytest.raises(ValueError, match="layers here"):
        parity.copy_weights(ours, ecgfoundry.create_model("xresnet1d101", num_classes=5))
    with pytest.raises(ValueError, match="layer 0"):
        parity.copy_weights(ours, ecgfoundry.create_model("xresnet1d50", num_classes=5,
                                                          stem_kernel_size=3))  # fmt: skip


def test_the_table_keeps_cpu_and_gpu_hours_apart() -> None:
    table = load_script("ptbxl_table")
    rows = [{"train_seconds": 3600.0, "hardware": {"cpu": "x"}},
            {"train_seconds": 1800.0, "hardware": {"cpu": "x", "accelerator": "NVIDIA H200"}},
            {"train_seconds": 7200.0, "hardware": {"cpu": "y"}}]  # fmt: skip
    assert table.training_hours(rows) == {"cpu": 3.0, "NVIDIA H200": 0.5}


def test_a_revision_is_compared_with_the_older_one_on_the_seeds_both_ran(tmp_path) -> None:
    table = load_script("ptbxl_table")
    args = table.argparse.Namespace(predictions=tmp_path, revision=table.REVISION,
                                    against_revision=1, fraction=1.0, precision="auto")  # fmt: skip
    rng = np.random.default_rng(0)
    y = (rng.random((200, 3)) < 0.3).astype(np.float32)
    better, worse = y + rng.normal(0, 0.6, y.shape), y + rng.normal(0, 1.2, y.shape)
    new, old = table.table_setup(args), table.setup_id(table.table_recipe(args), 1)
    for seed in (0, 1):
        np.savez(tmp_path / f"m__form__s{seed}__{new}.npz", val_y=y, val_probabilities=better)
    np.savez(tmp_path / f"m__form__s1__{old}.npz", val_y=y, val_probabilities=worse)
    rows = [{"seed": 0}, {"seed": 1}]
    result = table.against_revision(args, "m", "form", rows)
    assert result["seeds"] == [1] and result["revision"] == 1  # seed 0 has no revision-1 cell
    assert result["difference"] > 0 and result["ci"][0] > 0
    assert table.against_revision(args, "m", "rhythm", rows) is None
    np.savez(tmp_path / f"m__form__s1__{old}.npz", val_y=1 - y, val_probabilities=worse)
    with pytest.raises(ValueError, match="m/form/s1: the revisions' fold-9 labels differ"):
        table.against_revision(args, "m", "form", rows)


def test_per_label_macros_split_at_the_rare_count_and_name_an_empty_group(tmp_path) -> None:
    table = load_script("ptbxl_table")
    args = table.argparse.Namespace(predictions=tmp_path, revision=table.REVISION,
                                    fraction=1.0, precision="auto")  # fmt: skip
    rng = np.random.default_rng(0)
    y = np.zeros((300, 3), dtype=np.float32)
    y[:100, 0], y[100:200, 1], y[200:205, 2] = 1, 1, 1  # 100, 100 and 5 positives
    p = y + rng.normal(0, 0.5, y.shape)
    labels = np.array(["A", "B", "C"])
    model = table.MODELS[0]
    for task, keep in (("form", [0, 1, 2]), ("superdiagnostic", [0, 1])):
        np.savez(tmp_path / f"{model}__{task}__s0__{table.table_setup(args)}.npz",
                 val_y=y[:, keep], val_probabilities=p[:, keep], labels=labels[keep])  # fmt: skip
    result = table.per_label(args, "form")
    scores = [result["labels"][label][model] for label in "ABC"]
    assert [result["labels"][label]["positives"] for label in "ABC"] == [100, 100, 5]
    assert result["macro"][model] == pytest.approx(
        {"all": np.mean(scores), ">=10": np.mean(scores[:2]), "<10": scores[2]}
    )
    common = table.per_label(args, "superdiagnostic")
    assert common["macro"][model]["<10"] is None
    assert "| macro, <10 positives | | no labels |" in table.per_label_markdown(common)


def table_row(table, args, model: str, task: str, seed: int, fraction: float,
              score: float, precision: str = "float32") -> dict:  # fmt: skip
    key = table.cell_key({"model": model, "task": task, "seed": seed, "fraction": fraction})
    return {"cell": key, "model": model, "task": task, "seed": seed, "fraction": fraction,
            "setup": table.table_setup(args), "train_seconds": 60.0, "precision": precision,
            "metrics": {"val": {"macro_auroc": score,
                                "ci": {"macro_auroc": [score - 0.01, score + 0.01]}}}}  # fmt: skip


def test_the_summary_shows_the_fraction_asked_for_and_published_values_only_at_full_data(
    tmp_path,
) -> None:
    table = load_script("ptbxl_table")
    results = tmp_path / "table.jsonl"
    args = table.argparse.Namespace(results=results, predictions=tmp_path, fraction=0.1,
                                    revision=table.REVISION, against_revision=1,
                                    precision="auto")  # fmt: skip
    rows = [table_row(table, args, "resnet1d-wang", "form", 0, 1.0, 0.86),
            table_row(table, args, "resnet1d-wang", "form", 0, 0.1, 0.80),
            table_row(table, args, "resnet1d-wang", "form", 1, 0.1, 0.82,
                      "torch.bfloat16")]  # fmt: skip
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rng = np.random.default_rng(0)
    y = (rng.random((100, 2)) < 0.3).astype(np.float32)
    new, old = table.table_setup(args), table.setup_id(table.table_recipe(args), 1)
    for setup, noise in ((new, 0.5), (old, 1.0)):
        np.savez(tmp_path / f"resnet1d-wang__form__f0.1__s1__{setup}.npz", val_y=y,
                 val_probabilities=y + rng.normal(0, noise, y.shape))  # fmt: skip
    np.savez(tmp_path / f"resnet1d-wang__form__f0.1__s0__{new}.npz", val_y=y, val_probabilities=y)
    (entry,) = table.summary(args)
    assert entry["seeds"] == 2 and entry["fraction"] == 0.1
    assert entry["val"]["macro_auroc"] == pytest.approx(0.81)
    assert entry["published_fold10"] is None and entry["val"]["minus_published"] is None
    assert entry["against_revision"]["seeds"] == [1]
    assert "n/a (100 % only)" in table.markdown([entry]) and "(seed 1) |" in table.markdown([entry])
    assert [table.seeds_text(s) for s in ([0], [0, 1, 2], [0, 2])] == [
        "seed 0", "seeds 0-2", "seeds 0,2"]  # fmt: skip
    assert entry["precision"] == ["bf16", "fp32"] and "| bf16+fp32 |" in table.markdown([entry])
    args.fraction = 1.0
    (entry,) = table.summary(args)
    assert (
        entry["seeds"] == 1
        and entry["published_fold10"] == table.PUBLISHED["resnet1d-wang"]["form"]
    )
    assert entry["val"]["minus_published"] == pytest.approx(0.86 - entry["published_fold10"])


def test_the_published_comparison_reads_the_full_data_table(script, tmp_path) -> None:
    results = tmp_path / "table.jsonl"
    args = script.parse_args(["--published", str(tmp_path), "--results", str(results),
                              "--predictions", str(tmp_path), "--revision", "2"])  # fmt: skip
    table = script.ptbxl_table
    rows = [table_row(table, args, "inception1d", "form", 0, 1.0, 0.87),
            table_row(table, args, "inception1d", "form", 0, 0.1, 0.70)]  # fmt: skip
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (row,) = script.shifted_table({"subsets": {"form": {"fold_shift": 0.014}}}, args)
    assert row["fold9"] == 0.87 and row["published"] == table.PUBLISHED["inception1d"]["form"]
    assert row["shifted_difference"] == pytest.approx(0.87 - (row["published"] - 0.014))


def test_reference_scores_are_aligned_by_record_id_and_label_name() -> None:
    script = load_script("ptbxl_reference_training")
    ref_scores = np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]])  # records 5, 7, 9; labels B, A
    rows, aligned = script.align(np.array([7, 8, 9]), ["A", "B"], np.array([5, 7, 9]),
                                 ["B", "A"], ref_scores)  # fmt: skip
    assert rows.tolist() == [0, 2]  # record 8 is not in the reference
    np.testing.assert_array_equal(aligned, [[0.8, 0.2], [0.7, 0.3]])
    with pytest.raises(ValueError, match="label sets differ: \\['C'\\]"):
        script.align(np.array([7]), ["A", "B"], np.array([7]), ["A", "B", "C"], ref_scores)


def test_the_reference_loader_writes_beside_links_not_into_the_data(tmp_path: Path) -> None:
    script = load_script("ptbxl_reference_training")
    root = tmp_path / "data"
    (root / "records100").mkdir(parents=True)
    for name in ("ptbxl_database.csv", "scp_statements.csv"):
        (root / name).write_text("x")
    folder = script.link_data(root, tmp_path / "out")
    assert folder.name == "ptbxl" and all((folder / n).is_symlink() for n in script.DATA_FILES)
    assert script.link_data(root, tmp_path / "out") == folder  # a second cell reuses it
    (root / "scp_statements.csv").unlink()
    with pytest.raises(SystemExit, match=r"scp_statements\.csv is missing"):
        script.link_data(root, tmp_path / "other")


def test_the_table_reports_fold_10_beside_the_published_value_when_present(tmp_path) -> None:
    table = load_script("ptbxl_table")
    args = table.argparse.Namespace(results=tmp_path / "table.jsonl", revision=table.REVISION,
                                    against_revision=None, fraction=1.0,
                                    precision="auto")  # fmt: skip
    setup = table.table_setup(args)

    def row(task: str, seed: int, **splits: float) -> dict:
        metrics = {split: {"macro_auroc": v, "ci": {"macro_auroc": [v - 0.01, v + 0.01]}}
                   for split, v in splits.items()}  # fmt: skip
        return {"cell": f"resnet1d-wang/{task}/s{seed}", "model": "resnet1d-wang",
                "task": task, "seed": seed, "setup": setup, "fraction": 1.0,
                "precision": "float32", "train_seconds": 60.0,
                "hardware": {"cpu": "x"}, "metrics": metrics}  # fmt: skip

    rows = [row("rhythm", 1, val=0.5), row("rhythm", 1, val=0.96, test=0.96),  # run again
            row("rhythm", 0, val=0.95, test=0.94), row("rhythm", 2, val=0.97),
            row("form", 0, val=0.85)]  # fmt: skip
    args.results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    entries = {e["task"]: e for e in table.summary(args)}
    rhythm = entries["rhythm"]["test"]
    assert rhythm["macro_auroc"] == pytest.approx(0.95)
    published = table.PUBLISHED["resnet1d-wang"]["rhythm"]  # 0.946
    assert rhythm["minus_published"] == pytest.approx(0.95 - published)
    assert "test" not in entries["form"]
    lines = table.markdown(list(entries.values())).splitlines()
    (rhythm_line,) = [ln for ln in lines if "| rhythm |" in ln]
    assert "| 0.960 ± 0.010 [0.940, 0.960] (seed 0) | 0.946 | +0.014 |" in rhythm_line
    assert rhythm_line.endswith(
        "| 0.950 ± 0.014 [0.930, 0.950] (seed 0), seeds 0-1 only, +0.004 vs published |"
    )
    (form_line,) = [ln for ln in lines if "| form |" in ln]
    assert form_line.endswith("| absent |")


def test_a_cell_without_fold_10_scores_runs_again_where_the_copy_holds_fold_10(tmp_path) -> None:
    table, grid = load_script("ptbxl_table"), load_script("post_training")
    rows = [{"cell": "m/rhythm/s0", "setup": "x", "metrics": {"val": {}}},
            {"cell": "m/form/s0", "setup": "x", "metrics": {"val": {}, "test": {}}},
            {"cell": "m/all/s0", "setup": "y", "metrics": {"val": {}, "test": {}}}]  # fmt: skip
    assert table.finished_cells(rows, "x", fold10=False) == {"m/rhythm/s0", "m/form/s0"}
    assert table.finished_cells(rows, "x", fold10=True) == {"m/form/s0"}
    again = {"cell": "m/rhythm/s0", "setup": "x", "metrics": {"val": {}, "test": {}}}
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in [*rows, again]))
    assert grid.read_rows(results) == [again, rows[1], rows[2]]  # the rerun's row replaces
    sweep = next(iter(grid.SWEEP))
    assert not grid.scored_enough({"variant": "finetune", "metrics": {"val": {}}}, fold10=True)
    assert grid.scored_enough({"variant": "finetune", "metrics": {"val": {}}}, fold10=False)
    assert grid.scored_enough({"variant": sweep, "metrics": {"val": {}}}, fold10=True)


def test_a_cell_run_again_replaces_its_kept_probabilities(tmp_path: Path) -> None:
    grid = load_script("post_training")
    run, dest = tmp_path / "run", tmp_path / "kept" / "cell.npz"
    (run / "predictions").mkdir(parents=True)
    y = np.eye(2, dtype=np.float32)
    np.savez(run / "predictions" / "predictions.npz", val_y=y, val_probabilities=y)
    grid.keep_predictions(run, dest)
    np.savez(run / "predictions" / "predictions.npz", val_y=y, val_probabilities=y,
             test_y=y, test_probabilities=y)  # fmt: skip
    grid.keep_predictions(run, dest)
    with np.load(dest) as kept:
        assert {"val_y", "test_y", "test_probabilities"} <= set(kept.files)
        assert kept["test_y"].dtype == np.uint8
