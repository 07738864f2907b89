"""HuBERT-ECG on transformers' HubertModel: parity with goldens made by the original code
(HubertModel / HuBERT-ECG's HuBERTECG), conversion of every published layout, safe reading of
HuBERT-ECG's pickled training container, the published key layout, stochastic depth, input
flattening, heads, presets and an offline Hub snapshot.

The fixtures live in ../shared/reference (override: ECGFOUNDRY_REFERENCE, or ECGFOUNDRY_SHARED
for the shared folder). Without them those tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import require_reference
from safetensors.torch import load_file

from ecgfoundry.data.record import STANDARD_LEADS
from ecgfoundry.models import CheckpointError, UnsafeCheckpointError, create_model, list_models
from ecgfoundry.models.hubert import (
    HUB_REPOS,
    HUBERT_ECG_SPEC,
    HubertECG,
    HubertECGConfig,
    convert_checkpoint,
    map_checkpoint_key,
)
from ecgfoundry.models.io import download_from_hub
from ecgfoundry.models.registry import count_parameters, load_model, save_model
from ecgfoundry.nn.layers import DropPath, drop_path_rates

TOLERANCE = 1e-4
FOLDERS = ["hubert_tiny", "hubert_ecg_tiny", "hubert_tiny_legacy_wn"]
NATIVE = "hubert_ecg_tiny_native.pt"
# The tiny reference architecture (config_hubert_tiny.json), in ecgfoundry's field names.
TINY = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
    conv_dim=[16] * 5, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
    classifier_proj_size=16,
)  # fmt: skip
QUIET = dict(hidden_dropout=0.0, activation_dropout=0.0, attention_dropout=0.0)


@pytest.fixture(scope="module")
def reference() -> Path:
    needed = [*FOLDERS, NATIVE, "hubert_tiny_golden.safetensors", "keys_hubert_ecg_base.txt"]
    return require_reference(*needed)


@pytest.fixture(scope="module")
def golden(reference: Path) -> dict[str, torch.Tensor]:
    return load_file(str(reference / "hubert_tiny_golden.safetensors"))


def _leads(golden: dict[str, torch.Tensor]) -> torch.Tensor:
    """The golden input [2, 6000] as ecgfoundry's model input [2, 12 leads, 500 samples]."""
    return golden["input_values"].reshape(2, 12, 500)


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def _check_golden(model: HubertECG, golden, impl: str, record_property) -> None:
    x = _leads(golden)
    with torch.no_grad():
        hidden = model.forward_sequence(x)
        errors = {
            "last_hidden_state": _max_err(
                hidden, golden["last_hidden_state" if impl == "eager" else "last_hidden_state_sdpa"]
            ),
            "extract_features": _max_err(model.extract_features(x), golden["extract_features"]),
            "pooled": _max_err(model.forward_features(x), golden["pooled"]),
            "forward": _max_err(model(x), golden["pooled"]),  # no head: forward = embedding
        }
        if model.config.vocab_sizes:
            logits = model.pretraining_logits(hidden)
            errors["ensemble_logits_0"] = _max_err(logits[0], golden["ensemble_logits_0"])
    for name, err in errors.items():
        record_property(f"{impl}_{name}_max_abs_err", err)
    assert max(errors.values()) <= TOLERANCE, errors


# -- parity ----------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("folder", FOLDERS)
def test_folders_reproduce_golden(reference, golden, folder, impl, record_property):
    model = convert_checkpoint(reference / folder, overrides={"attn_implementation": impl})
    assert model.backbone.config._attn_implementation == impl
    assert not model.training
    assert model.config.vocab_sizes == ([10] if folder == "hubert_ecg_tiny" else [])
    assert model.config.hidden_size == 32 and model.config.layerdrop == 0.0
    _check_golden(model, golden, impl, record_property)


def test_sdpa_is_the_default_and_eager_agrees(reference, golden):
    model = convert_checkpoint(reference / "hubert_ecg_tiny")
    assert model.config.attn_implementation == "sdpa"
    assert model.backbone.config._attn_implementation == "sdpa"
    config = {**model.config.to_dict(), "attn_implementation": "eager"}
    eager = HubertECG(HubertECGConfig.from_dict(config)).eval()
    eager.load_state_dict(model.state_dict())
    x = _leads(golden)
    with torch.no_grad():
        assert _max_err(eager.forward_sequence(x), model.forward_sequence(x)) <= TOLERANCE


def test_native_container_is_refused_by_default(reference):
    with pytest.raises(UnsafeCheckpointError, match=r"allow_unsafe=True \(CLI: --allow-unsafe\)"):
        convert_checkpoint(reference / NATIVE)


def test_native_container_with_opt_in(reference, golden, record_property):
    model = convert_checkpoint(reference / NATIVE, allow_unsafe=True)
    assert model.config.vocab_sizes == [10] and model.config.mask_embedding
    assert model.config.mask_time_prob == pytest.approx(0.33)
    assert model.config.layerdrop == 0.0  # the container says 0.1: not imported (documented)
    assert not model.config.apply_spec_augment
    _check_golden(model, golden, "sdpa", record_property)
    folder = convert_checkpoint(reference / "hubert_ecg_tiny")
    for key, value in folder.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key


def _malicious_container(path: Path, marker: Path, where: str, monkeypatch) -> None:
    """A HuBERT-ECG-like .pt whose pickle calls os.system('touch MARKER') when unpickled."""

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    fake = types.ModuleType("hubert_ecg")

    class HuBERTECGConfig:  # pickled by reference as hubert_ecg.HuBERTECGConfig
        pass

    HuBERTECGConfig.__module__, HuBERTECGConfig.__qualname__ = "hubert_ecg", "HuBERTECGConfig"
    fake.HuBERTECGConfig = HuBERTECGConfig
    config = HuBERTECGConfig()
    config.hidden_size = 32
    if where == "inside_config":
        config.vocab_sizes = Payload()
        obj = {"model_config": config, "model_state_dict": {"w": torch.zeros(1)}}
    else:
        obj = {"payload": Payload(), "model_config": config, "model_state_dict": {}}
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "hubert_ecg", fake)
        torch.save(obj, path)


@pytest.mark.parametrize("where", ["top_level", "inside_config"])
@pytest.mark.parametrize("allow_unsafe", [False, True])
def test_malicious_pickle_never_runs(tmp_path, monkeypatch, where, allow_unsafe):
    path, marker = tmp_path / "evil.pt", tmp_path / "pwned"
    _malicious_container(path, marker, where, monkeypatch)
    assert "hubert_ecg" not in sys.modules
    with pytest.raises(UnsafeCheckpointError) as error:
        convert_checkpoint(path, allow_unsafe=allow_unsafe)
    assert not marker.exists()
    if allow_unsafe or where == "top_level":  # the payload's global is named and refused
        assert re.search(r"it needs (posix|nt)\.system", str(error.value))
        assert "refused, also with allow_unsafe=True" in str(error.value)
    else:  # the config class comes first: the opt-in is offered (and is still safe, above)
        assert "allow_unsafe=True (CLI: --allow-unsafe)" in str(error.value)


def test_finetuned_container_with_linear_head(reference, golden, tmp_path):
    """HuBERT-ECG's fine-tuning layout: backbone under ``hubert_ecg.``, pretraining heads
    deleted, ``classifier`` Linear on the mean-pooled states (here a bare state-dict container,
    so the architecture comes from ``overrides``)."""
    state = load_file(str(reference / "hubert_ecg_tiny" / "model.safetensors"))
    state = {f"hubert_ecg.{k}": v for k, v in state.items() if not k.startswith(("final", "label"))}
    torch.manual_seed(0)
    weight, bias = torch.randn(5, 32), torch.randn(5)
    state |= {"classifier.weight": weight, "classifier.bias": bias}
    torch.save({"model_state_dict": state, "linear": True}, tmp_path / "finetuned.pt")
    model = convert_checkpoint(tmp_path / "finetuned.pt", overrides=TINY)
    assert model.num_classes == 5 and model.config.vocab_sizes == []
    with torch.no_grad():
        expected = golden["pooled"] @ weight.T + bias
        assert _max_err(model(_leads(golden)), expected) <= TOLERANCE

    state["classifier.0.weight"] = state.pop("classifier.weight")
    torch.save({"model_state_dict": state}, tmp_path / "mlp.pt")
    with pytest.raises(CheckpointError, match="only a linear classifier head"):
        convert_checkpoint(tmp_path / "mlp.pt", overrides=TINY)


def test_conversion_errors_are_clear(reference, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        convert_checkpoint(tmp_path / "nothing")
    folder = tmp_path / "w2v"
    shutil.copytree(reference / "hubert_tiny", folder)
    (folder / "config.json").write_text('{"model_type": "wav2vec2"}')
    with pytest.raises(CheckpointError, match="model_type 'wav2vec2'"):
        convert_checkpoint(folder)
    with pytest.raises(CheckpointError, match="shape"):  # the sizes do not fit the weights
        convert_checkpoint(reference / "hubert_tiny", overrides={"intermediate_size": 48})
    ours = save_model(create_model("hubert-ecg-tiny"), tmp_path / "ours")
    with pytest.raises(CheckpointError, match="load_model"):
        convert_checkpoint(ours)


# -- published layout and presets ------------------------------------------------------------


def _key_file(path: Path) -> tuple[dict[str, list[int]], dict[str, int]]:
    shapes, counts = {}, {}
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            counts |= {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
        elif line.strip():
            key, shape, _ = line.split("\t")
            shapes[key] = [int(n) for n in shape.strip("[]").split(",") if n.strip()]
    return shapes, counts


def test_base_preset_has_the_published_layout(reference):
    shapes, counts = _key_file(reference / "keys_hubert_ecg_base.txt")
    assert len(shapes) == counts["n_keys"] == 212
    with torch.device("meta"):
        model = create_model("hubert-ecg-base")  # vocab_sizes [100], as the key list assumes
    assert model.config.vocab_sizes == [100]
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == {map_checkpoint_key(k): v for k, v in shapes.items()}
    assert count_parameters(model) == counts["total_numel_of_all_state_dict_tensors"]
    assert count_parameters(model) == 93_021_312
    assert count_parameters(model.backbone) == 92_798_848
    assert all(p.device.type == "meta" for p in model.parameters())


def test_presets_and_list_models():
    rows = {row["name"]: row for row in list_models() if row["family"] == "hubert-ecg"}
    assert set(rows) == {f"hubert-ecg-{s}" for s in ("tiny", "small", "base", "large")}
    assert rows["hubert-ecg-base"]["parameters"] == 93_021_312
    assert rows["hubert-ecg-small"]["parameters"] == 30_366_592
    assert rows["hubert-ecg-large"]["parameters"] == 188_187_968
    assert rows["hubert-ecg-tiny"]["parameters"] < 1_200_000
    for size, repo in HUB_REPOS.items():
        assert repo == f"Edoardo-BS/hubert-ecg-{size}"
        assert rows[f"hubert-ecg-{size}"]["weights"].startswith(f"hf-hub:{repo} ")
    for row in rows.values():
        assert row["spec"] == HUBERT_ECG_SPEC.to_dict() and row["num_classes"] == 0


def test_spec_is_hubert_ecg_input():
    spec = create_model("hubert-ecg-tiny").spec
    assert spec == HUBERT_ECG_SPEC
    assert (spec.fs, spec.seconds, spec.samples) == (100, 5, 500)
    assert spec.leads == STANDARD_LEADS and len(spec.leads) * spec.samples == 6000
    assert spec.normalisation == "minmax" and spec.bandpass == (0.05, 47.0)


def test_config_validation_and_round_trip():
    config = HubertECGConfig(**TINY, conv_kernel=(10, 3, 3, 2, 2))
    assert config.conv_kernel == [10, 3, 3, 2, 2] and config.ensemble_length == 1
    assert HubertECGConfig.from_dict(config.to_dict()) == config
    for bad in (
        dict(conv_dim=[16] * 4),
        dict(num_attention_heads=5),
        dict(vocab_sizes=[0]),
        dict(layerdrop=1.0),
        dict(mask_embedding=False, apply_spec_augment=True),
    ):
        with pytest.raises(ValueError):
            HubertECGConfig(**{**TINY, **bad})
    with pytest.raises(ValueError, match="no field"):
        HubertECGConfig.from_dict({"hidden_sizes": 3})


# -- model behaviour -------------------------------------------------------------------------


def test_input_is_flattened_lead_after_lead(golden):
    x = torch.arange(2 * 12 * 500, dtype=torch.float32).reshape(2, 12, 500)
    flat = HubertECG.flatten_leads(x)
    for b in range(2):  # HuBERT-ECG: ecg_data (12, samples) -> ecg_data.reshape(-1)
        assert np.array_equal(flat[b].numpy(), x[b].numpy().reshape(-1))
    for lead in range(12):
        assert torch.equal(flat[:, lead * 500 : (lead + 1) * 500], x[:, lead])
    assert torch.equal(HubertECG.flatten_leads(_leads(golden)), golden["input_values"])
    with pytest.raises(ValueError, match=r"\[batch, leads, samples\]"):
        HubertECG.flatten_leads(golden["input_values"])


def _tiny(**overrides) -> HubertECG:
    torch.manual_seed(0)
    return HubertECG(HubertECGConfig(**{**TINY, **QUIET, **overrides}))


@pytest.mark.parametrize("stable", [False, True])
def test_drop_path(stable):
    model = _tiny(do_stable_layer_norm=stable)
    names = [n for n, m in model.named_modules() if isinstance(m, DropPath)]
    assert names == [
        f"backbone.encoder.layers.{i}.{branch}.drop_path"
        for i in range(2)
        for branch in ("dropout", "feed_forward.output_dropout")
    ]
    from transformers import HubertModel

    plain = HubertModel(HubertECGConfig(**{**TINY, "do_stable_layer_norm": stable}).hf_config())
    expected = {f"backbone.{k}" for k in plain.state_dict()}
    expected |= {"final_proj.0.weight", "final_proj.0.bias", "label_embedding.0.weight"}
    assert set(model.state_dict()) == expected  # DropPath adds no keys

    model.set_drop_path_rate(0.3)
    assert [m.p for m in model.drop_path_modules()] == pytest.approx(drop_path_rates(0.3, 4))
    assert model.drop_path_modules()[0].p == 0.0 and model.drop_path_modules()[-1].p == 0.3

    x = torch.randn(6, 12, 500)
    with torch.no_grad():
        reference = model.eval()(x)
        model.set_drop_path_rate(0.0)
        assert torch.equal(model.train()(x), reference)  # all other randomness is off
        model.set_drop_path_rate(0.9)
        assert torch.equal(model.eval()(x), reference)  # identity at eval
        torch.manual_seed(1)
        assert not torch.allclose(model.train()(x), reference)  # active in training


def test_create_model_drop_path_and_head():
    model = create_model("hubert-ecg-tiny", num_classes=4, drop_path_rate=0.2, **QUIET)
    rates = [m.p for m in model.drop_path_modules()]
    assert len(rates) == 8 and rates[0] == 0.0 and rates[-1] == pytest.approx(0.2)
    assert model.config.drop_path_rate == 0.2 and model.num_features == 128
    x = torch.randn(2, 12, 500)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 4)
        assert model.forward_sequence(x).shape == (2, 93, 128)
        assert model.extract_features(x).shape == (2, 128, 93)
        assert model.pretraining_logits(model.forward_sequence(x))[0].shape == (2, 93, 100)
        model.reset_head(3, ["a", "b", "c"])
        assert model(x).shape == (2, 3) and model.config.labels == ["a", "b", "c"]
        model.reset_head(0)
        assert model(x).shape == (2, 128) and model.num_classes == 0
        assert torch.equal(model(x), model.forward_features(x))
    with pytest.raises(ValueError):
        model.reset_head(2, ["only one"])


def test_training_step_has_gradients():
    model = _tiny(num_classes=2, drop_path_rate=0.1).train()
    loss = model(torch.randn(3, 12, 500)).logsumexp(dim=1).mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    # unused in fine-tuning: the mask vector (masking off) and the pretraining heads
    assert missing == [
        "backbone.masked_spec_embed",
        "final_proj.0.weight",
        "final_proj.0.bias",
        "label_embedding.0.weight",
    ]


def test_save_and_load_round_trip(tmp_path):
    model = _tiny(num_classes=3, labels=["x", "y", "z"], drop_path_rate=0.1).eval()
    folder = save_model(model, tmp_path / "model")
    loaded = load_model(folder)
    assert isinstance(loaded, HubertECG) and loaded.config == model.config
    x = torch.randn(2, 12, 500)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_no_mask_vector_option():
    model = _tiny(mask_embedding=False)
    assert "backbone.masked_spec_embed" not in model.state_dict()
    model = _tiny(mask_time_prob=0.0, mask_embedding=True)  # kept although masking is off
    assert "backbone.masked_spec_embed" in model.state_dict()
    assert _tiny(vocab_sizes=[]).final_proj.__len__() == 0


# -- Hugging Face Hub (offline) --------------------------------------------------------------


def test_hub_snapshot_offline(reference, golden, tmp_path, monkeypatch, record_property):
    """A local HF cache laid out like the real one; HF_HUB_OFFLINE=1 and no sockets."""
    import huggingface_hub.constants

    repo, commit = "Edoardo-BS/hubert-ecg-tiny", "0123456789abcdef0123456789abcdef01234567"
    cache = tmp_path / "hub"
    entry = cache / f"models--{repo.replace('/', '--')}"
    snapshot = entry / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text(commit)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(reference / "hubert_ecg_tiny" / name, snapshot / name)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)

    path = download_from_hub(repo, cache_dir=cache)
    assert path.resolve() == snapshot.resolve()
    _check_golden(convert_checkpoint(path), golden, "sdpa", record_property)
