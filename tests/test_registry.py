"""A model family is one file: its presets, converter and folder format register beside it and
reach ``create_model``, ``load_model``, ``ecgfoundry models list`` and ``ecgfoundry convert``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from typer.testing import CliRunner

from ecgfoundry.cli import app
from ecgfoundry.errors import UsageError
from ecgfoundry.models import registry
from ecgfoundry.models.base import ECGModel, ModelConfig
from ecgfoundry.models.io import CheckpointError, load_torch_checkpoint, save_model

SPEC = {"fs": 100.0, "seconds": 2.0, "leads": ["I", "II"], "normalisation": "zscore"}


@dataclass
class TinyConfig(ModelConfig):
    width: int = 4


class TinyModel(ECGModel):
    """A linear map of each lead's mean: a whole family in a few lines."""

    family = "tiny-test"
    config_class = TinyConfig

    def __init__(self, config: TinyConfig):
        super().__init__(config)
        self.body = nn.Linear(len(config.spec["leads"]), config.width)
        self.reset_head(config.num_classes, config.labels)

    @property
    def num_features(self) -> int:
        return self.config.width

    def forward_features(self, x: Tensor) -> Tensor:
        return self.body(x.mean(dim=-1))


def convert_tiny(path: str | Path, *, overrides=None, allow_unsafe: bool = False) -> TinyModel:
    """The family's published format: a torch file {"width": int, "body": state dict}."""
    checkpoint = load_torch_checkpoint(path, allow_unsafe=allow_unsafe)
    model = TinyModel(TinyConfig(width=checkpoint["width"], spec=SPEC, **(overrides or {})))
    model.body.load_state_dict(checkpoint["body"])
    return model


def is_tiny_folder(folder: Path) -> bool:
    return (folder / "tiny.pt").is_file()


@pytest.fixture
def tiny_family(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the family as its file would, on copies of the registry (undone afterwards)."""
    for name in ("_MODELS", "_FAMILIES", "_CONVERTERS", "_FOLDER_FORMATS"):
        monkeypatch.setattr(registry, name, type(getattr(registry, name))(getattr(registry, name)))
    registry.register_model("tiny-test-4", TinyModel, description="a test family", spec=SPEC)
    registry.register_converter("tiny-test", convert_tiny, description="tiny .pt files")
    registry.register_folder_format(is_tiny_folder, lambda folder: convert_tiny(folder / "tiny.pt"))


def published(path: Path, width: int = 3) -> Path:
    torch.manual_seed(0)
    torch.save({"width": width, "body": nn.Linear(2, width).state_dict()}, path)
    return path


def test_a_registered_family_reaches_the_cli(tiny_family: None, tmp_path: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {row["name"]: row for row in json.loads(listed.output)}
    assert rows["tiny-test-4"]["family"] == "tiny-test" and rows["tiny-test-4"]["parameters"] == 12
    table = runner.invoke(app, ["models", "list"])
    assert "tiny-test" in table.output and "tiny .pt files" in table.output
    assert "ecgfounder" in table.output and "hubert-ecg" in table.output

    out = tmp_path / "converted"
    result = runner.invoke(app, ["convert", "tiny-test", str(published(tmp_path / "t.pt")),
                                 "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    model = registry.load_model(out)
    assert isinstance(model, TinyModel) and model.config.width == 3
    expected = convert_tiny(tmp_path / "t.pt")
    assert torch.equal(model.body.weight, expected.body.weight)

    unknown = runner.invoke(app, ["convert", "nope", str(tmp_path / "t.pt"), "--out", str(out)])
    assert isinstance(unknown.exception, UsageError)
    assert "tiny-test" in str(unknown.exception) and "ecgfm" in str(unknown.exception)


def test_a_registered_folder_format_converts_on_load(tiny_family: None, tmp_path: Path) -> None:
    folder = tmp_path / "published"
    folder.mkdir()
    published(folder / "tiny.pt", width=5)
    model = registry.load_model(folder)
    assert isinstance(model, TinyModel) and model.config.width == 5 and not model.training
    assert registry.resolve_model(folder).config.width == 5


def test_registry_knows_no_family_by_name() -> None:
    source = Path(registry.__file__).read_text().lower()
    for name in ("net1d", "ecgfounder", "wav2vec", "ecgfm", "hubert"):
        assert name not in source, name
    assert {"ecgfounder", "ecgfm", "hubert-ecg"} <= set(registry.converter_names())


def test_registering_twice_is_refused(tiny_family: None) -> None:
    with pytest.raises(ValueError, match="'tiny-test' is already registered"):
        registry.register_converter("tiny-test", convert_tiny)
    with pytest.raises(ValueError, match=r"converter must be one of .*; got 'nope'"):
        registry.convert_checkpoint("nope", "x.pt")


def test_resolve_model_weights_or_architecture(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="net1d-tiny: a registered architecture without "
                       "weights: pass a model folder"):  # fmt: skip
        registry.resolve_model("net1d-tiny")
    bare = registry.resolve_model("net1d-tiny", weights=False)
    assert bare.spec.fs == 100
    torch.manual_seed(1)
    folder = save_model(registry.create_model("net1d-tiny", num_classes=3), tmp_path / "m")
    loaded = registry.resolve_model(folder)
    fresh = registry.resolve_model(folder, weights=False)
    assert loaded.config.to_dict() == fresh.config.to_dict() and loaded.num_classes == 3
    same = [torch.equal(a, b) for a, b in zip(loaded.parameters(), fresh.parameters(), strict=True)]
    assert not all(same)  # the architecture, not the weights
    with pytest.raises(CheckpointError, match="neither a model folder"):
        registry.resolve_model(tmp_path / "absent")


def test_a_bundled_preset_loads_its_packaged_weights_by_name(
    tiny_family: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path)
    registry.register_model("tiny-bundled", TinyModel, spec=SPEC, bundled=True)
    rows = {row["name"]: row for row in registry.list_models()}
    assert rows["tiny-bundled"]["pretrained"] is False  # registered, weights not installed
    for load in (registry.resolve_model, registry.load_model):  # one message from both
        with pytest.raises(CheckpointError, match="tiny-bundled: a registered architecture "
                                                  "without weights"):  # fmt: skip
            load("tiny-bundled")
    with pytest.raises(ValueError, match="no bundled weights"):
        registry.create_model("tiny-bundled", pretrained=True)

    torch.manual_seed(3)
    shipped = registry.create_model("tiny-bundled", num_classes=2)
    save_model(shipped, tmp_path / "tiny-bundled")
    rows = {row["name"]: row for row in registry.list_models()}
    assert rows["tiny-bundled"]["pretrained"] is True and rows["tiny-test-4"]["pretrained"] is False
    assert registry.model_folder("tiny-bundled") == tmp_path / "tiny-bundled"
    loaded = registry.resolve_model("tiny-bundled")
    assert torch.equal(loaded.body.weight, shipped.body.weight) and loaded.num_classes == 2
    fresh_head = registry.create_model("tiny-bundled", pretrained=True, num_classes=5)
    assert torch.equal(fresh_head.body.weight, shipped.body.weight)
    assert fresh_head.num_classes == 5
    untrained = registry.resolve_model("tiny-bundled", weights=False)
    assert not torch.equal(untrained.body.weight, shipped.body.weight)
    table = CliRunner().invoke(app, ["models", "list"])
    presets = table.output.split("checkpoint formats")[0].splitlines()
    marked = [line.split()[0] for line in presets if "pretrained" in line]
    assert marked == ["tiny-bundled"]


def test_models_list_says_what_each_preset_builds() -> None:
    """A preset's declared parameter count (which spares ``models list`` building it), number of
    outputs and input spec are those of the model it builds."""
    declared = [name for name in registry.model_names() if registry.model_entry(name).parameters]
    assert len(declared) == len(registry.model_names())  # every preset shipped declares it
    for row in registry.list_models():
        with torch.device("meta"):
            model = registry.create_model(row["name"])
        assert row["parameters"] == registry.count_parameters(model), row["name"]
        assert row["num_classes"] == model.num_classes and row["spec"] == model.config.spec


@pytest.mark.parametrize("name", ["s4-tiny", "resnet1d-wang", "inception1d", "ecgfm-tiny"])
def test_a_spec_given_to_create_model_sets_the_number_of_input_leads(name: str) -> None:
    one_lead = {"fs": 200.0, "seconds": 2.0, "leads": ["II"], "normalisation": "none"}
    model = registry.create_model(name, num_classes=1, spec=one_lead)
    field_name = type(model.config).leads_field
    assert getattr(model.config, field_name) == 1
    assert model.eval()(torch.randn(2, 1, 400)).shape == (2, 1)
    with pytest.raises(ValueError, match="spec has 1 leads but"):  # given, it is kept
        registry.create_model(name, spec=one_lead, **{field_name: 12})
