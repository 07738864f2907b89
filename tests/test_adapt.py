"""Adaptation on a small real PTB-XL subset: every strategy, freezing, resume after SIGKILL,
2-process DDP, metrics against scikit-learn, faults, run-folder safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from test_ptbxl import copy_records

from ecgfoundry.adapt import (
    RunConfigError,
    SupervisedObjective,
    TrainingError,
    finetune,
    recipe_for,
)
from ecgfoundry.adapt.data import Split, ptbxl_task, window_loader
from ecgfoundry.adapt.recipe import RecipeError
from ecgfoundry.data import ptbxl
from ecgfoundry.engine import Engine, check_run_options
from ecgfoundry.engine.engine import build_optimizer
from ecgfoundry.errors import UsageError
from ecgfoundry.evaluate.metrics import tune_thresholds
from ecgfoundry.inference import tuned_thresholds
from ecgfoundry.models import create_model, load_model, save_model

# Small recipes so that each run takes seconds: (stage epochs) per strategy.
QUICK = {
    "scratch": {"stages.0.epochs": 2},
    "linear-probe": {"stages.0.epochs": 3},
    "attention-probe": {"stages.0.epochs": 3},
    "finetune": {"stages.0.epochs": 2},
    "lp-ft": {"stages.0.epochs": 2, "stages.1.epochs": 2},
    "post-train": {"stages.0.epochs": 2, "stages.1.epochs": 2},
}
COMMON = {"batch_size": 32}


@pytest.fixture(scope="module")
def subset(ptbxl_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """160 training records (folds 1-8) and 50 validation records (fold 9)."""
    table = ptbxl.load(ptbxl_root).table
    ids = [int(i) for f in range(1, 9) for i in table.index[table.strat_fold == f][:20]]
    ids += [int(i) for i in table.index[table.strat_fold == 9][:50]]
    dest = tmp_path_factory.mktemp("ptbxl-subset")
    copy_records(ptbxl_root, dest, sorted(ids))
    return dest


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 'pretrained' model folder (net1d-tiny; the mechanics, not its quality, are tested)."""
    torch.manual_seed(0)
    return save_model(create_model("net1d-tiny"), tmp_path_factory.mktemp("m") / "tiny")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def run(backbone: Path, subset: Path, cache_dir: Path, out: Path, strategy: str = "finetune",
        **kw) -> dict:  # fmt: skip
    config = {**COMMON, **QUICK[strategy], **kw.pop("config", {})}
    return finetune(backbone, root=subset, task="superdiagnostic", strategy=strategy, out=out,
                    config=config, cache_dir=cache_dir, progress_bar=False, **kw)  # fmt: skip


@pytest.mark.parametrize("strategy", list(QUICK))
def test_every_strategy_writes_a_complete_run(strategy, backbone, subset, cache_dir, tmp_path):
    metrics = run(backbone, subset, cache_dir, tmp_path / "run", strategy)
    written = json.loads((tmp_path / "run/metrics.json").read_text())
    assert set(written) == {"val", "run"}  # no test fold in this copy
    assert written["run"]["splits"]["test"] == "absent: this copy has no fold 10"
    val = written["val"]
    assert {"macro_auroc", "macro_auprc", "ci", "per_label"} <= set(val)
    assert 0 <= val["macro_auroc"] <= 1 and val["ci"]["resamples"] == 1000
    assert [row["label"] for row in val["per_label"]] == ["CD", "HYP", "MI", "NORM", "STTC"]
    assert metrics["val"]["macro_auroc"] == val["macro_auroc"]
    log = [json.loads(line) for line in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    stages = recipe_for(strategy).stages
    assert sum(metrics["run"]["epochs_run"]) == len(log) and len(
        metrics["run"]["epochs_run"]
    ) == len(stages)
    assert {"loss", "val_macro_auroc", "samples_per_s", "lr"} <= set(log[0])
    model = load_model(tmp_path / "run/model")
    assert model.num_classes == 5 and model.config.labels == ["CD", "HYP", "MI", "NORM", "STTC"]
    saved = np.load(tmp_path / "run/predictions/predictions.npz")
    tuned = tuned_thresholds(model)  # thresholds.json, as predict reads it
    assert list(tuned["thresholds"]) == model.config.labels and tuned["aggregate"] == "max"
    np.testing.assert_array_equal(
        list(tuned["thresholds"].values()),
        tune_thresholds(saved["val_y"], saved["val_probabilities"]),
    )
    scored = {row["label"]: row["threshold"] for row in val["per_label"]}  # F1 is scored at
    assert {k: tuned["thresholds"][k] for k in scored} == scored and len(scored) >= 4
    assert tuned["tuned_on"] == f"validation, fold 9: {metrics['run']['val_records']} records"


def test_metrics_agree_with_sklearn_on_the_saved_predictions(backbone, subset, cache_dir, tmp_path):
    metrics = run(backbone, subset, cache_dir, tmp_path / "run")
    saved = np.load(tmp_path / "run/predictions/predictions.npz")
    y, p = saved["val_y"], saved["val_probabilities"]
    keep = (y.sum(0) > 0) & (y.sum(0) < len(y))
    assert metrics["val"]["macro_auroc"] == pytest.approx(
        roc_auc_score(y[:, keep], p[:, keep]), abs=1e-9
    )
    assert metrics["val"]["macro_auprc"] == pytest.approx(
        average_precision_score(y[:, keep], p[:, keep], average="macro"), abs=1e-9
    )
    labels = [str(x) for x in saved["labels"][~keep]]
    assert metrics["val"]["excluded_labels"] == labels


def test_linear_probe_never_updates_the_backbone(backbone, subset, cache_dir, tmp_path):
    run(backbone, subset, cache_dir, tmp_path / "run", "linear-probe")
    before, after = (
        load_model(backbone).state_dict(),
        load_model(tmp_path / "run/model").state_dict(),
    )
    body = [k for k in before if not k.startswith("head.")]
    assert body and all(torch.equal(before[k], after[k]) for k in body)
    assert after["head.weight"].shape == (5, load_model(backbone).num_features)


def test_attention_probe_trains_only_an_attention_head(backbone, subset, cache_dir, tmp_path):
    metrics = run(backbone, subset, cache_dir, tmp_path / "run", "attention-probe")
    before, adapted = load_model(backbone), load_model(tmp_path / "run/model")
    assert adapted.config.head == "attention" and adapted.num_classes == 5
    body = [k for k in before.state_dict() if not k.startswith("head.")]
    assert all(torch.equal(before.state_dict()[k], adapted.state_dict()[k]) for k in body)
    assert {k.split(".")[1] for k in adapted.state_dict() if k.startswith("head.")} == {
        "pool", "linear"}  # fmt: skip
    saved = np.load(tmp_path / "run/predictions/predictions.npz")
    data = ptbxl_task(subset, "superdiagnostic", adapted.spec, cache_dir=cache_dir)
    owner, offsets = data.eval_windows(data.val)
    from ecgfoundry.adapt.data import read_windows

    windows = torch.from_numpy(read_windows(data.val.signals, data.val.rows[owner], offsets,
                                            data.window))  # fmt: skip
    with torch.no_grad():  # the saved model predicts what training scored (max over windows)
        p = torch.sigmoid(adapted.eval()(windows)).numpy()
    best = np.stack([p[owner == r].max(axis=0) for r in range(len(data.val))])
    assert np.allclose(best, saved["val_probabilities"], atol=3e-3)  # bf16 evaluation here
    assert metrics["val"]["macro_auroc"] > 0


def test_post_train_applies_drop_path_only_while_training(backbone, subset, cache_dir, tmp_path):
    run(backbone, subset, cache_dir, tmp_path / "run", "post-train")
    model = load_model(tmp_path / "run/model")
    rates = [m.p for m in model.drop_path_modules()]
    expected = recipe_for("post-train").stages[1].drop_path_rate
    assert rates[0] == 0 and rates[-1] == pytest.approx(expected) and expected > 0  # rising
    x = torch.randn(4, 12, 1000)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # identity at evaluation
    model.train()
    torch.manual_seed(0)
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))  # active in training


def finetune_command(backbone: Path, subset: Path, cache_dir: Path, out: Path,
                     epochs: int = 3) -> list[str]:  # fmt: skip
    args = ["-m", "ecgfoundry", "finetune", str(backbone), "--root", str(subset),
            "--task", "superdiagnostic", "--strategy", "finetune", "--out", str(out),
            "--epochs", str(epochs), "--cache-dir", str(cache_dir)]  # fmt: skip
    return [sys.executable, *args]


def test_resume_after_sigkill_gives_identical_metrics(backbone, subset, cache_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = subprocess.run(finetune_command(backbone, subset, cache_dir, tmp_path / "a"),
                               capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert reference.returncode == 0, reference.stderr
    out = tmp_path / "b"
    process = subprocess.Popen(finetune_command(backbone, subset, cache_dir, out), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    state = out / "checkpoint" / "state.json"
    deadline = time.time() + 300
    while time.time() < deadline and not (
        state.exists() and json.loads(state.read_text())["epoch"] >= 1
    ):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # mid-way through epoch 2
    process.wait()
    assert json.loads(state.read_text())["epoch"] < 3 and not (out / "metrics.json").exists()
    resumed = subprocess.run(finetune_command(backbone, subset, cache_dir, out),
                             capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    first = json.loads((tmp_path / "a/metrics.json").read_text())
    second = json.loads((out / "metrics.json").read_text())
    assert first["val"] == second["val"]
    log = (out / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == [0, 1, 2]  # no duplicate lines
    a = load_model(tmp_path / "a/model").state_dict()
    b = load_model(out / "model").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_two_process_ddp_matches_one_process(backbone, subset, cache_dir, tmp_path):
    from conftest import torchrun, workers_output

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = finetune_command(backbone, subset, cache_dir, tmp_path / "one", epochs=2)
    single = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert single.returncode == 0, single.stderr
    args = finetune_command(backbone, subset, cache_dir, tmp_path / "two", epochs=2)[1:]
    double = torchrun("--master_port", "29517", *args)
    assert double.returncode == 0, workers_output(double.stderr)
    one = json.loads((tmp_path / "one/metrics.json").read_text())["val"]
    two = json.loads((tmp_path / "two/metrics.json").read_text())["val"]
    assert two["macro_auroc"] == pytest.approx(one["macro_auroc"], abs=2e-3)
    a = load_model(tmp_path / "one/model").state_dict()
    b = load_model(tmp_path / "two/model").state_dict()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-3


def test_a_different_configuration_is_refused(backbone, subset, cache_dir, tmp_path):
    run(backbone, subset, cache_dir, tmp_path / "run")
    with pytest.raises(
        RunConfigError, match=r"different configuration \(differs in \['recipe'\]\)"
    ):
        run(backbone, subset, cache_dir, tmp_path / "run", config={"stages.0.lr": 3e-4})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(RunConfigError, match="not empty"):
        run(backbone, subset, cache_dir, tmp_path / "other")


def engine_for(backbone, subset, cache_dir, out, epochs=3) -> tuple[Engine, SupervisedObjective]:
    model = load_model(backbone)
    data = ptbxl_task(subset, "superdiagnostic", model.spec, cache_dir=cache_dir)
    model.reset_head(len(data.labels), data.labels)
    recipe = recipe_for("finetune", config={**COMMON, "stages.0.epochs": epochs})
    engine = Engine(out, seed=0, precision="fp32", progress_bar=False)
    objective = SupervisedObjective(model, recipe, data, seed=0, device=engine.device)
    return engine, objective


def test_nan_loss_stops_with_the_step_and_keeps_the_checkpoint(
    backbone, subset, cache_dir, tmp_path
):
    engine, objective = engine_for(backbone, subset, cache_dir, tmp_path, epochs=1)
    engine.fit(objective)
    state = (tmp_path / "checkpoint/state.json").read_text()
    engine, poisoned = engine_for(backbone, subset, cache_dir, tmp_path / "p", epochs=2)
    real_loss, calls = poisoned.loss, []

    def nan_on_step_7(logits, y):
        calls.append(1)
        return real_loss(logits, y) * (float("nan") if len(calls) == 7 else 1.0)

    poisoned.loss = nan_on_step_7
    with pytest.raises(
        TrainingError, match=r"non-finite loss at stage finetune, epoch 2, step 7; .*intact"
    ):
        engine.fit(poisoned)
    saved = json.loads((tmp_path / "p/checkpoint/state.json").read_text())
    assert saved["epoch"] == 1 and saved["step"] == 5  # epoch 1 (5 steps of 32) stays
    assert (tmp_path / "checkpoint/state.json").read_text() == state


def test_out_of_memory_stops_with_a_clear_message(backbone, subset, cache_dir, tmp_path):
    engine, objective = engine_for(backbone, subset, cache_dir, tmp_path, epochs=1)

    def no_memory(x):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    objective.model.forward = no_memory
    with pytest.raises(
        TrainingError, match=r"out of memory at stage finetune, epoch 1, step 1; .*batch_size"
    ):
        engine.fit(objective)
    assert not (tmp_path / "checkpoint").exists()


def test_recipes_yaml_overrides_and_epochs(tmp_path):
    (tmp_path / "r.yaml").write_text("batch_size: 16\nstages:\n  1:\n    drop_path_rate: 0.3\n")
    recipe = recipe_for("post-train", config=tmp_path / "r.yaml", epochs=7)
    assert recipe.batch_size == 16 and recipe.stages[1].drop_path_rate == 0.3
    assert recipe.stages[1].epochs == 7 and recipe.stages[0].train == "head"
    with pytest.raises(RecipeError, match="unknown recipe field 'learning_rate'"):
        recipe_for("finetune", config={"learning_rate": 1})
    for epochs in (0, -3):  # the main stage would not train: an untrained head
        with pytest.raises(RecipeError, match=rf"^epochs must be a whole number >= 1 .*{epochs}$"):
            recipe_for("linear-probe", epochs=epochs)
    with pytest.raises(RecipeError, match="unknown strategy"):
        recipe_for("distill")
    (tmp_path / "bad.yaml").write_text("stages:\n  0: {optimizer: sgd}\n")
    with pytest.raises(RecipeError, match=r"bad\.yaml: stage finetune: optimizer must be one of"):
        recipe_for("finetune", config=tmp_path / "bad.yaml")
    assert recipe_for("finetune", config={"stages.0.lr": "3e-5"}).stages[0].lr == 3e-5


def test_feeding_batches_leaves_the_dropout_stream_untouched():
    """A DataLoader draws a seed from torch's global generator unless given its own; ours
    has its own, so how batches are fed cannot shift dropout and drop-path masks."""
    split = Split(np.zeros((4, 12, 100), np.float32), np.arange(4),
                  np.zeros((4, 2), np.float32), np.arange(4))  # fmt: skip
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    batches = list(window_loader(split, 50, [[(0, 0), (1, 10)], [(3, 50)]]))
    assert torch.equal(torch.rand(3), expected)
    assert [b["x"].shape for b in batches] == [(2, 12, 50), (1, 12, 50)]


def test_background_loader_workers_give_the_same_run(backbone, subset, cache_dir, tmp_path):
    """Batches read by two DataLoader worker processes (each re-opening the memmap) train
    exactly as batches read in the main process."""
    inline = run(backbone, subset, cache_dir, tmp_path / "inline")
    workers = run(backbone, subset, cache_dir, tmp_path / "workers", loader_workers=2)
    assert workers["val"]["macro_auroc"] == inline["val"]["macro_auroc"]
    a = load_model(tmp_path / "inline/model").state_dict()
    b = load_model(tmp_path / "workers/model").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_an_unknown_task_is_refused_before_the_run_folder_is_claimed(backbone, subset, tmp_path):
    with pytest.raises(
        RunConfigError, match=r"task, one of .*'superdiagnostic'.*got .*'superdiag'"
    ):
        finetune(backbone, root=subset, task="superdiag", strategy="finetune", out=tmp_path / "r")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("options", [{"loader_workers": -1}, {"checkpoint_every_minutes": -5},
                                     {"checkpoint_every_steps": 2.5}])  # fmt: skip
def test_bad_run_options_are_named_before_the_run_folder_is_claimed(options, backbone, subset,
                                                                    tmp_path):  # fmt: skip
    (name,) = options
    with pytest.raises(UsageError, match=f"^{name} must be"):
        finetune(backbone, root=subset, task="superdiagnostic", strategy="finetune",
                 out=tmp_path / "r", **options)  # fmt: skip
    with pytest.raises(UsageError, match=f"^{name} must be"):
        check_run_options(**options)
    assert not (tmp_path / "r").exists()


def test_run_options_may_be_numpy_numbers() -> None:
    check_run_options(loader_workers=np.int64(2), checkpoint_every_minutes=np.float32(0.5),
                      checkpoint_every_steps=np.int32(3))  # fmt: skip
    with pytest.raises(UsageError, match="checkpoint_every_steps must be a whole number"):
        check_run_options(checkpoint_every_steps=True)


class Killed(Exception):
    """Stands in for SIGKILL at a chosen training step."""


def test_a_run_killed_mid_epoch_resumes_exactly(backbone, subset, cache_dir, tmp_path):
    """Step checkpoints of a real adaptation run (DataLoader batches, random crops, drop path
    in the fine-tuning stage): killed mid-epoch and resumed, it ends with the same weights."""
    model = load_model(backbone)
    data = ptbxl_task(subset, "superdiagnostic", model.spec, cache_dir=cache_dir)
    recipe = recipe_for("post-train", config={**COMMON, **QUICK["post-train"]})

    def fit(out: Path, kill_at: int | None = None, every: int | None = None) -> dict:
        network = load_model(backbone)
        torch.manual_seed(0)  # the same fresh head in every run
        network.reset_head(len(data.labels), data.labels)
        engine = Engine(out, seed=3, precision="fp32", progress_bar=False,
                        checkpoint_every_steps=every)  # fmt: skip
        objective = SupervisedObjective(network, recipe, data, seed=3, device=engine.device)
        step, calls = objective.training_step, []

        def maybe_killed(net, batch, index):
            calls.append(index)
            if len(calls) == kill_at:
                raise Killed
            return step(net, batch, index)

        objective.training_step = maybe_killed
        engine.fit(objective)
        return network.state_dict()

    reference = fit(tmp_path / "a")
    with pytest.raises(Killed):  # in the second fine-tuning epoch (5 steps of 32 an epoch)
        fit(tmp_path / "b", kill_at=2 * 5 + 5 + 5, every=2)
    state = json.loads((tmp_path / "b/checkpoint/state.json").read_text())
    assert (state["stage"], state["epoch"], state["batch"]) == (1, 1, 4)  # a mid-epoch save
    resumed = fit(tmp_path / "b")
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)


@pytest.mark.parametrize(
    ("overrides", "betas"), [({}, (0.9, 0.99)), ({"stages.0.betas": [0.8, 0.9]}, (0.8, 0.9))]
)
def test_the_optimiser_gets_the_recipes_adam_betas(backbone, subset, cache_dir, overrides, betas):
    model = load_model(backbone)
    data = ptbxl_task(subset, "superdiagnostic", model.spec, cache_dir=cache_dir)
    recipe = recipe_for("supervised", config=overrides)
    objective = SupervisedObjective(model, recipe, data, seed=0, device=torch.device("cpu"))
    plan = objective.stages()[0]
    optimizer = build_optimizer(plan, objective.setup_stage(0).param_groups)
    assert all(group["betas"] == betas for group in optimizer.param_groups)


def test_a_last_batch_of_one_row_is_left_out(subset, cache_dir, tmp_path):
    """BatchNorm cannot train on one row: 160 records in batches of 53 leave one over, which
    used to stop the benchmark's models (a BatchNorm head) with a ValueError."""
    from ecgfoundry.engine.objective import batch_starts

    assert list(batch_starts(160, 53)) == [0, 53, 106]
    assert list(batch_starts(161, 53)) == [0, 53, 106, 159]
    assert list(batch_starts(162, 53, world=2)) == [0, 53, 106]  # 3 over: one process gets 1
    assert list(batch_starts(163, 53, world=2)) == [0, 53, 106, 159]  # 4 over: 2 per process
    with pytest.raises(ValueError, match=r"1 training row\(s\), and training needs at least 2"):
        batch_starts(1, 53)
    torch.manual_seed(0)
    model = save_model(create_model("resnet1d-wang"), tmp_path / "wang")
    result = run(model, subset, cache_dir, tmp_path / "run", "scratch",
                 config={"batch_size": 53, "stages.0.epochs": 1})  # fmt: skip
    assert 0.0 <= result["val"]["macro_auroc"] <= 1.0
    log = [json.loads(line) for line in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 3


@pytest.mark.parametrize("strategy", ["linear-probe", "attention-probe"])
def test_a_head_only_stage_counts_the_batches_it_runs(strategy, subset, cache_dir):
    """Head-only stages train on every window's features (several per record for a 2.5-s
    model): the step count that schedules the learning rate must be that batch count."""
    torch.manual_seed(0)
    model = create_model("resnet1d-wang")
    data = ptbxl_task(subset, "superdiagnostic", model.spec, cache_dir=cache_dir)
    recipe = recipe_for(strategy, config={"batch_size": 32})
    objective = SupervisedObjective(model, recipe, data, seed=0, device=torch.device("cpu"))
    steps = objective.setup_stage(0).steps_per_epoch
    assert steps == len(list(objective.train_batches(0, epoch=0, skip=0)))
    assert steps > len(data.train) // 32 + 1  # several windows per record
