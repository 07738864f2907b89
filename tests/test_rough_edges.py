"""embed / predict on people's files: where records may live, what an array needs, which
model is accepted, how outputs keep the record order, and the one preprocessing path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from ecgfoundry.adapt import STRATEGIES, recipe_for
from ecgfoundry.cli import app
from ecgfoundry.data.readers import read_record
from ecgfoundry.data.record import ECGInputError
from ecgfoundry.data.samples import sample_dir
from ecgfoundry.data.transforms import MissingLeadsError, model_windows
from ecgfoundry.errors import UsageError
from ecgfoundry.evaluate.metrics import DEFAULT_AGGREGATE
from ecgfoundry.inference import (
    embed,
    ids_path,
    load_inputs,
    predict_proba,
    prepare,
    save_thresholds,
)
from ecgfoundry.models import create_model, load_model, resolve_model, save_model
from ecgfoundry.models.io import CheckpointError
from ecgfoundry.models.net1d import SMALL_SPEC
from ecgfoundry.settings import read_settings

RECORDS = ("00008_lr", "00010_lr", "00017_lr")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved 12-lead net1d-tiny (100 Hz, 10 s) with a 3-label head."""
    torch.manual_seed(0)
    return save_model(create_model("net1d-tiny", num_classes=3),
                      tmp_path_factory.mktemp("models") / "tiny")  # fmt: skip


def cli(*args: str | Path) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def copy_samples(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in RECORDS:
        for suffix in (".hea", ".dat"):
            shutil.copy(sample_dir() / "ptbxl" / f"{name}{suffix}", folder)
    return folder


def test_a_folder_under_a_dot_directory(tiny: Path, tmp_path: Path) -> None:
    records = copy_samples(tmp_path / ".hidden" / "records")
    copy_samples(records / ".trash")  # hidden below the folder given: skipped
    out = tmp_path / "e.npy"
    result = cli("embed", tiny, records, "--out", out)
    assert result.exit_code == 0, result.output
    assert np.load(out).shape == (3, 160)
    assert ids_path(out).read_text().splitlines() == [str(records / n) for n in RECORDS]


def test_embed_and_npy_predictions_keep_the_record_ids(tiny: Path, tmp_path: Path) -> None:
    records = copy_samples(tmp_path / "records")
    x = np.random.default_rng(0).normal(size=(2, 12, 1000)).astype(np.float32)
    np.save(records / "batch.npy", x)
    out = tmp_path / "out" / "embeddings.npy"
    result = cli("embed", tiny, records, "--fs", "100", "--out", out)
    assert result.exit_code == 0, result.output
    ids = (tmp_path / "out" / "embeddings.ids.txt").read_text().splitlines()
    assert ids == [str(records / n) for n in RECORDS] + [
        f"{records}/batch.npy[{i}]" for i in (0, 1)
    ]
    model = load_model(tiny)
    np.testing.assert_allclose(
        np.load(out), embed(model, prepare(model, load_inputs(records, fs=100))), atol=1e-6
    )
    result = cli("predict", tiny, records, "--fs", "100", "--out", tmp_path / "p.npy")
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "p.npy").shape == (5, 3)
    assert (tmp_path / "p.ids.txt").read_text().splitlines() == ids
    refused = cli("embed", tiny, records, "--fs", "100", "--out", tmp_path / "e.csv")
    assert isinstance(refused.exception, UsageError) and ".npy" in str(refused.exception)


def test_one_lead_array_without_preprocessing_needs_no_lead_names(tmp_path: Path) -> None:
    spec = {**SMALL_SPEC, "leads": ["I"]}
    torch.manual_seed(0)
    folder = save_model(create_model("net1d-tiny", in_channels=1, num_classes=2, spec=spec),
                        tmp_path / "one-lead")  # fmt: skip
    x = np.random.default_rng(1).normal(size=(4, 1, 1000)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = cli(
        "predict", folder, tmp_path / "x.npy", "--no-preprocess", "--out", tmp_path / "p.csv"
    )  # fmt: skip  (no --fs, no --leads: model inputs)
    assert result.exit_code == 0, result.output
    model = load_model(folder)
    with torch.no_grad():
        expected = torch.sigmoid(model(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(pd.read_csv(tmp_path / "p.csv").iloc[:, 1:], expected, atol=1e-5)
    # Preprocessing selects leads by name, so then the names are needed.
    with pytest.raises(ECGInputError, match=r"x\.npy: 1 leads: pass their names \(--leads\)"):
        load_inputs(tmp_path / "x.npy", fs=100)
    assert load_inputs(tmp_path / "x.npy", fs=100, leads=["I"])[0].leads == ("I",)


def test_arrays_fed_as_they_are_must_be_the_models_input(tmp_path: Path) -> None:
    """Without preprocessing nothing resamples or cuts: another rate or length is refused,
    naming the file, instead of running the model on the wrong input."""
    spec = {**SMALL_SPEC, "leads": ["I"]}
    model = create_model("net1d-tiny", in_channels=1, num_classes=2, spec=spec)
    folder = save_model(model, tmp_path / "m")
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 1000), dtype=np.float32))
    np.save(tmp_path / "short.npy", np.zeros((2, 1, 900), dtype=np.float32))
    fast = cli("predict", folder, tmp_path / "x.npy", "--no-preprocess", "--fs", "500",
               "--out", tmp_path / "p.csv")  # fmt: skip
    assert isinstance(fast.exception, ECGInputError) and not (tmp_path / "p.csv").exists()
    message = "x.npy[0]: 1 leads x 1000 samples at 500 Hz, but the model takes 1 leads x 1000 "
    assert message in str(fast.exception)
    model = load_model(folder)
    records = load_inputs(tmp_path / "short.npy", fs=100, preprocess=False)
    with pytest.raises(ECGInputError, match=r"short\.npy\[0\]: 1 leads x 900 samples at 100 Hz"):
        prepare(model, records, preprocess=False)


def test_a_bare_preset_is_refused(tmp_path: Path) -> None:
    folder = copy_samples(tmp_path / "records")
    for command in ("predict", "embed"):
        result = cli(command, "net1d-tiny", folder, "--out", tmp_path / "x.npy")
        assert isinstance(result.exception, CheckpointError), command
        assert "without weights" in str(result.exception)
    assert not (tmp_path / "x.npy").exists()


def test_predict_aggregates_windows_as_evaluation_does(tiny: Path, tmp_path: Path) -> None:
    x = np.random.default_rng(2).normal(size=(2, 12, 2500)).astype(np.float32)  # 4 windows each
    np.save(tmp_path / "long.npy", x)
    model = load_model(tiny)
    inputs = prepare(model, load_inputs(tmp_path / "long.npy", fs=100))
    assert len(inputs.windows) == 8 and DEFAULT_AGGREGATE == "max"
    assert all(recipe_for(s).eval_aggregate == DEFAULT_AGGREGATE for s in STRATEGIES)
    for args, how in (((), DEFAULT_AGGREGATE), (("--aggregate", "mean"), "mean")):
        out = tmp_path / f"{how}.csv"
        result = cli("predict", tiny, tmp_path / "long.npy", "--fs", "100", "--out", out, *args)
        assert result.exit_code == 0, result.output
        expected = predict_proba(model, inputs, aggregate=how)
        np.testing.assert_allclose(pd.read_csv(out).iloc[:, 1:], expected, atol=1e-5)
    assert not np.allclose(predict_proba(model, inputs), predict_proba(model, inputs,
                                                                     aggregate="mean"))  # fmt: skip


def test_a_holter_records_missing_leads_are_refused_or_zero_filled(tiny, tmp_path) -> None:
    x = np.random.default_rng(3).normal(size=(1, 2, 1000)).astype(np.float32)
    np.save(tmp_path / "holter.npy", x)
    args = ("predict", tiny, tmp_path / "holter.npy", "--fs", "100", "--out", tmp_path / "p.csv")
    refused = cli(*args, "--leads", "II,V5")
    assert isinstance(refused.exception, MissingLeadsError)
    assert "holter.npy" in str(refused.exception)
    assert "--missing-leads zero" in str(refused.exception)
    filled = cli(*args, "--leads", "II,V5", "--missing-leads", "zero")
    assert filled.exit_code == 0, filled.output
    assert "leads_zero_filled: I, III, aVR, aVL, aVF, V1, V2, V3, V4, V6" in filled.stderr
    model = load_model(tiny)
    inputs = prepare(model, load_inputs(tmp_path / "holter.npy", fs=100, leads=["II", "V5"]),
                     missing_leads="zero")  # fmt: skip
    leads = list(model.spec.leads)
    kept = inputs.windows[:, [leads.index("II"), leads.index("V5")]]
    assert model.spec.normalisation == "zscore-global"  # over the two leads the record has:
    assert abs(kept.mean()) < 1e-3 and kept.std() == pytest.approx(1.0, abs=1e-3)
    filled_rows = [i for i, name in enumerate(leads) if name not in ("II", "V5")]
    assert not inputs.windows[:, filled_rows].any()  # the ten filled leads stay zeros
    expected = predict_proba(model, inputs)
    np.testing.assert_allclose(pd.read_csv(tmp_path / "p.csv").iloc[:, 1:], expected, atol=1e-5)
    unrelated = cli(*args, "--leads", "X,Y", "--missing-leads", "zero")  # Frank leads
    assert isinstance(unrelated.exception, MissingLeadsError)
    assert "shares no lead" in str(unrelated.exception)
    raw = cli(*args, "--leads", "II,V5", "--no-preprocess", "--missing-leads", "zero")
    assert isinstance(raw.exception, UsageError) and "drop --no-preprocess" in str(raw.exception)


def test_prepare_cuts_records_as_training_and_evaluation_do(tiny: Path) -> None:
    model = load_model(tiny)
    record = read_record(sample_dir() / "cinc2020" / "E00009.hea")  # 500 Hz, resampled
    full = read_record(sample_dir() / "ptbxl" / "00008_lr.hea")
    short = full.replace(signal=full.signal[:, :600])  # 6 s: zero-padded to 10 s
    inputs = prepare(model, [record, short])
    windows, _ = model_windows(record, model.spec)
    padded, _ = model_windows(short, model.spec)
    np.testing.assert_array_equal(inputs.windows, np.concatenate([windows, padded]))
    assert inputs.owner.tolist() == [0] * len(windows) + [1]
    assert inputs.repairs[short.source] == ["zero_padded: 400 samples"]


def test_finetune_takes_the_model_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import ecgfoundry.adapt

    calls = []

    def fake(model: str, **options: object) -> dict:
        calls.append((model, options))
        return {
            "val": {
                "macro_auroc": 0.9,
                "macro_auprc": 0.5,
                "ci": {},
                "per_label": [{"label": "164889003"}, {"label": "c1"}],
            },
            "run": {"splits": {"val": "10 %, record-level, seeded: 3 records"}},
        }

    monkeypatch.setattr(ecgfoundry.adapt, "finetune", fake)
    result = cli("finetune", "net1d-tiny", "--data", "cinc", "--root", tmp_path,
                 "--strategy", "lp-ft", "--out", tmp_path / "run", "--fraction", "0.3",
                 "--loader-workers", "2", "--checkpoint-minutes", "5",
                 "--checkpoint-steps", "50")  # fmt: skip
    assert result.exit_code == 0, result.output
    ((model, options),) = calls
    assert model == "net1d-tiny" and options == {
        "data": "cinc", "root": tmp_path, "task": None, "strategy": "lp-ft",
        "out": tmp_path / "run", "fraction": 0.3, "seed": 0, "config": None, "epochs": None,
        "cache_dir": None, "workers": 1, "loader_workers": 2, "checkpoint_every_minutes": 5.0,
        "checkpoint_every_steps": 50, "allow_overlap": False,
    }  # fmt: skip
    assert '"macro_auroc": 0.9' in result.output
    assert '"val": "10 %, record-level, seeded: 3 records"' in result.output  # the splits first
    assert json.loads(result.stdout)["labels"] == ["164889003 AF (atrial fibrillation)", "c1"]
    unknown = cli("finetune", "net1d-tiny", "--strategy", "nope", "--out", tmp_path / "run")
    assert isinstance(unknown.exception, UsageError) and "post-train" in str(unknown.exception)
    assert len(calls) == 1
    named = cli(
        "finetune",
        "net1d-tiny",
        "--data",
        f"cinc={tmp_path}",
        "--strategy",
        "lp-ft",
        "--out",
        tmp_path / "run",
        "--fraction",
        "0.3",
        "--loader-workers",
        "2",
        "--checkpoint-minutes",
        "5",
        "--checkpoint-steps",
        "50",
    )  # fmt: skip  (pretrain's KIND=PATH form)
    assert named.exit_code == 0, named.output
    assert calls[1] == calls[0]
    both = cli("finetune", "net1d-tiny", "--data", f"cinc={tmp_path}", "--root", tmp_path,
               "--strategy", "lp-ft", "--out", tmp_path / "run")  # fmt: skip
    assert "names the folder already: drop --root" in str(both.exception) and len(calls) == 2


def test_predict_and_embed_check_the_model_and_output_before_reading(tmp_path: Path) -> None:
    """A backbone without a head, or an output name that cannot be written, is refused
    before any record is read (the source here does not even exist)."""
    missing = tmp_path / "not-there"
    backbone = cli("predict", "ecgfoundry-cpc", missing, "--out", tmp_path / "p.csv")
    assert isinstance(backbone.exception, UsageError)
    assert "ecgfoundry-cpc has no classification head" in str(backbone.exception)
    wrong = cli("embed", "ecgfoundry-cpc", missing, "--out", tmp_path / "e.csv")
    assert str(wrong.exception) == f"--out {tmp_path / 'e.csv'}: must end in .npy"


def test_a_folder_run_leaves_out_an_unreadable_record_and_names_it(tiny, tmp_path) -> None:
    records = copy_samples(tmp_path / "records")
    broken = records / f"{RECORDS[0]}.dat"
    broken.write_bytes(broken.read_bytes()[:100])  # truncated
    (records / "labels.csv").write_text("record,label\n00010_lr,NORM\n")  # a table, left out
    (records / "visits.csv").write_text("patient,date\n1,2024-01-02\n")  # perhaps an ECG
    result = CliRunner().invoke(app, ["embed", str(tiny), str(records), "--out",
                                      str(tmp_path / "e.npy")])  # fmt: skip
    assert result.exit_code == 0, result.output
    notes = " ".join(result.stderr.split())
    assert f"note: left out {records / RECORDS[0]}" in notes
    assert "skipped 1 .npy/.csv file(s) in" in notes and "(visits.csv): if they are ECGs" in notes
    assert "labels.csv" not in notes
    ids = (tmp_path / "e.ids.txt").read_text().split()
    assert len(ids) == len(RECORDS) - 1 and not any(RECORDS[0] in i for i in ids)
    (tmp_path / "empty").mkdir()
    empty = cli("embed", tiny, tmp_path / "empty", "--out", tmp_path / "x.npy")
    assert str(empty.exception).startswith(f"{tmp_path / 'empty'}: no ECG records in this folder")


@pytest.mark.parametrize(
    ("shape", "message"),
    [((1000,), r"shape \(1000,\): expected \[leads, samples\]"),
     ((0, 12, 1000), r"shape \(0, 12, 1000\)"),
     ((2, 1000, 12), r"shape \(2, 1000, 12\) has more leads \(1000\) than samples.*transpose")],
)  # fmt: skip
def test_an_array_of_the_wrong_shape_is_named(shape, message, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros(shape, dtype=np.float32))
    with pytest.raises(ECGInputError, match=rf"x\.npy: an array of {message}"):
        load_inputs(tmp_path / "x.npy", fs=100)


def test_a_file_that_is_not_an_npy_array_is_named_so(tmp_path: Path) -> None:
    (tmp_path / "notes.npy").write_text("age,sex\n63,F\n")
    with pytest.raises(ECGInputError, match=r"notes\.npy: not a NumPy \.npy file"):
        load_inputs(tmp_path / "notes.npy", fs=100)
    np.save(tmp_path / "objects.npy", np.array([{"fs": 100}], dtype=object), allow_pickle=True)
    for leads in (None, ["I"]):  # two ways in: by shape, and read_numpy
        with pytest.raises(ECGInputError, match=r"objects\.npy: holds Python objects"):
            load_inputs(tmp_path / "objects.npy", fs=100, leads=leads)


def test_a_wfdb_record_named_without_its_suffix_is_read(tmp_path: Path) -> None:
    folder = copy_samples(tmp_path / "records")
    (record,) = load_inputs(folder / RECORDS[0])
    named = read_record(folder / f"{RECORDS[0]}.hea")
    assert record.source == named.source and np.array_equal(record.signal, named.signal)
    with pytest.raises(ECGInputError, match="00099_lr: no such file or folder"):
        load_inputs(folder / "00099_lr")


def test_a_sampling_rate_that_is_not_positive_names_fs(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((12, 1000), dtype=np.float32))
    for command in (["data", "inspect", tmp_path / "x.npy"], ["embed", "ecgfoundry-cpc",
                    tmp_path / "x.npy", "--out", tmp_path / "e.npy"]):  # fmt: skip
        result = cli(*command, "--fs", "0")
        said = " ".join(result.output.replace("│", " ").split())  # the error box, unwrapped
        assert result.exit_code == 2 and "Invalid value for '--fs'" in said, result.output
        assert "a sampling rate must be a positive number of Hz, not 0" in said


def test_an_unreachable_hub_model_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"hf-hub:nobody/nothing: could not download it"):
        resolve_model("hf-hub:nobody/nothing")


def test_predict_per_window_follows_a_long_recording(tiny: Path, tmp_path: Path) -> None:
    """25 s at 100 Hz: 10-s windows every 5 s, the last flush with the end; each window's
    probabilities, whose maximum is the per-record prediction."""
    signal = np.concatenate([read_record(sample_dir() / "ptbxl" / f"{name}.hea").signal
                             for name in RECORDS], axis=1)[:, :2500]  # fmt: skip
    np.save(tmp_path / "long.npy", signal)
    out = tmp_path / "w.csv"
    result = cli("predict", tiny, tmp_path / "long.npy", "--fs", "100", "--out", out,
                 "--per-window")  # fmt: skip
    assert result.exit_code == 0, result.output
    windows = pd.read_csv(out)
    assert list(windows.columns[:3]) == ["record", "start_s", "end_s"]
    assert windows.start_s.tolist() == [0, 5, 10, 15] and windows.end_s.tolist() == [10, 15, 20, 25]
    assert set(windows.record) == {str(tmp_path / "long.npy")}
    result = cli("predict", tiny, tmp_path / "long.npy", "--fs", "100", "--out", tmp_path / "r.csv")
    per_record = pd.read_csv(tmp_path / "r.csv").iloc[0, 1:].to_numpy(dtype=float)
    np.testing.assert_allclose(windows.iloc[:, 3:].max().to_numpy(), per_record, atol=1e-6)
    result = cli("predict", tiny, tmp_path / "long.npy", "--fs", "100", "--out",
                 tmp_path / "w.json", "--per-window")  # fmt: skip
    rows = pd.read_json(tmp_path / "w.json")
    assert result.exit_code == 0 and len(rows) == 4 and set(rows.columns) >= {"probabilities"}
    result = cli("predict", tiny, tmp_path / "long.npy", "--fs", "100", "--out",
                 tmp_path / "w.npy", "--per-window")  # fmt: skip
    assert isinstance(result.exception, UsageError)
    assert str(result.exception).endswith("w.npy: must end in .csv or .json")


def test_predict_names_labels_with_the_thresholds_tuned_on_validation(tiny, tmp_path) -> None:
    """A model folder from finetune holds thresholds.json (F1-maximising on validation):
    predict names each record's labels with them by default, with one probability for all
    on request, or none; thresholds tuned on max-aggregated windows refuse another aggregate."""
    model_dir = tmp_path / "adapted"
    shutil.copytree(tiny, model_dir)
    thresholds = [0.2, 0.5, 0.8]
    save_thresholds(model_dir, ["class_0", "class_1", "class_2"], np.array(thresholds),
                    tuned_on="validation, fold 9: 26 records", aggregate="max",
                    untuned=["class_2"])  # fmt: skip
    records = copy_samples(tmp_path / "records")
    model = load_model(model_dir)
    expected = predict_proba(model, prepare(model, load_inputs(records)))

    def predicted(*args: str) -> tuple[pd.DataFrame, object]:
        out = tmp_path / "p.csv"
        result = cli("predict", model_dir, records, "--out", out, *args)
        assert result.exit_code == 0, result.output
        return pd.read_csv(out, keep_default_na=False), result

    tuned, result = predicted()
    assert (
        "note: predicted_labels at thresholds tuned on validation, fold 9: 26 records"
        in result.stderr
    )
    assert "no validation positives for class_2: their threshold is 0.5, not tuned" in result.stderr
    names = [";".join(f"class_{j}" for j in range(3) if p[j] >= thresholds[j]) for p in expected]
    assert tuned["predicted_labels"].tolist() == names
    assert any(names) and not all(n == "class_0;class_1;class_2" for n in names)
    fixed, _ = predicted("--threshold", "0.5")
    assert fixed["predicted_labels"].tolist() == [
        ";".join(f"class_{j}" for j in range(3) if p[j] >= 0.5) for p in expected]  # fmt: skip
    assert fixed["predicted_labels"].tolist() != names
    assert "predicted_labels" not in predicted("--threshold", "none")[0].columns
    windows, _ = predicted("--per-window")
    probabilities = windows[["class_0", "class_1", "class_2"]].to_numpy()
    assert windows["predicted_labels"].tolist() == [
        ";".join(f"class_{j}" for j in range(3) if p[j] >= thresholds[j] - 1e-6)
        for p in probabilities]  # fmt: skip
    mean, _ = predicted("--aggregate", "mean")  # the tuned thresholds do not apply: none named
    assert "predicted_labels" not in mean.columns
    assert "tuned on max-aggregated windows, not mean" in _.stderr
    asked = cli("predict", model_dir, records, "--out", tmp_path / "m.csv", "--aggregate", "mean",
                "--threshold", "tuned")  # fmt: skip
    assert isinstance(asked.exception, UsageError) and "--aggregate max" in str(asked.exception)
    assert "predicted_labels" in predicted("--aggregate", "mean", "--threshold", "0.5")[0]
    bad = cli("predict", model_dir, records, "--out", tmp_path / "b.csv", "--threshold", "1")
    assert isinstance(bad.exception, UsageError) and "--threshold 1" in str(bad.exception)
    assert cli("predict", model_dir, records, "--out", tmp_path / "p.npy").exit_code == 0
    npy = cli("predict", model_dir, records, "--out", tmp_path / "p.npy", "--threshold", "0.5")
    assert isinstance(npy.exception, UsageError) and ".csv or .json" in str(npy.exception)
    without = cli("predict", tiny, records, "--out", tmp_path / "t.csv")
    assert "predicted_labels" not in pd.read_csv(tmp_path / "t.csv").columns and not without.stderr
    save_thresholds(model_dir, ["a", "b", "c"], np.array(thresholds), tuned_on="x",
                    aggregate="max")  # fmt: skip
    mismatch = cli("predict", model_dir, records, "--out", tmp_path / "x.csv")
    assert isinstance(mismatch.exception, CheckpointError)
    assert "thresholds for ['a', 'b', 'c']" in str(mismatch.exception)
    (model_dir / "thresholds.json").write_text("{not json")
    damaged = cli("predict", model_dir, records, "--out", tmp_path / "x.csv")
    assert isinstance(damaged.exception, CheckpointError)
    assert "thresholds.json: not a thresholds file" in str(damaged.exception)


def test_command_lists_show_each_summary_as_flowing_text() -> None:
    """A group's list of commands rewraps each docstring's first paragraph (typer kept the
    source's line breaks there: 'benchmark the / bundled foundation model / (linear probe')."""
    from ecgfoundry.cli import benchmark_app, data_app, models_app, personalize_app

    listed = cli("--help").output
    assert "bundled foundation model (linear probe vs post-train" in listed
    assert "from random weights; a model folder continues from its" in listed
    for group in (app, data_app, models_app, benchmark_app, personalize_app):
        for info in group.registered_commands:
            assert info.short_help and "\n" not in info.short_help
    assert "rate, leads, length, heart rate, labels" in cli("data", "--help").output


def test_every_config_file_reads_as_yaml_or_json(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("in_channels: 1\nbase_filters: 8\n")
    (tmp_path / "a.json").write_text('{"in_channels": 1, "base_filters": 8}')
    assert read_settings(tmp_path / "a.yaml") == read_settings(tmp_path / "a.json")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(UsageError, match=r"--config .*list\.yaml: expected a mapping"):
        read_settings(tmp_path / "list.yaml")
    result = cli("convert", "ecgfounder", tmp_path / "none.pth", "--out", tmp_path / "m",
                 "--config", tmp_path / "missing.yaml")  # fmt: skip
    assert isinstance(result.exception, UsageError)
    assert "missing.yaml: not a readable YAML file" in str(result.exception)


def test_finetune_names_a_wrong_data_source_before_loading_the_model(tmp_path: Path) -> None:
    """A bare preset without weights would be refused too: the data is named first."""
    result = cli("finetune", "net1d-tiny", "--data", "foo", "--strategy", "finetune",
                 "--out", tmp_path / "run")  # fmt: skip
    assert "data 'foo': expected ptbxl, cinc, a .csv table" in str(result.exception)
    assert not (tmp_path / "run").exists()
