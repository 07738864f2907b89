"""Personalisation end to end: meta-train an initialisation, adapt it to a person, evaluate the
whole protocol over held-out subjects against the baselines, in one harness.

Methods (:data:`METHODS`), all scored on the same test subjects, support sets and windows:

- ``global``: one model trained on every meta-training window (no personalisation);
- ``global-finetune``: the global model adapted on the person's support set (the same
  ``adapt_steps`` SGD steps at ``inner_lr`` as MAML's adaptation);
- ``scratch``: the architecture trained on the support set alone (Adam, 100 full-batch steps,
  BatchNorm statistics from the support windows);
- ``maml``: second-order MAML, subjects drawn uniformly, no pre-fine-tuning;
- ``maml-curriculum``: with the curriculum, no pre-fine-tuning;
- ``maml-curriculum-prefinetune``: MetaVA's full method (the reference of the comparisons);
- ``fomaml-curriculum-prefinetune``: the same with first-order MAML;
- ``foundation-post-train`` (when a foundation model is given): a pretrained model of the zoo
  (the bundled ``ecgfoundry-cpc`` by default) post-trained on the support set
  (:mod:`ecgfoundry.personalize.foundation`; its steps chosen on the meta-validation subjects).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score, roc_auc_score
from torch import nn

from ecgfoundry.atomic import atomic_write_text, json_default
from ecgfoundry.engine.engine import Engine, TrainingError
from ecgfoundry.engine.objective import StagePlan, StageSetup, StepOutput
from ecgfoundry.engine.run_dir import JsonlLog, claim_run_dir
from ecgfoundry.errors import UsageError, shortened
from ecgfoundry.models import create_model, load_model, save_model
from ecgfoundry.models.base import ECGModel
from ecgfoundry.models.io import model_fingerprint
from ecgfoundry.models.registry import HUB_PREFIX, model_folder, model_names
from ecgfoundry.personalize.data import Subject, load_subjects
from ecgfoundry.personalize.foundation import (
    FoundationConfig,
    FoundationScorer,
    check_foundation,
    select_config,
)
from ecgfoundry.personalize.maml import (
    Curriculum,
    MAMLConfig,
    MetaObjective,
    adapt_split,
    calibrate_batchnorm,
    difficulties,
    probabilities,
)
from ecgfoundry.personalize.protocol import (
    PROTOCOLS,
    Split,
    SubjectSkipped,
    check_shots,
    normalised,
    split_names,
    split_subject,
)
from ecgfoundry.spec import InputSpec

METHODS = ("global", "global-finetune", "scratch", "maml", "maml-curriculum",
           "maml-curriculum-prefinetune", "fomaml-curriculum-prefinetune",
           "foundation-post-train")  # fmt: skip
REFERENCE = "maml-curriculum-prefinetune"
RUN_FORMAT = 1
# Written into a trained model's folder: the subjects whose windows trained it or chose it.
TRAINED_ON = "trained_on.json"
# Which meta-training each MAML method adapts from: (first order, curriculum).
META_RUNS = {"maml": (False, False), "maml-curriculum": (False, True),
             "fomaml-curriculum-prefinetune": (True, True)}  # fmt: skip


def backbone(
    name: str = "net1d-tiny",
    fs: float = 200.0,
    seconds: float = 2.0,
    seed: int = 0,
    **overrides: Any,
) -> nn.Module:
    """A one-lead, one-output model of the zoo for ``seconds`` windows at ``fs`` (the lead is
    called II: MLII and vfdb's/CUDB's ECG lead). ``overrides`` set other config fields."""
    check_backbone(name)
    torch.manual_seed(seed)
    spec = InputSpec(fs=fs, seconds=seconds, leads=("II",), normalisation="none")
    return create_model(name, num_classes=1, spec=spec.to_dict(), **overrides)


def _claim(out: Path, run: str, model: nn.Module, seed: int, **settings: Any) -> None:
    """Claim ``out`` for this run: the same call resumes it, another configuration (settings,
    subjects, starting weights, seed) is refused instead of resuming the wrong checkpoint."""
    config = {"format": RUN_FORMAT, "run": run, "model_weights": model_fingerprint(model),
              "seed": seed, **settings}  # fmt: skip
    claim_run_dir(out, json.loads(json.dumps(config, default=json_default)), write=True)


def _all_windows(subjects: Sequence[Subject]) -> tuple[np.ndarray, np.ndarray]:
    """Every window, each subject z-scored with its own statistics (meta-training subjects
    only: their test windows are never scored)."""
    xs = [(s.x - s.x.mean()) / (s.x.std() or 1.0) for s in subjects]
    return np.concatenate(xs).astype(np.float32), np.concatenate([s.y for s in subjects])


def check_backbone(name: str) -> None:
    """A :class:`UsageError` unless ``name`` is a registry preset :func:`backbone` can build."""
    if name not in model_names():
        raise UsageError(f"backbone {name}: not a registry preset (known: "
                         f"{', '.join(model_names())})")  # fmt: skip


def meta_train(
    model: nn.Module,
    train: list[Subject],
    val: list[Subject],
    config: MAMLConfig,
    out: str | Path,
    seed: int = 0,
    progress_bar: bool = False,
) -> nn.Module:
    """Meta-train ``model`` into ``out`` (resumable: the same call continues a killed run; a
    folder of another configuration is refused); writes ``out/model`` and
    ``out/personalize.json`` (settings, subjects, difficulties)."""
    out = Path(out)
    usable = meta_training_subjects(train)
    _claim(out, "meta-train", model, seed, config=config.to_dict(),
           train=[s.name for s in train], val=[s.name for s in val])  # fmt: skip
    x, _ = _all_windows(usable)
    calibrate_batchnorm(model, x)
    order = np.arange(len(usable))
    scores = None
    if config.curriculum is not None:
        scores = difficulties(model, usable, config, seed)
        order = np.argsort(scores, kind="stable")
    objective = MetaObjective(model, usable, val, config, seed=seed, order=order)
    Engine(out, seed=seed, precision="fp32", log=JsonlLog(out / "log.jsonl"),
           progress_bar=progress_bar).fit(objective)  # fmt: skip
    save_model(model, out / "model")
    summary = {"config": config.to_dict(), "seed": seed,
               "meta_train": [s.name for s in usable], "meta_val": [s.name for s in val],
               "left_out": sorted({s.name for s in train} - {s.name for s in usable}),
               "difficulty": None if scores is None else
               {usable[i].name: float(scores[i]) for i in order}}  # fmt: skip
    atomic_write_text(out / "personalize.json", json.dumps(summary, indent=1))
    _record_subjects(out / "model", "meta-train", usable, val)
    return model


def meta_training_subjects(train: Sequence[Subject]) -> list[Subject]:
    """The subjects meta-training can draw episodes from (at least 2 VA and 2 other windows),
    or a :class:`UsageError` when there are none."""
    usable = [s for s in train if s.counts["va"] >= 2 and s.counts["other"] >= 2]
    if not usable:
        names = ", ".join(shortened([s.name for s in train], 5))
        raise UsageError(f"no meta-training subject has 2 VA and 2 other windows (subjects: "
                         f"{names or 'none'}); meta-training needs people with VA episodes "
                         "(VT, VFL, VF) and windows without")  # fmt: skip
    return usable


def _record_subjects(folder: Path, run: str, train: Sequence[Subject],
                     val: Sequence[Subject]) -> None:  # fmt: skip
    """Write which subjects trained the model in ``folder`` and which chose its checkpoint
    (so that ``personalize adapt`` can tell a person the model has already seen)."""
    record = {"run": run, "train": [s.name for s in train], "val": [s.name for s in val]}
    atomic_write_text(folder / TRAINED_ON, json.dumps(record, indent=1))


class WindowObjective:
    """The ``global`` baseline on the engine: BCE on every meta-training window."""

    def __init__(self, model: nn.Module, x: np.ndarray, y: np.ndarray, val: list[Subject],
                 epochs: int, seed: int, batch: int = 128, lr: float = 1e-3):  # fmt: skip
        self.model, self.x, self.y = model, x, y
        self.val_x, self.val_y = _all_windows(val)
        self.epochs, self.seed, self.batch, self.lr = epochs, seed, batch, lr

    def stages(self) -> list[StagePlan]:
        return [StagePlan(name="global", epochs=self.epochs, monitor="val_auroc", mode="max")]

    def setup_stage(self, index: int) -> StageSetup:
        return StageSetup([{"params": list(self.model.parameters()), "lr": self.lr}],
                          steps_per_epoch=-(-len(self.y) // self.batch))  # fmt: skip

    def train_batches(self, index: int, epoch: int, skip: int) -> list[np.ndarray]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.y))
        return [order[i : i + self.batch] for i in range(0, len(order), self.batch)][skip:]

    def training_step(self, net: nn.Module, batch: np.ndarray, index: int) -> StepOutput:
        net.eval()  # calibrated BatchNorm, as the MAML models
        logits = net(torch.from_numpy(self.x[batch])).reshape(-1)
        loss = F.binary_cross_entropy_with_logits(logits, torch.from_numpy(self.y[batch]).float())
        return StepOutput(loss=loss, size=len(batch))

    def evaluate(self, index: int) -> dict[str, float]:
        p = probabilities(self.model, torch.from_numpy(self.val_x))
        return {"val_auroc": float(roc_auc_score(self.val_y, p))}


def train_global(
    model: nn.Module,
    train: list[Subject],
    val: list[Subject],
    out: str | Path,
    epochs: int = 5,
    seed: int = 0,
) -> nn.Module:
    """The ``global`` baseline: ``model`` trained on every meta-training window, into ``out``
    (resumable like :func:`meta_train`)."""
    out = Path(out)
    _claim(out, "global", model, seed, epochs=epochs, train=[s.name for s in train],
           val=[s.name for s in val])  # fmt: skip
    x, y = _all_windows(train)
    calibrate_batchnorm(model, x)
    Engine(out, seed=seed, precision="fp32", log=JsonlLog(out / "log.jsonl"),
           progress_bar=False).fit(WindowObjective(model, x, y, val, epochs, seed))  # fmt: skip
    save_model(model, out / "model")
    _record_subjects(out / "model", "global", train, val)
    return model


def scratch_on_support(
    architecture: Callable[[], nn.Module],
    subject: Subject,
    split: Split,
    steps: int = 100,
    lr: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray]:
    """The architecture trained on the split's support windows alone; its test windows
    scored."""
    x = torch.from_numpy(normalised(subject, split, split.support))
    y = torch.from_numpy(subject.y[split.support]).float()
    model = architecture()
    calibrate_batchnorm(model, x.numpy())
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        F.binary_cross_entropy_with_logits(model(x).reshape(-1), y).backward()
        optimizer.step()
    test = torch.from_numpy(normalised(subject, split, split.test))
    return subject.y[split.test], probabilities(model, test)


Scorer = Callable[[Subject, Split], tuple[np.ndarray, np.ndarray]]


def scorers(
    models: dict[str, nn.Module],
    config: MAMLConfig,
    architecture: Callable[[], nn.Module],
    foundation: FoundationConfig | None = None,
    seed: int = 0,
    pretrained: ECGModel | None = None,
) -> dict[str, Scorer]:
    """Each method as ``score(subject, split) -> (labels, probabilities)``; ``models`` holds
    the trained ``global`` and the meta-trained ``maml``, ``maml-curriculum`` and
    ``fomaml-curriculum-prefinetune`` initialisations (a method whose model is missing, e.g.
    a meta-training that failed, is left out); ``foundation`` adds ``foundation-post-train``
    (``pretrained``: its model, if already loaded)."""

    def adapting(source: str, steps: int, pre: bool) -> Scorer | None:
        if source not in models:
            return None
        model, c = models[source], dataclasses.replace(config, adapt_steps=steps)
        return lambda subject, split: adapt_split(model, subject, split, c, pre_finetuning=pre)

    candidates: dict[str, Scorer | None] = {
        "global": adapting("global", 0, False),
        "global-finetune": adapting("global", config.adapt_steps, False),
        "scratch": lambda subject, split: scratch_on_support(
            architecture, subject, split, config.scratch_steps
        ),
        "maml": adapting("maml", config.adapt_steps, False),
        "maml-curriculum": adapting("maml-curriculum", config.adapt_steps, False),
        REFERENCE: adapting("maml-curriculum", config.adapt_steps, True),
        "fomaml-curriculum-prefinetune": adapting("fomaml-curriculum-prefinetune",
                                                  config.adapt_steps, True),
    }  # fmt: skip
    methods = {name: score for name, score in candidates.items() if score is not None}
    if foundation is not None:
        methods["foundation-post-train"] = FoundationScorer(foundation, pretrained, seed=seed)
    return methods


def evaluate(
    subjects: list[Subject],
    methods: dict[str, Scorer],
    shots: Sequence[int] = (1, 5, 10),
    protocols: Sequence[str] = ("leak-free", "metava"),
    seed: int = 0,
) -> tuple[list[dict], list[dict]]:
    """Score every method on every subject, shot count and protocol, all methods on the same
    split (``seed`` draws MetaVA's random support): one row per (method, protocol, shots,
    subject) with its AUROC and F1 (threshold 0.5) and its labels and probabilities; and the
    subjects skipped, with the reason (the rest go on)."""
    rows, skipped = [], []
    for protocol in protocols:
        for k in shots:
            for subject in subjects:
                rng = np.random.default_rng([seed, 11])
                try:
                    split = split_subject(subject, k, protocol, rng)  # type: ignore[arg-type]
                except SubjectSkipped as error:
                    skipped.append({"subject": subject.name, "protocol": protocol, "shots": k,
                                    "problem": error.problem})  # fmt: skip
                    continue
                for method, score in methods.items():
                    y, p = score(subject, split)
                    rows.append({"method": method, "protocol": protocol, "shots": k,
                                 "subject": subject.name, "windows": len(y),
                                 "va": int(y.sum()), "auroc": float(roc_auc_score(y, p)),
                                 "f1": float(f1_score(y, p >= 0.5, zero_division=0)),
                                 "y": y, "p": p})  # fmt: skip
    return rows, skipped


def summarise(
    rows: list[dict], reference: str = REFERENCE, resamples: int = 1000, seed: int = 0
) -> list[dict[str, Any]]:
    """Per (method, protocol, shots): pooled AUROC and F1 over all test windows, per-subject
    median and worst decile (10th percentile), and the mean per-subject AUROC difference to
    ``reference`` with its paired bootstrap 95 % CI over subjects."""
    out = []
    keys = sorted({(r["protocol"], r["shots"]) for r in rows})
    rng = np.random.default_rng(seed)
    for protocol, k in keys:
        mine = [r for r in rows if r["protocol"] == protocol and r["shots"] == k]
        subjects = sorted({r["subject"] for r in mine})
        picks = rng.integers(0, len(subjects), size=(resamples, len(subjects)))
        per = {(r["method"], r["subject"]): r for r in mine}
        for method in [m for m in METHODS if any(r["method"] == m for r in mine)]:
            group = [per[(method, s)] for s in subjects]
            y = np.concatenate([r["y"] for r in group])
            p = np.concatenate([r["p"] for r in group])
            auc = np.array([r["auroc"] for r in group])
            f1 = np.array([r["f1"] for r in group])
            entry = {"method": method, "protocol": protocol, "shots": k, "subjects": len(group),
                     "pooled_auroc": float(roc_auc_score(y, p)),
                     "pooled_f1": float(f1_score(y, p >= 0.5, zero_division=0)),
                     "median_auroc": float(np.median(auc)),
                     "worst_decile_auroc": float(np.percentile(auc, 10)),
                     "median_f1": float(np.median(f1)),
                     "worst_decile_f1": float(np.percentile(f1, 10))}  # fmt: skip
            if method != reference and all((reference, s) in per for s in subjects):
                diff = auc - np.array([per[(reference, s)]["auroc"] for s in subjects])
                boots = diff[picks].mean(axis=1)
                entry["auroc_minus_reference"] = float(diff.mean())
                entry["ci"] = [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))]
            out.append(entry)
    return out


def summary_markdown(table: list[dict[str, Any]]) -> str:
    """The summary as a Markdown table (the README's)."""
    lines = ["| protocol | shots | method | subjects | pooled AUROC | pooled F1 | median AUROC "
             "| worst-decile AUROC | median F1 | AUROC - reference [95 % CI] |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for e in table:
        diff = (f"{e['auroc_minus_reference']:+.3f} [{e['ci'][0]:+.3f}, {e['ci'][1]:+.3f}]"
                if "ci" in e else "reference")  # fmt: skip
        numbers = [e["pooled_auroc"], e["pooled_f1"], e["median_auroc"], e["worst_decile_auroc"],
                   e["median_f1"]]  # fmt: skip
        lines.append(f"| {e['protocol']} | {e['shots']} | {e['method']} | {e['subjects']} | "
                     + " | ".join(f"{v:.3f}" for v in numbers) + f" | {diff} |")  # fmt: skip
    return "\n".join(lines)


def save_person(model: nn.Module, subject: Subject, split: Split, out: str | Path, *,
                pre_finetune: bool) -> dict[str, Any]:  # fmt: skip
    """Write a person's adapted model to the folder ``out`` with ``support.json``: the windows
    it learned from, where scoring may start, and the z-scoring of its inputs (the support
    set's statistics; ``export`` puts it in the graph). Returns what support.json holds."""
    out = Path(out)
    save_model(model, out)
    support = {"subject": subject.name, "shots": len(split.support) // 2,
               "pre_finetune": pre_finetune, "normalise": {"mean": split.mean, "sd": split.sd},
               "support_seconds": [float(t) for t in subject.time[split.support]],
               "scored_from_seconds": float(subject.time[split.test].min())}  # fmt: skip
    atomic_write_text(out / "support.json", json.dumps(support, indent=1))
    return support


ADAPTABLE = (
    "a one-lead model with one output (P(VA)), as `personalize meta-train` writes (RUN/model)"
)


def adaptable_model(name: str | Path) -> ECGModel:
    """The model ``name`` (a folder or ``hf-hub:ORG/REPO``) if a person's windows can adapt
    it: one input lead, one output; else a :class:`UsageError` saying what it is instead.
    A registry name stands for its bundled weights, and is refused without them."""
    text = str(name)
    if not text.startswith(HUB_PREFIX) and model_folder(text) is None:
        if text in model_names():
            raise UsageError(f"{text}: a registry architecture without trained weights (random "
                             f"ones would adapt to nothing); adapt takes {ADAPTABLE}")  # fmt: skip
        raise UsageError(f"{text}: no such model folder; adapt takes {ADAPTABLE}")
    model = load_model(text)
    leads, outputs = len(model.spec.leads), model.num_classes
    if leads != 1 or outputs != 1:
        what = f"{outputs} outputs" if outputs else "no output head (an embedding model)"
        raise UsageError(f"{text}: a {leads}-lead model with {what}; adapt takes {ADAPTABLE}")
    return model


def training_note(model: str | Path, subject: str) -> str | None:
    """A note when ``subject`` helped train the model folder ``model`` (its trained_on.json,
    or for an older meta-training its run's personalize.json), else None: its windows are not
    new to the model, so the person's model looks better on them than on a new person."""
    folder = model_folder(model)
    if folder is None:
        return None
    record, roles = folder / TRAINED_ON, {"train": "training", "val": "validation"}
    if not record.is_file():
        record, roles = folder.parent / "personalize.json", {"meta_train": "training",
                                                             "meta_val": "validation"}  # fmt: skip
        if folder.name != "model" or not record.is_file():
            return None
    try:
        saved = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    role = next((r for key, r in roles.items() if subject in saved.get(key, [])), None)
    if role is None:
        return None
    held_out = ""
    parts = folder.parent / "subjects.json"
    if parts.is_file():
        try:
            test = json.loads(parts.read_text())["subjects"]["test"]
            held_out = f"; held out from it: {', '.join(test)}"
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return (
        f"{subject} is one of the {role} subjects of {model} ({record}): its windows are not "
        f"new to the model, so its scores will look better than on a new person{held_out}"
    )


def person_normalisation(model: str | Path) -> tuple[float, float] | None:
    """The (mean, sd) a person's model folder z-scores its inputs with (its support.json), or
    None for a model without one."""
    folder = model_folder(model)
    support = None if folder is None else folder / "support.json"
    if support is None or not support.is_file():
        return None
    try:
        stats = json.loads(support.read_text())["normalise"]
        return float(stats["mean"]), float(stats["sd"])
    except (ValueError, KeyError, TypeError) as error:
        raise UsageError(
            f'{support}: expected {{"normalise": {{"mean": M, "sd": S}}}} as '
            f"`personalize adapt` writes it ({error!r})"
        ) from error


def per_subject_markdown(rows: list[dict[str, Any]], protocol: str, shots: int) -> str:
    """Per-subject AUROC / F1 of every method (columns) at one protocol and shot count, as a
    Markdown table (rows: the results file's ``per_subject``)."""
    mine = [r for r in rows if r["protocol"] == protocol and r["shots"] == shots]
    methods = [m for m in METHODS if any(r["method"] == m for r in mine)]
    cells = {(r["subject"], r["method"]): r for r in mine}
    lines = ["| subject | windows | VA | " + " | ".join(methods) + " |",
             "|---|---|---|" + "---|" * len(methods)]  # fmt: skip
    for subject in sorted({r["subject"] for r in mine}):
        first = cells[(subject, methods[0])]
        values = [f"{cells[(subject, m)]['auroc']:.3f} / {cells[(subject, m)]['f1']:.3f}"
                  if (subject, m) in cells else "-" for m in methods]  # fmt: skip
        lines.append(f"| {subject} | {first['windows']} | {first['va']} | "
                     + " | ".join(values) + " |")  # fmt: skip
    return "\n".join(lines)


def split_subjects(subjects: list[Subject], seed: int = 0) -> dict[str, list[str]]:
    """Subjects with VA windows split by ``seed`` into meta-train / meta-val / test; those
    without join meta-train (their windows still train the global model)."""
    with_va = [s.name for s in subjects if s.counts["va"] > 0]
    parts = split_names(with_va, seed=seed)
    parts["meta-train"] += sorted({s.name for s in subjects} - set(with_va))
    return parts


def run_protocol(
    data: Sequence[str | Path],
    runs: str | Path,
    *,
    backbone_name: str = "net1d-tiny",
    seed: int = 0,
    shots: Sequence[int] = (1, 5, 10),
    config: MAMLConfig | None = None,
    protocols: Sequence[str] = ("leak-free", "metava"),
    foundation: FoundationConfig | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """The whole evaluation: load the subjects of ``data``, split them by subject, train the
    global model and the three meta-trainings under ``runs`` (resumable; one that stops on a
    non-finite loss is reported in ``trainings_failed`` and its methods are left out), choose the
    ``foundation`` model's steps on the meta-validation subjects (if given), score every
    method on the test subjects; returns the settings, the splits, the skipped subjects, the
    summary (:func:`summarise`) and the per-subject rows."""
    start = time.perf_counter()
    config = config or MAMLConfig()
    # Every argument is checked before the data is loaded and anything trained.
    shots = check_shots(shots)
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise UsageError(f"protocols {list(protocols)}: each one of {', '.join(PROTOCOLS)}")

    check_backbone(backbone_name)
    pretrained = check_foundation(foundation) if foundation is not None else None
    subjects, problems = load_subjects(data)
    by_name = {s.name: s for s in subjects}
    parts = split_subjects(subjects, seed)
    train, val, test = ([by_name[n] for n in parts[k]] for k in ("meta-train", "meta-val", "test"))
    meta_training_subjects(train)

    def architecture() -> nn.Module:
        return backbone(backbone_name, seed=seed)

    if not test:
        raise UsageError(f"{', '.join(str(p) for p in data)}: no test subjects (subjects with VA "
                         f"windows: {sum(s.counts['va'] > 0 for s in subjects)}; the test share "
                         "is 30 % of them)")  # fmt: skip

    models = {"global": train_global(architecture(), train, val, Path(runs) / "global",
                                     epochs=config.global_epochs, seed=seed)}  # fmt: skip
    failed: dict[str, str] = {}
    for name, (first, curriculum) in META_RUNS.items():
        schedule = (config.curriculum or Curriculum()) if curriculum else None
        c = dataclasses.replace(config, first_order=first, curriculum=schedule)
        try:
            models[name] = meta_train(architecture(), train, val, c, Path(runs) / name, seed=seed)
        except TrainingError as error:  # reported; the other methods are still scored
            failed[name] = str(error)
        log(f"{name}: {failed.get(name, 'meta-trained')} "
            f"({(time.perf_counter() - start) / 60:.1f} min)")  # fmt: skip
    chosen, grid = None, None
    if foundation is not None:
        chosen, grid = select_config(val, foundation, shots=config.shots, seed=seed,
                                     pretrained=pretrained)  # fmt: skip
        log(f"foundation-post-train: chose {chosen.to_dict()} on the meta-validation subjects")
    methods = scorers(models, config, architecture, chosen, seed, pretrained)
    rows, skipped = evaluate(test, methods, shots, protocols, seed)
    return {
        "config": config.to_dict(), "backbone": backbone_name, "seed": seed,
        "foundation": None if chosen is None else {"chosen": chosen.to_dict(),
                                                   "validation_grid": grid},
        "data": [str(p) for p in data], "records_left_out": problems, "subjects": parts,
        "trainings_failed": failed,
        "windows": {s.name: s.counts for s in subjects}, "skipped": skipped,
        "minutes": round((time.perf_counter() - start) / 60, 1), "summary": summarise(rows),
        "per_subject": [{k: v for k, v in r.items() if k not in ("y", "p")} for r in rows],
    }  # fmt: skip


__all__ = [
    "METHODS",
    "REFERENCE",
    "adaptable_model",
    "backbone",
    "evaluate",
    "meta_train",
    "meta_training_subjects",
    "per_subject_markdown",
    "person_normalisation",
    "run_protocol",
    "save_person",
    "scorers",
    "split_subjects",
    "summarise",
    "summary_markdown",
    "train_global",
    "training_note",
]
