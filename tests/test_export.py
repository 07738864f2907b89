"""ONNX export of every family, checked against onnxruntime; S4's fixed-length form."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from ecgfoundry.cli import app
from ecgfoundry.export import ExportError, example_input, export_onnx, exportable, run_onnx
from ecgfoundry.models import create_model, resolve_model
from ecgfoundry.models.registry import list_models
from ecgfoundry.nn.s4 import S4Layer

# The smallest preset of every family.
PRESETS = {"s4": "s4-tiny", "net1d": "net1d-tiny", "ecgfm": "ecgfm-tiny",
           "hubert-ecg": "hubert-ecg-tiny", "resnet1d": "resnet1d-wang",
           "xresnet1d": "xresnet1d50", "inception1d": "inception1d"}  # fmt: skip


def trained_like(name: str) -> torch.nn.Module:
    """A random model whose BatchNorm statistics are those of its inputs (as training leaves
    them), so that its outputs are of the size a trained model's are."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=3)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # running statistics = the mean over the batches below
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, len(model.spec.leads), model.spec.samples))
    return model.eval()


def test_every_family_has_a_preset_here() -> None:
    assert {row["family"] for row in list_models()} == set(PRESETS)


@pytest.mark.parametrize("family", sorted(PRESETS))
def test_every_family_exports_and_matches_onnxruntime(family: str, tmp_path: Path) -> None:
    model = trained_like(PRESETS[family])
    model.config.labels = ["NORM", "MI", "STTC"]
    report = export_onnx(model, tmp_path / "model.onnx")
    assert report["max_abs_error"] <= 1e-4
    assert report["output"] == "logits" and report["preprocessing"] == model.spec.to_dict()
    assert report["labels"] == ["NORM", "MI", "STTC"] and report["outputs"] == 3
    assert report["input"] == ["batch", len(model.spec.leads), model.spec.samples]
    assert report["fixed_length_layers"] == (model.config.n_layers if family == "s4" else 0)
    inputs = example_input(model, batch=3, seed=7)  # another batch size: the batch is dynamic
    with torch.no_grad():
        expected = model(inputs).numpy()
    assert np.abs(run_onnx(tmp_path / "model.onnx", inputs.numpy()) - expected).max() <= 1e-4
    assert json.loads((tmp_path / "model.json").read_text())["max_abs_error"] == pytest.approx(
        report["max_abs_error"])  # fmt: skip


def test_int8_is_written_beside_and_smaller(tmp_path: Path) -> None:
    report = export_onnx(trained_like("net1d-tiny"), tmp_path / "m.onnx", quantize=True)
    assert report["int8"]["path"] == str(tmp_path / "m.int8.onnx")
    assert report["int8"]["bytes"] < report["bytes"] / 2
    assert np.isfinite(report["int8"]["max_abs_error"])


def test_a_fixed_length_s4_layer_computes_what_the_fft_layer_does() -> None:
    torch.manual_seed(0)
    layer = S4Layer(channels=8, state=16, length=64).eval()
    u = torch.randn(2, 8, 40)
    fixed = layer.fixed_length(40)
    with torch.no_grad():
        torch.testing.assert_close(fixed(u), layer(u), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="fixed for 40 steps, got 50"):
        fixed(torch.randn(2, 8, 50))


def test_exportable_fixes_only_the_s4_layers_and_leaves_the_model_alone() -> None:
    model = trained_like("s4-tiny")
    copy = exportable(model, example_input(model))
    assert all(type(m) is S4Layer for m in model.modules() if "S4Layer" in type(m).__name__)
    assert sum("FixedLength" in type(m).__name__ for m in copy.modules()) == model.config.n_layers


def test_the_cli_exports_the_bundled_model(tmp_path: Path) -> None:
    out = tmp_path / "cpc.onnx"
    result = CliRunner().invoke(app, ["export", "ecgfoundry-cpc", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["path"] == str(out) and out.is_file() and report["max_abs_error"] <= 1e-4
    assert report["input"] == ["batch", 12, 1000] and report["outputs"] > 0
    assert report["output"] == "embedding" and report["labels"] is None  # a backbone: no head
    assert report["thresholds"] is None  # not fine-tuned here: none were tuned
    assert report["preprocessing"] == resolve_model("ecgfoundry-cpc").spec.to_dict()


def test_a_bad_output_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"model\.bin: expected a \.onnx file name"):
        export_onnx(trained_like("net1d-tiny"), tmp_path / "model.bin")


def test_a_persons_support_normalisation_is_exported_inside_the_graph(tmp_path: Path) -> None:
    """The z-scoring goes into the graph; a model folder's tuned thresholds (from finetune)
    go into NAME.json, so a device names labels as predict does."""
    from ecgfoundry.inference import save_thresholds
    from ecgfoundry.models import save_model

    model = trained_like("net1d-tiny")
    save_model(model, tmp_path / "mine")
    (tmp_path / "mine" / "support.json").write_text(
        json.dumps({"normalise": {"mean": 0.25, "sd": 0.5}}))  # fmt: skip
    labels = [f"class_{i}" for i in range(model.num_classes)]
    save_thresholds(tmp_path / "mine", labels, np.linspace(0.2, 0.6, len(labels)),
                    tuned_on="validation (fold 9)", aggregate="max")  # fmt: skip
    out = tmp_path / "mine.onnx"
    result = CliRunner().invoke(app, ["export", str(tmp_path / "mine"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "inputs in mV, z-scored in the graph" in result.stdout
    millivolts = example_input(model, batch=2, seed=3)
    with torch.no_grad():
        expected = model((millivolts - 0.25) / 0.5).numpy()
    assert np.abs(run_onnx(out, millivolts.numpy()) - expected).max() <= 1e-4
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["input_normalisation"] == {"mean": 0.25, "sd": 0.5}
    assert list(saved["thresholds"]["thresholds"]) == labels
    assert saved["thresholds"]["thresholds"][labels[0]] == 0.2
    assert saved["thresholds"]["aggregate"] == "max"


def test_predict_with_a_persons_model_z_scores_as_its_export(tmp_path: Path) -> None:
    """`predict` and `embed` on a person's model folder apply its support.json z-scoring, so
    they give what the exported graph gives on the same millivolt windows."""
    from test_cli import ecgfoundry

    from ecgfoundry.data.samples import sample_dir
    from ecgfoundry.inference import load_inputs, prepare
    from ecgfoundry.models import save_model

    model = trained_like("net1d-tiny")
    save_model(model, tmp_path / "mine")
    (tmp_path / "mine" / "support.json").write_text(
        json.dumps({"normalise": {"mean": 0.25, "sd": 0.5}}))  # fmt: skip
    record = sample_dir() / "ptbxl" / "00010_lr.hea"
    exported = ecgfoundry("export", tmp_path / "mine", "--out", tmp_path / "mine.onnx")
    assert exported.returncode == 0, exported.stderr
    predicted = ecgfoundry("predict", tmp_path / "mine", record, "--per-window", "--threshold",
                           "none", "--out", tmp_path / "p.csv")  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr
    assert "z-scored with the person's support.json (mean 0.25 mV, sd 0.5 mV)" in predicted.stderr
    windows = prepare(model, load_inputs(record)).windows  # millivolts, as a device feeds them
    logits = run_onnx(tmp_path / "mine.onnx", windows)
    table = pd.read_csv(tmp_path / "p.csv")
    np.testing.assert_allclose(table.filter(like="class").to_numpy(),
                               1 / (1 + np.exp(-logits)), atol=1e-5)  # fmt: skip
    np.save(tmp_path / "windows.npy", windows)  # the same windows fed as they are
    raw = ecgfoundry("predict", tmp_path / "mine", tmp_path / "windows.npy", "--no-preprocess",
                     "--out", tmp_path / "raw.npy")  # fmt: skip
    assert raw.returncode == 0, raw.stderr
    np.testing.assert_allclose(np.load(tmp_path / "raw.npy"), 1 / (1 + np.exp(-logits)),
                               atol=1e-5)  # fmt: skip


def test_a_broken_support_file_is_named(tmp_path: Path) -> None:
    from ecgfoundry.models import save_model

    save_model(trained_like("net1d-tiny"), tmp_path / "mine")
    (tmp_path / "mine" / "support.json").write_text("{}")
    result = CliRunner().invoke(app, ["export", str(tmp_path / "mine"), "--out",
                                      str(tmp_path / "m.onnx")])  # fmt: skip
    assert result.exit_code != 0
    assert "support.json: expected" in str(result.exception)
