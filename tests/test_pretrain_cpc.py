"""CPC pretraining on the engine: the loss against a loop written out, learning on signals
whose future is predictable, deterministic evaluation, exact mid-epoch resume, the run folder."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ecgfoundry.adapt.data import Split
from ecgfoundry.engine import Engine, RunConfigError, StepOutput
from ecgfoundry.models import create_model, load_model
from ecgfoundry.models.s4 import S4Model
from ecgfoundry.pretrain import (
    CPCConfig,
    CPCObjective,
    cpc_logits,
    pretrain_cpc,
    sample_negatives,
)
from ecgfoundry.pretrain.leakage import read_manifest

# 100-sample crops (50 tokens) of s4-tiny at 100 Hz; few negatives so that training is quick.
QUICK = CPCConfig(steps_ahead=2, negatives=16, batch_size=16, epochs=5, lr=1e-2, lr_factor=1.0,
                  window=100)  # fmt: skip


def sines(records: int, samples: int, seed: int) -> Split:
    """Unlabelled records: one sinusoid per lead (random frequency and phase) plus a little
    noise, so that the future is predictable from the past."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 100.0
    freq = rng.uniform(1, 10, (records, 12, 1))
    phase = rng.uniform(0, 2 * np.pi, (records, 12, 1))
    x = np.sin(2 * np.pi * freq * t + phase) + 0.05 * rng.normal(size=(records, 12, samples))
    return Split(x.astype(np.float32), np.arange(records), np.zeros((records, 0), np.float32),
                 np.arange(records))  # fmt: skip


def tiny(**overrides: Any) -> S4Model:
    torch.manual_seed(0)
    return create_model("s4-tiny", **overrides)


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_negatives_come_from_the_same_sequence_and_never_are_the_true_future() -> None:
    negatives = sample_negatives(3, 10, 4, 2000, generator=torch.Generator().manual_seed(0))
    assert negatives.shape == (3, 6, 2000)
    for t in range(6):
        drawn = set(negatives[:, t].unique().tolist())
        assert drawn == set(range(10)) - {t + 4}  # every other step of the sequence, uniformly
    with pytest.raises(ValueError, match="steps_ahead 4"):
        sample_negatives(1, 4, 4, 8)


def test_the_step_loss_is_infonce_of_the_ssl_head_on_the_context_written_as_a_loop() -> None:
    model, data = tiny(), sines(4, 100, 0)
    config = CPCConfig(steps_ahead=3, negatives=5, batch_size=4, window=60)
    objective = CPCObjective(model, data, data, config=config)
    model.eval()  # no dropout: the reference recomputes the same forward
    batch = next(iter(objective.train_batches(0, 0, 0)))
    torch.manual_seed(7)
    out = objective.training_step(objective.net, batch, 0)
    with torch.no_grad():
        targets = model.forward_tokens(batch["x"])
        predictions = model.ssl_head(model.forward_context(targets))
    rows, tokens = targets.shape[:2]
    torch.manual_seed(7)
    negatives = sample_negatives(rows, tokens, 3, 5)
    losses, hits = [], []
    for b in range(rows):
        for t in range(tokens - 3):
            candidates = [targets[b, t + 3]] + [targets[b, n] for n in negatives[b, t]]
            scores = torch.stack([torch.dot(predictions[b, t], c) for c in candidates])
            losses.append((torch.logsumexp(scores, 0) - scores[0]).item())
            hits.append(float(scores.argmax() == 0))
    assert out.loss.item() == pytest.approx(np.mean(losses), rel=1e-5)
    assert out.logs["accuracy"] == pytest.approx(np.mean(hits))
    assert out.size == 4
    halved = cpc_logits(predictions, targets, 3, negatives, temperature=0.5)
    assert torch.allclose(halved, 2 * cpc_logits(predictions, targets, 3, negatives))


def test_the_encoder_stack_and_ssl_head_get_gradients_at_their_learning_rates() -> None:
    model, data = tiny(), sines(4, 100, 0)
    objective = CPCObjective(model, data, data, config=CPCConfig(window=60, lr=1e-3))
    setup = objective.setup_stage(0)
    assert [g["lr"] for g in setup.param_groups] == pytest.approx([1e-3, 1e-4, 1e-5])
    grouped = {id(p) for g in setup.param_groups for p in g["params"]}
    assert grouped == {id(p) for p in model.parameters()}  # no head: CPC trains every weight
    assert setup.distribute is objective.net and not objective.net.has_unused_parameters
    model.train()
    objective.training_step(objective.net, next(iter(objective.train_batches(0, 0, 0))),
                            0).loss.backward()  # fmt: skip
    for name in ("encoder.0.conv.weight", "layers.0.s4.output_linear.weight",
                 "layers.1.norm.weight", "ssl_head.weight"):  # fmt: skip
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    headed = CPCObjective(tiny(num_classes=3), data, data, config=CPCConfig(window=60))
    assert headed.net.has_unused_parameters  # the classifier head takes no part in CPC


def test_cpc_learns_the_predictable_future_and_evaluates_deterministically(
    tmp_path: Path,
) -> None:
    model = tiny()
    objective = CPCObjective(model, sines(32, 200, 0), sines(8, 100, 1), config=QUICK)
    before = objective.evaluate(0)
    start = weights(model)
    progress = Engine(tmp_path, progress_bar=False, precision="fp32").fit(objective)
    history = progress.history
    chance = 1 / (QUICK.negatives + 1)
    assert before["val_loss"] == pytest.approx(np.log(QUICK.negatives + 1), abs=0.3)
    assert history[-1]["val_loss"] < before["val_loss"] - 0.3
    assert history[-1]["loss"] < history[0]["loss"] - 0.5
    assert history[-1]["val_accuracy"] > 3 * chance
    assert history[-1]["train_accuracy"] > 3 * chance
    for name in ("ssl_head.weight", "encoder.0.conv.weight"):
        assert not torch.equal(model.state_dict()[name], start[name]), name
    torch.manual_seed(1)
    first = objective.evaluate(0)
    torch.manual_seed(2)
    assert objective.evaluate(0) == first  # fixed windows and negatives
    assert first["val_loss"] == pytest.approx(history[-1]["val_loss"], rel=1e-6)


class Interrupted(Exception):
    """Stands in for a kill at a given step."""


class Killed(CPCObjective):
    def __init__(self, *args: Any, stop_at_step: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.stop_at_step, self.steps = stop_at_step, 0

    def training_step(self, net: torch.nn.Module, batch: dict[str, Any], index: int) -> StepOutput:
        self.steps += 1
        if self.steps == self.stop_at_step:
            raise Interrupted
        return super().training_step(net, batch, index)


def test_a_run_killed_mid_epoch_resumes_to_identical_weights(tmp_path: Path) -> None:
    config = replace(QUICK, epochs=2)
    train, val = sines(32, 200, 0), sines(4, 100, 1)  # 2 steps an epoch
    reference = tiny()
    Engine(tmp_path / "a", progress_bar=False, precision="fp32").fit(
        CPCObjective(reference, train, val, config=config))  # fmt: skip

    killed = Killed(tiny(), train, val, config=config, stop_at_step=4)  # epoch 2, batch 2
    engine = Engine(tmp_path / "b", progress_bar=False, precision="fp32", checkpoint_every_steps=1)
    with pytest.raises(Interrupted):
        engine.fit(killed)
    state = json.loads((tmp_path / "b/checkpoint/state.json").read_text())
    assert (state["epoch"], state["batch"], state["step"]) == (1, 1, 3)
    resumed = tiny()
    Engine(tmp_path / "b", progress_bar=False, precision="fp32").fit(
        CPCObjective(resumed, train, val, config=config))  # fmt: skip
    a, b = weights(reference), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_pretrain_cpc_writes_the_run_folder_resumes_and_refuses_another_config(
    tmp_path: Path,
) -> None:
    config = replace(QUICK, epochs=1)
    train, val = sines(16, 100, 0), sines(4, 100, 1)
    out = tmp_path / "run"
    model = tiny()
    records = [{"id": f"synthetic:{i}", "patient": None} for i in train.ids.tolist()]
    progress = pretrain_cpc(model, train, val, out, config=config, precision="fp32",
                            progress_bar=False, records=records)  # fmt: skip
    manifest = read_manifest(out / "model")
    assert manifest is not None and manifest["count"] == len(train)
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(lines) == 1 and {"val_loss", "val_accuracy", "train_accuracy"} <= set(lines[0])
    assert lines == progress.history
    summary = json.loads((out / "model/pretraining.json").read_text())
    assert summary["epochs"] == 1 and summary["optimizer_steps"] == lines[0]["step"] > 0
    assert summary["settings"]["objective"] == "cpc" and summary["settings"]["config"]["lr"] == 0.01
    assert summary["last_epoch"]["val_loss"] == lines[0]["val_loss"]
    assert summary["hardware"]["torch"] == torch.__version__ and summary["train_hours"] >= 0
    saved = load_model(out / "model")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in saved.state_dict().items())
    again = tiny()
    pretrain_cpc(again, train, val, out, config=config, precision="fp32", progress_bar=False)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
    assert len((out / "log.jsonl").read_text().splitlines()) == 1
    with pytest.raises(RunConfigError, match="config"):
        pretrain_cpc(tiny(), train, val, out, config=replace(config, lr=1e-3),
                     precision="fp32", progress_bar=False)  # fmt: skip


def test_bad_arguments_are_named() -> None:
    data = sines(2, 100, 0)
    with pytest.raises(ValueError, match="negatives"):
        CPCConfig(negatives=0)
    with pytest.raises(ValueError, match="temperature"):
        CPCConfig(temperature=0.0)
    with pytest.raises(ValueError, match="ssl_head"):
        CPCObjective(tiny(ssl_head=False), data, data, config=QUICK)
    with pytest.raises(ValueError, match="window"):
        CPCObjective(tiny(), data, data, config=CPCConfig(window=101))
    with pytest.raises(ValueError, match="steps_ahead"):
        objective = CPCObjective(tiny(), data, data, config=CPCConfig(window=20, steps_ahead=10))
        objective.evaluate(0)


def test_continued_pretraining_keeps_the_starting_models_records(tmp_path: Path) -> None:
    """A model pretrained further still saw its first corpus: the new manifest lists both."""
    config = replace(QUICK, epochs=1)
    train, val = sines(16, 100, 0), sines(4, 100, 1)
    first = [{"id": f"first:{i}", "patient": None} for i in train.ids.tolist()]
    pretrain_cpc(tiny(), train, val, tmp_path / "a", config=config, precision="fp32",
                 progress_bar=False, records=first)  # fmt: skip
    start = load_model(tmp_path / "a/model")
    assert start.origin == tmp_path / "a/model"
    second = [{"id": f"second:{i}", "patient": None} for i in train.ids.tolist()]
    pretrain_cpc(start, train, val, tmp_path / "b", config=config, precision="fp32",
                 progress_bar=False, records=second)  # fmt: skip
    manifest = read_manifest(tmp_path / "b/model")
    assert manifest is not None
    assert {r["id"] for r in manifest["records"]} == {r["id"] for r in first + second}
