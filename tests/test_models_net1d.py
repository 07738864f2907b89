"""ECGFounder's Net1D: parity with goldens made by the original code, key layout of the published
models, conversion, strict loading, stochastic depth, heads and presets.

The fixtures live in ../shared/reference (override: ECGFOUNDRY_REFERENCE, or ECGFOUNDRY_SHARED
for the shared folder). Without them the parity tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
import torch
from conftest import require_reference
from safetensors.torch import load_file

from ecgfoundry.data.record import STANDARD_LEADS
from ecgfoundry.models import CheckpointError, UnsafeCheckpointError, create_model
from ecgfoundry.models.io import load_state_dict_strict
from ecgfoundry.models.net1d import (
    ECGFOUNDER_LABELS,
    ECGFOUNDER_SPEC_12LEAD,
    Net1D,
    Net1DConfig,
    config_overrides,
    convert_checkpoint,
    map_original_key,
    original_key,
    same_padding,
)
from ecgfoundry.models.registry import build_config, count_parameters, load_model, save_model
from ecgfoundry.nn.layers import DropPath, drop_path_rates

TOLERANCE = 1e-4
PUBLISHED = {"12lead": (12, 30_819_014), "1lead": (1, 30_807_750)}


@pytest.fixture(scope="module")
def reference() -> Path:
    needed = ["ecgfounder_A.pth", "ecgfounder_A_golden.safetensors", "config_ecgfounder_A.json"]
    return require_reference(*needed)


@pytest.fixture(scope="module")
def config_a(reference: Path) -> dict:
    return json.loads((reference / "config_ecgfounder_A.json").read_text())


@pytest.fixture(scope="module")
def golden(reference: Path) -> dict[str, torch.Tensor]:
    return load_file(str(reference / "ecgfounder_A_golden.safetensors"))


@pytest.fixture(scope="module")
def model_a(reference: Path, config_a: dict) -> Net1D:
    return convert_checkpoint(reference / "ecgfounder_A.pth", overrides=config_a)


def _outputs(model: Net1D, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        features = model.forward_features(x)
        return model.forward_head(features), features


def _original_state(reference: Path) -> dict[str, torch.Tensor]:
    return torch.load(reference / "ecgfounder_A.pth", weights_only=True)["state_dict"]


def _tiny(**overrides) -> Net1D:
    torch.manual_seed(0)
    return create_model("net1d-tiny", **overrides).eval()


# -- parity with the original ------------------------------------------------------------------


@pytest.mark.parametrize("checkpoint", ["ecgfounder_A.pth", "ecgfounder_A_npscalar.pth"])
def test_converted_checkpoint_reproduces_golden(
    reference, config_a, golden, checkpoint, record_property
):
    model = convert_checkpoint(reference / checkpoint, overrides=config_a)
    assert not model.training
    logits, features = _outputs(model, golden["x"])
    err_logits = (logits - golden["logits"]).abs().max().item()
    err_features = (features - golden["features"]).abs().max().item()
    record_property("max_abs_err_logits", err_logits)
    record_property("max_abs_err_features", err_features)
    print(f"{checkpoint}: max |logits err| {err_logits:.3g}, max |features err| {err_features:.3g}")
    assert logits.shape == golden["logits"].shape and features.shape == golden["features"].shape
    assert err_logits <= TOLERANCE and err_features <= TOLERANCE
    with torch.no_grad():
        assert torch.allclose(model(golden["x"][:1]), logits[:1], atol=1e-6)
    assert model.config.num_classes == 5 and model.config.labels is None
    assert model.config.spec == ECGFOUNDER_SPEC_12LEAD


def test_override_forms_agree(reference, config_a, golden, model_a):
    kwargs = config_a["constructor_kwargs"]
    ours = config_overrides(config_a)
    assert ours["num_classes"] == 5 and "n_classes" not in ours
    forms = [kwargs, {**kwargs, "verbose": False, "return_features": True}, ours]
    expected = _outputs(model_a, golden["x"][:1])
    for form in forms:
        model = convert_checkpoint(reference / "ecgfounder_A.pth", overrides=form)
        assert model.config == model_a.config
        for got, want in zip(_outputs(model, golden["x"][:1]), expected, strict=True):
            assert torch.equal(got, want)


def test_save_and_load_round_trip(model_a, golden, tmp_path):
    folder = save_model(model_a, tmp_path / "ecgfounder_A")
    loaded = load_model(folder)
    assert isinstance(loaded, Net1D) and loaded.config == model_a.config
    for got, want in zip(
        _outputs(loaded, golden["x"]), _outputs(model_a, golden["x"]), strict=True
    ):
        assert torch.equal(got, want)
    # stochastic depth on a loaded model: rates change, eval outputs do not
    loaded.set_drop_path_rate(0.3)
    rates = [m.p for m in loaded.drop_path_modules()]
    assert rates == pytest.approx(drop_path_rates(0.3, sum(loaded.config.m_blocks_list)))
    assert loaded.config.drop_path_rate == 0.3
    assert torch.equal(_outputs(loaded, golden["x"])[0], _outputs(model_a, golden["x"])[0])


def test_container_variants(reference, config_a, golden, model_a, tmp_path):
    state = _original_state(reference)
    expected = _outputs(model_a, golden["x"][:1])[0]
    variants = {
        "bare.pth": state,
        "module.pth": {f"module.{k}": v for k, v in state.items()},
        "model_entry.pth": {"model": state, "epoch": 1},
    }
    for name, content in variants.items():
        torch.save(content, tmp_path / name)
        model = convert_checkpoint(tmp_path / name, overrides=config_a)
        assert torch.equal(_outputs(model, golden["x"][:1])[0], expected), name
    # no dense layer: no head, forward gives the features
    torch.save({k: v for k, v in state.items() if not k.startswith("dense.")}, tmp_path / "nh.pth")
    with pytest.warns(UserWarning, match="num_classes=None"):
        headless = convert_checkpoint(tmp_path / "nh.pth", overrides=config_a)
    assert headless.num_classes == 0
    assert torch.equal(headless(golden["x"][:1]).detach(), _outputs(model_a, golden["x"][:1])[1])


def test_checkpoint_decides_classes_and_leads(reference, config_a, model_a):
    kwargs = {**config_a["constructor_kwargs"], "n_classes": 9}
    with pytest.warns(UserWarning, match="num_classes=5"):
        model = convert_checkpoint(reference / "ecgfounder_A.pth", overrides=kwargs)
    assert model.num_classes == 5
    kwargs = {**config_a["constructor_kwargs"], "in_channels": 1}
    with pytest.warns(UserWarning, match="in_channels=12"):
        model = convert_checkpoint(reference / "ecgfounder_A.pth", overrides=kwargs)
    assert model.config.in_channels == 12 and len(model.spec.leads) == 12


def test_unsafe_container_needs_opt_in(reference, config_a, tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"state_dict": _original_state(reference), "args": argparse.Namespace(lr=1)}, path)
    with pytest.raises(UnsafeCheckpointError, match="allow_unsafe"):
        convert_checkpoint(path, overrides=config_a)
    model = convert_checkpoint(path, overrides=config_a, allow_unsafe=True)
    assert model.num_classes == 5


# -- strict loading ----------------------------------------------------------------------------


def _convert_modified(reference, config_a, tmp_path, change) -> str:
    state = dict(_original_state(reference))
    change(state)
    torch.save({"state_dict": state}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as info:
        convert_checkpoint(tmp_path / "bad.pth", overrides=config_a)
    return str(info.value)


def test_missing_extra_and_misshaped_keys_are_listed(reference, config_a, tmp_path):
    conv = "stage_list.1.block_list.0.conv2.conv.weight"

    def drop(state):
        del state[conv]

    def extra(state):
        state["stage_list.9.block_list.0.bn1.weight"] = torch.zeros(3)

    def reshape(state):
        state[conv] = torch.zeros(32, 16, 7)

    message = _convert_modified(reference, config_a, tmp_path, drop)
    assert "1 missing: stages.1.0.conv2.weight" in message and "--config" in message
    message = _convert_modified(reference, config_a, tmp_path, extra)
    assert "1 unexpected: stages.9.0.norm1.weight" in message
    message = _convert_modified(reference, config_a, tmp_path, reshape)
    assert "stages.1.0.conv2.weight: checkpoint (32, 16, 7) vs model (32, 16, 16)" in message


def test_wrong_architecture_is_reported(reference):
    # without the config, the published architecture is assumed: a clear mismatch error
    with pytest.raises(
        CheckpointError,
        match=r"missing: .*shape: .*--config.*"
        r"filter_list=\[16, 32, 32, 64\], m_blocks_list=\[1, 2, 1, 2\]",
    ):
        convert_checkpoint(reference / "ecgfounder_A.pth")


def test_load_state_dict_strict_on_model():
    model = _tiny(num_classes=3)
    state = model.state_dict()
    bad = {k: v for k, v in state.items() if k != "head.bias"} | {"head.extra": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"1 missing: head\.bias; 1 unexpected: head\.extra"):
        load_state_dict_strict(model, bad, "memory")


# -- the published layout ----------------------------------------------------------------------


def _key_list(path: Path) -> tuple[list[tuple[str, list[int], str]], int]:
    rows, total = [], None
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            found = re.search(r"total_parameters[^=]*=(\d+)", line)
            total = int(found[1]) if found else total
            continue
        key, shape, dtype = line.split("\t")
        rows.append((key, json.loads(shape), dtype))
    assert total is not None
    return rows, total


@pytest.mark.parametrize("variant", sorted(PUBLISHED))
def test_published_layout(reference, variant):
    leads, parameters = PUBLISHED[variant]
    keys_file = reference / f"keys_ecgfounder_{variant}.txt"
    if not keys_file.is_file():
        pytest.skip(f"{keys_file} not found")
    expected, total = _key_list(keys_file)
    assert total == parameters
    with torch.device("meta"):
        model = create_model(f"ecgfounder-{variant}")
        assert model(torch.zeros(2, leads, 5000)).shape == (2, 150)
    assert len(expected) == 509
    ours = [
        (original_key(k), list(v.shape), str(v.dtype).removeprefix("torch."))
        for k, v in model.state_dict().items()
    ]
    assert ours == expected
    assert all(map_original_key(original_key(k)) == k for k in model.state_dict())
    assert count_parameters(model) == parameters
    assert model.config.labels == list(ECGFOUNDER_LABELS) and len(set(ECGFOUNDER_LABELS)) == 150
    spec = model.spec
    assert (spec.fs, spec.seconds, spec.samples) == (500.0, 10.0, 5000)
    assert spec.leads == (STANDARD_LEADS if leads == 12 else ("I",))
    assert spec.normalisation == "zscore-global"


def test_small_presets():
    for name, low, high in (("net1d-small", 1e6, 3e6), ("net1d-tiny", 1e5, 5e5)):
        with torch.device("meta"):
            model = create_model(name)
        assert low <= count_parameters(model) <= high and model.num_classes == 0
        assert model.spec.samples == 1000 and model.spec.fs == 100.0


# -- stochastic depth --------------------------------------------------------------------------


def test_drop_path_identity_in_eval():
    x = torch.randn(4, 12, 256)
    plain = _tiny(num_classes=2)
    dropped = _tiny(num_classes=2, drop_path_rate=0.5)
    dropped.load_state_dict(plain.state_dict())
    assert max(m.p for m in dropped.drop_path_modules()) == 0.5
    with torch.no_grad():
        assert torch.equal(plain(x), dropped(x))


def test_drop_path_active_in_training_per_sample():
    x = torch.randn(16, 12, 256)
    plain = _tiny(num_classes=2).train()
    dropped = _tiny(num_classes=2).train()
    dropped.load_state_dict(plain.state_dict())
    dropped.set_drop_path_rate(0.5)
    last = dropped.drop_path_modules()[-1]
    seen = {}
    last.register_forward_hook(lambda module, args, out: seen.update(x=args[0], out=out))
    torch.manual_seed(1)
    with torch.no_grad():
        out_plain, out_dropped = plain(x), dropped(x)
    assert not torch.allclose(out_plain, out_dropped)
    # whole samples are dropped or kept (and rescaled by 1 / (1 - p))
    kept = [torch.allclose(o, i / 0.5) for i, o in zip(seen["x"], seen["out"], strict=True)]
    zeroed = [bool((o == 0).all()) for o in seen["out"]]
    assert all(k != z for k, z in zip(kept, zeroed, strict=True))
    assert any(kept) and any(zeroed)


def test_drop_path_rates_rise_linearly_in_depth_order():
    model = _tiny(drop_path_rate=0.2)
    depth = sum(model.config.m_blocks_list)
    rates = [m.p for m in model.drop_path_modules()]
    assert len(rates) == depth == 9
    assert rates == pytest.approx([0.2 * i / (depth - 1) for i in range(depth)])
    names = [n for n, m in model.named_modules() if isinstance(m, DropPath)]
    order = [tuple(int(part) for part in n.split(".")[1:3]) for n in names]
    assert order == sorted(order)  # registration order is depth order
    model.set_drop_path_rate(0.1)
    assert [m.p for m in model.drop_path_modules()] == pytest.approx(drop_path_rates(0.1, 9))
    with pytest.raises(ValueError, match="drop_path_rate"):
        Net1DConfig(drop_path_rate=1.0)


# -- heads, shapes, configs --------------------------------------------------------------------


def test_heads_and_feature_shapes():
    x = torch.randn(2, 12, 256)
    model = _tiny(num_classes=5)
    assert model.num_features == 160
    with torch.no_grad():
        assert model.forward_features(x).shape == (2, model.num_features)
        assert model(x).shape == (2, 5)
        model.reset_head(3, ["a", "b", "c"])
        assert model(x).shape == (2, 3) and model.config.labels == ["a", "b", "c"]
        model.reset_head(0)
        assert model(x).shape == (2, 160) and model.num_classes == 0
    assert isinstance(create_model("net1d-small", num_classes=4).head, torch.nn.Linear)
    with torch.device("meta"):
        big = create_model("ecgfounder-12lead", num_classes=7)
        assert big(torch.zeros(2, 12, 5000)).shape == (2, 7) and big.config.labels is None
        assert big.forward_features(torch.zeros(2, 12, 5000)).shape == (2, 1024)
    # odd lengths: 'same' padding gives ceil(L / stride) at every step
    with torch.no_grad():
        assert model.forward_features(torch.randn(2, 12, 255)).shape == (2, 160)
    with pytest.raises(ValueError, match="12 leads"):
        model(torch.randn(1, 8, 256))


def test_same_padding_rule():
    for length in (1, 15, 16, 17, 999, 1000):
        for kernel, stride in ((16, 2), (16, 1), (1, 1), (7, 3)):
            left, right = same_padding(length, kernel, stride)
            out = (length + left + right - kernel) // stride + 1
            assert out == -(-length // stride) and right - left in (0, 1)


def test_batch_norm_applied_only_with_use_bn():
    x = torch.randn(2, 12, 256)
    for use_bn in (False, True):
        model = _tiny(num_classes=2, use_bn=use_bn)
        before = model(x).detach()
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_var.fill_(4.0)
        changed = not torch.allclose(model(x).detach(), before)
        assert changed == use_bn


def test_config_specs_and_validation():
    assert Net1DConfig().spec == ECGFOUNDER_SPEC_12LEAD
    assert Net1DConfig(in_channels=1).spec["leads"] == ["I"]
    config = build_config("net1d-small", num_classes=3)
    assert Net1DConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="give a spec"):
        Net1DConfig(in_channels=8)
    with pytest.raises(ValueError, match="spec has 12 leads"):
        Net1DConfig(in_channels=2, spec=ECGFOUNDER_SPEC_12LEAD)
    with pytest.raises(ValueError, match="groups"):
        Net1DConfig(filter_list=[8], m_blocks_list=[1])
    with pytest.raises(ValueError, match="unknown Net1D override"):
        config_overrides({"n_stages": 3})
    with pytest.raises(ValueError, match="conflicting"):
        config_overrides({"n_classes": 3, "num_classes": 4})
    with pytest.raises(ValueError, match="labels"):
        Net1DConfig(num_classes=2, labels=["a"])
    assert config_overrides({"family": "net1d", "config": {"num_classes": 2}}) == {"num_classes": 2}
