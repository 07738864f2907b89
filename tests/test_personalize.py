"""Personalisation: protocols, MAML, curriculum, pre-fine-tuning, evaluation, on synthetic
subjects and tiny models; the data on mitdb."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from ecgfoundry.cli import app
from ecgfoundry.data import arrhythmia as A
from ecgfoundry.data.record import Annotations
from ecgfoundry.errors import UsageError
from ecgfoundry.personalize import (
    METHODS,
    REFERENCE,
    Curriculum,
    FoundationConfig,
    MAMLConfig,
    Subject,
    SubjectSkipped,
    backbone,
    evaluate,
    load_subjects,
    meta_train,
    run_protocol,
    scorers,
    split_names,
    split_subject,
    summarise,
    train_global,
    training_note,
)
from ecgfoundry.personalize.foundation import model_input, post_train, select_config
from ecgfoundry.personalize.maml import (
    detached,
    inner_adapt,
    loss_of,
    pre_finetune,
    probabilities,
)
from ecgfoundry.personalize.run import META_RUNS, per_subject_markdown

FS, SECONDS = 50.0, 2.0
QUICK = ("epochs: 1\niterations: 1\ninner_steps: 1\nadapt_steps: 3\npre_finetune_steps: 1\n"
         "scratch_steps: 3\nval_shots: 3\ncurriculum: {start: 0.5, full_at: 0.5}\n"
         "global_epochs: 1\n")  # fmt: skip


def synthetic(name: str, seed: int, n_other: int = 60, n_va: int = 30, va_at: float = 0.3,
              shift: float = 0.0) -> Subject:  # fmt: skip
    """Windows of a sine: VA faster than the rest, with a person-specific amplitude and offset;
    the VA windows form one episode that starts ``va_at`` into the recording."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(FS * SECONDS)) / FS
    n = n_other + n_va
    y = np.zeros(n, dtype=np.int64)
    first = int(va_at * n)
    y[first : first + n_va] = 1
    freq = np.where(y == 1, 6.0, 1.5)[:, None]
    amplitude = rng.uniform(0.5, 2.0)
    x = amplitude * np.sin(2 * np.pi * freq * t + rng.uniform(0, 6, (n, 1))) + shift
    x = (x + 0.1 * rng.standard_normal(x.shape)).astype(np.float32)[:, None]
    return Subject(name=name, dataset="synthetic", x=x, y=y, time=np.arange(n) * SECONDS,
                   fs=FS, seconds=SECONDS)  # fmt: skip


def test_the_leak_free_split_takes_the_earliest_support_and_scores_after_a_gap() -> None:
    subject = synthetic("s", 0, shift=3.0)
    split = split_subject(subject, 5, "leak-free")
    assert (subject.y[split.support] == 1).sum() == (subject.y[split.support] == 0).sum() == 5
    assert list(split.support[subject.y[split.support] == 1]) == list(
        np.flatnonzero(subject.y == 1)[:5])  # fmt: skip
    support_end = subject.time[split.support].max() + SECONDS
    assert subject.time[split.test].min() >= support_end + SECONDS  # a one-window gap
    assert split.mean == pytest.approx(subject.x[split.support].mean(), rel=1e-5)
    metava = split_subject(subject, 5, "metava", np.random.default_rng(0))
    assert len(metava.support) + len(metava.test) == len(subject)
    assert metava.mean == pytest.approx(subject.x.mean(), rel=1e-5)  # test windows included


@pytest.mark.parametrize(
    ("subject", "shots", "problem"),
    [
        (dataclasses.replace(synthetic("a", 0), y=np.zeros(90, dtype=np.int64)), 5,
         "a: no VA windows: fewer than 5 support windows per class plus one to score"),
        (synthetic("b", 0, n_va=4), 5, "b: 4 va windows: fewer than 5"),
        (synthetic("c", 0, n_va=6, va_at=0.5), 5, "c: no va windows after its first 5 per class"),
    ],
)  # fmt: skip
def test_unusable_subjects_are_named_with_the_problem(subject, shots, problem) -> None:
    with pytest.raises(SubjectSkipped, match=problem):
        split_subject(subject, shots, "leak-free")


def test_subjects_never_cross_splits() -> None:
    names = [f"s{i}" for i in range(20)]
    parts = split_names(names, seed=3)
    assert sorted(n for part in parts.values() for n in part) == sorted(names)
    assert len(parts["test"]) == 6 and len(parts["meta-val"]) == 4


def test_the_curriculum_opens_from_the_easiest_share_to_all() -> None:
    c = Curriculum(start=0.3, full_at=0.5)
    assert [c.available(p, 10) for p in (0.0, 0.25, 0.5, 0.9)] == [3, 7, 10, 10]


def test_second_order_differs_from_first_order() -> None:
    model = backbone("net1d-tiny", fs=FS, seconds=SECONDS).eval()
    s = synthetic("s", 1)
    x, y = torch.from_numpy(s.x[:20]), torch.from_numpy(s.y[:20])
    grads = []
    for second in (True, False):
        params = dict(model.named_parameters())
        buffers = dict(model.named_buffers())
        adapted = inner_adapt(model, params, buffers, x, y, 2, 0.1, create_graph=second)
        grads.append(torch.autograd.grad(loss_of(model, adapted, buffers, x, y),
                                         params["head.weight"])[0])  # fmt: skip
    assert not torch.allclose(grads[0], grads[1])


def test_pre_finetuning_needs_two_windows_per_class() -> None:
    model = backbone("net1d-tiny", fs=FS, seconds=SECONDS).eval()
    s = synthetic("s", 2)
    params, buffers = detached(model)
    config = MAMLConfig(inner_steps=1, pre_finetune_steps=2)
    one = np.array([0, int(np.flatnonzero(s.y == 1)[0])])
    same = pre_finetune(model, params, buffers, torch.from_numpy(s.x[one]),
                        torch.from_numpy(s.y[one]), config)  # fmt: skip
    assert all(torch.equal(same[k], params[k]) for k in params)
    four = np.concatenate([np.flatnonzero(s.y == 0)[:2], np.flatnonzero(s.y == 1)[:2]])
    moved = pre_finetune(model, params, buffers, torch.from_numpy(s.x[four]),
                         torch.from_numpy(s.y[four]), config)  # fmt: skip
    assert any(not torch.equal(moved[k], params[k]) for k in params)


def test_meta_training_then_evaluation_of_every_method(tmp_path: Path) -> None:
    subjects = [synthetic(f"s{i}", i, shift=float(i % 3)) for i in range(12)]
    subjects.append(dataclasses.replace(synthetic("novapeople", 99), y=np.zeros(90, np.int64)))
    train, val, test = subjects[:6], subjects[6:8], subjects[10:]
    config = MAMLConfig(shots=3, query=3, inner_steps=1, adapt_steps=3, iterations=2, epochs=2,
                        meta_batch=2, pre_finetune_steps=1, val_shots=3,
                        scratch_steps=3)  # fmt: skip

    def architecture() -> torch.nn.Module:
        return backbone("net1d-tiny", fs=FS, seconds=SECONDS)

    models = {"global": train_global(architecture(), train, val, tmp_path / "global", epochs=1)}
    for name, (first, curriculum) in META_RUNS.items():
        c = dataclasses.replace(config, first_order=first,
                                curriculum=Curriculum() if curriculum else None)  # fmt: skip
        models[name] = meta_train(architecture(), train, val, c, tmp_path / name)
    assert (tmp_path / "maml-curriculum" / "personalize.json").is_file()
    assert (tmp_path / "maml" / "log.jsonl").read_text().count("val_auroc") == 2
    quick = FoundationConfig(preview_steps=3, finetune_steps=2)
    rows, skipped = evaluate(test, scorers(models, config, architecture, quick),
                             shots=(1, 3))  # fmt: skip
    assert {r["method"] for r in rows} == set(METHODS)
    assert {s["subject"] for s in skipped} == {"novapeople"}
    assert all("no VA windows" in s["problem"] for s in skipped)
    table = summarise(rows, resamples=50)
    assert len(table) == len(METHODS) * 2 * 2  # methods x protocols x shots
    lines = per_subject_markdown(rows, "leak-free", 3).splitlines()
    scored = {r["subject"] for r in rows if r["protocol"] == "leak-free" and r["shots"] == 3}
    assert len(lines) == 2 + len(scored) and all(m in lines[0] for m in METHODS)
    for entry in table:
        assert 0 <= entry["worst_decile_auroc"] <= entry["median_auroc"] <= 1
        assert ("ci" in entry) == (entry["method"] != REFERENCE)


def test_unpaired_brackets_follow_the_stated_rules() -> None:
    def episodes(symbols: list[str], samples: list[int]) -> list[tuple[int, int, str]]:
        ann = Annotations(sample=np.array(samples), symbol=tuple(symbols),
                          aux_note=tuple("" for _ in symbols), fs=100.0)  # fmt: skip
        return [(e.start, e.end, e.rhythm) for e in A.rhythm_episodes(ann, 1000) if e.is_va]

    assert episodes(["]", "[", "]"], [100, 300, 400]) == [(0, 100, "VF"), (300, 400, "VF")]
    assert episodes(["[", "[", "]", "]"], [100, 200, 500, 600]) == [(100, 500, "VF")]
    assert episodes(["[", "]", "]"], [100, 200, 700]) == [(100, 200, "VF")]
    assert episodes(["["], [900]) == [(900, 1000, "VF")]


@pytest.mark.shared_data
def test_mitdb_subjects_keep_metavas_counts(mitdb_root: Path) -> None:
    plain, problems = load_subjects([mitdb_root], va_stride=None)
    assert sum(s.counts["va"] for s in plain) == 185  # MetaVA's 2-s/2-s count
    assert set(problems) == {"mitdb/102", "mitdb/104"}  # no MLII
    oversampled, _ = load_subjects([mitdb_root])
    assert sum(s.counts["va"] for s in oversampled) > 10 * 185
    one = next(s for s in oversampled if s.name == "mitdb/201")
    assert np.all(np.diff(one.time) >= 0)  # time order, records 201 then 202


def write_wfdb_people(folder: Path, people: int = 8, fs: int = 100, seconds: int = 240) -> Path:
    """WFDB records with rhythm annotations: a slow sine, and a fast one (VT) from 100 to 140 s."""
    import wfdb

    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(fs * seconds) / fs
    for i in range(people):
        rng = np.random.default_rng(i)
        fast = (t >= 100) & (t < 140)
        signal = rng.uniform(0.5, 1.5) * np.sin(2 * np.pi * np.where(fast, 3.0, 1.2) * t)
        signal += 0.05 * rng.standard_normal(len(t))
        name = f"p{i}"
        wfdb.wrsamp(name, fs=fs, units=["mV"], sig_name=["ECG"], p_signal=signal[:, None],
                    fmt=["16"], write_dir=str(folder))  # fmt: skip
        wfdb.wrann(name, "atr", np.array([0, 100 * fs, 140 * fs]), symbol=["+", "+", "+"],
                   aux_note=["(N", "(VT", "(N"], write_dir=str(folder))  # fmt: skip
    return folder


def test_the_cli_meta_trains_and_adapts_to_a_person(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ecgfoundry.cli import app
    from ecgfoundry.models import load_model

    data = write_wfdb_people(tmp_path / "people")
    run = tmp_path / "run"
    (tmp_path / "quick.yaml").write_text(QUICK)
    arguments = ["--data", str(data), "--out", str(run), "--config", str(tmp_path / "quick.yaml")]
    result = CliRunner().invoke(app, ["personalize", "meta-train", *arguments, "--json"])
    assert result.exit_code == 0, result.output
    split = json.loads(result.stdout)["subjects"]
    assert len(split["test"]) == 2 and not set(split["test"]) & set(split["meta-train"])
    other = CliRunner().invoke(app, ["personalize", "meta-train", *arguments, "--first-order"])
    assert "holds a run with a different configuration (differs in ['config'])" in str(
        other.exception
    )  # not silently resumed from the second-order run's checkpoint
    (tmp_path / "first.yaml").write_text(QUICK + "first_order: true\n")
    from_config = [*arguments[:-1], str(tmp_path / "first.yaml")]
    again = CliRunner().invoke(app, ["personalize", "meta-train", *from_config])
    assert "differs in ['config']" in str(again.exception)  # the config's first_order is used
    assert CliRunner().invoke(app, ["personalize", "meta-train", *from_config,
                                    "--second-order"]).exit_code == 0  # fmt: skip
    person = split["test"][0].split("/")[1]
    mine = tmp_path / "mine"
    result = CliRunner().invoke(app, ["personalize", "adapt", str(run / "model"), "--data",
                                      str(data), "--subject", person, "--shots", "5", "--out",
                                      str(mine), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    support = json.loads((mine / "support.json").read_text())
    assert len(support["support_seconds"]) == 10 and support["normalise"]["sd"] > 0
    assert support["scored_from_seconds"] > max(support["support_seconds"])
    assert load_model(mine).spec.samples == 400
    assert "note:" not in result.stderr  # a held-out person
    trained = json.loads((run / "model" / "trained_on.json").read_text())
    assert trained["train"] == split["meta-train"] and trained["val"] == split["meta-val"]
    seen = CliRunner().invoke(app, ["personalize", "adapt", str(run / "model"), "--data",
                                    str(data), "--subject", split["meta-train"][0].split("/")[1],
                                    "--shots", "5", "--out", str(tmp_path / "seen")])  # fmt: skip
    assert seen.exit_code == 0, seen.output
    assert f"note: {split['meta-train'][0]} is one of the training subjects of" in seen.stderr
    assert f"held out from it: {', '.join(split['test'])}" in seen.stderr
    (tmp_path / "none.yaml").write_text("adapt_steps: 0\n")  # the config sets the adaptation
    unchanged = CliRunner().invoke(app, ["personalize", "adapt", str(run / "model"), "--data",
                                         str(data), "--subject", person, "--out",
                                         str(tmp_path / "same"), "--no-pre-finetune", "--config",
                                         str(tmp_path / "none.yaml")])  # fmt: skip
    assert unchanged.exit_code == 0, unchanged.output
    before, after = (load_model(f).state_dict() for f in (run / "model", tmp_path / "same"))
    assert all(torch.equal(before[k], after[k]) for k in before)
    adapted = load_model(mine).state_dict()
    assert not all(torch.equal(before[k], adapted[k]) for k in before)
    missing = CliRunner().invoke(app, ["personalize", "adapt", str(run / "model"), "--data",
                                       str(data), "--subject", "nobody", "--out",
                                       str(tmp_path / "x")])  # fmt: skip
    assert "--subject nobody: not in" in str(missing.exception)


def test_bad_people_are_skipped_with_the_reason_and_the_rest_load(tmp_path: Path) -> None:
    import shutil

    data = write_wfdb_people(tmp_path / "people", people=3)
    for suffix in ("hea", "dat"):  # p1's signal is now shorter than its annotations say
        shutil.copy(write_wfdb_people(tmp_path / "short", people=2, seconds=60) / f"p1.{suffix}",
                    data / f"p1.{suffix}")  # fmt: skip
    subjects, problems = load_subjects([data])
    assert [s.name for s in subjects] == ["people/p0", "people/p2"]
    assert "annotations do not match the record" in problems["people/p1"]


def test_the_cli_evaluates_every_method_on_held_out_people(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ecgfoundry.cli import app

    data = write_wfdb_people(tmp_path / "people", seconds=150)
    out = tmp_path / "results.json"
    (tmp_path / "quick.yaml").write_text(QUICK)
    arguments = ["--data", str(data), "--runs", str(tmp_path / "runs"), "--out", str(out),
                 "--config", str(tmp_path / "quick.yaml"), "--shots", "5", "--foundation", "none",
                 "--json"]  # fmt: skip
    result = CliRunner().invoke(app, ["personalize", "evaluate", *arguments])
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert {e["method"] for e in json.loads(result.stdout)} == set(METHODS) - {
        "foundation-post-train"} and saved["foundation"] is None  # fmt: skip
    assert {(e["protocol"], e["shots"]) for e in saved["summary"]} == {("leak-free", 5),
                                                                     ("metava", 5)}  # fmt: skip
    assert not set(saved["subjects"]["test"]) & set(saved["subjects"]["meta-train"])
    global_log = (tmp_path / "runs" / "global" / "log.jsonl").read_text().splitlines()
    assert saved["config"]["global_epochs"] == 1 and len(global_log) == 1  # the config's epochs


def test_a_config_with_an_unknown_field_is_refused_by_name() -> None:
    with pytest.raises(UsageError, match=r"quick: unknown field\(s\) \['inner_rate'\]"):
        MAMLConfig.from_dict({"inner_rate": 0.1}, source="quick")
    assert MAMLConfig.from_dict({"curriculum": None}).curriculum is None
    assert MAMLConfig.from_dict({"inner_lr": "1e-2", "grad_clip": None}).inner_lr == 0.01  # YAML
    with pytest.raises(UsageError, match="quick: shots must be of type int, got 'ten'"):
        MAMLConfig.from_dict({"shots": "ten"}, source="quick")


def test_a_one_lead_window_becomes_the_foundation_models_input_in_lead_ii() -> None:
    from ecgfoundry.spec import STANDARD_LEADS, InputSpec

    subject = synthetic("s", 0, shift=3.0)
    split = split_subject(subject, 5)
    twelve = InputSpec(fs=25.0, seconds=2.0, leads=STANDARD_LEADS, normalisation="none")
    x = model_input(subject, split, split.test[:4], twelve).numpy()
    assert x.shape == (4, 12, 50)  # 2 s at 25 Hz
    lead_ii = twelve.leads.index("II")
    assert not np.delete(x, lead_ii, axis=1).any()  # the other leads are zero
    assert abs(x[:, lead_ii].mean()) < 0.5  # centred on the support mean (the offset is 3)
    assert x[:, lead_ii].std() > 0.3  # millivolts, not z-scored, for a "none" spec
    z = model_input(
        subject,
        split,
        split.test[:4],
        dataclasses.replace(twelve, leads=("V1",), normalisation="zscore"),
    )
    assert z.shape == (4, 1, 50)
    with pytest.raises(UsageError, match="no lead II"):
        model_input(subject, split, split.test, dataclasses.replace(twelve, leads=("V1", "V2")))


def test_post_training_on_a_support_set_keeps_the_pretrained_batchnorm() -> None:
    from ecgfoundry.models import resolve_model

    pretrained = resolve_model("ecgfoundry-cpc")
    subject = synthetic("s", 0)
    split = split_subject(subject, 5)
    x = model_input(subject, split, split.support, pretrained.spec)
    y = torch.from_numpy(subject.y[split.support])
    probe = post_train(pretrained, x, y, FoundationConfig(preview_steps=5, finetune_steps=0))
    tuned = post_train(pretrained, x, y, FoundationConfig(preview_steps=5, finetune_steps=3))
    before = pretrained.state_dict()
    assert probe.num_classes == tuned.num_classes == 1 and pretrained.num_classes == 0
    for name, value in tuned.state_dict().items():
        if "running" in name:  # BatchNorm statistics: the pretrained ones
            assert torch.equal(value, before[name])
    body = [n for n, _ in pretrained.named_parameters()]
    assert all(torch.equal(probe.state_dict()[n], before[n]) for n in body)  # probe: frozen
    assert any(not torch.equal(tuned.state_dict()[n], before[n]) for n in body)
    assert not probe.training and not tuned.training


def test_the_foundation_steps_are_chosen_by_validation_auroc() -> None:
    val = [synthetic(f"v{i}", 20 + i) for i in range(2)]
    base = FoundationConfig(preview_steps=3)
    candidates = ({"finetune_steps": 0}, {"finetune_steps": 2, "finetune_lr": 1e-3})
    chosen, table = select_config(val, base, shots=3, candidates=candidates)
    assert [set(row) - {"val_auroc"} for row in table] == [set(c) for c in candidates]
    best = max(table, key=lambda row: row["val_auroc"])
    assert chosen.finetune_steps == best["finetune_steps"] and chosen.preview_steps == 3
    with pytest.raises(UsageError, match="no validation subject"):
        select_config(val, base, shots=500, candidates=candidates)


def test_the_foundation_model_is_loaded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """run_protocol hands the model check_foundation loaded to the choice and the scorer."""
    import ecgfoundry.personalize.foundation as foundation

    loaded = foundation.resolve_model(FoundationConfig().model)
    monkeypatch.setattr(foundation, "resolve_model", lambda name: pytest.fail(f"loaded {name}"))
    val = [synthetic(f"v{i}", 20 + i) for i in range(2)]
    chosen, _ = select_config(val, FoundationConfig(preview_steps=1), shots=3,
                              candidates=({"finetune_steps": 0},), pretrained=loaded)  # fmt: skip
    methods = scorers({}, MAMLConfig(), lambda: None, chosen, pretrained=loaded)
    assert methods["foundation-post-train"].pretrained is loaded


def test_cudb_shaped_records_with_bracketed_vf_episodes_load_as_subjects(tmp_path: Path) -> None:
    """CUDB's layout: 250 Hz, one lead named ECG, beat labels and VF episodes marked only by
    '[' ... ']' (cu02 opens with an unpaired ']': VF from the start of the recording)."""
    import wfdb

    folder, fs, seconds = tmp_path / "cudb", 250, 120
    folder.mkdir()
    t = np.arange(fs * seconds) / fs
    brackets = {"cu01": ([40, 60], ["[", "]"]), "cu02": ([30], ["]"])}
    for name, (at, symbols) in brackets.items():
        signal = np.sin(2 * np.pi * 1.2 * t)[:, None]
        wfdb.wrsamp(name, fs=fs, units=["mV"], sig_name=["ECG"], fmt=["16"], p_signal=signal,
                    write_dir=str(folder))  # fmt: skip
        beats = [s for s in range(1, seconds) if not any(abs(s - a) < 1 for a in at)]
        samples = np.array(sorted([b * fs for b in beats] + [a * fs for a in at]))
        labels = {a * fs: s for a, s in zip(at, symbols, strict=True)}
        wfdb.wrann(name, "atr", samples, symbol=[labels.get(s, "N") for s in samples],
                   write_dir=str(folder))  # fmt: skip
    subjects, problems = load_subjects([folder], va_stride=None)
    assert not problems and [s.name for s in subjects] == ["cudb/cu01", "cudb/cu02"]
    assert subjects[0].fs == 200.0  # resampled from 250 Hz
    for subject, (start, end) in zip(subjects, [(40, 60), (0, 30)], strict=True):
        va_starts = subject.time[subject.y == 1]
        assert va_starts.min() >= start - 2 and va_starts.max() <= end  # inside the episode
        assert len(va_starts) >= (end - start) // 2 - 1  # and it is covered
    result = CliRunner().invoke(app, ["data", "summary", "cudb", "--root", str(folder)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["dataset"] == "cudb" and summary["subjects"] == 2
    assert summary["va"]["subjects_with_va"] == 2 and summary["va"]["classes"]["va"] > 0


def test_a_method_whose_meta_training_failed_is_left_out() -> None:
    def architecture() -> torch.nn.Module:
        return backbone("net1d-tiny", fs=FS, seconds=SECONDS)

    model = architecture()
    methods = scorers({"global": model, "maml-curriculum": model}, MAMLConfig(), architecture)
    assert set(methods) == {"global", "global-finetune", "scratch", "maml-curriculum", REFERENCE}


def test_probabilities_come_in_batches_with_the_same_values() -> None:
    """A long recording is scored a batch of windows at a time, with the values of one pass."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 4, 5), nn.BatchNorm1d(4), nn.ReLU(),
                          nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 1))  # fmt: skip
    x = torch.randn(1100, 1, 64)
    whole = torch.sigmoid(model.eval()(x).reshape(-1)).detach().numpy()
    batched = probabilities(model, x, batch=512)
    assert batched.shape == (1100,) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, whole, rtol=1e-5, atol=1e-6)
    assert probabilities(model, x[:0]).shape == (0,)


def write_unannotated(folder: Path, records: int = 2) -> Path:
    """WFDB records without annotation files (as PTB-XL's)."""
    import wfdb

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(records):
        signal = np.sin(np.arange(1000) / 10.0)[:, None]
        wfdb.wrsamp(f"r{i}", fs=100, units=["mV"], sig_name=["II"], p_signal=signal,
                    fmt=["16"], write_dir=str(folder))  # fmt: skip
    return folder


def refused(arguments: list[str], match: str) -> None:
    """The CLI stops with one reported line (`error: ...`, exit status 2) matching ``match``."""
    from ecgfoundry.errors import ReportedError

    result = CliRunner().invoke(app, ["personalize", *arguments])
    assert isinstance(result.exception, ReportedError), result.output
    assert re.search(match, str(result.exception)), str(result.exception)


def test_adapt_names_the_model_it_takes_and_why_this_one_does_not_fit(tmp_path: Path) -> None:
    from ecgfoundry.models import create_model, save_model

    data = tmp_path / "people"  # never read: the model is refused first
    twelve = save_model(create_model("net1d-tiny", num_classes=5), tmp_path / "twelve")
    takes = r"adapt takes a one-lead model with one output \(P\(VA\)\), as `personalize meta-train`"
    for model, problem in [("ecgfoundry-cpc", "a 12-lead model with no output head"),
                           (str(twelve), "a 12-lead model with 5 outputs"),
                           ("net1d-tiny", "a registry architecture without trained weights"),
                           (str(tmp_path / "nothing"), "no such model folder")]:  # fmt: skip
        refused(["adapt", model, "--data", str(data), "--subject", "p0", "--out",
                 str(tmp_path / "x")], f"{re.escape(model)}: {problem}.*; {takes}")  # fmt: skip
    help_text = CliRunner().invoke(app, ["personalize", "adapt", "--help"]).output
    assert "registry name" not in help_text and "meta-train" in help_text
    assert not (tmp_path / "x").exists()


def test_a_missing_or_invalid_config_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("epochs: [1\n")
    (tmp_path / "list.yaml").write_text("- 1\n")
    data = write_wfdb_people(tmp_path / "people", people=2, seconds=150)
    for name, problem in [("missing.yaml", "no such file"),
                          ("bad.yaml", "not valid YAML at line 2, column 1"),
                          ("list.yaml", "expected a mapping of MAMLConfig fields")]:  # fmt: skip
        config = tmp_path / name
        refused(["meta-train", "--data", str(data), "--out", str(tmp_path / "run"), "--config",
                 str(config)], f"--config {re.escape(str(config))}: {problem}")  # fmt: skip
    assert not (tmp_path / "run").exists()


def test_evaluate_checks_its_arguments_before_any_work(tmp_path: Path) -> None:
    data = write_wfdb_people(tmp_path / "people", people=2, seconds=150)
    runs = tmp_path / "runs"
    common = ["evaluate", "--data", str(data), "--runs", str(runs), "--out", str(tmp_path / "z")]
    refused([*common, "--shots", "a,b"], r"^--shots a,b: expected whole numbers")
    refused([*common, "--shots", "0"], r"^--shots 0: at least one support window per class")
    refused([*common, "--shots", "5,-1"], r"^--shots 5,-1: at least one support window")
    refused([*common, "--backbone", "nonet"], r"^backbone nonet: not a registry preset")
    refused([*common, "--foundation", str(tmp_path / "nofm")], "nofm: neither a model folder")
    refused([*common, "--data", str(tmp_path / "nodir")], "nodir: no such folder")
    assert not runs.exists()  # nothing trained
    with pytest.raises(UsageError, match=r"shots=0: at least one support window"):
        run_protocol([data], runs, shots=[0])
    refused(["adapt", str(tmp_path / "m"), "--data", str(data), "--subject", "p0", "--out",
             str(tmp_path / "x"), "--shots", "0"], r"^--shots 0: at least one")  # fmt: skip


def test_meta_training_refuses_folders_without_usable_people_before_writing(
    tmp_path: Path,
) -> None:
    unannotated, empty = write_unannotated(tmp_path / "ptbxl"), write_unannotated(tmp_path / "e", 0)
    for folder, problem in [(unannotated, "no record gives windows .*rhythm or episode "
                             "annotations.*all 2 left out, e.g. r0: .*annotation file not found"),
                            (tmp_path / "nodir", "no such folder"),
                            (empty, "no WFDB records")]:  # fmt: skip
        refused(["meta-train", "--data", str(folder), "--out", str(tmp_path / "run")],
                f"^{re.escape(str(folder))}: {problem}")  # fmt: skip
        refused(["evaluate", "--data", str(folder), "--runs", str(tmp_path / "run"), "--out",
                 str(tmp_path / "z.json")], f"^{re.escape(str(folder))}: {problem}")  # fmt: skip
    assert not (tmp_path / "run").exists()
    no_va = dataclasses.replace(synthetic("calm", 0), y=np.zeros(90, dtype=np.int64))
    with pytest.raises(UsageError, match=r"no meta-training subject has 2 VA and 2 other windows "
                       r"\(subjects: calm\)"):  # fmt: skip
        meta_train(backbone("net1d-tiny", fs=FS, seconds=SECONDS), [no_va], [], MAMLConfig(),
                   tmp_path / "run")  # fmt: skip
    assert not (tmp_path / "run").exists()


def test_adapt_names_a_data_folder_without_people(tmp_path: Path) -> None:
    from ecgfoundry.models import save_model

    model = save_model(backbone("net1d-tiny"), tmp_path / "model")
    unannotated = write_unannotated(tmp_path / "ptbxl")
    for folder, problem in [(tmp_path / "nodir", "no such folder"),
                            (unannotated, "no record gives windows")]:  # fmt: skip
        refused(["adapt", str(model), "--data", str(folder), "--subject", "418", "--out",
                 str(tmp_path / "x")], f"^{re.escape(str(folder))}: {problem}")  # fmt: skip


def test_an_older_meta_training_run_still_tells_its_subjects(tmp_path: Path) -> None:
    """A run meta-trained before models recorded trained_on.json: its personalize.json."""
    from ecgfoundry.models import save_model

    model = save_model(backbone("net1d-tiny"), tmp_path / "run" / "model")
    (tmp_path / "run" / "personalize.json").write_text(
        json.dumps({"meta_train": ["vfdb/418"], "meta_val": ["vfdb/423"]})
    )
    assert "vfdb/418 is one of the training subjects" in training_note(model, "vfdb/418")
    assert "vfdb/423 is one of the validation subjects" in training_note(model, "vfdb/423")
    assert training_note(model, "vfdb/425") is None
    assert training_note(save_model(backbone("net1d-tiny"), tmp_path / "bare"), "vfdb/418") is None
