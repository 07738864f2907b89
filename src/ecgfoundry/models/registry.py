"""One registry of model presets: ``create_model``, ``load_model``, ``list_models``.

A family file registers, at its bottom, its presets with :func:`register_model` (name, model
class, config overrides), its published-checkpoint converters with :func:`register_converter`,
and any foreign folder layout ``load_model`` should convert on load with
:func:`register_folder_format`. This module knows no family by name.
``create_model(name, num_classes=..., drop_path_rate=..., **overrides)`` builds one;
``load_model(path)`` reads the project's model folder (or a Hub repository). A preset
registered with ``bundled=True`` has pretrained weights inside the package
(``ecgfoundry/weights/NAME/``): ``resolve_model(NAME)`` and ``create_model(NAME,
pretrained=True)`` load them offline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ecgfoundry.models.base import ECGModel
from ecgfoundry.models.io import (
    CheckpointError,
    download_from_hub,
    load_state_dict_strict,
    model_fingerprint,
    read_model_folder,
    save_model,
)
from ecgfoundry.spec import InputSpec

HUB_PREFIX = "hf-hub:"
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "weights"  # ecgfoundry/weights/


@dataclass(frozen=True)
class ModelEntry:
    """A named preset: a family's model class plus the config values that define the size."""

    name: str
    model_class: type[ECGModel]
    preset: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    weights: str | None = None  # where published weights come from (for people, not fetched)
    bundled: bool = False  # pretrained weights ship in the package: BUNDLED_DIR / name
    parameters: int | None = None  # as declared, so listing needs no model built

    @property
    def folder(self) -> Path | None:
        """The bundled model folder, when its weights are installed."""
        folder = BUNDLED_DIR / self.name
        return folder if self.bundled and (folder / "model.safetensors").is_file() else None


@dataclass(frozen=True)
class Converter:
    """A published-checkpoint format: ``convert(path, *, overrides, allow_unsafe) -> model``."""

    name: str
    convert: Callable[..., ECGModel]
    description: str = ""


_MODELS: dict[str, ModelEntry] = {}
_FAMILIES: dict[str, type[ECGModel]] = {}
_CONVERTERS: dict[str, Converter] = {}
# (detect, load): a foreign model folder that ``load_model`` converts on the fly.
_FOLDER_FORMATS: list[tuple[Callable[[Path], bool], Callable[[Path], ECGModel]]] = []


def register_model(
    name: str,
    model_class: type[ECGModel],
    *,
    description: str = "",
    weights: str | None = None,
    bundled: bool = False,
    parameters: int | None = None,
    **preset: Any,
) -> None:
    """Register a preset (``name`` must be new; ``preset`` are config field values).
    ``bundled``: its pretrained weights are the model folder ``BUNDLED_DIR / name``.
    ``parameters``: the preset's parameter count, so that :func:`list_models` need not build
    it (some families take seconds); without it the model is built to count them."""
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered")
    _FAMILIES.setdefault(model_class.family, model_class)
    _MODELS[name] = ModelEntry(
        name, model_class, dict(preset), description, weights, bundled, parameters
    )


def register_converter(
    name: str, convert: Callable[..., ECGModel], *, description: str = ""
) -> None:
    """Register a published-checkpoint format (``ecgfoundry convert NAME``); ``name`` is new."""
    if name in _CONVERTERS:
        raise ValueError(f"converter {name!r} is already registered")
    _CONVERTERS[name] = Converter(name, convert, description)


def register_folder_format(
    detect: Callable[[Path], bool], load: Callable[[Path], ECGModel]
) -> None:
    """Make ``load_model`` convert a foreign folder for which ``detect(folder)`` is true."""
    _FOLDER_FORMATS.append((detect, load))


def converter_names() -> list[str]:
    return sorted(_CONVERTERS)


def list_converters() -> list[dict[str, str]]:
    """Each registered checkpoint format with its description."""
    return [{"name": c.name, "description": c.description} for _, c in sorted(_CONVERTERS.items())]


def convert_checkpoint(
    converter: str,
    path: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    allow_unsafe: bool = False,
) -> ECGModel:
    """A published checkpoint as a model (eval mode), by the registered ``converter``."""
    if converter not in _CONVERTERS:
        raise ValueError(
            f"converter must be one of {', '.join(converter_names())}; got {converter!r}"
        )
    model = _CONVERTERS[converter].convert(path, overrides=overrides, allow_unsafe=allow_unsafe)
    return model.eval()


def model_names() -> list[str]:
    return sorted(_MODELS)


def model_entry(name: str) -> ModelEntry:
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(model_names())}")
    return _MODELS[name]


def family_class(family: str) -> type[ECGModel]:
    if family not in _FAMILIES:
        raise KeyError(f"unknown model family {family!r}; known: {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[family]


def build_config(name: str, **overrides: Any) -> Any:
    """The config a preset gives, with ``overrides`` applied; a ``spec`` override also sets
    the family's number of input leads (:attr:`ModelConfig.leads_field`) unless that is given."""
    entry = model_entry(name)
    config_class = entry.model_class.config_class
    field_name = config_class.leads_field
    if field_name and "spec" in overrides and field_name not in overrides:
        leads = InputSpec.from_dict(overrides["spec"]).leads
        overrides = {**overrides, field_name: len(leads)}
    return config_class.from_dict({**entry.preset, **overrides})


def create_model(
    name: str,
    pretrained: bool | str | Path = False,
    num_classes: int | None = None,
    drop_path_rate: float = 0.0,
    **overrides: Any,
) -> ECGModel:
    """Build a registered model.

    ``pretrained``: a model folder (or ``hf-hub:org/repo``) whose weights to load into this
    architecture; True: the preset's bundled weights. ``num_classes`` None keeps the preset's
    head; 0 removes it; another number puts a fresh head on a pretrained body. ``overrides``
    set any config field.
    """
    config = build_config(name, **overrides)
    model = model_entry(name).model_class(config)
    if pretrained:
        if pretrained is True:
            pretrained = model_entry(name).folder
            if pretrained is None:
                raise ValueError(f"{name}: no bundled weights; pass a model folder or "
                                 "hf-hub:ORG/REPO as pretrained")  # fmt: skip
        source = load_model(pretrained)
        load_state_dict_strict(model, _without_head(source.state_dict(), model), pretrained)
    if num_classes is not None:
        model.reset_head(num_classes)
    if drop_path_rate:
        model.set_drop_path_rate(drop_path_rate)
    return model


def _without_head(state: dict[str, torch.Tensor], model: ECGModel) -> dict[str, torch.Tensor]:
    """Body weights from ``state`` plus the head of ``model`` (heads differ between tasks)."""
    body = {k: v for k, v in state.items() if not k.startswith("head.")}
    return body | {k: v for k, v in model.state_dict().items() if k.startswith("head.")}


def load_model(path: str | Path) -> ECGModel:
    """A model from the project's folder format, ``hf-hub:ORG/REPO[@REVISION]``, or the name
    of a preset with bundled weights (``ecgfoundry-cpc``).

    A folder in a format a family registered (:func:`register_folder_format`, e.g. a Hub
    snapshot of a published model in its original layout) is converted on the fly.
    """
    text = str(path)
    if text.startswith(HUB_PREFIX):
        repo, _, revision = text[len(HUB_PREFIX) :].partition("@")
        path = download_from_hub(repo, revision=revision or None)
    elif text in _MODELS and model_folder(text) is None:
        raise without_weights(text)
    else:
        path = model_folder(text) or path  # a preset's name: its bundled weights
    for detect, load in _FOLDER_FORMATS:
        if detect(Path(path)):
            model = load(Path(path))
            model.origin = Path(path)
            return model.eval()
    config, weights = read_model_folder(path)
    try:
        model_class = family_class(config["family"])
    except KeyError as error:
        raise CheckpointError(path, str(error)) from error
    try:
        model = model_class(model_class.config_class.from_dict(config["config"]))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(path, f"config.json does not describe a {config['family']} "
                              f"model ({error})") from error  # fmt: skip
    load_state_dict_strict(model, weights, path)
    model.origin = Path(path)
    return model.eval()


def model_folder(name_or_path: str | Path) -> Path | None:
    """The model folder a name stands for: an existing folder, or a preset's bundled weights."""
    text = str(name_or_path)
    if Path(text).is_dir():
        return Path(text)
    return _MODELS[text].folder if text in _MODELS else None


def weights_fingerprint(name_or_path: str | Path) -> str:
    """What identifies a model's weights: the hash of its folder's (or bundled) weights file,
    else its name (an architecture without weights, a Hub repository)."""
    folder = model_folder(name_or_path)
    return model_fingerprint(folder) if folder is not None else str(name_or_path)


def without_weights(name: str) -> CheckpointError:
    """The error for loading the weights of a preset that ships none."""
    source = _MODELS[name].weights
    return CheckpointError(
        name, "a registered architecture without weights: pass a model folder"
        + (f" (published weights: {source})" if source else "")
        + " or use it untrained (e.g. the scratch strategy)"
    )  # fmt: skip


def resolve_model(name_or_path: str | Path, *, weights: bool = True) -> ECGModel:
    """A model folder, ``hf-hub:ORG/REPO``, or a registry preset (with its bundled weights,
    if it has them).

    ``weights=False`` gives the same architecture freshly initialised (seed first). Asking for
    the weights of a preset without bundled ones raises a CheckpointError that says so.
    """
    text = str(name_or_path)
    folder = model_folder(text)
    if folder is not None or Path(text).exists() or text.startswith(HUB_PREFIX):
        model = load_model(folder or text)
        if weights:
            return model
        return type(model)(type(model).config_class.from_dict(model.config.to_dict()))
    if text in _MODELS:
        if weights:
            raise without_weights(text)
        return create_model(text)
    raise CheckpointError(
        text, f"neither a model folder, {HUB_PREFIX}ORG/REPO, nor a registered model "
        f"({', '.join(model_names())})"
    )  # fmt: skip


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def list_models() -> list[dict[str, Any]]:
    """Each preset with its family, parameter count, input spec and description."""
    rows = []
    for name in model_names():
        entry = _MODELS[name]
        config = build_config(name)
        parameters = entry.parameters
        if parameters is None:  # undeclared: build on the meta device (no weights) and count
            with torch.device("meta"):
                parameters = count_parameters(entry.model_class(config))
        rows.append(
            {
                "name": name,
                "family": entry.model_class.family,
                "parameters": parameters,
                "num_classes": config.num_classes or 0,
                "spec": config.spec,
                "description": entry.description,
                "weights": entry.weights,
                "pretrained": entry.folder is not None,
            }
        )
    return rows


__all__ = [
    "Converter",
    "ModelEntry",
    "build_config",
    "convert_checkpoint",
    "converter_names",
    "count_parameters",
    "create_model",
    "family_class",
    "list_converters",
    "list_models",
    "load_model",
    "model_entry",
    "model_folder",
    "model_names",
    "register_converter",
    "register_folder_format",
    "register_model",
    "resolve_model",
    "save_model",
    "weights_fingerprint",
]
