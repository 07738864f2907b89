"""ECG-FM's W2V+CMSC+RLM on the engine: the contrastive and CMSC losses against loops written
out, the quantiser's perplexities, segment pairs, time and lead masks, learning on structured
signals, exact mid-epoch resume, the run folder and the published checkpoint's head."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import require_reference

from ecgfoundry.adapt.data import Split
from ecgfoundry.engine import Engine, RunConfigError, StepOutput
from ecgfoundry.models import CheckpointError, create_model, load_model
from ecgfoundry.models.wav2vec2 import Wav2Vec2ECG, convert_checkpoint
from ecgfoundry.pretrain.cpc import sample_negatives
from ecgfoundry.pretrain.leakage import read_manifest
from ecgfoundry.pretrain.w2v import (
    HEAD_FILE,
    PRETRAINING_MODEL_SETTINGS,
    GumbelQuantizer,
    HeadConfig,
    W2VCMSCRLMObjective,
    W2VConfig,
    W2VPretrainingHead,
    cmsc_loss,
    convert_pretraining_head,
    draw_pairs,
    load_pretraining_head,
    save_pretraining_head,
    time_mask,
)
from ecgfoundry.pretrain.w2v_run import pretrain_w2v

# ecgfm-tiny on 640-sample inputs (40 feature steps); short spans and few distractors so that
# a few epochs learn; the head of the reference fixture's size.
QUICK = W2VConfig(window=640, negatives=10, mask_length=2, mask_prob=0.2, batch_size=8,
                  epochs=20, lr=2e-3, latent_temp=(2.0, 0.5, 0.99))  # fmt: skip
HEAD_SIZES = {"final_dim": 32, "latent_vars": 8}


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread: the tiny model is far faster so on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def patients(count: int, per: int, samples: int, seed: int) -> tuple[Split, np.ndarray]:
    """``per`` records of each of ``count`` patients: per lead a slow sinusoid (1-3 Hz) whose
    frequency and amplitude belong to the patient, at a random phase, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 500.0
    freq = np.repeat(rng.uniform(1, 3, (count, 12, 1)), per, axis=0)
    amplitude = np.repeat(rng.uniform(0.2, 2, (count, 12, 1)), per, axis=0)
    phase = rng.uniform(0, 2 * np.pi, (count * per, 12, 1))
    x = amplitude * np.sin(2 * np.pi * freq * t + phase)
    x += 0.05 * rng.normal(size=x.shape)
    rows = count * per
    split = Split(x.astype(np.float32), np.arange(rows), np.zeros((rows, 0), np.float32),
                  np.arange(rows))  # fmt: skip
    return split, np.repeat(np.arange(count), per)


def tiny(**overrides: Any) -> tuple[Wav2Vec2ECG, W2VPretrainingHead]:
    torch.manual_seed(0)
    model = create_model("ecgfm-tiny", **overrides)
    return model, W2VPretrainingHead.for_model(model, **HEAD_SIZES)


def objective(config: W2VConfig = QUICK, pairs: int = 32, **options: Any) -> W2VCMSCRLMObjective:
    (train, p_train), (val, p_val) = patients(pairs, 2, 1280, 0), patients(4, 2, 1280, 1)
    model, head = options.pop("net", None) or tiny()
    return W2VCMSCRLMObjective(model, train, val, head=head, patients_train=p_train,
                               patients_val=p_val, config=config, **options)  # fmt: skip


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_the_contrastive_loss_is_wav2vec2s_written_as_a_loop() -> None:
    obj = objective(replace(QUICK, negatives=5, batch_size=2), pairs=2)
    model, head = obj.net.encoder, obj.head
    obj.net.eval()  # no dropout, the quantiser's argmax: the reference recomputes the forward
    batch = next(iter(obj.train_batches(0, 0, 0)))
    torch.manual_seed(7)
    out = obj.training_step(obj.net, batch, 0)
    x, mask = batch["x"], batch["mask"]
    rows, masked = mask.shape[0], int(mask[0].sum())
    assert rows == 4 and bool((mask.sum(1) == masked).all())  # 2 pairs; equal masked counts
    torch.manual_seed(7)
    negatives = sample_negatives(rows, masked, 0, 5)
    with torch.no_grad():
        local = model.layer_norm(model.conv_features(x).transpose(1, 2))
        projected = model.project_features(local)
        for b, t in mask.nonzero().tolist():
            projected[b, t] = head.mask_emb
        context = model.contextualize(projected)
        q = head.quantizer
        losses, hits = [], []
        for b in range(rows):
            steps = mask[b].nonzero().flatten().tolist()
            codes = q.weight_proj(local[b, steps]).view(len(steps), 2, 8).argmax(-1)
            words = torch.stack([torch.cat([q.vars[0, g * 8 + int(k)] for g, k in enumerate(c)])
                                 for c in codes])  # fmt: skip
            targets = head.project_q(words)
            for i, t in enumerate(steps):
                c = head.final_proj(context[b, t])
                scores = [F.cosine_similarity(c, targets[i], dim=0) / 0.1]
                for n in negatives[b, i].tolist():
                    same = torch.equal(targets[n], targets[i])
                    scores.append(torch.tensor(-np.inf) if same else
                                  F.cosine_similarity(c, targets[n], dim=0) / 0.1)  # fmt: skip
                s = torch.stack(scores)
                losses.append((torch.logsumexp(s, 0) - s[0]).item())
                hits.append(float(s.argmax() == 0 and s.argmin() != 0))
    assert out.logs["contrastive"] == pytest.approx(np.mean(losses), rel=1e-5)
    assert out.logs["accuracy"] == pytest.approx(np.mean(hits))
    logs, c = out.logs, QUICK
    total = (logs["contrastive"] + c.diversity_weight * logs["diversity"]
             + c.feature_weight * logs["features"] + c.cmsc_weight * logs["cmsc"])  # fmt: skip
    assert out.loss.item() == pytest.approx(total, rel=1e-5)
    assert out.size == 4 and logs["temperature"] == 2.0


def test_the_quantiser_perplexities_and_the_diversity_penalty() -> None:
    quantizer = GumbelQuantizer(HeadConfig(conv_dim=8, embed_dim=4, final_dim=6, latent_vars=4))
    with torch.no_grad():  # input i, j picks code i of group 0 and code j of group 1
        quantizer.weight_proj.weight.copy_(50 * torch.eye(8))
        quantizer.weight_proj.bias.zero_()
    every = torch.stack([torch.cat([F.one_hot(torch.tensor(i), 4), F.one_hot(torch.tensor(j), 4)])
                         for i in range(4) for j in range(4)]).float()  # fmt: skip
    quantizer.eval()
    used = quantizer(every.view(2, 8, 8), temperature=2.0)
    assert used.code_perplexity.item() == pytest.approx(8.0, rel=1e-4)  # 4 per group, 2 groups
    assert (8 - used.prob_perplexity.item()) / 8 == pytest.approx(0.0, abs=1e-3)  # no penalty
    words = quantizer.vars.view(2, 4, 3)
    assert torch.equal(used.x[0, 6], torch.cat([words[0, 1], words[1, 2]]))  # codes (1, 2)
    collapsed = quantizer(every[:1].expand(16, 8).reshape(2, 8, 8), temperature=2.0)
    assert collapsed.code_perplexity.item() == pytest.approx(2.0, rel=1e-4)
    assert (8 - collapsed.prob_perplexity.item()) / 8 == pytest.approx(0.75, abs=1e-3)
    quantizer.train()  # a hard Gumbel sample: one codeword per group
    sampled = quantizer(every.view(2, 8, 8), temperature=2.0).x.view(16, 2, 3)
    for g in range(2):
        assert all(any(torch.equal(w, v) for v in words[g]) for w in sampled[:, g])
    assert QUICK.temperature(0) == 2.0 and W2VConfig().temperature(10**6) == 0.5
    assert W2VConfig().temperature(1000) == pytest.approx(2 * 0.999995**1000)


def test_cmsc_is_the_symmetric_patient_contrast_written_as_a_loop() -> None:
    generator = torch.Generator().manual_seed(0)
    first, second = torch.randn(4, 6, generator=generator), torch.randn(4, 6, generator=generator)
    p1, p2 = torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 3, 2])  # patient 1 twice on a side
    same = p1[:, None] == p2[None, :]
    scores = torch.tensor([[float(F.cosine_similarity(a, b, dim=0)) / 0.1 for b in second]
                           for a in first])  # fmt: skip
    rows = [-(scores[i, j] - torch.logsumexp(scores[i], 0)) for i, j in same.nonzero().tolist()]
    columns = [-(scores[i, j] - torch.logsumexp(scores[:, j], 0))
               for i, j in same.nonzero().tolist()]  # fmt: skip
    reference = (np.mean(rows) + np.mean(columns)) / 2
    assert cmsc_loss(first, second, same, 0.1).item() == pytest.approx(reference, rel=1e-5)


def test_pairs_are_two_segments_of_one_patient() -> None:
    codes = np.array([0, 0, 0, 1, 2, 2])  # 3 segments, 1 segment, 2 segments
    for rng in (None, np.random.default_rng(0), np.random.default_rng(1)):
        pairs, offsets = draw_pairs(codes, 200, 100, rng)  # rows hold two windows
        assert len(pairs) == 4 and (codes[pairs[:, 0]] == codes[pairs[:, 1]]).all()
        own = pairs[:, 0] == pairs[:, 1]
        assert sorted(codes[pairs[own, 0]].tolist()) == [0, 1]  # the ones left over
        assert (np.abs(offsets[own, 1] - offsets[own, 0]) >= 100).all()  # no overlap
        assert ((offsets >= 0) & (offsets <= 100)).all()
    pairs, _ = draw_pairs(codes, 150, 100, np.random.default_rng(0))  # too short to split
    assert len(pairs) == 2 and (pairs[:, 0] != pairs[:, 1]).all()


def test_time_masks_are_wav2vec2_spans_of_equal_count() -> None:
    masks = [time_mask(8, 156, 0.65, 10, np.random.default_rng(s)) for s in range(20)]
    for mask in masks:
        assert len(set(mask.sum(1).tolist())) == 1  # every row as many masked steps
    share = np.mean([m.mean() for m in masks])
    assert 0.35 < share < 0.6  # 10 or 11 spans of 10 over 156 steps, overlapping
    again = time_mask(8, 156, 0.65, 10, np.random.default_rng(3))
    assert np.array_equal(again, masks[3])
    with pytest.raises(ValueError, match="mask_prob"):
        time_mask(2, 3, 0.65, 10, np.random.default_rng(0))


def test_random_lead_masking_is_seeded_by_epoch() -> None:
    obj = objective(replace(QUICK, batch_size=32))

    def leads(epoch: int, seed_objective: W2VCMSCRLMObjective = obj) -> torch.Tensor:
        batches = list(seed_objective.train_batches(0, epoch, 0))
        return torch.cat([(b["x"] != 0).any(-1) for b in batches])  # kept leads

    kept = leads(0)
    assert kept.shape == (64, 12)
    assert 1 - kept.float().mean().item() == pytest.approx(0.5, abs=0.05)
    assert torch.equal(leads(0), kept) and not torch.equal(leads(1), kept)
    other = objective(replace(QUICK, batch_size=32), seed=1)
    assert not torch.equal(leads(0, other), kept)
    assert bool(leads(0, objective(replace(QUICK, lead_mask_prob=0.0))).all())
    quick = objective()  # 4 steps an epoch
    whole = list(quick.train_batches(0, 2, 0))
    resumed = next(iter(quick.train_batches(0, 2, 1)))  # a resumed epoch: the same second batch
    assert resumed["step"] == whole[1]["step"] == 2 * 4 + 1
    assert all(torch.equal(resumed[k], whole[1][k]) for k in ("x", "mask", "same_patient"))


def test_w2v_cmsc_learns_structured_signals_and_evaluates_deterministically(
    tmp_path: Path,
) -> None:
    # no lead masks: with half the leads gone, CMSC needs far more steps than a test has
    obj = objective(replace(QUICK, lead_mask_prob=0.0))
    before = obj.evaluate(0)
    start = weights(obj.model)
    history = Engine(tmp_path, progress_bar=False, precision="fp32").fit(obj).history
    first, last = history[0], history[-1]
    assert last["loss"] < first["loss"] - 2.0
    assert last["train_contrastive"] < first["train_contrastive"] - 0.4
    assert last["train_cmsc"] < first["train_cmsc"] - 1.0
    assert last["val_contrastive"] < before["val_contrastive"] - 0.4
    assert last["val_accuracy"] > before["val_accuracy"] + 0.15
    for name in ("encoder.feature_extractor.conv_layers.0.conv.weight", "head.quantizer.vars",
                 "head.mask_emb", "head.final_proj.weight"):  # fmt: skip
        assert not torch.equal(obj.model.state_dict()[name], start[name]), name
    torch.manual_seed(1)
    again = obj.evaluate(0)
    torch.manual_seed(2)
    assert obj.evaluate(0) == again  # fixed pairs, masks and distractors
    assert again["val_loss"] == pytest.approx(last["val_loss"], rel=1e-6)


class Interrupted(Exception):
    """Stands in for a kill at a given step."""


class Killed(W2VCMSCRLMObjective):
    def __init__(self, *args: Any, stop_at_step: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.stop_at_step, self.steps_taken = stop_at_step, 0

    def training_step(self, net: torch.nn.Module, batch: dict[str, Any], index: int) -> StepOutput:
        self.steps_taken += 1
        if self.steps_taken == self.stop_at_step:
            raise Interrupted
        return super().training_step(net, batch, index)


def test_a_run_killed_mid_epoch_resumes_to_identical_weights(tmp_path: Path) -> None:
    config = replace(QUICK, epochs=2)  # 4 steps an epoch; dropout and Gumbel noise drawn
    reference = tiny(**PRETRAINING_MODEL_SETTINGS)
    Engine(tmp_path / "a", progress_bar=False, precision="fp32").fit(
        objective(config, net=reference))  # fmt: skip
    (train, p_train), (val, p_val) = patients(32, 2, 1280, 0), patients(4, 2, 1280, 1)
    model, head = tiny(**PRETRAINING_MODEL_SETTINGS)
    killed = Killed(model, train, val, head=head, patients_train=p_train, patients_val=p_val,
                    config=config, stop_at_step=7)  # epoch 2, batch 3  # fmt: skip
    engine = Engine(tmp_path / "b", progress_bar=False, precision="fp32", checkpoint_every_steps=1)
    with pytest.raises(Interrupted):
        engine.fit(killed)
    state = json.loads((tmp_path / "b/checkpoint/state.json").read_text())
    assert (state["epoch"], state["batch"], state["step"]) == (1, 2, 6)
    resumed = tiny(**PRETRAINING_MODEL_SETTINGS)
    Engine(tmp_path / "b", progress_bar=False, precision="fp32").fit(
        objective(config, net=resumed))  # fmt: skip
    for a, b in zip(reference, resumed, strict=True):
        wa, wb = weights(a), weights(b)
        assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_pretrain_w2v_writes_model_head_and_manifest_and_resumes(tmp_path: Path) -> None:
    config = replace(QUICK, epochs=1)
    (train, p_train), (val, p_val) = patients(8, 2, 1280, 0), patients(2, 2, 1280, 1)
    out, (model, head) = tmp_path / "run", tiny()
    records = [{"id": f"synthetic:{i}", "patient": f"p{p}"}
               for i, p in zip(train.ids, p_train, strict=True)]  # fmt: skip
    options = {"config": config, "precision": "fp32", "progress_bar": False,
               "patients_train": p_train, "patients_val": p_val}  # fmt: skip
    progress = pretrain_w2v(model, train, val, out, head=head, records=records, **options)
    manifest = read_manifest(out / "model")
    assert manifest is not None and manifest["count"] == len(train)
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert lines == progress.history and len(lines) == 1
    assert {"val_loss", "train_contrastive", "train_diversity", "train_cmsc",
            "train_code_perplexity", "train_accuracy"} <= set(lines[0])  # fmt: skip
    saved = load_model(out / "model")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in saved.state_dict().items())
    saved_head = load_pretraining_head(out / "model")
    assert (out / "model" / HEAD_FILE).is_file() and saved_head.config == head.config
    assert all(torch.equal(v, head.state_dict()[k]) for k, v in saved_head.state_dict().items())
    again, again_head = tiny()
    pretrain_w2v(again, train, val, out, head=again_head, **options)  # done: restores only
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
    assert len((out / "log.jsonl").read_text().splitlines()) == 1
    with pytest.raises(RunConfigError, match="config"):
        pretrain_w2v(tiny()[0], train, val, out, **{**options, "config": replace(config, lr=1e-3)})
    more = pretrain_w2v(saved, train, val, tmp_path / "more", head=saved_head, **options)
    assert len(more.history) == 1  # pretraining continues from the saved model and head


def test_the_published_checkpoints_head_converts() -> None:
    path = require_reference("ecgfm_tiny.pt") / "ecgfm_tiny.pt"
    head = convert_pretraining_head(path)
    state = torch.load(path, weights_only=True)["model"]
    assert head.config == HeadConfig(conv_dim=32, embed_dim=64, final_dim=32, latent_vars=8)
    assert set(head.state_dict()) == {k for k in state if k.startswith(
        ("mask_emb", "quantizer.", "project_q.", "final_proj."))}  # fmt: skip
    assert all(torch.equal(v, state[k]) for k, v in head.state_dict().items())
    encoder = convert_checkpoint(path, overrides=PRETRAINING_MODEL_SETTINGS)
    obj = objective(replace(QUICK, batch_size=4), pairs=4, net=(encoder, head))
    out = obj.training_step(obj.net, next(iter(obj.train_batches(0, 0, 0))), 0)
    assert np.isfinite(out.loss.item())  # domain-adaptive pretraining starts from both
    with pytest.raises(CheckpointError, match="no pretraining head"):
        convert_pretraining_head(require_reference("ecgfm_tiny_finetuned.pt")
                                 / "ecgfm_tiny_finetuned.pt")  # fmt: skip


def test_the_head_file_round_trips(tmp_path: Path) -> None:
    _, head = tiny()
    save_pretraining_head(head, tmp_path)
    loaded = load_pretraining_head(tmp_path / HEAD_FILE)
    assert loaded.config == head.config
    assert all(torch.equal(v, head.state_dict()[k]) for k, v in loaded.state_dict().items())
    with pytest.raises(CheckpointError, match="not found"):
        load_pretraining_head(tmp_path / "elsewhere")


def test_bad_arguments_are_named() -> None:
    for field, value in (("negatives", 0), ("mask_prob", 0.0), ("lead_mask_prob", 1.0),
                         ("latent_temp", (0.5, 2.0, 0.9)), ("cmsc_temp", 0.0)):  # fmt: skip
        with pytest.raises(ValueError, match=field):
            W2VConfig(**{field: value})
    with pytest.raises(ValueError, match="latent_groups"):
        HeadConfig(conv_dim=8, embed_dim=8, final_dim=9)
    (train, p_train), model = patients(2, 2, 1280, 0), tiny()[0]
    with pytest.raises(ValueError, match="patients_train"):
        W2VCMSCRLMObjective(model, train, train, patients_train=p_train[:3], config=QUICK)
    narrow = W2VPretrainingHead(HeadConfig(conv_dim=16, embed_dim=64))
    with pytest.raises(ValueError, match="head"):
        W2VCMSCRLMObjective(model, train, train, config=QUICK, head=narrow)
    with pytest.raises(ValueError, match="window"):
        W2VCMSCRLMObjective(model, train, train, config=replace(QUICK, window=2000))
    with pytest.raises(ValueError, match="mask_prob"):
        W2VCMSCRLMObjective(model, train, train, config=replace(QUICK, window=48))
    short = Split(train.signals[:, :, :700], train.rows, train.y, train.ids)
    with pytest.raises(ValueError, match="no pairs"):  # one 700-sample segment per record
        W2VCMSCRLMObjective(model, short, short, config=QUICK)
