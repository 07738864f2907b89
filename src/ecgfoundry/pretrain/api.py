"""``pretrain``: one pretraining run from a model and a corpus to RUN_DIR/{config.json,
log.jsonl, checkpoint/, model/ (with manifest.json)}; the same call again resumes it.

Objectives: ``cpc`` (ECG-CPC's contrastive predictive coding, for the S4 family),
``w2v-cmsc-rlm`` (ECG-FM's wav2vec 2.0 + CMSC + random lead masking, for the ``ecgfm``
family; a model folder with ``pretraining_head.safetensors`` continues with its head) and
``supervised`` (ECGFounder-style multi-label BCE on a labelled set: supervised training from
scratch through :func:`ecgfoundry.adapt.finetune`, whose model folder carries the manifest).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

import torch

from ecgfoundry.engine import check_run_options
from ecgfoundry.errors import UsageError
from ecgfoundry.models.base import ECGModel
from ecgfoundry.models.registry import create_model, model_entry, model_names, resolve_model
from ecgfoundry.pretrain.corpus import CorpusSource, SourceKind, build_corpus
from ecgfoundry.pretrain.cpc import CPCConfig
from ecgfoundry.pretrain.run import pretrain_cpc
from ecgfoundry.pretrain.w2v import (
    HEAD_FILE,
    PRETRAINING_MODEL_SETTINGS,
    W2VConfig,
    load_pretraining_head,
)
from ecgfoundry.pretrain.w2v_run import pretrain_w2v
from ecgfoundry.settings import read_settings, typed_settings

OBJECTIVES = ("cpc", "w2v-cmsc-rlm", "supervised")
# the model family each self-supervised objective trains (supervised trains any)
OBJECTIVE_FAMILY = {"cpc": "s4", "w2v-cmsc-rlm": "ecgfm"}


def parse_source(text: str | CorpusSource) -> CorpusSource:
    """``KIND=PATH`` (e.g. ``ptbxl=data/ptbxl``, ``cinc=data/georgia``) as a corpus source."""
    if isinstance(text, CorpusSource):
        return text
    kind, sep, root = str(text).partition("=")
    kinds = get_args(SourceKind)
    if not sep or kind not in kinds or not root:
        raise UsageError(f"--data {text!r}: expected KIND=PATH with KIND one of {list(kinds)}")
    return CorpusSource(kind, root)  # type: ignore[arg-type]


def _overrides(config: str | Path | dict[str, Any] | None) -> dict[str, Any]:
    if config is None or isinstance(config, dict):
        return dict(config or {})
    return read_settings(config)


def _settings(name: str, kind: type, overrides: dict[str, Any], epochs: int | None) -> Any:
    """Objective ``name``'s settings dataclass with ``overrides`` (and ``epochs``) applied."""
    fields = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise UsageError(f"unknown {name} setting(s) {unknown}; settings: {sorted(fields)}")
    overrides = typed_settings(kind, overrides, f"{name} settings")
    try:
        settings = kind(**overrides)
        return dataclasses.replace(settings, epochs=epochs) if epochs is not None else settings
    except (TypeError, ValueError) as error:
        raise UsageError(f"{name}: {error}") from error


def pretrain(
    model: str | Path | ECGModel,
    *,
    objective: str,
    data: Sequence[str | CorpusSource],
    out: str | Path,
    seed: int = 0,
    epochs: int | None = None,
    config: str | Path | dict[str, Any] | None = None,
    task: str | None = None,
    holdout: float = 0.05,
    cache_dir: str | Path | None = None,
    workers: int = 1,
    loader_workers: int = 0,
    checkpoint_every_minutes: float | None = None,
    checkpoint_every_steps: int | None = None,
    precision: str = "auto",
    progress_bar: bool = True,
) -> dict[str, Any]:
    """Pretrain ``model`` (a registry name: random initialisation; a model folder or object:
    continue from its weights) with ``objective`` on ``data`` (corpus sources, ``KIND=PATH``);
    ``holdout`` of the patients validate. Returns a summary; the model is in ``out/model``.

    ``supervised`` takes one labelled source (``ptbxl=DIR`` with ``task``, default ``all``;
    ``cinc=DIR``) and trains from scratch with the benchmark's ``supervised`` recipe.
    """
    check_run_options(loader_workers=loader_workers,
                      checkpoint_every_minutes=checkpoint_every_minutes,
                      checkpoint_every_steps=checkpoint_every_steps)  # fmt: skip
    if objective not in OBJECTIVES:
        raise UsageError(f"objective must be one of {list(OBJECTIVES)}, got {objective!r}")
    if not 0 < holdout < 1:
        raise UsageError(f"holdout must be above 0 and below 1, got {holdout!r}")
    if task is not None and objective != "supervised":
        raise UsageError(f"task is for the supervised objective; {objective} uses no labels")
    sources = [parse_source(item) for item in data]
    if not sources:
        raise UsageError("pass at least one data source (--data KIND=PATH)")
    if objective == "supervised":
        return _supervised(model, sources, out=out, seed=seed, epochs=epochs, config=config,
                           task=task, cache_dir=cache_dir, workers=workers,
                           loader_workers=loader_workers,
                           checkpoint_every_minutes=checkpoint_every_minutes,
                           checkpoint_every_steps=checkpoint_every_steps,
                           progress_bar=progress_bar)  # fmt: skip
    w2v = objective == "w2v-cmsc-rlm"
    _check_family(model, objective)  # a preset or object, before anything is built
    settings = _settings(objective, W2VConfig if w2v else CPCConfig, _overrides(config), epochs)
    torch.manual_seed(seed)
    folder = None if isinstance(model, ECGModel) else Path(str(model))
    if isinstance(model, ECGModel):
        network = model
    elif _is_preset(model):  # a fresh architecture; ECG-FM pretrains with its own dropout settings
        network = create_model(str(model), **(PRETRAINING_MODEL_SETTINGS if w2v else {}))
    else:
        network = resolve_model(model)  # a folder or hf-hub:ORG/REPO: continue from it
        _check_family(network, objective)  # its family is known once it is loaded
    corpus = build_corpus(sources, network.spec, cache_dir=cache_dir, workers=workers)
    train, held_out = corpus.holdout(holdout, seed=seed)
    common = {"seed": seed, "precision": precision, "workers": loader_workers,
              "checkpoint_every_minutes": checkpoint_every_minutes,
              "checkpoint_every_steps": checkpoint_every_steps,
              "progress_bar": progress_bar, "records": corpus.records()}  # fmt: skip
    if w2v:
        head_file = folder / HEAD_FILE if folder is not None else None
        head = load_pretraining_head(head_file) if head_file and head_file.exists() else None
        if head is None and folder is not None and folder.is_dir():
            warnings.warn(f"{folder}: no {HEAD_FILE}; the quantiser and projections start "
                          "fresh (`convert ecgfm --keep-pretraining-head` keeps a published "
                          "checkpoint's)", stacklevel=2)  # fmt: skip
        progress = pretrain_w2v(network, train.split(), held_out.split(), out, config=settings,
                                head=head, patients_train=train.patient_ids,
                                patients_val=held_out.patient_ids, **common)  # fmt: skip
    else:
        progress = pretrain_cpc(network, train.split(), held_out.split(), out, config=settings,
                                **common)  # fmt: skip
    last = progress.history[-1] if progress.history else {}
    return {"objective": objective, "model": str(Path(out) / "model"),
            "records": corpus.description["records"],
            "unreadable_records": corpus.description["unreadable_records"],
            "segments": {"train": len(train.split()), "val": len(held_out.split())},
            "epochs_run": len(progress.history),
            "val_loss": last.get("val_loss"), "val_accuracy": last.get("val_accuracy")}  # fmt: skip


def _is_preset(model: str | Path | ECGModel) -> bool:
    """A registry name (not a folder of that name): pretraining builds it from random weights."""
    name = str(model)
    return not isinstance(model, ECGModel) and name in model_names() and not Path(name).exists()


def _check_family(model: str | Path | ECGModel, objective: str) -> None:
    """Refuse a registry preset or model object of a family ``objective`` does not train."""
    wanted = OBJECTIVE_FAMILY[objective]
    if isinstance(model, ECGModel):
        family = model.family
    elif _is_preset(model):
        family = model_entry(str(model)).model_class.family
    else:
        return  # a folder: checked once loaded
    if family != wanted:
        raise UsageError(f"{objective} pretrains {wanted} models; {model} is a {family} model")


def _supervised(model: str | Path | ECGModel, sources: list[CorpusSource], *, out: str | Path,
                task: str | None, **options: Any) -> dict[str, Any]:  # fmt: skip
    from ecgfoundry.adapt import finetune

    if len(sources) != 1 or sources[0].kind not in ("ptbxl", "cinc"):
        raise UsageError("supervised pretraining takes one labelled source: ptbxl=DIR or cinc=DIR")
    source = sources[0]
    if source.kind == "ptbxl":
        task = task or "all"
    config = _overrides(options.pop("config"))
    metrics = finetune(model, data=source.kind, root=source.root, task=task,
                       strategy="supervised", out=out, config=config or None,
                       **options)  # fmt: skip
    return {"objective": "supervised", "model": str(Path(out) / "model"),
            "val_macro_auroc": metrics["val"]["macro_auroc"]}  # fmt: skip
