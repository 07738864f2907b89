"""`ecgfoundry pretrain` end to end on a small PTB-XL copy: CPC on folds 1-8 writes a model
with its manifest, a rerun resumes, and fine-tuning from it on fold 9 is checked clean."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_ptbxl import first_records_copy
from typer.testing import CliRunner

import ecgfoundry.engine.engine as engine_module
from ecgfoundry.adapt import finetune
from ecgfoundry.cli import app
from ecgfoundry.errors import UsageError
from ecgfoundry.models import create_model, load_model
from ecgfoundry.pretrain import pretrain
from ecgfoundry.pretrain.corpus import CorpusSource
from ecgfoundry.pretrain.leakage import read_manifest


@pytest.fixture(scope="module")
def small_copy(ptbxl_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return first_records_copy(ptbxl_root, tmp_path_factory.mktemp("ptbxl-small"), 6)


def test_pretrain_command_then_finetune_is_checked(
    small_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cpc.yaml").write_text("batch_size: 8\nnegatives: 8\nsteps_ahead: 4\n")
    args = ["pretrain", "s4-tiny", "--objective", "cpc", "--data", f"ptbxl={small_copy}",
            "--out", str(tmp_path / "run"), "--epochs", "1", "--config", str(tmp_path / "cpc.yaml"),
            "--holdout", "0.2", "--cache-dir", str(tmp_path / "cache"),
            "--checkpoint-steps", "2"]  # fmt: skip
    saves, save = [], engine_module.save_checkpoint

    def counted(folder, model, optimizer, scheduler, best, progress, rng=None) -> None:
        saves.append((progress.batch, progress.step))
        save(folder, model, optimizer, scheduler, best, progress, rng)

    monkeypatch.setattr(engine_module, "save_checkpoint", counted)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    mid_epoch = [step for batch, step in saves if batch > 0]
    assert mid_epoch and all(step % 2 == 0 for step in mid_epoch)  # --checkpoint-steps 2
    summary = json.loads(result.output)
    assert summary["epochs_run"] == 1 and summary["val_loss"] > 0
    manifest = read_manifest(tmp_path / "run" / "model")
    assert manifest is not None and manifest["count"] == 48  # folds 1-8 only, 6 records each
    again = CliRunner().invoke(app, args)  # finished: resumes at the end, trains nothing
    assert again.exit_code == 0 and json.loads(again.output)["epochs_run"] == 1
    metrics = finetune(tmp_path / "run" / "model", root=small_copy, task="superdiagnostic",
                       strategy="linear-probe", out=tmp_path / "probe",
                       config={"batch_size": 8, "stages.0.epochs": 1},
                       cache_dir=tmp_path / "cache", progress_bar=False)  # fmt: skip
    check = metrics["run"]["leakage_check"]
    assert check["status"] == "clean" and check["checked"] == metrics["run"]["val_records"] > 0


def test_bad_pretrain_arguments_are_named(small_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="objective must be one of"):
        pretrain("s4-tiny", objective="byol", data=[f"ptbxl={small_copy}"], out=tmp_path)
    with pytest.raises(UsageError, match="KIND=PATH"):
        pretrain("s4-tiny", objective="cpc", data=[str(small_copy)], out=tmp_path)
    with pytest.raises(UsageError, match=r"unknown cpc setting\(s\) \['lr_head'\]"):
        pretrain("s4-tiny", objective="cpc", data=[f"ptbxl={small_copy}"], out=tmp_path,
                 config={"lr_head": 1.0})  # fmt: skip
    with pytest.raises(UsageError, match="cpc settings: batch_size must be of type int, got 'abc'"):
        pretrain("s4-tiny", objective="cpc", data=[f"ptbxl={small_copy}"], out=tmp_path,
                 config={"batch_size": "abc"})  # fmt: skip
    with pytest.raises(UsageError, match="cpc pretrains s4 models; net1d-micro is a net1d model"):
        pretrain("net1d-micro", objective="cpc", data=[f"ptbxl={small_copy}"], out=tmp_path)
    with pytest.raises(UsageError, match="w2v-cmsc-rlm pretrains ecgfm models; s4-tiny is a s4"):
        pretrain("s4-tiny", objective="w2v-cmsc-rlm", data=[f"ptbxl={small_copy}"], out=tmp_path)
    with pytest.raises(UsageError, match="holdout must be above 0 and below 1, got 0"):
        pretrain("s4-tiny", objective="cpc", data=[f"ptbxl={small_copy}"], out=tmp_path, holdout=0)
    with pytest.raises(UsageError, match="task is for the supervised objective"):
        pretrain("s4-tiny", objective="cpc", data=[f"ptbxl={small_copy}"], out=tmp_path,
                 task="rhythm")  # fmt: skip
    run_options = (
        {"loader_workers": -1},
        {"checkpoint_every_minutes": 0},
        {"checkpoint_every_minutes": float("nan")},
        {"checkpoint_every_steps": 0},
    )
    for options in run_options:
        (name,) = options
        with pytest.raises(UsageError, match=f"^{name} must be"):
            pretrain("s4-tiny", objective="cpc", data=[f"ptbxl={small_copy}"], out=tmp_path,
                     **options)  # fmt: skip
    assert not any(tmp_path.iterdir())  # each refused before anything was built
    bad = (["--holdout", "1.5"], ["--loader-workers", "-1"], ["--checkpoint-minutes", "-1"])
    for option in bad:
        result = CliRunner().invoke(app, ["pretrain", "s4-tiny", "--objective", "cpc", "--data",
                                          f"ptbxl={small_copy}", "--out", str(tmp_path / "x"),
                                          *option])  # fmt: skip
        assert result.exit_code == 2 and option[0] in result.output, result.output


def test_pretrain_names_the_records_it_could_not_read(small_copy: Path, tmp_path: Path) -> None:
    folder = tmp_path / "records"
    folder.mkdir()
    for header in sorted((small_copy / "records100").rglob("*_lr.hea"))[:4]:
        for file in (header, header.with_suffix(".dat")):
            (folder / file.name).write_bytes(file.read_bytes())
    (folder / "broken.hea").write_text("broken twelve 100\n")
    source = CorpusSource("wfdb", folder, allow_evaluation_folds=True)  # PTB-XL files on purpose
    summary = pretrain("s4-tiny", objective="cpc", data=[source], out=tmp_path / "run", epochs=1,
                       config={"batch_size": 2, "negatives": 4, "steps_ahead": 2}, holdout=0.25,
                       cache_dir=tmp_path / "cache", progress_bar=False)  # fmt: skip
    assert summary["records"] == {"records": 4}
    assert [r["record"] for r in summary["unreadable_records"]] == ["records:broken"]


def test_pretrain_w2v_cmsc_rlm_writes_model_head_and_manifest(small_copy: Path, tmp_path: Path):
    summary = pretrain("ecgfm-tiny", objective="w2v-cmsc-rlm", data=[f"ptbxl={small_copy}"],
                       out=tmp_path / "run", epochs=1, holdout=0.2, cache_dir=tmp_path / "cache",
                       config={"batch_size": 4, "negatives": 5, "mask_length": 2},
                       progress_bar=False)  # fmt: skip
    assert summary["epochs_run"] == 1 and summary["val_loss"] > 0
    folder = tmp_path / "run" / "model"
    assert (folder / "pretraining_head.safetensors").exists()
    manifest = read_manifest(folder)
    assert manifest is not None and manifest["count"] == 48


@pytest.mark.parametrize(
    ("objective", "model", "config"),
    [
        ("cpc", "s4-tiny", {"batch_size": 8, "negatives": 16, "steps_ahead": 4, "lr": 0.01}),
        ("w2v-cmsc-rlm", "ecgfm-tiny", {"batch_size": 4, "negatives": 10, "lr": 0.001}),
        ("supervised", "resnet1d-wang", {"batch_size": 8}),
    ],
)
def test_each_objective_learns_on_real_ecgs(objective, model, config, small_copy, tmp_path):
    """A few epochs on 38-48 real PTB-XL records: the training loss falls (and, for the
    self-supervised objectives, the held-out loss too)."""
    task = "superdiagnostic" if objective == "supervised" else None  # all: labels unseen here
    summary = pretrain(model, objective=objective, data=[f"ptbxl={small_copy}"], task=task,
                       out=tmp_path / "run", epochs=6, holdout=0.2, config=config,
                       cache_dir=tmp_path / "cache", progress_bar=False)  # fmt: skip
    log = [json.loads(line) for line in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    assert len(log) == 6 and log[-1]["loss"] < 0.8 * log[0]["loss"], log
    if objective != "supervised":
        assert log[-1]["val_loss"] < log[0]["val_loss"] and summary["val_accuracy"] > 0.1


def test_two_processes_pretrain_like_one(small_copy: Path, tmp_path: Path) -> None:
    """`torchrun --nproc_per_node 2 -m ecgfoundry pretrain` splits each batch over two
    processes: the same run, one model and manifest, a validation loss close to one process's."""
    from conftest import torchrun, workers_output

    (tmp_path / "cpc.yaml").write_text("batch_size: 8\nnegatives: 8\nsteps_ahead: 4\n")
    common = ["pretrain", "s4-tiny", "--objective", "cpc", "--data", f"ptbxl={small_copy}",
              "--epochs", "2", "--config", str(tmp_path / "cpc.yaml"), "--holdout", "0.2",
              "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = {}
    for name in ("one", "two"):
        args = ["-m", "ecgfoundry", *common, "--out", str(tmp_path / name)]
        result = (torchrun("--master_port", "29519", *args) if name == "two" else
                  subprocess.run([sys.executable, *args], capture_output=True, text=True,
                                 env=env, timeout=600))  # fmt: skip
        assert result.returncode == 0, workers_output(result.stderr)
        runs[name] = json.loads((tmp_path / name / "config.json").read_text())
        log = (tmp_path / name / "log.jsonl").read_text().splitlines()
        runs[name]["last"] = json.loads(log[-1])
        assert len(log) == 2
    assert runs["one"]["world_size"] == 1 and runs["two"]["world_size"] == 2
    one, two = runs["one"]["last"]["val_loss"], runs["two"]["last"]["val_loss"]
    assert two == pytest.approx(one, rel=0.05)
    assert read_manifest(tmp_path / "two/model") == read_manifest(tmp_path / "one/model")
    torch.manual_seed(0)  # the weights both runs started from (pretrain seeds, then builds)
    start = create_model("s4-tiny").state_dict()
    a = load_model(tmp_path / "one/model").state_dict()
    b = load_model(tmp_path / "two/model").state_dict()
    assert all(torch.isfinite(b[k]).all() for k in b)
    moved = sum((a[k].float() - start[k].float()).abs().sum().item() for k in a)
    apart = sum((a[k].float() - b[k].float()).abs().sum().item() for k in a)
    assert apart < 0.1 * moved  # the same training, not two different ones


def test_convert_keeps_ecgfms_pretraining_head_for_pretrain(small_copy: Path, tmp_path: Path):
    """`convert ecgfm --keep-pretraining-head` writes the published quantiser and projections
    beside the model; without it, continuing w2v-cmsc-rlm says that they start fresh."""
    from conftest import require_reference

    from ecgfoundry.pretrain.w2v import HEAD_FILE, convert_pretraining_head, load_pretraining_head

    path = require_reference("ecgfm_tiny.pt") / "ecgfm_tiny.pt"
    kept, bare = tmp_path / "kept", tmp_path / "bare"
    result = CliRunner().invoke(app, ["convert", "ecgfm", str(path), "--out", str(kept),
                                      "--keep-pretraining-head"])  # fmt: skip
    assert result.exit_code == 0, result.output
    saved, published = load_pretraining_head(kept / HEAD_FILE), convert_pretraining_head(path)
    assert all(torch.equal(v, published.state_dict()[k]) for k, v in saved.state_dict().items())
    result = CliRunner().invoke(app, ["convert", "ecgcpc", str(path), "--out", str(bare),
                                      "--keep-pretraining-head"])  # fmt: skip
    assert isinstance(result.exception, UsageError)  # the command's wrapper prints it, status 2
    assert "only ecgfm has a separate pretraining head" in str(result.exception)
    result = CliRunner().invoke(app, ["convert", "ecgfm", str(path), "--out", str(bare)])
    assert result.exit_code == 0, result.output
    assert not (bare / HEAD_FILE).exists()
    options = {"objective": "w2v-cmsc-rlm", "data": [f"ptbxl={small_copy}"], "epochs": 1,
               "holdout": 0.2, "cache_dir": tmp_path / "cache", "progress_bar": False,
               "config": {"batch_size": 4, "negatives": 5, "mask_length": 2}}  # fmt: skip
    with pytest.warns(UserWarning, match="quantiser and projections start fresh"):
        pretrain(bare, out=tmp_path / "from-bare", **options)


def test_pretrain_renames_and_fills_leads_of_every_source(monkeypatch: pytest.MonkeyPatch):
    """`--rename-lead MLII=II --missing-leads zero` reach every `--data` source (two-lead
    Holter records such as mitdb's into a 12-lead model)."""
    import ecgfoundry.pretrain as module

    seen = {}
    monkeypatch.setattr(module, "pretrain", lambda model, **kwargs: seen.update(kwargs) or {})
    args = ["pretrain", "s4-tiny", "--objective", "cpc", "--data", "mitdb=a", "--data", "vfdb=b",
            "--out", "o", "--rename-lead", "MLII=II", "--missing-leads", "zero"]  # fmt: skip
    assert CliRunner().invoke(app, args).exit_code == 0
    assert [(s.kind, dict(s.rename_leads), s.missing_leads) for s in seen["data"]] == [
        ("mitdb", {"MLII": "II"}, "zero"),
        ("vfdb", {"MLII": "II"}, "zero"),
    ]
    result = CliRunner().invoke(app, [*args[:-4], "--rename-lead", "MLII"])
    assert isinstance(result.exception, UsageError) and "expected OLD=NEW" in str(result.exception)
