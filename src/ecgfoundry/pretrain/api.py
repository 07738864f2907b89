"""``pretrain``: one pretraining run from a model and a corpus to RUN_DIR/{config.json,
log.jsonl, checkpoint/, model/ (with manifest.json)}; the same call again resumes it.

Objectives: ``cpc`` (ECG-CPC's contrastive predictive coding, for the S4 family) and
``supervised`` (ECGFounder-style multi-label BCE on a labelled set: supervised training from
scratch through :func:`ecgfoundry.adapt.finetune`, whose model folder carries the manifest).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

import torch
import yaml

from ecgfoundry.errors import UsageError
from ecgfoundry.models.base import ECGModel
from ecgfoundry.models.registry import resolve_model
from ecgfoundry.pretrain.corpus import CorpusSource, SourceKind, build_corpus
from ecgfoundry.pretrain.cpc import CPCConfig
from ecgfoundry.pretrain.run import pretrain_cpc

OBJECTIVES = ("cpc", "supervised")


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
    try:
        loaded = yaml.safe_load(Path(config).read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise UsageError(f"--config {config}: not a readable YAML file ({error})") from error
    if not isinstance(loaded, dict):
        raise UsageError(f"--config {config}: expected a mapping of settings")
    return loaded


def _cpc_config(overrides: dict[str, Any], epochs: int | None) -> CPCConfig:
    fields = {f.name for f in dataclasses.fields(CPCConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise UsageError(f"unknown cpc setting(s) {unknown}; settings: {sorted(fields)}")
    try:
        config = CPCConfig(**overrides)
        return dataclasses.replace(config, epochs=epochs) if epochs is not None else config
    except (TypeError, ValueError) as error:
        raise UsageError(f"cpc settings: {error}") from error


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
    precision: str = "auto",
    progress_bar: bool = True,
) -> dict[str, Any]:
    """Pretrain ``model`` (a registry name: random initialisation; a model folder or object:
    continue from its weights) with ``objective`` on ``data`` (corpus sources, ``KIND=PATH``);
    ``holdout`` of the patients validate. Returns a summary; the model is in ``out/model``.

    ``supervised`` takes one labelled source (``ptbxl=DIR`` with ``task``, default ``all``;
    ``cinc=DIR``) and trains from scratch with the benchmark's ``supervised`` recipe.
    """
    if objective not in OBJECTIVES:
        raise UsageError(f"objective must be one of {list(OBJECTIVES)}, got {objective!r}")
    sources = [parse_source(item) for item in data]
    if not sources:
        raise UsageError("pass at least one data source (--data KIND=PATH)")
    if objective == "supervised":
        return _supervised(model, sources, out=out, seed=seed, epochs=epochs, config=config,
                           task=task, cache_dir=cache_dir, workers=workers,
                           loader_workers=loader_workers,
                           checkpoint_every_minutes=checkpoint_every_minutes,
                           progress_bar=progress_bar)  # fmt: skip
    settings = _cpc_config(_overrides(config), epochs)
    torch.manual_seed(seed)
    if isinstance(model, ECGModel):
        network = model
    else:
        network = resolve_model(model, weights=Path(str(model)).exists())
    corpus = build_corpus(sources, network.spec, cache_dir=cache_dir, workers=workers)
    train, held_out = corpus.holdout(holdout, seed=seed)
    progress = pretrain_cpc(
        network, train.split(), held_out.split(), out, config=settings, seed=seed,
        precision=precision, workers=loader_workers,  # type: ignore[arg-type]
        checkpoint_every_minutes=checkpoint_every_minutes, progress_bar=progress_bar,
        records=corpus.records(),
    )  # fmt: skip
    last = progress.history[-1] if progress.history else {}
    return {"objective": objective, "model": str(Path(out) / "model"),
            "segments": {"train": len(train.split()), "val": len(held_out.split())},
            "epochs_run": len(progress.history),
            "val_loss": last.get("val_loss"), "val_accuracy": last.get("val_accuracy")}  # fmt: skip


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
