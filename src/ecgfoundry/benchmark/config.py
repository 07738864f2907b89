"""A benchmark's configuration: which models, on which tasks, adapted how, with how many labels
and seeds. Read from YAML (or a dict) and checked before anything runs; every problem names
the field.

.. code-block:: yaml

    data:                       # named sources: ptbxl (root), cinc (root), table (a CSV)
      ptbxl: {kind: ptbxl, root: data/ptbxl}
      georgia: {kind: cinc, root: data/georgia}
    models:                     # model -> its modes (adaptation strategies)
      ecgfoundry-cpc: [linear-probe, post-train]
      resnet1d-wang: [supervised]
    tasks: [ptbxl:superdiagnostic, ptbxl:rhythm, "georgia:164889003,426783006"]
    fractions: [0.1, 1.0]       # of the training split (nested, as finetune --fraction)
    seeds: [0, 1, 2]
    recipes:                    # optional overrides of a mode's recipe (ecgfoundry.adapt)
      post-train: {stages.1.lr: 1.0e-4}
      post-train-no-drop-path:  # a new mode: a strategy with overrides (an ablation)
        {strategy: post-train, stages.1.drop_path_rate: 0.0}
    epochs: null                # optional: cap every mode's main stage (quick looks)
    analysis:                   # optional (ecgfoundry.benchmark.analysis): after the cells
      representation: true      # embeddings: numbers and UMAP maps
      attribution: true         # SHAP maps of the adapted models, with sanity checks
      records: 2000             # per split for the representation
    transfer:                   # optional (ecgfoundry.benchmark.transfer): after the cells
      targets: [georgia]        # CinC sources the PTB-XL-adapted models are scored on
      tasks: [ptbxl:superdiagnostic]   # default: every PTB-XL task of the configuration

``models`` may also be a list with a top-level ``modes`` list applied to each. A task is
``DATA:TASK``: a PTB-XL task name, comma-separated SNOMED-CT codes (or ``all``) for a CinC
folder, label columns (or ``all``) for a table.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from ecgfoundry.adapt.recipe import STRATEGIES, recipe_for
from ecgfoundry.adapt.sources import SOURCE_KINDS
from ecgfoundry.data.ptbxl import TASKS as PTBXL_TASKS
from ecgfoundry.data.ptbxl import task_labels
from ecgfoundry.data.snomed import UnmappedLabelError, ptbxl_labels
from ecgfoundry.errors import UsageError
from ecgfoundry.models.registry import HUB_PREFIX, model_entry, model_folder, model_names
from ecgfoundry.settings import typed_settings

FIELDS = ("data", "models", "modes", "tasks", "fractions", "seeds", "recipes", "epochs",
          "analysis", "transfer")  # fmt: skip


class BenchmarkConfigError(UsageError):
    """A benchmark configuration that cannot run: the message names the field and value."""


@dataclass(frozen=True)
class AnalysisSettings:
    """What the analyses after the cells look at (the ``analysis:`` section)."""

    representation: bool = True
    attribution: bool = True
    records: int = 2000  # per split, for the representation (a seeded sample)
    attribution_records: int = 16
    segments: int = 10
    steps: int = 4
    seed: int = 0


@dataclass(frozen=True)
class DataSource:
    name: str
    kind: str
    root: str  # a folder (ptbxl, cinc) or a CSV file (table)


@dataclass(frozen=True)
class TaskSpec:
    data: DataSource
    task: str  # PTB-XL task, SNOMED-CT codes or table columns; "all": every label

    @property
    def name(self) -> str:
        return f"{self.data.name}:{self.task}"

    def source_arguments(self) -> dict[str, Any]:
        """``data``, ``root`` and ``task`` as ``finetune`` and ``adapt.sources.task_data``
        take them (a table is its CSV path; ``all`` of a CinC folder or table: every label)."""
        source = self.data
        task = None if self.task == "all" and source.kind != "ptbxl" else self.task
        if source.kind == "table":
            return {"data": source.root, "root": None, "task": task}
        return {"data": source.kind, "root": source.root, "task": task}


@dataclass(frozen=True)
class TransferSettings:
    """Which PTB-XL tasks' adapted models are scored on which CinC folders."""

    targets: tuple[DataSource, ...]
    tasks: tuple[str, ...]  # task names, e.g. "ptbxl:superdiagnostic"


@dataclass(frozen=True)
class BenchmarkConfig:
    models: dict[str, tuple[str, ...]]
    tasks: tuple[TaskSpec, ...]
    fractions: tuple[float, ...] = (1.0,)
    seeds: tuple[int, ...] = (0,)
    recipes: dict[str, dict[str, Any]] = field(default_factory=dict)
    epochs: int | None = None
    analysis: AnalysisSettings | None = None
    transfer: TransferSettings | None = None
    source: str = "the configuration"

    def recipe(self, mode: str) -> dict[str, Any]:
        """The mode's recipe as it runs (its strategy's defaults, overrides, epoch cap)."""
        overrides = dict(self.recipes.get(mode) or {})
        strategy = overrides.pop("strategy", mode)
        return recipe_for(strategy, config=overrides or None, epochs=self.epochs).to_dict()


def _fail(source: str, message: str) -> BenchmarkConfigError:
    return BenchmarkConfigError(f"{source}: {message}")


def _data(source: str, raw: Any, base: Path) -> dict[str, DataSource]:
    if not isinstance(raw, dict) or not raw:
        raise _fail(source, "data: expected a mapping of named sources, e.g. "
                    "{ptbxl: {kind: ptbxl, root: data/ptbxl}}")  # fmt: skip
    out = {}
    for name, entry in raw.items():
        if isinstance(entry, str):  # shorthand: NAME: PATH with the name as the kind
            entry = {"kind": name, "root": entry}
        if (
            not isinstance(entry, dict)
            or entry.get("kind") not in SOURCE_KINDS
            or "root" not in entry
        ):
            raise _fail(source, f"data.{name}: expected {{kind: one of {list(SOURCE_KINDS)}, root: "
                        f"PATH}}, got {entry!r}")  # fmt: skip
        root = Path(str(entry["root"])).expanduser()
        root = root if root.is_absolute() else base / root
        if not root.exists():
            raise _fail(source, f"data.{name}.root: {root} does not exist")
        out[str(name)] = DataSource(str(name), entry["kind"], str(root.resolve()))
    return out


def _strategy(mode: str, recipes: dict[str, Any]) -> str | None:
    """The strategy a mode runs: its own name, or a variant's ``strategy``."""
    if mode in STRATEGIES:
        return mode
    strategy = (recipes.get(mode) or {}).get("strategy")
    return strategy if strategy in STRATEGIES else None


def _starts_from_weights(mode: str, strategy: str, recipes: dict[str, Any]) -> bool:
    """Whether a mode's recipe starts from the model's weights (``init``, as the variant sets
    it or its strategy defaults it)."""
    variant = recipes.get(mode) or {}
    init = variant["init"] if "init" in variant else recipe_for(strategy).init
    return init == "pretrained"


def _check_model(source: str, model: str, modes: list[str], recipes: dict[str, Any]) -> None:
    known = model in model_names()
    if not (known or Path(model).is_dir() or model.startswith(HUB_PREFIX)):
        known_names = ", ".join(model_names())
        raise _fail(source, f"models: {model!r} is neither a registered model, a model "
                    f"folder nor {HUB_PREFIX}ORG/REPO (registered: {known_names})")  # fmt: skip
    for mode in modes:
        strategy = _strategy(mode, recipes)
        if strategy is None:
            raise _fail(source, f"models.{model}: unknown mode {mode!r}; modes: "
                        f"{sorted(STRATEGIES)}, or a variant under recipes with a "
                        "strategy")  # fmt: skip
        weightless = known and model_folder(model) is None
        if weightless and _starts_from_weights(mode, strategy, recipes):
            where = model_entry(model).weights
            untrained = sorted(s for s in STRATEGIES if recipe_for(s).init == "random")
            raise _fail(source, f"models.{model}: mode {mode!r} starts from the model's "
                        f"weights, and {model} is an architecture without weights (use "
                        f"{untrained}, a variant with init: random, or a model folder"
                        + (f"; published weights: {where}" if where else "") + ")")  # fmt: skip


def _model_name(model: str, base: Path) -> str:
    """A registered name or Hub id as it is; a folder path resolved against ``base``."""
    if model in model_names() or model.startswith(HUB_PREFIX) or Path(model).is_absolute():
        return model
    folder = base / model
    return str(folder.resolve()) if folder.is_dir() else model


def _models(source: str, raw: Any, modes: Any, recipes: dict[str, Any],
            base: Path) -> dict[str, tuple[str, ...]]:  # fmt: skip
    if isinstance(raw, list):
        if not isinstance(modes, list) or not modes:
            raise _fail(source, "models is a list, so give the modes for all of them: "
                        "modes: [linear-probe, post-train]")  # fmt: skip
        raw = {model: modes for model in raw}
    if not isinstance(raw, dict) or not raw:
        raise _fail(source, "models: expected a mapping model -> [modes] or a list with modes")
    out = {}
    for model, model_modes in raw.items():
        model_modes = [model_modes] if isinstance(model_modes, str) else model_modes
        if not isinstance(model_modes, list) or not model_modes:
            raise _fail(source, f"models.{model}: expected a list of modes")
        name = _model_name(str(model), base)
        _check_model(source, name, [str(m) for m in model_modes], recipes)
        out[name] = tuple(dict.fromkeys(str(m) for m in model_modes))
    return out


def _task(source: str, raw: Any, data: dict[str, DataSource]) -> TaskSpec:
    name, _, task = str(raw).partition(":")
    if name not in data:
        raise _fail(source, f"tasks: {raw!r} names data {name!r}, which is not under data "
                    f"({sorted(data)})")  # fmt: skip
    kind, task = data[name].kind, task or "all"
    if kind == "ptbxl" and task not in PTBXL_TASKS:
        raise _fail(source, f"tasks: {raw!r}: PTB-XL tasks are {list(PTBXL_TASKS)}")
    return TaskSpec(data[name], task)


def _numbers(source: str, name: str, raw: Any, kind: type, check: Any, hint: str) -> tuple:
    values = raw if isinstance(raw, list) else [raw]
    try:
        out = tuple(kind(v) for v in values)
    except (TypeError, ValueError):
        out = ()
    if not out or not all(check(v) for v in out) or len(set(out)) != len(out):
        raise _fail(source, f"{name}: expected distinct {hint}, got {raw!r}")
    return out


def _analysis(source: str, raw: Any) -> AnalysisSettings | None:
    if raw is None:
        return None
    known = {f.name for f in fields(AnalysisSettings)}
    if not isinstance(raw, dict) or set(raw) - known:
        raise _fail(source, f"analysis: expected a mapping of {sorted(known)}, got {raw!r}")
    try:  # a bool must be a bool ("no" is text, and true); "1e3" is not a count
        settings = AnalysisSettings(**typed_settings(AnalysisSettings, raw, "analysis"))
    except UsageError as error:
        raise _fail(source, str(error)) from error
    counts = ("records", "attribution_records", "segments", "steps")
    if any(getattr(settings, n) < 1 for n in counts):  # typed above: whole numbers
        raise _fail(source, f"analysis: {list(counts)} must be whole numbers >= 1")
    return settings


def _transfer(source: str, raw: Any, data: dict[str, DataSource],
              tasks: tuple[TaskSpec, ...]) -> TransferSettings:  # fmt: skip
    if not isinstance(raw, dict) or set(raw) - {"targets", "tasks"} or not raw.get("targets"):
        raise _fail(source, "transfer: expected {targets: [CinC data names], tasks: [optional "
                    f"PTB-XL tasks]}}, got {raw!r}")  # fmt: skip
    targets = []
    for name in raw["targets"]:
        if name not in data or data[name].kind != "cinc":
            cinc = sorted(n for n, d in data.items() if d.kind == "cinc")
            raise _fail(source, f"transfer.targets: {name!r} is not a cinc data source "
                        f"(cinc sources: {cinc})")  # fmt: skip
        targets.append(data[name])
    ptbxl_tasks = [t for t in tasks if t.data.kind == "ptbxl"]
    chosen = raw.get("tasks") or [t.name for t in ptbxl_tasks]
    for name in chosen:
        task = next((t for t in ptbxl_tasks if t.name == name), None)
        if task is None:
            raise _fail(source, f"transfer.tasks: {name!r} is not one of the configuration's "
                        f"PTB-XL tasks ({[t.name for t in ptbxl_tasks]})")  # fmt: skip
        try:
            ptbxl_labels([], task_labels(task.data.root, task.task))
        except UnmappedLabelError as error:
            raise _fail(source, f"transfer.tasks: {name}: {error}") from error
    if not chosen:
        raise _fail(source, "transfer: the configuration has no PTB-XL task to transfer from")
    return TransferSettings(tuple(targets), tuple(chosen))


def load_config(config: str | Path | dict[str, Any]) -> BenchmarkConfig:
    """A checked :class:`BenchmarkConfig` from a YAML file or a dict (data and model folder
    paths in a file are relative to its folder)."""
    if isinstance(config, dict):
        raw, source, base = config, "the configuration", Path.cwd()
    else:
        source, base = str(config), Path(config).resolve().parent
        try:
            raw = yaml.safe_load(Path(config).read_text())
        except (OSError, yaml.YAMLError) as error:
            raise _fail(source, f"not a readable YAML file ({error})") from error
    if not isinstance(raw, dict):
        raise _fail(source, "expected a mapping with data, models, tasks, ...")
    if unknown := sorted(set(raw) - set(FIELDS)):
        raise _fail(source, f"unknown field(s) {unknown}; fields: {list(FIELDS)}")
    for needed in ("data", "models", "tasks"):
        if needed not in raw:
            raise _fail(source, f"missing field {needed!r}")
    data = _data(source, raw["data"], base)
    tasks = raw["tasks"] if isinstance(raw["tasks"], list) else [raw["tasks"]]
    recipes = raw.get("recipes") or {}
    if not isinstance(recipes, dict) or any(not isinstance(v, dict) for v in recipes.values()):
        raise _fail(source, "recipes: expected mode -> {field: value}")
    config_out = BenchmarkConfig(
        models=_models(source, raw["models"], raw.get("modes"), recipes, base),
        tasks=tuple(dict.fromkeys(_task(source, t, data) for t in tasks)),
        fractions=_numbers(source, "fractions", raw.get("fractions", [1.0]), float,
                           lambda f: 0 < f <= 1, "label fractions in (0, 1]"),
        seeds=_numbers(source, "seeds", raw.get("seeds", [0]), int, lambda s: s >= 0,
                       "seeds >= 0"),
        recipes={str(k): dict(v) for k, v in recipes.items()},
        epochs=raw.get("epochs"), analysis=_analysis(source, raw.get("analysis")), source=source,
    )  # fmt: skip
    if raw.get("transfer") is not None:
        config_out = replace(config_out, transfer=_transfer(source, raw["transfer"], data,
                                                            config_out.tasks))  # fmt: skip
    if config_out.epochs is not None and not (
        isinstance(config_out.epochs, int) and config_out.epochs >= 1
    ):
        raise _fail(source, f"epochs: expected a whole number >= 1 or null, got {raw['epochs']!r}")
    modes = {m for ms in config_out.models.values() for m in ms}
    for mode in recipes:
        if mode not in modes:
            raise _fail(source, f"recipes.{mode}: no model runs mode {mode!r}")
        try:
            config_out.recipe(mode)
        except ValueError as error:
            raise _fail(source, f"recipes.{mode}: {error}") from error
    return config_out


__all__ = [
    "AnalysisSettings",
    "BenchmarkConfig",
    "BenchmarkConfigError",
    "DataSource",
    "TaskSpec",
    "load_config",
]
